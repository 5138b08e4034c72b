"""Smaller storage for the weights of the ops a full-integer TFLite model leaves in float.

Why: the denylisted layer groups and the output layers handed over in float keep FP32 weights in
TFLite's quantiser output (GhostFaceNetV1-1.3 epoch 1: the 512x120 embedding layer is 0.25 of the
0.41 MB). TFLite stores a smaller weight as a constant read by a DEQUANTIZE op, in two forms:

- ``"float16"``: a FLOAT16 constant (TFLite's own float16 format);
- ``"int8"``: an INT8 constant with per-output-channel scales (symmetric, the full 8-bit grid), for
  the largest weights only (:data:`.onnx_weight_only.BYTE_SHARE` of the bytes, the same choice as
  the QDQ graphs' weight-only storage: the many small ones cost few bytes and much accuracy).

A DEQUANTIZE of a constant is computed once, when the model is prepared (LiteRT's kernel and its
XNNPACK delegate alike), so the float op runs the same FP32 kernel on the rounded weights. The
quantiser cannot mix either form with full integer, so the flatbuffer is rewritten here.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..tflite_flatbuffer import pack, unpack
from .half_weights import storable
from .onnx_weight_only import BYTE_SHARE, largest_share, quantize_weights

log = logging.getLogger(__name__)

FORMATS = ("float16", "int8")


def _weight_slots(schema) -> dict[int, int]:
    op = schema.BuiltinOperator
    return {op.CONV_2D: 1, op.DEPTHWISE_CONV_2D: 1, op.FULLY_CONNECTED: 1, op.TRANSPOSE_CONV: 1, op.CONV_3D: 1}


def _opcode(model, schema, builtin: int, version: int) -> int:
    """Index of ``builtin``'s operator code in ``model``, added (at least ``version``) when missing."""
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            code.version = max(code.version, version)
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _builtin(model, op) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _float_weights(model, graph, schema) -> dict[int, int]:
    """The float ops' FP32 weight tensors that only that op reads and no other tensor shares:
    tensor index -> output-channel axis (depthwise kernels: the last, else the first)."""
    slots = _weight_slots(schema)
    users = np.zeros(len(graph.tensors), dtype=np.int64)
    holders = np.bincount([t.buffer for t in graph.tensors], minlength=len(model.buffers))  # buffers may be shared
    for op in graph.operators:
        for t in op.inputs if op.inputs is not None else []:
            if t >= 0:
                users[t] += 1
    found = {}
    for op in graph.operators:
        builtin = _builtin(model, op)
        slot = slots.get(builtin)
        if slot is None or op.inputs is None or len(op.inputs) <= slot or op.inputs[slot] < 0:
            continue
        index = int(op.inputs[slot])
        tensor = graph.tensors[index]
        buf = model.buffers[tensor.buffer] if tensor.buffer else None
        if tensor.type != schema.TensorType.FLOAT32 or buf is None or buf.data is None or len(buf.data) == 0:
            continue
        if users[index] == 1 and holders[tensor.buffer] == 1:
            found[index] = len(tensor.shape) - 1 if builtin == schema.BuiltinOperator.DEPTHWISE_CONV_2D else 0
    return found


def _encode(w: np.ndarray, axis: int, form: str, schema) -> tuple[int, np.ndarray, Any]:
    """(tensor type, stored values, quantization parameters or None) of weight ``w`` in ``form``."""
    if form == "float16":
        return schema.TensorType.FLOAT16, w.astype(np.float16), None
    q, scale = quantize_weights(w, axis)  # the QDQ graphs' weight-only grid
    params = schema.QuantizationParametersT()
    params.scale = scale.tolist()
    params.zeroPoint = [0] * len(scale)
    params.quantizedDimension = axis
    return schema.TensorType.INT8, q, params


def store_float_weights(data: bytes, form: str = "float16") -> tuple[bytes, int]:
    """``data`` (a .tflite flatbuffer) with its float ops' FP32 weight constants stored in ``form``
    (see :data:`FORMATS`) behind a DEQUANTIZE; returns the new flatbuffer and how many weights were
    converted (weights over 65504 or under 64 values stay FP32)."""
    from ai_edge_litert import schema_py_generated as schema

    if form not in FORMATS:
        raise ValueError(f"unknown weight storage {form!r}; known: {', '.join(FORMATS)}")
    model = unpack(data)
    converted = 0
    for graph in model.subgraphs:
        weights = {}
        for index, axis in _float_weights(model, graph, schema).items():
            tensor = graph.tensors[index]
            w = np.frombuffer(np.asarray(model.buffers[tensor.buffer].data, dtype=np.uint8).tobytes(), dtype=np.float32)
            if storable(w):
                weights[index] = (w.reshape(tensor.shape), axis)
        if form == "int8":
            chosen = largest_share({i: w.size for i, (w, _) in weights.items()}, BYTE_SHARE)
            weights = {i: v for i, v in weights.items() if i in chosen}
        dequantize = []
        for index, (w, axis) in sorted(weights.items()):
            tensor = graph.tensors[index]
            kind, stored, params = _encode(w, axis, form, schema)
            small = schema.BufferT()
            small.data = np.frombuffer(stored.tobytes(), dtype=np.uint8)
            model.buffers.append(small)
            constant = schema.TensorT()
            constant.name = (tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name) + ("_fp16" if form == "float16" else "_int8")
            constant.shape = tensor.shape
            constant.type = kind
            constant.buffer = len(model.buffers) - 1
            constant.quantization = params
            graph.tensors.append(constant)
            model.buffers[tensor.buffer].data = None  # the FP32 tensor is now the DEQUANTIZE's output
            tensor.buffer = 0
            dequantize.append((len(graph.tensors) - 1, index))
        if not dequantize:
            continue
        # the op version of its input (TFLite's op_version.cc): float16 3, per-channel int8 5
        opcode = _opcode(model, schema, schema.BuiltinOperator.DEQUANTIZE, 3 if form == "float16" else 5)
        ops = []
        for src, dst in dequantize:
            op = schema.OperatorT()
            op.opcodeIndex = opcode
            op.inputs = [src]
            op.outputs = [dst]
            ops.append(op)
        graph.operators = ops + list(graph.operators)  # constants first: execution order stays valid
        converted += len(dequantize)
    if not converted:
        return data, 0
    log.info("INT8: %d float ops' weights stored as %s (computed in FP32)", converted, form)
    return pack(model, len(data)), converted
