"""Per-stage latency of the device pipeline on one frame: detect, align, embed, liveness, search.

Why per stage and per frame: the end-to-end figure a user cares about (one VGA frame with one
face, detect + align + embed) hides where the time goes; the stage table shows whether the
detector input size, the recogniser, or Python glue (letterbox, decode, alignment) dominates.
The frame total is timed as one call, not summed, so glue between stages is counted too.

The stages are FaceAnalyzer's public ones (detect, align, recognise with quality and liveness),
so the figures are those of the pipeline the door runs; the naive baseline
(:mod:`.naive`) keeps the reference's calls and shares the alignment.

Thread counts: inference threads are set on each runtime (``open_model(..., threads=N)``);
OpenCV's and the BLAS library's pools (letterbox, warpAffine, the gallery's matrix product) are
pinned to the same N for the duration of a measurement (:func:`pinned_threads`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gfn_edge.align import align_faces
from gfn_edge.preprocess import letterbox
from gfn_edge.retinaface_decode import Detections, postprocess
from gfn_edge.threads import apply_threads

from . import BenchmarkError
from .naive import NaiveOrtDetector, NaiveOrtEmbedder
from .timing import Timing, measure

__all__ = [
    "VGA",
    "AnalyzerFrame",
    "BenchmarkError",
    "NaiveFrame",
    "NaiveOrtDetector",
    "NaiveOrtEmbedder",
    "default_work_dir",
    "detector_breakdown",
    "frame_pipeline",
    "measure_frame",
    "measure_search",
    "pinned_threads",
    "synthetic_gallery",
    "vga_frame",
]

log = logging.getLogger(__name__)

VGA = (640, 480)


# ----------------------------------------------------------------------------- threads


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[dict[str, Any]]:
    """Limit OpenCV's and BLAS's thread pools to ``threads`` while measuring; yields what was set.

    OpenCV's pool is sized by :func:`gfn_edge.threads.apply_threads`, the helper FaceAnalyzer and
    the door use for their ``threads`` setting, so the benchmark measures what they run. BLAS threads are fixed with threadpoolctl when it is installed; otherwise they are whatever
    OPENBLAS_NUM_THREADS / OMP_NUM_THREADS said at start-up, and the result says so.
    """
    info: dict[str, Any] = {"opencv_threads": threads}
    previous = apply_threads(int(threads))
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


# ----------------------------------------------------------------------------- measurement


class AnalyzerFrame:
    """gfn-edge's pipeline on a frame: :class:`~gfn_edge.analyzer.FaceAnalyzer`'s public stages, as the door runs them."""

    def __init__(self, detector: Any, embedder: Any, liveness: Any = None):
        from gfn_edge.analyzer import FaceAnalyzer

        self.analyzer = FaceAnalyzer(detector, embedder, liveness=liveness)
        self.detector, self.embedder = detector, embedder
        self.detect = self.analyzer.detect
        self.align = self.analyzer.align
        self.embed = embedder.embed

    def faces(self, frame: np.ndarray, dets: Detections) -> list[Any]:
        """Align, embed, judge quality and score liveness: :meth:`FaceAnalyzer.recognize`."""
        return self.analyzer.recognize(frame, dets)

    def score_liveness(self, frame: np.ndarray, faces: list[Any]) -> None:
        self.analyzer.score_liveness(frame, faces)

    def embedding_of_largest(self, frame: np.ndarray) -> np.ndarray | None:
        """The whole frame, timed as one call: detect -> recognize (every stage) -> the largest face's embedding."""
        from gfn_edge.analyzer import largest_face

        face = largest_face(self.analyzer.recognize(frame, self.analyzer.detect(frame)))
        return None if face is None else face.embedding


class NaiveFrame:
    """The naive baseline on a frame: the reference's detector and recogniser calls, gfn-edge's alignment.

    Crops are cut by :func:`gfn_edge.align.align_faces` with the recogniser manifest's crop size
    and template, the function :meth:`FaceAnalyzer.align` uses, so the baseline differs from the
    pipeline only where the reference code does.
    """

    def __init__(self, detector: Any, embedder: Any):
        self.detector, self.embedder = detector, embedder
        self.geometry = embedder.geometry
        self.detect = detector.detect
        self.embed = embedder.embed

    def align(self, frame: np.ndarray, dets: Detections) -> np.ndarray:
        return align_faces(frame, dets.landmarks, self.geometry)

    def faces(self, frame: np.ndarray, dets: Detections) -> np.ndarray:
        return self.embed(self.align(frame, dets))

    def embedding_of_largest(self, frame: np.ndarray) -> np.ndarray | None:
        dets = self.detect(frame)
        if len(dets) == 0:
            return None
        return self.embed(self.align(frame, dets.select(np.asarray([_largest(dets)]))))[0]


def _largest(dets: Detections) -> int:
    area = (dets.boxes[:, 2] - dets.boxes[:, 0]) * (dets.boxes[:, 3] - dets.boxes[:, 1])
    return int(np.argmax(area))


def frame_pipeline(detector: Any, embedder: Any, liveness: Any = None) -> AnalyzerFrame | NaiveFrame:
    """gfn-edge's Detector/Embedder run through FaceAnalyzer's stages; the naive baseline's objects as the reference does."""
    from gfn_edge.detector import Detector
    from gfn_edge.embedder import Embedder

    if isinstance(detector, Detector) and isinstance(embedder, Embedder):
        return AnalyzerFrame(detector, embedder, liveness)
    if liveness is not None:
        raise BenchmarkError("liveness is measured on gfn-edge pipelines only")
    return NaiveFrame(detector, embedder)


def detector_breakdown(detector: Any, frame: np.ndarray, runs: int, warmup: int, guard: Any = None) -> dict[str, Timing]:
    """detect = tensor (letterbox + normalise) + inference + decode/NMS, each timed alone.

    Only for gfn-edge :class:`~gfn_edge.detector.Detector` objects; the tensor comes from
    :meth:`Detector.tensor`, the code :meth:`Detector.detect` runs.
    """
    if not hasattr(detector, "tensor") or not hasattr(detector, "model"):
        return {}
    x, box = detector.tensor(frame)
    out = detector.model.run(x)

    def decode() -> Detections:
        return postprocess(
            out["loc"], out["conf"], out["landms"], detector.anchors, (box.width, box.height), box.scale, detector.score_threshold, detector.nms_threshold
        )

    return {
        "detect_preprocess": measure(lambda: detector.tensor(frame), runs, warmup, guard),
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
    """Stage and whole-frame timings for one frame (stages on its largest face).

    gfn-edge detectors and recognisers run through FaceAnalyzer's stages (:class:`AnalyzerFrame`:
    detect, align, embed, quality, liveness, exactly what the door runs); the naive baseline's
    objects through :class:`NaiveFrame`. ``frame`` = the whole pipeline (+ search in the first
    gallery when given), timed as one call. Returns ``{"stages": {name: Timing}, "faces": n,
    "pinned": {...}}``. ``guard`` (a QuietGate) repeats stages disturbed by other processes.
    """
    galleries = galleries or {}
    pipe = frame_pipeline(detector, embedder, liveness)
    with pinned_threads(threads) as pinned:
        dets = pipe.detect(frame)
        if len(dets) == 0:
            raise BenchmarkError("the detector found no face in the benchmark frame; use a frame with one clear face")
        one = dets.select(np.asarray([_largest(dets)]))
        crops = pipe.align(frame, one)
        embedding = pipe.embed(crops)[0]
        stages: dict[str, Timing] = {"detect": measure(lambda: pipe.detect(frame), runs, warmup, guard)}
        if breakdown:
            stages.update(detector_breakdown(detector, frame, runs, warmup, guard))
        stages["align"] = measure(lambda: pipe.align(frame, one), runs, warmup, guard)
        stages["embed"] = measure(lambda: pipe.embed(crops), runs, warmup, guard)
        if liveness is not None:
            faces = pipe.faces(frame, one)
            stages["liveness"] = measure(lambda: pipe.score_liveness(frame, faces), runs, warmup, guard)
        for name, gallery in galleries.items():
            stages[f"search_{name}"] = measure(lambda g=gallery: g.search(embedding, k=1), runs, warmup, guard)
        first_gallery = next(iter(galleries.values()), None)

        def whole_frame() -> None:
            emb = pipe.embedding_of_largest(frame)
            if first_gallery is not None and emb is not None:
                first_gallery.search(emb, k=1)

        stages["frame"] = measure(whole_frame, runs, warmup, guard)
    return {"stages": stages, "faces": len(dets), "pinned": pinned}


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
