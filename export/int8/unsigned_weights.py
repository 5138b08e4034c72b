"""Full 8-bit weights that onnxruntime multiplies exactly on every CPU: int8 weights stored as uint8.

Why: onnxruntime fuses a QDQ convolution or Gemm into an integer kernel chosen by the operand types.
With uint8 activations and int8 weights (u8s8) its x86 kernels without VNNI (AVX2) multiply with
VPMADDUBSW, whose int16 sums of two products saturate once both operands span their ranges: on
this project's AVX2 CPU a 1x1 convolution over 32 channels with every input at 255 and every weight
at 127 gives 516,667 for 1,033,333. Until 2026-12-04 onnx-int8 avoided that with 7-bit weights
(``reduce_range``), one bit of weight precision lost on every CPU for a flaw of some.

The same integers stored as uint8 with zero point 128 (int8 ``q`` becomes ``q + 128``: the
dequantised weights are bit-identical) make onnxruntime pick its u8u8 kernels, which widen both
operands to int16 before multiplying (VPMADDWD: no pair sum can overflow) and are exact on x86 and
ARM alike: the same worst case gives 1,033,333. So onnx-int8 keeps the full grid (levels
-127..127, the grid of tflite-int8 and of the int8 simulation behind the remedies) without a
saturating kernel. The price is x86 speed (u8u8 multiplies half as many pairs per instruction); on
x86 with VNNI, where u8s8 is exact, the device loads these weights back on int8
(``gfn_edge.runtimes.onnx_signed_weights``: RetinaFace 20.3 -> 14.3 ms there, FP32 16.9); on ARM
both types run the same dot-product kernels.

Depthwise convolutions stay int8: onnxruntime's depthwise kernel sums in int32 and is exact for
u8s8 (:mod:`.weight_grid`). Only weights that feed an integer kernel are rewritten (a Conv or Gemm
whose input is dequantised too); a layer kept in float keeps what it has.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

from .weight_grid import is_depthwise

log = logging.getLogger(__name__)

ZERO_POINT = 128
"""The uint8 zero point of a symmetric weight: int8 level ``q`` is stored as ``q + 128``."""

_INTEGER_KERNEL_OPS = ("Conv", "Gemm", "MatMul")


def _attribute(node, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def to_uint8(q: np.ndarray) -> np.ndarray:
    """Symmetric int8 levels (-127..127) as uint8 with zero point :data:`ZERO_POINT` (1..255)."""
    if q.dtype != np.int8:
        raise TypeError(f"expected int8 weight levels, got {q.dtype}")
    return (q.astype(np.int16) + ZERO_POINT).astype(np.uint8)


def store_weights_unsigned(path: Path) -> int:
    """Rewrite the QDQ model at ``path`` so every int8 weight (zero point 0) that feeds an integer
    Conv (not depthwise), Gemm or MatMul is stored as uint8 with zero point 128; returns how many.

    A weight qualifies when its DequantizeLinear reads initializers and the layer's data input comes
    from a DequantizeLinear too (the pattern onnxruntime fuses). Initializers another node also
    reads are copied, not changed.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    users = Counter(name for node in graph.node for name in node.input)
    converted, skipped = 0, 0
    for node in graph.node:
        if node.op_type not in _INTEGER_KERNEL_OPS or len(node.input) < 2:
            continue
        data, weight = producer.get(node.input[0]), producer.get(node.input[1])
        if data is None or weight is None or data.op_type != "DequantizeLinear" or weight.op_type != "DequantizeLinear" or len(weight.input) < 3:
            continue
        levels, zero = inits.get(weight.input[0]), inits.get(weight.input[2])
        if levels is None or zero is None or levels.data_type != onnx.TensorProto.INT8:
            continue
        q, z = numpy_helper.to_array(levels), numpy_helper.to_array(zero)
        if node.op_type == "Conv" and is_depthwise(q.shape, _attribute(node, "group", 1)):
            continue
        if np.any(z != 0) or int(np.abs(q.astype(np.int16)).max(initial=0)) > 127:
            skipped += 1  # asymmetric, or the -128 level that uint8 + 128 cannot hold
            continue
        for slot, (init, value) in ((0, (levels, to_uint8(q))), (2, (zero, np.full(z.shape, ZERO_POINT, np.uint8)))):
            if users[init.name] == 1:
                init.CopyFrom(numpy_helper.from_array(value, init.name))
            else:  # shared: this layer gets its own copy
                name = f"{init.name}_u8_{converted}"
                graph.initializer.append(numpy_helper.from_array(value, name))
                users[init.name] -= 1
                weight.input[slot] = name
        converted += 1
    if skipped:
        log.warning("INT8: %d weights feeding integer kernels stay int8 (asymmetric or level -128): u8s8 kernels may saturate on x86 without VNNI", skipped)
    if converted:
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
        log.info("INT8: %d layers' weights stored as uint8 (zero point 128) for onnxruntime's exact u8u8 kernels", converted)
    return converted


__all__ = ["ZERO_POINT", "store_weights_unsigned", "to_uint8"]
