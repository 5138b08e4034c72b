"""An OpenVINO model's constants in fewer, smaller layers, every value kept bit for bit.

Why: an INT8 IR's .xml outweighs its .bin for the small students (w0.5-e6 openvino-int8: 248 KB
of .xml for 124 KB of weights). Every constant is a layer of some 240 bytes there, and every op
on a constant path (a Convert, Multiply or Reshape that only rebuilds a weight) 300-500 more, plus
its edges. The onnx-int8 QDQ graph that openvino-int8 compiles brings three such paths:

- an int32 bias is ``Const(i32) -> Convert -> Multiply(scale)``, often ``-> Reshape``: it is one
  FP32 constant, the same numbers (:func:`fold_integer_biases`);
- a grouped convolution's int8 weights are ``Const(i8) -> Convert -> Multiply(scale) -> Reshape``
  to the 5-D layout GroupConvolution takes: the int8 and scale constants can be stored in that
  layout, the weights staying int8 (:func:`fold_constant_reshapes`);
- a FakeQuantize's four per-tensor ranges have shape (1,1,1,1): as scalars their ports and
  constants carry no dimensions, and equal ones are written once (:func:`scalar_ranges`,
  :func:`share_equal_constants`).

Measured on 2026-12-07's as-a-user bundles (the QDQ route): w0.5-e6 openvino-int8 372 -> 317 KB
(.xml 248 -> 197 KB, .bin 124 -> 119 KB), w0.5-e16 1.44 -> 1.31 MB; outputs identical to the
last bit on the integer kernels (VNNI x86) and in f32, as fast (paired, one thread).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SHARED_CONSTANT_MAX_VALUES = 16
"""Constants of at most this many values are shared when equal (:func:`share_equal_constants`)."""


def _ov():
    import openvino as ov
    import openvino.opset13 as ops

    return ov, ops


def _source(op, index: int):
    return op.input(index).get_source_output().get_node()


def _is_constant(node) -> bool:
    return node.get_type_name() == "Constant"


def _replace(old_output, new_output, name: str) -> None:
    new_output.get_node().set_friendly_name(name)
    old_output.replace(new_output)  # every consumer reads the new output, which takes over the old one's tensor names


def _decompression(node):
    """``(quantised constant, scale constant)`` where ``node`` is ``Multiply(Convert(Const), Const)``
    (in either input order), else None: the way a QDQ graph's DequantizeLinear of a constant
    arrives in OpenVINO (symmetric: no zero point to subtract)."""
    if node.get_type_name() != "Multiply":
        return None
    a, b = _source(node, 0), _source(node, 1)
    if a.get_type_name() != "Convert":
        a, b = b, a
    if a.get_type_name() != "Convert" or not _is_constant(b) or not _is_constant(_source(a, 0)):
        return None
    return _source(a, 0), b


def fold_integer_biases(model) -> int:
    """Replace each ``Multiply(Convert(Const i32), Const f32)`` by its FP32 constant; returns how
    many. Exact: OpenVINO folds the same f32 conversion and product when it compiles the model."""
    ov, ops = _ov()
    folded = 0
    for op in model.get_ordered_ops():
        parts = _decompression(op)
        if parts is None:
            continue
        quantised, scale = parts
        if quantised.get_output_element_type(0) != ov.Type.i32 or scale.get_output_element_type(0) != ov.Type.f32:
            continue
        if op.get_output_element_type(0) != ov.Type.f32:
            continue
        value = np.multiply(quantised.get_data().astype(np.float32), scale.get_data().astype(np.float32), dtype=np.float32)
        shape = tuple(op.get_output_shape(0))
        if value.shape != shape:
            value = np.broadcast_to(value, shape)
        _replace(op.output(0), ops.constant(np.ascontiguousarray(value, dtype=np.float32)).output(0), op.get_friendly_name())
        folded += 1
    return folded


def _per_axis0(scale: np.ndarray, channels: int, rank: int) -> np.ndarray | None:
    """``scale`` laid out to broadcast along axis 0 of a ``rank``-D tensor, where it holds one value
    or one per leading channel (shape (C, 1, ..., 1)); else None."""
    if scale.size == 1:
        return scale.reshape([1] * rank)
    if scale.ndim >= 1 and scale.shape[0] == channels and scale.size == channels:
        return scale.reshape([channels] + [1] * (rank - 1))
    return None


def fold_constant_reshapes(model) -> int:
    """Store the constants under a Reshape of a constant path in the Reshape's layout; returns how
    many Reshapes went. ``Reshape(Const)`` becomes one constant; ``Reshape(Multiply(Convert(Const
    q), Const s))`` becomes ``Multiply(Convert(Const q'), Const s')`` with ``q`` (int8 stays int8)
    and its per-channel scale reshaped, where the Reshape keeps the leading channel axis. A
    decompression that something else reads too keeps its chain for that reader (the rewrite is
    then correct but larger; no exported model has one)."""
    ov, ops = _ov()
    folded = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Reshape" or not _is_constant(_source(op, 1)) or not op.get_output_partial_shape(0).is_static:
            continue
        target = list(op.get_output_shape(0))
        data = _source(op, 0)
        if _is_constant(data):
            value = np.ascontiguousarray(data.get_data().reshape(target))
            _replace(op.output(0), ops.constant(value).output(0), op.get_friendly_name())
            folded += 1
            continue
        parts = _decompression(data)
        if parts is None:
            continue
        quantised, scale = parts
        q = quantised.get_data()
        if q.ndim == 0 or not target or q.shape[0] != target[0] or q.size != int(np.prod(target)):
            continue
        s = _per_axis0(scale.get_data(), target[0], len(target))
        if s is None:
            continue
        convert = ops.convert(ops.constant(np.ascontiguousarray(q.reshape(target))), data.get_output_element_type(0))
        rebuilt = ops.multiply(convert, ops.constant(np.ascontiguousarray(s)))
        convert.set_friendly_name(f"{op.get_friendly_name()}/convert")
        _replace(op.output(0), rebuilt.output(0), op.get_friendly_name())
        folded += 1
    return folded


def scalar_ranges(model) -> int:
    """Give every FakeQuantize range that holds one value a scalar constant; returns how many.
    Only where the range's rank is no larger than the data's, so no output shape changes."""
    _, ops = _ov()
    replaced = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        rank = op.get_input_partial_shape(0).rank
        for index in range(1, 5):
            node = _source(op, index)
            if not _is_constant(node):
                continue
            value = node.get_data()
            if value.size != 1 or value.ndim == 0 or (rank.is_static and value.ndim > rank.get_length()):
                continue
            scalar = ops.constant(np.asarray(value.reshape(()), dtype=value.dtype))
            scalar.set_friendly_name(node.get_friendly_name())
            op.input(index).replace_source_output(scalar.output(0))
            replaced += 1
    return replaced


def share_equal_constants(model, max_values: int = SHARED_CONSTANT_MAX_VALUES) -> int:
    """Make the consumers of equal small constants read one of them; returns how many were dropped.

    Why: every FakeQuantize of an INT8 IR has four scalar range constants, two of them equal to the
    other two when it comes from a QuantizeLinear / DequantizeLinear pair, and each is a layer of
    some 300 bytes in the .xml (OpenVINO already writes equal data once in the .bin). Shared: 205 of
    w0.5-e6's INT8 constants, its .xml 411 -> 361 KB, outputs identical and the compiled model as
    fast. Only small ones, so no two layers are made to share a weight tensor."""
    kept: dict[tuple, Any] = {}
    dropped = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Constant":
            continue
        data = op.get_data()
        if data.size > max_values:
            continue
        key = (str(op.get_element_type()), tuple(op.get_output_partial_shape(0).to_shape()), np.ascontiguousarray(data).tobytes())
        first = kept.setdefault(key, op)
        if first is op:
            continue
        op.output(0).replace(first.output(0))
        dropped += 1
    return dropped


def slim_constants(model) -> dict[str, int]:
    """Every rewrite of this module, in an order where each leaves the next its pattern; returns
    how many of each were made (the model is changed in place and revalidated)."""
    done = {
        "integer_biases_folded": fold_integer_biases(model),
        "reshapes_folded": fold_constant_reshapes(model),
        "scalar_ranges": scalar_ranges(model),
    }
    model.validate_nodes_and_infer_types()
    done["constants_shared"] = share_equal_constants(model)
    if any(done.values()):
        log.info("OpenVINO IR constants: %s", ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in done.items()))
    return done
