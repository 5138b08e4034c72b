"""Face liveness (anti-spoofing) on the device: MiniFASNet bundles, summed as Silent-Face does.

Each liveness model looks at its own patch: the face box enlarged by the model's ``crop_scale``
(2.7x, 4.0x ...), kept inside the picture, resized to 80x80. The patch geometry lives here, in
:func:`crop_box` / :func:`crop_face`, and nowhere else: export verification cuts its crops with
these same functions, so an artifact is checked on exactly the pixels a board will feed it.

Only numpy and OpenCV are imported; the inference backend comes from :mod:`gfn_edge.runtimes`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import cv2
import numpy as np

from .checks import check_number
from .errors import (
    InvalidArgumentError,
    ManifestError,
    NonFiniteError,
    UnsafeSettingError,
)
from .image import to_bgr_uint8
from .preprocess import crop_tensor
from .registry import Preprocess

log = logging.getLogger(__name__)

BoxLike = Union[Sequence[float], np.ndarray]


# ----------------------------------------------------------------------------- crop geometry


def _checked_box(box: BoxLike) -> tuple[float, float, float, float]:
    try:
        arr = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"a face box is 4 numbers (x1, y1, x2, y2), got {box!r}") from None
    if arr.shape != (4,):
        raise InvalidArgumentError(f"a face box is 4 numbers (x1, y1, x2, y2), got shape {np.asarray(box).shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidArgumentError(f"face box {arr.tolist()} has NaN or infinite coordinates")
    x1, y1, x2, y2 = (float(v) for v in arr)
    if x2 <= x1 or y2 <= y1:
        raise InvalidArgumentError(f"face box {arr.tolist()} is empty: expected corners (x1, y1, x2, y2) with x2 > x1 and y2 > y1")
    return x1, y1, x2, y2


def crop_box(image_wh: tuple[int, int], box: BoxLike, scale: float) -> tuple[int, int, int, int]:
    """Inclusive pixel corners (left, top, right, bottom) of the patch a model with ``scale`` sees.

    ``box`` is a detector's corner box (x1, y1, x2, y2) in picture pixels. The arithmetic is
    Silent-Face-Anti-Spoofing's, step for step, because its models were trained on patches cut
    this way: the box becomes upstream's integer ``(x, y, w, h)`` with ``w = int(x2 - x1 + 1)``
    (its Caffe detector's convention), the scale is capped so the patch fits the picture, the
    patch is centred on the box and shifted (not clipped) back inside, and the corners are
    truncated to integers. A box partly outside the picture is fine; one that does not touch it
    at all is refused, since the patch would show something else entirely.
    """
    x1, y1, x2, y2 = _checked_box(box)
    src_w, src_h = int(image_wh[0]), int(image_wh[1])
    if src_w < 1 or src_h < 1:
        raise InvalidArgumentError(f"picture size {src_w}x{src_h} is empty")
    if x2 <= 0 or y2 <= 0 or x1 >= src_w or y1 >= src_h:
        raise InvalidArgumentError(f"face box {[x1, y1, x2, y2]} lies outside the {src_w}x{src_h} picture")
    if not scale > 0:
        raise InvalidArgumentError(f"crop scale must be positive, got {scale}")
    x, y = int(x1), int(y1)
    w, h = int(x2 - x1 + 1), int(y2 - y1 + 1)
    scale = min((src_h - 1) / h, (src_w - 1) / w, float(scale))
    new_w, new_h = w * scale, h * scale
    cx, cy = x + w / 2, y + h / 2
    left, top, right, bottom = cx - new_w / 2, cy - new_h / 2, cx + new_w / 2, cy + new_h / 2
    if left < 0:
        right, left = right - left, 0.0
    if top < 0:
        bottom, top = bottom - top, 0.0
    if right > src_w - 1:
        left, right = left - (right - src_w + 1), float(src_w - 1)
    if bottom > src_h - 1:
        top, bottom = top - (bottom - src_h + 1), float(src_h - 1)
    return int(left), int(top), int(right), int(bottom)


def crop_face(image: np.ndarray, box: BoxLike, scale: float, size: tuple[int, int] = (80, 80)) -> np.ndarray:
    """The ``size`` (w, h) BGR uint8 patch around ``box`` at ``scale`` (bilinear, as upstream resizes)."""
    image = to_bgr_uint8(image)
    h, w = image.shape[:2]
    left, top, right, bottom = crop_box((w, h), box, scale)
    patch = image[top : bottom + 1, left : right + 1]
    return cv2.resize(patch, (int(size[0]), int(size[1])), interpolation=cv2.INTER_LINEAR)


def liveness_crop(image: np.ndarray, box: BoxLike, pre: Preprocess) -> np.ndarray:
    """The uint8 BGR patch a liveness model described by ``pre`` takes (scale and size from it)."""
    if pre.resize != "face-crop" or not pre.crop_scale or pre.input_size is None:
        raise InvalidArgumentError(f"not a face-crop model: resize={pre.resize!r}, crop_scale={pre.crop_scale}, input_size={pre.input_size}")
    return crop_face(image, box, pre.crop_scale, pre.input_size)


def liveness_input(image: np.ndarray, box: BoxLike, pre: Preprocess) -> np.ndarray:
    """1xHxWx3 float32 input for one face: the patch, normalised with ``pre``'s colour order and mean/std."""
    return crop_tensor(liveness_crop(image, box, pre), pre)


# the default threshold on the real-face probability (export verification judges INT8 at it too)
DEFAULT_THRESHOLD = 0.5


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- device class


def _classes(model: Any) -> int:
    """How many classes a liveness model scores (its logits' last dimension; 2 when unknown)."""
    shape = model.outputs[0].shape if model.outputs else []
    last = shape[-1] if len(shape) else None
    return int(last) if isinstance(last, int) and last > 1 else 2


@dataclass
class LivenessResult:
    """One face's verdict.

    ``score`` is the real-face probability averaged over the models (upstream sums the softmaxes
    and divides by the model count); ``label`` is the argmax class of that average, which is
    upstream's own verdict (real when it equals the real class). ``live`` applies the threshold
    to ``score``: with three classes it is at least as strict as the argmax.
    """

    score: float
    live: bool
    label: int
    probabilities: np.ndarray  # (classes,) averaged softmax
    per_model: dict[str, float] = field(default_factory=dict)  # model name -> its real-face probability


@dataclass
class _Member:
    name: str
    model: Any  # InferenceModel
    pre: Preprocess
    real_class: int


class Liveness:
    """Liveness from one or more MiniFASNet bundles (the Silent-Face pair: 2.7x V2 + 4.0x V1SE).

    ``bundles``: bundle folders (or lone model files) written by gfn-export, or already opened
    :class:`~gfn_edge.runtimes.InferenceModel` objects. ``threshold`` applies to the averaged
    real-face probability. ``backend`` and ``threads`` are passed to ``open_model`` for paths.
    """

    def __init__(
        self,
        bundles: Sequence[str | os.PathLike[str] | Any],
        threshold: float = DEFAULT_THRESHOLD,
        backend: str = "auto",
        threads: int | None = None,
    ):
        if isinstance(bundles, (str, os.PathLike)) or not isinstance(bundles, Sequence):
            bundles = [bundles]
        if len(bundles) == 0:
            raise InvalidArgumentError("Liveness needs at least one liveness model bundle")
        threshold = check_number(threshold, "liveness threshold", 0.0, 1.0)
        if threshold <= 0.0:
            raise UnsafeSettingError(
                "liveness threshold 0 passes every face, photos included: that disables the check; "
                "turn liveness off explicitly instead (the door warns LIVENESS CHECK OFF)"
            )
        self.threshold = threshold
        self.members: list[_Member] = []
        seen: dict[str, int] = {}
        for item in bundles:
            model = self._open(item, backend, threads)
            name = model.manifest.model
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name = f"{name}#{seen[name]}"
            self.members.append(_Member(name, model, model.manifest.preprocess, self._real_class(model)))
        self._refuse_below_chance()
        log.info("liveness: %s, threshold %.2f", ", ".join(f"{m.name} ({m.model.backend})" for m in self.members), self.threshold)

    @staticmethod
    def _open(item: Any, backend: str, threads: int | None):
        from .detector import (
            open_for_task,  # the one place bundles are opened for a task
        )

        return open_for_task(item, "liveness", backend, threads)

    def _refuse_below_chance(self) -> None:
        """A threshold under 1/classes passes faces the models rate as more likely a spoof than real."""
        classes = max(_classes(m.model) for m in self.members)
        chance = 1.0 / max(classes, 2)
        if self.threshold < chance:
            raise UnsafeSettingError(
                f"liveness threshold {self.threshold:g} is below chance level ({chance:.3g} for {classes} classes): "
                f"faces the models rate as likely spoofs would pass, so the check would be off in effect; "
                f"use a threshold >= {chance:.3g}, or turn liveness off explicitly"
            )

    @staticmethod
    def _real_class(model) -> int:
        info = model.manifest.model_spec.liveness or {}
        pre = model.manifest.preprocess
        if "real_class" not in info or pre.resize != "face-crop" or not pre.crop_scale:
            raise ManifestError(f"{model.path}: manifest lacks the liveness crop scale or real class; re-export the bundle")
        return int(info["real_class"])

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def predict(self, image: np.ndarray, box: BoxLike) -> LivenessResult:
        """Verdict for the face at ``box`` (x1, y1, x2, y2 in ``image`` pixels) in a BGR picture."""
        image = to_bgr_uint8(image)
        total: np.ndarray | None = None
        per_model: dict[str, float] = {}
        for m in self.members:
            logits = m.model.run(liveness_input(image, box, m.pre))["logits"][0]
            if not np.all(np.isfinite(logits)):
                raise NonFiniteError(f"{m.name} returned non-finite logits {logits.tolist()}")
            probs = softmax(logits)
            per_model[m.name] = float(probs[m.real_class])
            total = probs if total is None else total + probs
        assert total is not None
        mean = total / len(self.members)
        score = float(np.mean(list(per_model.values())))
        return LivenessResult(score=score, live=score >= self.threshold, label=int(np.argmax(mean)), probabilities=mean, per_model=per_model)

    def score(self, image: np.ndarray, box: BoxLike) -> float:
        """Averaged real-face probability in [0, 1]."""
        return self.predict(image, box).score

    def is_live(self, image: np.ndarray, box: BoxLike) -> bool:
        return self.predict(image, box).live

    def __repr__(self) -> str:
        return f"<Liveness {', '.join(self.names)} threshold={self.threshold:g}>"
