"""Headroom on the activation ranges of tensors with few positions per channel, on every backend.

Why: a calibrated range is the largest value seen over the calibration faces. A tensor of 14x14
positions or fewer (a face model's last stages, its embedding) gives each face few values per
channel, so its extremes come from single faces, and a face unlike the calibration set lands
beyond them and is clipped. Measured on GhostFaceNets w0.5-e16 (int8 simulation, calibrated on the
portraits folder, the pairs faces): the worst face (``lfwhard_34_fn_1``, hard side light) overshot
the ranges of the 7x7 and 1x1 tensors by 35-130 % of the range (6 % of the GDC embedding's values
clipped) and lost most of its cosine there (0.951); 25 % more range on the tensors of at most 196
positions: that face 0.970, the worst judged face 0.943 -> 0.950, the mean 0.9771 -> 0.9777.
Widening every tensor instead costs the early, large tensors their resolution (x1.25 everywhere:
mean 0.970, worst 0.920); detectors at 640x480 have no tensor this small and are unaffected.

One rule, applied where each backend's ranges are made (the simulation behind ranking, bias
correction and distillation; onnxruntime's calibration cache, also the OpenVINO QDQ route; the
TFLite calibration before its quantiser), so the backends quantise with the same ranges the
remedies were chosen on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

HEADROOM = 1.25
"""Factor on both ends of a small tensor's calibrated range."""

MAX_POSITIONS = 196
"""Tensors with at most this many positions per channel (14x14) get :data:`HEADROOM`."""


def positions(shape: Sequence[int | None], channels_last: bool = False) -> int | None:
    """Positions per channel of a batch-first tensor shape (NCHW, or NHWC with ``channels_last``);
    None when the shape is unknown."""
    if len(shape) < 2 or any(d is None or (isinstance(d, int) and d <= 0) for d in shape[1:]):
        return None
    spatial = shape[1:-1] if channels_last else shape[2:]
    return int(math.prod(int(d) for d in spatial))


def factor(position_count: int | None) -> float:
    """The range factor of a tensor with ``position_count`` positions per channel (1 when unknown)."""
    return HEADROOM if position_count is not None and position_count <= MAX_POSITIONS else 1.0


def widened(lo: float, hi: float, position_count: int | None) -> tuple[float, float]:
    """``(lo, hi)`` scaled about zero by :func:`factor` (zero stays exactly representable)."""
    f = factor(position_count)
    return lo * f, hi * f


__all__ = ["HEADROOM", "MAX_POSITIONS", "factor", "positions", "widened"]
