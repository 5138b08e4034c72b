"""Face detection on the device: picture in, boxes + five landmarks in picture pixels out.

Everything model-specific (input size, colour order, mean/std, anchors, default threshold) is
read from the bundle's manifest, so a bundle exported with another input size or checkpoint
works without code changes. Decoding and NMS are :func:`gfn_edge.retinaface_decode.postprocess`,
the same code export verification uses.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .checks import check_number
from .errors import InvalidArgumentError, InvalidTypeError, ManifestError
from .image import to_bgr_uint8
from .manifest import MANIFEST_NAME, Manifest, read_manifest
from .preprocess import Letterbox, detector_tensor
from .retinaface_decode import Detections, postprocess

log = logging.getLogger(__name__)

DEFAULT_SCORE_THRESHOLD = 0.5  # only when a manifest records no default_threshold
_TASKS = {"detect": "face detector", "embed": "face recogniser", "liveness": "liveness model"}


def _wrong_task(path: Any, found: Manifest, task: str) -> ManifestError:
    return ManifestError(
        f"{path} holds {found.model}, a {_TASKS.get(found.task, found.task)} (task {found.task!r}), but a "
        f"{_TASKS.get(task, task)} (task {task!r}) is needed here; were the detector and recogniser bundles swapped?"
    )


def open_for_task(source: Any, task: str, backend: str, threads: int | None):
    """An :class:`InferenceModel` for ``source`` (bundle path, model file or opened model) of ``task``."""
    from .runtimes import InferenceModel, open_model  # lazy: keeps `import gfn_edge` light

    if isinstance(source, InferenceModel):
        if source.manifest.task != task:
            raise _wrong_task(source.path, source.manifest, task)
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise InvalidTypeError(f"expected a bundle folder path or an opened model, got {type(source).__name__}")
    path = Path(source)
    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        try:  # cheap look at the task first, for a message that says what was swapped
            found = read_manifest(path, verify_files=False)
        except ManifestError:
            found = None  # open_model reports a damaged manifest itself
        if found is not None and found.task != task:
            raise _wrong_task(path, found, task)
    model = open_model(source, backend=backend, threads=threads, task=task)
    if model.manifest.verification and model.manifest.verification.get("passed") is False:
        log.warning("%s FAILED verification at export (kept with --force); its outputs may be wrong", source)
    return model


class Detector:
    """RetinaFace-family detector from a gfn-export bundle.

    ``score_threshold`` defaults to the manifest's ``default_threshold``; ``input_size`` (w, h) is
    only for artifacts with a dynamic spatial input (fixed ones define their own); ``color`` says
    whether 3/4-channel pictures given to :meth:`detect` are BGR (OpenCV) or RGB (PIL, imageio).
    """

    def __init__(
        self,
        bundle: str | os.PathLike[str] | Any,
        backend: str = "auto",
        threads: int | None = None,
        score_threshold: float | None = None,
        nms_threshold: float = 0.4,
        input_size: tuple[int, int] | None = None,
        color: str = "BGR",
    ):
        if color not in ("BGR", "RGB"):
            raise InvalidArgumentError(f"color must be 'BGR' or 'RGB', got {color!r}")
        if score_threshold is not None:  # type and finiteness here; the range below, with the manifest's default
            score_threshold = check_number(score_threshold, "score_threshold")
        nms_threshold = check_number(nms_threshold, "nms_threshold")
        self.model = open_for_task(bundle, "detect", backend, threads)
        manifest: Manifest = self.model.manifest
        self.manifest = manifest
        anchors = manifest.anchors
        if anchors is None:
            raise ManifestError(f"{manifest.path}: detector manifest of {manifest.model} has no anchors; re-export it with gfn-export")
        self.anchors = anchors
        self.preprocess = manifest.preprocess
        self.color = color
        default = manifest.model_spec.default_threshold
        self.score_threshold = float(score_threshold if score_threshold is not None else (default if default is not None else DEFAULT_SCORE_THRESHOLD))
        self.nms_threshold = float(nms_threshold)
        if not 0.0 < self.score_threshold <= 1.0 or not 0.0 <= self.nms_threshold <= 1.0:  # score 0 keeps every anchor
            raise InvalidArgumentError(f"thresholds must be within 0..1 (score above 0), got score {self.score_threshold}, nms {self.nms_threshold}")
        self.input_size = self._input_size(input_size)
        self._lock = threading.Lock()  # one inference request per model: serialise threads

    def _input_size(self, requested: tuple[int, int] | None) -> tuple[int, int] | None:
        """(w, h) every picture is letterboxed to; None: dynamic model fed the picture padded to the stride."""
        fixed = self.model.input_hw
        if requested is not None:
            requested = _size_pair(requested)
        if fixed is not None:
            size = (fixed[1], fixed[0])
            if requested is not None and tuple(requested) != size:
                raise InvalidArgumentError(
                    f"{self.manifest.model} ({self.manifest.target}) was exported for {size[0]}x{size[1]} inputs; "
                    f"input_size={requested[0]}x{requested[1]} needs a bundle exported with --input-size"
                )
            return size
        if requested is not None:
            w, h = requested
            stride = max(self.anchors.steps)
            if w <= 0 or h <= 0 or w % stride or h % stride:
                raise InvalidArgumentError(f"input_size {w}x{h} must be positive multiples of {stride} (the largest anchor stride)")
            return (w, h)
        return tuple(self.preprocess.input_size) if self.preprocess.input_size else None  # type: ignore[return-value]

    # --- public API ------------------------------------------------------------------------
    @property
    def stride(self) -> int:
        """The largest anchor stride: a dynamic-size input is padded to a multiple of it."""
        return max(self.anchors.steps)

    def to_bgr(self, image: np.ndarray) -> np.ndarray:
        """The picture as BGR uint8 HxWx3 (gray, RGBA and 16-bit converted; anything else refused)."""
        return to_bgr_uint8(image, self.color)

    def tensor(self, bgr: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """The model input for a BGR picture (:func:`gfn_edge.preprocess.detector_tensor`) and the mapping back.

        Fixed-size models and an ``input_size`` letterbox; a dynamic model without one gets the
        picture at its own size, padded to :attr:`stride`.
        """
        return detector_tensor(bgr, self.preprocess, self.input_size, self.stride)

    def detect(self, image: np.ndarray, max_faces: int | None = None, min_face_size: float = 0) -> Detections:
        """Faces in ``image``, best score first, in the picture's pixels.

        ``min_face_size`` drops faces whose shorter box side is smaller (pixels); ``max_faces``
        then keeps the largest ones: on a door unit the person at the door is the biggest face,
        while a sharp passer-by in the background may score higher.
        Boxes are not clipped: a face cut by the picture edge keeps its full extent.
        """
        return self.detect_bgr(self.to_bgr(image), max_faces, min_face_size)

    def detect_bgr(self, bgr: np.ndarray, max_faces: int | None = None, min_face_size: float = 0) -> Detections:
        """:meth:`detect` for a picture already converted with :meth:`to_bgr` (no second conversion)."""
        if max_faces is not None and (isinstance(max_faces, bool) or not isinstance(max_faces, (int, np.integer)) or max_faces < 0):
            raise InvalidArgumentError(f"max_faces must be a whole number >= 0, got {max_faces!r}")
        min_face_size = check_number(min_face_size, "min_face_size", 0.0)
        x, box = self.tensor(bgr)
        with self._lock:
            out = self.model.run(x)
        dets = postprocess(out["loc"], out["conf"], out["landms"], self.anchors, (box.width, box.height), box.scale, self.score_threshold, self.nms_threshold)
        if len(dets) and min_face_size > 0:
            dets = dets.select(np.flatnonzero(face_sizes(dets.boxes) >= min_face_size))
        if max_faces is not None and len(dets) > max_faces:
            area = (dets.boxes[:, 2] - dets.boxes[:, 0]) * (dets.boxes[:, 3] - dets.boxes[:, 1])
            largest = np.argsort(-area, kind="stable")[:max_faces]
            dets = dets.select(np.sort(largest))  # keep score order
        return dets

    def __call__(self, image: np.ndarray, **kwargs: Any) -> Detections:
        return self.detect(image, **kwargs)

    def __repr__(self) -> str:
        size = f"{self.input_size[0]}x{self.input_size[1]}" if self.input_size else "dynamic"
        return f"<Detector {self.manifest.model} {self.manifest.target} on {self.model.backend}, {size}, score>={self.score_threshold:g}>"


def _size_pair(requested: Any) -> tuple[int, int]:
    """``input_size`` as (w, h) whole numbers, or a clear error for anything else."""
    try:
        w, h = requested
        if isinstance(w, bool) or isinstance(h, bool) or int(w) != w or int(h) != h:
            raise TypeError
        return int(w), int(h)
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgumentError(f"input_size must be (width, height) in whole pixels, got {requested!r}") from None


def face_sizes(boxes: np.ndarray) -> np.ndarray:
    """Shorter side of each (x1, y1, x2, y2) box, in pixels: what recognisers care about."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


__all__ = ["Detections", "Detector", "face_sizes", "open_for_task"]
