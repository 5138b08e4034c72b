#!/usr/bin/env python
"""Run the full gfn-edge benchmark: export the bundles it needs, then measure everything with gfn-bench.

    python benchmarks/run.py                      # export (once) + measure, results in benchmarks/results/
    python benchmarks/run.py --skip-export        # measure bundles already under --work
    python benchmarks/run.py --quick              # few runs, small galleries: checks the harness, not the numbers

This script is the training side's part: it calls ``gfn_edge.export.api.export_model`` (PyTorch,
TensorFlow...) to produce bundles (each manifest records its parameters and FLOPs) and prepares
the peers (``gfn_edge.export.peer_graphs``), in a child process; nothing it measures runs through
those frameworks. The measuring itself is the device-side engine
(``gfn_edge.benchmark.engine``), the same code behind ``gfn-bench`` and ``apps/bench_device.py``.

Bundles (under ``--work``/bundles, reused when present and verified):
  retinaface-mnet025 at 320x240 and 640x480 (real WIDER FACE weights);
  ghostfacenet-v1-w1.3-s2 with random weights (its release file is not in the mirror: fine for
  speed, never for accuracy, so no INT8: its verification cannot pass and would only spend the
  search's budget); ghostfacenet-dsitweed-w0.5-e16 (a real student, the recogniser whose INT8
  bundles are measured); minifasnet-v2-2.7 (liveness, real weights);
  targets onnx, openvino, openvino-fp16, tflite, tflite-fp16, and the INT8 targets onnx-int8,
  openvino-int8, tflite-int8 when the exporter provides them. A target that cannot be exported,
  or fails verification, is listed under "Skipped or failed" with the reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FP_TARGETS = ["onnx", "openvino", "openvino-fp16", "tflite", "tflite-fp16"]
INT8_TARGETS = ["onnx-int8", "openvino-int8", "tflite-int8"]
DETECTOR = "retinaface-mnet025"
RECOGNISER = "ghostfacenet-v1-w1.3-s2"
STUDENT = "ghostfacenet-dsitweed-w0.5-e16"
LIVENESS = "minifasnet-v2-2.7"

log = logging.getLogger("benchmarks.run")


def _shared(arg: str | None) -> Path:
    path = Path(arg or os.environ.get("GFN_EDGE_SHARED") or ROOT.parent / "shared")
    if not path.is_dir():
        sys.exit(f"shared/ folder not found at {path}: pass --shared DIR (it holds the mirror, photos and peers)")
    return path


def _existing(out: Path, model: str, target: str) -> Path | None:
    """A verified bundle from an earlier run, or None."""
    from gfn_edge.manifest import MANIFEST_NAME, read_manifest

    folder = out / f"{model}-{target}"
    if (folder / MANIFEST_NAME).is_file():
        try:
            m = read_manifest(folder)
        except Exception:  # damaged: export again
            return None
        if m.verification.get("passed"):
            return folder
    return None


def _size(kwargs: dict[str, Any]) -> str:
    size = kwargs.get("input_size")
    return f"at {size[0]}x{size[1]}" if size else ""


def calibration_photos(work: Path, shared: Path) -> Path:
    """INT8 calibration pictures: the portraits and every third crowd scene (links, not copies).
    gfn-export leaves the pictures a calibration set used out of verification."""
    folder = work / "calib-photos"
    folder.mkdir(parents=True, exist_ok=True)
    faces = shared / "faces"
    for src in sorted((faces / "portraits").glob("*.jpg")) + sorted((faces / "scenes").glob("*.jpg"))[0::3]:
        link = folder / src.name
        if not link.exists():
            link.symlink_to(src.resolve())
    return folder


def job_targets(model: str, kwargs: dict[str, Any], int8: bool) -> tuple[list[str], list[dict[str, Any]]]:
    """The targets to export for one job, and a skip note for each INT8 target left out.

    A random-weights model gets no INT8 target: INT8 is verified against real faces, which random
    weights cannot pass, so its search would spend its whole budget (600 s a target) for a bundle
    the benchmark could not measure."""
    if model == LIVENESS:
        return ["onnx", "openvino", "tflite"], []
    if not int8:
        return list(FP_TARGETS), []
    if kwargs.get("random_weights"):
        why = "random weights: INT8 is judged on real weights only, not exported"
        return list(FP_TARGETS), [{"bundle": f"{model}-{t} {_size(kwargs)}".strip(), "reason": why} for t in INT8_TARGETS]
    return FP_TARGETS + INT8_TARGETS, []


def export_bundles(work: Path, shared: Path, int8: bool, liveness: bool, retry_failed: bool = False) -> list[dict[str, Any]]:
    """Export every bundle the benchmark needs; returns skip notes for targets that did not make it."""
    from gfn_edge.export.api import export_model

    jobs: list[tuple[str, Path, dict[str, Any]]] = [
        (DETECTOR, work / f"{DETECTOR}-320x240", {"input_size": (320, 240)}),
        (DETECTOR, work / f"{DETECTOR}-640x480", {"input_size": (640, 480)}),
        (RECOGNISER, work / RECOGNISER, {"random_weights": True}),
        (STUDENT, work / STUDENT, {}),
    ]
    if liveness:
        jobs.append((LIVENESS, work / LIVENESS, {}))
    skipped: list[dict[str, Any]] = []
    calib = calibration_photos(work.parent, shared) if int8 else None
    for model, out, kwargs in jobs:
        targets, not_made = job_targets(model, kwargs, int8)
        skipped += not_made
        todo = []
        for t in targets:
            if _existing(out, model, t) is not None:
                continue
            failed = out / f"{model}-{t}.failed.json"
            if failed.is_file() and not retry_failed:  # exported before and failed verification: do not redo
                ver = json.loads(failed.read_text()).get("verification", {})
                why = "; ".join(ver.get("failures", [])) or "see " + str(failed)
                skipped.append({"bundle": f"{model}-{t} {_size(kwargs)}".strip(), "reason": f"failed verification, not benchmarked: {why}"})
                continue
            todo.append(t)
        if not todo:
            continue
        # FP targets in one call (one reference run); each INT8 target alone, so a missing
        # calibration set or exporter module skips that target only
        groups = [[t for t in todo if t not in INT8_TARGETS]] + [[t] for t in todo if t in INT8_TARGETS]
        for group in (g for g in groups if g):
            label = f"{model} {','.join(group)} {_size(kwargs)}".strip()
            log.info("exporting %s", label)
            extra: dict[str, Any] = {}
            if group[0] in INT8_TARGETS:
                extra = {"calib": calib, "options": {"calib_augment": True}}
            try:
                results = export_model(model, group, out, mirror=shared / "models", verify_images=shared / "faces", **kwargs, **extra)
            except Exception as exc:  # the exporter for a target may not exist yet: note it and go on
                for t in group:
                    skipped.append({"bundle": f"{model}-{t} {_size(kwargs)}".strip(), "reason": f"not exported: {type(exc).__name__}: {exc}"})
                continue
            for r in results:
                if not r.passed:
                    why = r.error or "; ".join(r.failures)
                    skipped.append({"bundle": f"{model}-{r.target} {_size(kwargs)}".strip(), "reason": f"failed verification, not benchmarked: {why}"})
    return skipped


def prepare_peers(peers_dir: Path, cache: Path) -> list[dict[str, Any]]:
    """Clean the peers' graphs and count their MACs (needs onnx: training side), where gfn-bench looks for them."""
    from gfn_edge.benchmark.peers import find_peers
    from gfn_edge.export.peer_graphs import prepare_peer

    notes = []
    for spec, path in find_peers(peers_dir) if peers_dir.is_dir() else []:
        try:
            prepare_peer(path, cache)
        except Exception as exc:  # measured as shipped then, with the reason in the table
            notes.append({"bundle": spec.name, "reason": f"peer not prepared: {type(exc).__name__}: {exc}"})
    return notes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default=str(ROOT / "artifacts" / "bench"), help="bundles, galleries, cleaned peer graphs (default artifacts/bench)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="bench.json, bench.md, latency_fidelity.png (default benchmarks/results)")
    p.add_argument("--shared", help="shared/ folder (default ../shared)")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--runs", default="50")
    p.add_argument("--pipeline-runs", default="100")
    p.add_argument("--skip-export", action="store_true", help="measure what is under --work/bundles")
    p.add_argument("--export-only", action="store_true", help="export the bundles and stop (measure later, on a quiet machine)")
    p.add_argument("--retry-failed", action="store_true", help="export again targets that failed verification before")
    p.add_argument("--no-int8", action="store_true", help="do not try the INT8 targets")
    p.add_argument("--no-liveness", action="store_true", help="leave MiniFASNet out")
    p.add_argument("--openvino-hints", default=None, help="extra OpenVINO precision hints to try (default: bf16 on CPUs with BF16 support)")
    p.add_argument("--wait-quiet", default="60", help="seconds to wait for a quiet machine before each row (default 60; gfn-bench --wait-quiet)")
    p.add_argument("--quick", action="store_true", help="5 runs, 1k galleries, no memory probes: a harness check, not a measurement")
    p.add_argument("-v", "--verbose", action="store_true")
    args, extra = p.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GFN_EDGE_PROGRESS", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    shared = _shared(args.shared)
    work = Path(args.work)
    bundles = work / "bundles"
    notes_file = work / "export-skipped.json"
    if args.export_only:
        skipped = export_bundles(bundles, shared, int8=not args.no_int8, liveness=not args.no_liveness, retry_failed=args.retry_failed)
        skipped += prepare_peers(shared / "peers", work / "peers")
        notes_file.parent.mkdir(parents=True, exist_ok=True)
        notes_file.write_text(json.dumps(skipped, indent=2) + "\n")
        for item in skipped:
            print(f"skipped: {item['bundle']}: {item['reason']}")
        return 0
    if not args.skip_export:
        # export in a child process: the measuring process never imports PyTorch or TensorFlow,
        # whose thread pools and memory would otherwise sit beside the runtimes being timed
        child = [sys.executable, str(Path(__file__).resolve()), "--export-only", "--work", str(work), "--shared", str(shared)]
        child += [
            flag
            for flag, on in (("--no-int8", args.no_int8), ("--no-liveness", args.no_liveness), ("--retry-failed", args.retry_failed), ("-v", args.verbose))
            if on
        ]
        if subprocess.run(child).returncode != 0:
            sys.exit("export failed; see the messages above")
    skipped = json.loads(notes_file.read_text()) if notes_file.is_file() else []

    from gfn_edge.benchmark.cli import build_parser, request_from_args
    from gfn_edge.benchmark.engine import run_benchmark
    from gfn_edge.benchmark.system import cpu_flags

    bench_args = [
        "--bundles",
        str(bundles),
        "--shared",
        str(shared),
        "--work",
        str(work),
        "--out",
        args.out,
        "--threads",
        args.threads,
        "--runs",
        args.runs,
        "--pipeline-runs",
        args.pipeline_runs,
        "--wait-quiet",
        args.wait_quiet,
    ]
    hints = args.openvino_hints if args.openvino_hints is not None else ("bf16" if {"avx512_bf16", "amx_bf16"} & set(cpu_flags()) else "")
    if hints:
        bench_args += ["--openvino-hints", hints]
    if args.quick:
        bench_args += [
            "--runs",
            "5",
            "--warmup",
            "2",
            "--pipeline-runs",
            "5",
            "--gallery-sizes",
            "1000",
            "--no-memory",
            "--import-repeats",
            "1",
            "--wait-quiet",
            "0",
        ]
    if args.verbose:
        bench_args.append("-v")
    ns = build_parser().parse_args(bench_args + extra)  # gfn-bench's own options pass through
    run_benchmark(request_from_args(ns), skipped)
    print((Path(args.out) / "bench.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
