"""Per-channel quantisation whose channels all share one scale, written once per tensor (TFLite).

Why: TFLite's quantiser gives every int8 convolution weight, and its int32 bias, one scale per
output channel. Where a layer's channels all come out on the same scale, the vector says one number
C times. They do on the 1x1 depthwise convolutions of the PReLU decomposition
(:func:`.tf_layers.prelu`: ``relu(1*x)``, a kernel of ones) and their zero biases: on MiniFASNetV2
108 such tensors, 39 KB of its 667 KB; on GhostFaceNets w0.5-e16 57, 27 KB of 1.09 MB.

One scale and one zero point per tensor (``quantized_dimension`` 0) is TFLite's per-tensor form,
which every int8 kernel takes. The requantisation multipliers are the same numbers, so the outputs
are bit-identical (checked on LiteRT's builtin kernels, its XNNPACK delegate and an emulated
Cortex-A72: ``tests/test_tflite_uniform_scales.py``). A tensor is rewritten only when its scales
are all equal and its zero points all equal; a layer whose channels differ keeps its vector.
"""

from __future__ import annotations

import logging

import numpy as np

from ..tflite_flatbuffer import pack, unpack

log = logging.getLogger(__name__)


def uniform_per_channel(quantization) -> bool:
    """Whether ``quantization`` (a ``QuantizationParametersT``) is per channel with every channel's
    scale and zero point equal."""
    if quantization is None or quantization.scale is None or len(quantization.scale) <= 1:
        return False
    scales = np.asarray(quantization.scale, dtype=np.float32)
    zeros = np.asarray(quantization.zeroPoint if quantization.zeroPoint is not None else [0] * len(scales))
    return len(zeros) == len(scales) and bool(np.all(scales == scales[0])) and bool(np.all(zeros == zeros[0]))


def per_tensor_where_uniform(data: bytes) -> tuple[bytes, int]:
    """``data`` (a .tflite flatbuffer) with every per-channel quantisation whose channels share one
    scale and zero point written per tensor; returns the new flatbuffer and how many tensors changed
    (``data`` itself when none)."""
    model = unpack(data)
    changed = 0
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            q = tensor.quantization
            if not uniform_per_channel(q):
                continue
            q.scale = [float(np.float32(q.scale[0]))]
            q.zeroPoint = [int(q.zeroPoint[0]) if q.zeroPoint is not None else 0]
            q.quantizedDimension = 0
            changed += 1
    if not changed:
        return data, 0
    log.info("INT8: %d per-channel quantisations with one scale for every channel written per tensor", changed)
    return pack(model, len(data)), changed
