"""Turn BGR uint8 pictures into model input tensors, exactly as a registry entry prescribes.

Export verification, calibration and the device runtime all call these functions, so a model
sees the same numbers whichever side of the project feeds it.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .registry import Preprocess


@dataclass(frozen=True)
class Letterbox:
    """How an original picture maps into the network input: ``net = original * scale``."""

    scale: float
    width: int  # network input width
    height: int


def letterbox(image: np.ndarray, size: tuple[int, int], fill: tuple[float, float, float]) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio into ``size`` (w, h), top-left aligned, padding with ``fill``.

    Padding at the right/bottom only keeps the inverse mapping a single scale factor.
    """
    width, height = size
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    if (new_w, new_h) != (w, h):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(image, (new_w, new_h), interpolation=interp)
    else:
        resized = image
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[...] = np.asarray(np.round(fill), dtype=np.uint8)
    canvas[:new_h, :new_w] = resized
    return canvas, Letterbox(scale=scale, width=width, height=height)


def bgr_fill(pre: Preprocess) -> tuple[float, float, float]:
    """The BGR pixel that normalises to zero (padding that looks like 'nothing' to the model)."""
    mean = pre.mean
    return tuple(mean[::-1]) if pre.color == "RGB" else tuple(mean)  # type: ignore[return-value]


def normalize(batch_bgr: np.ndarray, pre: Preprocess) -> np.ndarray:
    """uint8 BGR NHWC (or HWC) -> float32 NHWC in the model's colour order, mean/std applied."""
    x = batch_bgr if batch_bgr.ndim == 4 else batch_bgr[None]
    if pre.color == "RGB":
        x = x[..., ::-1]
    x = x.astype(np.float32)
    mean = np.asarray(pre.mean, dtype=np.float32)
    std = np.asarray(pre.std, dtype=np.float32)
    if np.any(mean):
        x -= mean
    if np.any(std != 1.0):
        x /= std
    return x


def detector_input(image_bgr: np.ndarray, pre: Preprocess, size: tuple[int, int] | None = None) -> tuple[np.ndarray, Letterbox]:
    """Letterboxed, normalised 1xHxWx3 tensor for a detector, plus the mapping back to the picture."""
    size = size or pre.input_size
    if size is None:
        h, w = image_bgr.shape[:2]
        return normalize(image_bgr, pre), Letterbox(1.0, w, h)
    canvas, box = letterbox(image_bgr, size, bgr_fill(pre))
    return normalize(canvas, pre), box


def nhwc_to_nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
