"""Which weight grid each layer gets: onnxruntime's 7-bit weights only where its kernels need them.

Why: onnxruntime's u8s8 matrix kernels on x86 without VNNI (AVX2) multiply with VPMADDUBSW, whose
int16 sums of two products saturate once uint8 activations and int8 weights both span their
ranges, so onnx-int8 writes 7-bit weights (``reduce_range``, :mod:`..targets.onnx_int8`). Its
depthwise kernel does not take that route: it widens each product to int32 (measured on this AVX2
CPU: a 3x3 depthwise convolution with every input at 255 and every weight at 127 gives the exact
291,465, where a 1x1 convolution over 32 channels gives 526,796 for 1,036,320: sixteen pair sums
stopped near 32,767 each; emulated Cortex-A72 and A76 are exact for both). Depthwise weights are
where a 7-bit grid hurts most (nine values per channel), so they keep the full 8-bit grid.
Measured on the real checkpoints (plain min/max, nothing in float, nothing corrected):
MiniFASNetV2 live-probability error 0.263 -> 0.218 and decisions 65 -> 66 of 66; GhostFaceNets
w0.5-e16 cos_mean / cos_min 0.9724 / 0.9248 -> 0.9738 / 0.9271; RetinaFace-mnet025 landmark NME
0.02376 -> 0.02369 (its error is in the pointwise layers).

The simulation behind bias correction and distillation uses the same rule, so the remedies are
chosen on the grid the backend runs.
"""

from __future__ import annotations

from collections.abc import Sequence

FULL_QMAX = 127
"""Largest weight integer of a full 8-bit symmetric grid."""


def is_depthwise(weight_shape: Sequence[int], groups: int) -> bool:
    """Whether a convolution of this weight shape (out, in/groups, kh, kw) and group count is
    depthwise: one input channel per group and one output per group."""
    return groups > 1 and len(weight_shape) >= 3 and int(weight_shape[1]) == 1 and int(weight_shape[0]) == groups


def layer_qmax(module, backend_qmax: int) -> int:
    """The weight grid of ``module`` (a torch layer) on a backend whose grid is ``backend_qmax``:
    the full 8-bit grid for depthwise convolutions, the backend's elsewhere."""
    groups = getattr(module, "groups", 1)
    weight = getattr(module, "weight", None)
    if weight is not None and is_depthwise(tuple(weight.shape), int(groups)):
        return max(backend_qmax, FULL_QMAX)
    return backend_qmax


__all__ = ["FULL_QMAX", "is_depthwise", "layer_qmax"]
