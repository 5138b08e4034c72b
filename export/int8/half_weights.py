"""What every backend's float16 weight storage agrees on: which float weights are worth storing
as float16 (:mod:`.onnx_half_weights`, :mod:`.openvino_half_weights`, :mod:`.tflite_float_weights`)."""

from __future__ import annotations

import numpy as np

FP16_MAX = 65504.0
"""A weight with a larger magnitude stays FP32 (float16 would overflow it)."""

MIN_WEIGHTS = 64
"""Weights below this many values stay FP32: the conversion op costs more bytes than it saves."""


def storable(w: np.ndarray) -> bool:
    """Whether ``w`` is large enough to be worth float16 storage, and finite and small enough for it."""
    return w.size >= MIN_WEIGHTS and bool(np.isfinite(w).all()) and float(np.abs(w).max(initial=0.0)) <= FP16_MAX
