#!/usr/bin/env python
"""Exploratory INT8: how fast would INT8 be, before gfn-export's INT8 targets exist?

    python benchmarks/explore_int8.py --bundles artifacts/bench/bundles --out artifacts/bench/explore

For every FP32 ONNX bundle of RetinaFace and GhostFaceNets it finds, this quantises the graph
with ONNX Runtime's own ``quantize_static`` (QDQ format, per-channel int8 weights, uint8
activations, min/max calibration on real photos), converts the same QDQ graph to OpenVINO IR,
and writes two bundles per model, targets ``onnx-int8x`` and ``openvino-int8x`` ("x":
exploratory). Their agreement with the FP32 bundle is measured on held-out photos (detectors:
recall of FP32's faces and landmark error; recognisers: cosine to FP32's embeddings) and stored
in the manifest with ``"passed": null``: these are NOT verified bundles. gfn-bench measures them,
marks them unverified and keeps them out of the verdict's best figure; they answer "what would
INT8 buy here", nothing more. The real INT8 targets (onnx-int8, openvino-int8, tflite-int8,
calibrated and verified by gfn-export) replace this once they exist.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("benchmarks.explore_int8")


def _photos(shared: Path) -> list[Path]:
    from gfn_edge.image import list_images

    return list_images(shared / "faces" / "portraits") + list_images(shared / "faces" / "scenes") + list_images(shared / "faces" / "pairs")


class _Reader:
    """onnxruntime CalibrationDataReader over a list of NCHW float32 arrays."""

    def __init__(self, name: str, arrays: list[np.ndarray]):
        self.items = iter([{name: a} for a in arrays])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.items, None)


def _quantize(src: Path, dst: Path, input_name: str, calib: list[np.ndarray]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre), str(dst), _Reader(input_name, calib), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
    )
    pre.unlink(missing_ok=True)


def _write_bundle(fp32, folder: Path, target: str, files: dict[str, str], metrics: dict[str, Any], note: str) -> Path:
    from gfn_edge.hub import sha256_file
    from gfn_edge.manifest import Manifest

    m = Manifest.from_dict(fp32.to_dict(), None)
    m.target, m.precision, m.files = target, "int8", files
    m.sha256 = {f: sha256_file(folder / f) for f in files.values()}
    m.export = {"notes": {"exploratory": note}}
    m.verification = {"passed": None, "note": note, "metrics": metrics}
    m.write(folder)
    return folder


def _to_openvino(onnx_file: Path, folder: Path) -> dict[str, str]:
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_file)), str(folder / "model.xml"), compress_to_fp16=False)
    return {"model": "model.xml", "weights": "model.bin"}


def _detector_inputs(fp32_bundle: Path, photos: list[Path]) -> tuple[list[np.ndarray], Any]:
    from gfn_edge.detector import Detector
    from gfn_edge.image import read_image
    from gfn_edge.preprocess import detector_input

    det = Detector(fp32_bundle, threads=2)
    arrays = [np.ascontiguousarray(detector_input(read_image(p), det.preprocess, det.input_size)[0].transpose(0, 3, 1, 2)) for p in photos]
    return arrays, det


def _detector_agreement(fp32_det, int8_bundle: Path, photos: list[Path], backend: str) -> dict[str, Any]:
    from gfn_edge.detector import Detector
    from gfn_edge.image import read_image
    from gfn_edge.metrics import DetectionAgreement

    low = fp32_det.score_threshold - 0.1
    q = Detector(int8_bundle, backend=backend, threads=2, score_threshold=low)
    ref = Detector(fp32_det.model, score_threshold=low)
    agree = DetectionAgreement()
    for p in photos:
        image = read_image(p)
        agree.add(ref.detect(image), q.detect(image), fp32_det.score_threshold, 0.1)
    return {k: round(float(v), 5) for k, v in agree.metrics().items()} | {"images": len(photos)}


def _crops(det, photos: list[Path]) -> np.ndarray:
    from gfn_edge.align import align
    from gfn_edge.image import read_image

    out = []
    for p in photos:
        image = read_image(p)
        d = det.detect(image, max_faces=1)
        if len(d):
            out.append(align(image, d.landmarks[0], 112))
    return np.stack(out)


def _embedder_agreement(fp32_bundle: Path, int8_bundle: Path, crops: np.ndarray, backend: str) -> dict[str, Any]:
    from gfn_edge.embedder import Embedder

    a = Embedder(fp32_bundle, threads=2).embed(crops)
    b = Embedder(int8_bundle, backend=backend, threads=2).embed(crops)
    cos = np.sum(a * b, axis=1)
    return {"faces": int(len(cos)), "cos_mean": round(float(cos.mean()), 5), "cos_min": round(float(cos.min()), 5)}


def explore(bundles: Path, out: Path, shared: Path, calib_count: int = 48, eval_count: int = 40) -> list[Path]:
    """Write exploratory INT8 bundles for each FP32 ONNX detector/recogniser bundle under ``bundles``."""
    from gfn_edge.benchmark.models import find_bundles
    from gfn_edge.manifest import read_manifest
    from gfn_edge.preprocess import normalize

    photos = _photos(shared)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(photos))
    calib_photos = [photos[i] for i in order[:calib_count]]
    eval_photos = [photos[i] for i in order[calib_count : calib_count + eval_count]]
    note = "exploratory INT8 (onnxruntime quantize_static, QDQ, MinMax): not verified by gfn-export; speed indication only"
    written: list[Path] = []
    fp32_dets = []
    for folder in find_bundles([bundles]):
        m = read_manifest(folder)
        if m.target == "onnx" and m.task == "detect":
            fp32_dets.append((folder, m))
    if not fp32_dets:
        raise SystemExit(f"no FP32 ONNX detector bundle under {bundles}")
    aligner_folder = max(fp32_dets, key=lambda fm: fm[1].inputs[0].shape[-1])[0]
    for folder in find_bundles([bundles]):
        m = read_manifest(folder)
        if m.target != "onnx" or m.task not in ("detect", "embed"):
            continue
        size = f"-{m.inputs[0].shape[3]}x{m.inputs[0].shape[2]}" if m.task == "detect" else ""
        dest = out / f"{m.model}{size}"
        onnx_dir, ov_dir = dest / f"{m.model}-onnx-int8x", dest / f"{m.model}-openvino-int8x"
        if (onnx_dir / "manifest.json").is_file() and (ov_dir / "manifest.json").is_file():
            written += [onnx_dir, ov_dir]
            continue
        for d in (onnx_dir, ov_dir):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
        log.info("quantising %s", folder)
        input_name = m.inputs[0].tensor
        if m.task == "detect":
            calib, fp32_det = _detector_inputs(folder, calib_photos)
        else:
            from gfn_edge.detector import Detector

            aligner = Detector(aligner_folder, threads=2)
            calib_crops = _crops(aligner, calib_photos)
            eval_crops = _crops(aligner, eval_photos)
            x = normalize(calib_crops, m.preprocess)
            calib = [np.ascontiguousarray(x[i : i + 1].transpose(0, 3, 1, 2)) for i in range(len(x))]
        _quantize(m.model_file, onnx_dir / "model.onnx", input_name, calib)
        shutil.copy(onnx_dir / "model.onnx", ov_dir / "source.onnx")
        files = _to_openvino(ov_dir / "source.onnx", ov_dir)
        (ov_dir / "source.onnx").unlink()
        for d, target, f, backend in ((onnx_dir, "onnx-int8x", {"model": "model.onnx"}, "onnxruntime"), (ov_dir, "openvino-int8x", files, "openvino")):
            _write_bundle(m, d, target, f, {}, note)  # manifest first: the runtime needs it to measure agreement
            if m.task == "detect":
                metrics = _detector_agreement(fp32_det, d, eval_photos, backend)
            else:
                metrics = _embedder_agreement(folder, d, eval_crops, backend)
            metrics["reference"] = "this model's FP32 ONNX bundle (not the original framework)"
            _write_bundle(m, d, target, f, metrics, note)
            log.info("%s: %s", d.name, metrics)
            written.append(d)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundles", default=str(ROOT / "artifacts" / "bench" / "bundles"))
    p.add_argument("--out", default=str(ROOT / "artifacts" / "bench" / "explore"))
    p.add_argument("--shared", default=os.environ.get("GFN_EDGE_SHARED") or str(ROOT.parent / "shared"))
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for d in explore(Path(args.bundles), Path(args.out), Path(args.shared)):
        print(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
