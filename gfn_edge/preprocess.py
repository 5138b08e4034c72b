"""Turn BGR uint8 pictures into model input tensors, exactly as a registry entry prescribes.

Export verification, calibration and the device runtime all call these functions, so a model
sees the same numbers whichever side of the project feeds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import ImageError
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


def pad_to_stride(image: np.ndarray, stride: int, fill: tuple[float, float, float]) -> tuple[np.ndarray, Letterbox]:
    """The picture at its own scale, padded right/bottom with ``fill`` to multiples of ``stride``.

    What a detector with a dynamic spatial input is fed: never resized (small faces keep their
    pixels), padded so every feature level tiles the input exactly as the anchors assume.
    """
    if stride < 1:
        raise ValueError(f"stride must be a positive number of pixels, got {stride}")
    h, w = image.shape[:2]
    ph, pw = math.ceil(h / stride) * stride, math.ceil(w / stride) * stride
    if (ph, pw) == (h, w):
        return image, Letterbox(1.0, w, h)
    canvas = np.empty((ph, pw, 3), dtype=np.uint8)
    canvas[...] = np.asarray(np.round(fill), dtype=np.uint8)
    canvas[:h, :w] = image
    return canvas, Letterbox(1.0, pw, ph)


def detector_canvas(image_bgr: np.ndarray, pre: Preprocess, size: tuple[int, int] | None = None, stride: int | None = None) -> tuple[np.ndarray, Letterbox]:
    """The uint8 BGR picture a detector sees, before normalisation, and the mapping back.

    ``size`` (w, h): letterboxed to it (a fixed-size model, or a dynamic one run at a chosen
    size). None (a dynamic model at the picture's own size): padded to ``stride`` when given,
    else fed exactly as it is. Calibration stores these canvases and verification keeps them,
    so both hold what the device feeds.
    """
    if size is not None:
        return letterbox(image_bgr, (int(size[0]), int(size[1])), bgr_fill(pre))
    if stride:
        return pad_to_stride(image_bgr, int(stride), bgr_fill(pre))
    h, w = image_bgr.shape[:2]
    return image_bgr, Letterbox(1.0, w, h)


def detector_tensor(image_bgr: np.ndarray, pre: Preprocess, size: tuple[int, int] | None = None, stride: int | None = None) -> tuple[np.ndarray, Letterbox]:
    """The one detector tensor builder: 1xHxWx3 float32 NHWC (see :func:`detector_canvas`), plus the mapping back.

    The device :class:`~gfn_edge.detector.Detector`, gfn-eval, calibration and export verification
    all build detector inputs here; a runtime whose model is NCHW transposes it itself.
    """
    canvas, box = detector_canvas(image_bgr, pre, size, stride)
    return normalize(canvas, pre), box


def detector_input(image_bgr: np.ndarray, pre: Preprocess, size: tuple[int, int] | None = None) -> tuple[np.ndarray, Letterbox]:
    """Letterboxed, normalised 1xHxWx3 tensor for a detector at ``size``, else ``pre.input_size``, else unpadded."""
    return detector_tensor(image_bgr, pre, size or pre.input_size)


def crop_tensor(crops_bgr: np.ndarray, pre: Preprocess) -> np.ndarray:
    """float32 NHWC input for model-size crops (aligned faces, liveness patches): colour order and mean/std applied.

    ``crops_bgr`` is one HxWx3 crop or an (N, H, W, 3) batch of uint8 BGR crops, already cut at
    the model's input size (by :func:`gfn_edge.align.align` or :func:`gfn_edge.liveness.liveness_crop`).
    """
    if not isinstance(crops_bgr, np.ndarray) or crops_bgr.ndim not in (3, 4) or crops_bgr.shape[-1] != 3:
        raise ImageError(f"expected a HxWx3 crop or an (N, H, W, 3) batch, got {getattr(crops_bgr, 'shape', type(crops_bgr).__name__)}")
    return normalize(crops_bgr, pre)


def nhwc_to_nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
