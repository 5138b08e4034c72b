"""Per-stage latency of the device pipeline on one frame: detect, align, embed, liveness, search.

Why per stage and per frame: the end-to-end figure a user cares about (one VGA frame with one
face, detect + align + embed) hides where the time goes; the stage table shows whether the
detector input size, the recogniser, or Python glue (letterbox, decode, alignment) dominates.
The frame total is timed as one call, not summed, so glue between stages is counted too.

Thread counts: inference threads are set on each runtime (``open_model(..., threads=N)``);
OpenCV's and the BLAS library's pools (letterbox, warpAffine, the gallery's matrix product) are
pinned to the same N for the duration of a measurement (:func:`pinned_threads`).
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from gfn_edge.align import align
from gfn_edge.preprocess import detector_input, letterbox, normalize
from gfn_edge.retinaface_decode import Detections, postprocess

from .timing import Timing, measure

log = logging.getLogger(__name__)

VGA = (640, 480)


class BenchmarkError(RuntimeError):
    """A measurement that cannot be made as asked (no face in the frame, missing bundle...)."""


# ----------------------------------------------------------------------------- threads


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[dict[str, Any]]:
    """Limit OpenCV's and BLAS's thread pools to ``threads`` while measuring; yields what was set.

    BLAS threads are fixed with threadpoolctl when it is installed; otherwise they are whatever
    OPENBLAS_NUM_THREADS / OMP_NUM_THREADS said at start-up, and the result says so.
    """
    info: dict[str, Any] = {"opencv_threads": threads}
    previous = cv2.getNumThreads()
    cv2.setNumThreads(int(threads))
    limiter = None
    try:
        try:
            from threadpoolctl import threadpool_limits

            limiter = threadpool_limits(limits=int(threads), user_api="blas")
            info["blas_threads"] = threads
        except ImportError:
            env = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
            info["blas_threads"] = int(env) if env and env.isdigit() else "unpinned (install threadpoolctl or set OPENBLAS_NUM_THREADS)"
        yield info
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
        cv2.setNumThreads(previous)


# ----------------------------------------------------------------------------- inputs


def vga_frame(image: np.ndarray, size: tuple[int, int] = VGA) -> np.ndarray:
    """The picture fitted into a ``size`` camera frame (aspect kept, grey border), BGR uint8."""
    canvas, _ = letterbox(image, size, (114.0, 114.0, 114.0))
    return canvas


def synthetic_gallery(folder: str | os.PathLike[str], size: int, dim: int, seed: int = 0, chunk: int = 20000):
    """A gallery of ``size`` identities with one random unit-length template each (cached on disk).

    Random unit vectors cost exactly what real templates cost to search: the search is one
    matrix product over all rows, whatever the values.
    """
    from gfn_edge.gallery import Gallery

    path = Path(folder) / f"synthetic-{size}x{dim}-seed{seed}.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        gallery = Gallery(path, signature="gfn-bench:synthetic", dim=dim, check="none")
        if len(gallery) == size:
            return gallery
        gallery.close()
        for extra in ("", "-wal", "-shm"):
            Path(str(path) + extra).unlink(missing_ok=True)
    rng = np.random.default_rng(seed)
    gallery = Gallery(path, signature="gfn-bench:synthetic", dim=dim)
    for start in range(0, size, chunk):
        n = min(chunk, size - start)
        vectors = rng.standard_normal((n, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        gallery.enroll_many((f"id{start + i:07d}", vectors[i]) for i in range(n))
    log.info("built synthetic gallery %s (%d identities)", path, size)
    return gallery


# ----------------------------------------------------------------------------- naive baseline


def _plain_session(bundle: str | os.PathLike[str], threads: int, role: str):
    """(manifest, session, threads) of an FP32 ONNX bundle in a plain ONNX Runtime session."""
    import onnxruntime as ort

    from gfn_edge.manifest import read_manifest

    manifest = read_manifest(bundle)
    if not manifest.target.startswith("onnx") or manifest.precision != "fp32":
        raise BenchmarkError(f"the naive baseline needs an FP32 ONNX {role} bundle, got {manifest.target}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.log_severity_level = 3
    session = ort.InferenceSession(str(manifest.model_file), so, providers=["CPUExecutionProvider"])
    return manifest, session, int(so.intra_op_num_threads)


class NaiveOrtDetector:
    """The reference code's way: the full frame into a plain ONNX Runtime session, no gfn-edge runtime.

    Only the thread count is set (so the comparison is at equal threads); everything else is
    ONNX Runtime's default. Preprocessing is the reference's: float32 frame minus the BGR mean,
    transposed to NCHW. Decoding uses the project's decoder (the same maths as the reference).
    """

    def __init__(self, bundle: str | os.PathLike[str], threads: int):
        self.manifest, self.session, self.threads = _plain_session(bundle, threads, "detector")
        self.input_name = self.session.get_inputs()[0].name
        shape = self.session.get_inputs()[0].shape
        self.input_size = (shape[3], shape[2]) if all(isinstance(d, int) for d in shape[2:]) else None
        self.anchors = self.manifest.anchors
        self.mean = np.asarray(self.manifest.preprocess.mean, np.float32)
        self.names = [o.tensor for o in self.manifest.outputs]

    def detect(self, frame: np.ndarray) -> Detections:
        h, w = frame.shape[:2]
        if self.input_size is not None and self.input_size != (w, h):
            raise BenchmarkError(f"naive detector takes {self.input_size[0]}x{self.input_size[1]} frames, got {w}x{h}")
        x = (np.float32(frame) - self.mean).transpose(2, 0, 1)[None]
        loc, conf, landms = self.session.run(self.names, {self.input_name: np.ascontiguousarray(x)})
        return postprocess(loc, conf, landms, self.anchors, (w, h), 1.0, 0.5, 0.4)


class NaiveOrtEmbedder:
    """A recogniser bundle's ONNX file in a plain ONNX Runtime session (threads set, nothing else)."""

    def __init__(self, bundle: str | os.PathLike[str], threads: int):
        self.manifest, self.session, self.threads = _plain_session(bundle, threads, "recogniser")
        self.input_name = self.session.get_inputs()[0].name
        self.nchw = (self.manifest.inputs[0].layout or "NCHW") == "NCHW"
        self.pre = self.manifest.preprocess
        self.alignment = (None, 112)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        x = normalize(crops, self.pre)
        if self.nchw:
            x = x.transpose(0, 3, 1, 2)
        emb = self.session.run(None, {self.input_name: np.ascontiguousarray(x)})[0]
        return emb / np.linalg.norm(emb, axis=1, keepdims=True)


# ----------------------------------------------------------------------------- measurement


@dataclass
class FrameSetup:
    """What one frame's pipeline runs on, found once before timing."""

    box: np.ndarray
    landmarks: np.ndarray
    crop: np.ndarray
    embedding: np.ndarray
    faces: int


def _largest(dets: Detections) -> int:
    area = (dets.boxes[:, 2] - dets.boxes[:, 0]) * (dets.boxes[:, 3] - dets.boxes[:, 1])
    return int(np.argmax(area))


def _alignment(embedder: Any) -> tuple[np.ndarray | None, int]:
    template, size = getattr(embedder, "alignment", (None, 112))
    return template, int(size)


def setup_frame(detector: Any, embedder: Any, frame: np.ndarray) -> FrameSetup:
    dets = detector.detect(frame)
    if len(dets) == 0:
        raise BenchmarkError("the detector found no face in the benchmark frame; use a frame with one clear face")
    i = _largest(dets)
    template, size = _alignment(embedder)
    crop = align(frame, dets.landmarks[i], size, template)
    emb = embedder.embed(crop[None])[0]
    return FrameSetup(dets.boxes[i].copy(), dets.landmarks[i].copy(), crop, emb, len(dets))


def detector_breakdown(detector: Any, frame: np.ndarray, runs: int, warmup: int, guard: Any = None) -> dict[str, Timing]:
    """detect = preprocess (letterbox + normalise) + inference + decode/NMS, each timed alone.

    Only for gfn-edge :class:`~gfn_edge.detector.Detector` objects with a fixed input size.
    """
    if not hasattr(detector, "preprocess") or getattr(detector, "input_size", None) is None:
        return {}
    x, box = detector_input(frame, detector.preprocess, detector.input_size)
    out = detector.model.run(x)

    def decode() -> Detections:
        return postprocess(out["loc"], out["conf"], out["landms"], detector.anchors, (box.width, box.height), box.scale,
                           detector.score_threshold, detector.nms_threshold)

    return {
        "detect_preprocess": measure(lambda: detector_input(frame, detector.preprocess, detector.input_size), runs, warmup, guard),
        "detect_inference": measure(lambda: detector.model.run(x), runs, warmup, guard),
        "detect_decode": measure(decode, runs, warmup, guard),
    }


def measure_frame(
    detector: Any,
    embedder: Any,
    frame: np.ndarray,
    *,
    runs: int = 100,
    warmup: int = 10,
    threads: int = 1,
    liveness: Any = None,
    galleries: dict[str, Any] | None = None,
    breakdown: bool = True,
    guard: Any = None,
) -> dict[str, Any]:
    """Stage and whole-frame timings for one frame (the largest face is the one aligned and embedded).

    ``frame`` total = detect + align + embed (+ liveness, + search in the first gallery when
    given), timed as one call. Returns ``{"stages": {name: Timing}, "faces": n, "pinned": {...}}``.
    ``guard`` (a QuietGate) repeats stages disturbed by other processes.
    """
    galleries = galleries or {}
    with pinned_threads(threads) as pinned:
        s = setup_frame(detector, embedder, frame)
        template, size = _alignment(embedder)
        stages: dict[str, Timing] = {}
        stages["detect"] = measure(lambda: detector.detect(frame), runs, warmup, guard)
        if breakdown:
            stages.update(detector_breakdown(detector, frame, runs, warmup, guard))
        stages["align"] = measure(lambda: align(frame, s.landmarks, size, template), runs, warmup, guard)
        crop1 = s.crop[None]
        stages["embed"] = measure(lambda: embedder.embed(crop1), runs, warmup, guard)
        if liveness is not None:
            stages["liveness"] = measure(lambda: liveness.score(frame, s.box), runs, warmup, guard)
        for name, gallery in galleries.items():
            stages[f"search_{name}"] = measure(lambda g=gallery: g.search(s.embedding, k=1), runs, warmup, guard)
        first_gallery = next(iter(galleries.values()), None)

        def whole_frame() -> None:
            dets = detector.detect(frame)
            i = _largest(dets)
            crop = align(frame, dets.landmarks[i], size, template)
            emb = embedder.embed(crop[None])[0]
            if liveness is not None:
                liveness.score(frame, dets.boxes[i])
            if first_gallery is not None:
                first_gallery.search(emb, k=1)

        stages["frame"] = measure(whole_frame, runs, warmup, guard)
    return {"stages": stages, "faces": s.faces, "pinned": pinned}


def measure_search(galleries: dict[str, Any], dim: int, threads: int, runs: int, warmup: int, seed: int = 1, guard: Any = None) -> dict[str, Timing]:
    """1:N search latency (k=1) of one random query in each gallery, BLAS pinned to ``threads``."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal(dim).astype(np.float32)
    q /= np.linalg.norm(q)
    out = {}
    with pinned_threads(threads):
        for name, gallery in galleries.items():
            out[name] = measure(lambda g=gallery: g.search(q, k=1), runs, warmup, guard)
    return out


def default_work_dir() -> Path:
    return Path(os.environ.get("GFN_BENCH_WORK") or Path(tempfile.gettempdir()) / "gfn-bench")

