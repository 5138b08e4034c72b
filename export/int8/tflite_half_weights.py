"""FP16 storage for the weights of the ops a full-integer TFLite model leaves in float.

Why: the denylisted layer groups and the output layers handed over in float keep FP32 weights in
TFLite's quantiser output (GhostFaceNetV1-1.3 epoch 1: the 512x120 embedding layer is 0.25 of the
0.41 MB). TFLite's own float16 format stores a weight as a FLOAT16 constant read by a DEQUANTIZE
op; LiteRT (and its XNNPACK delegate) turn such constants into FP32 once, when the model is
prepared, so the float op runs the same FP32 kernel on weights rounded to 11 significant bits.
The quantiser cannot mix that format with full integer, so the flatbuffer is rewritten here.
"""

from __future__ import annotations

import logging

import numpy as np

from ..tflite_flatbuffer import pack, unpack
from .half_weights import storable

log = logging.getLogger(__name__)


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


def store_float_weights_fp16(data: bytes) -> tuple[bytes, int]:
    """``data`` (a .tflite flatbuffer) with its float ops' FP32 weight constants stored as FLOAT16
    behind a DEQUANTIZE; returns the new flatbuffer and how many weights were converted."""
    from ai_edge_litert import schema_py_generated as schema

    model = unpack(data)
    slots = _weight_slots(schema)
    converted = 0
    for graph in model.subgraphs:
        users = np.zeros(len(graph.tensors), dtype=np.int64)
        holders = np.bincount([t.buffer for t in graph.tensors], minlength=len(model.buffers))  # buffers may be shared
        for op in graph.operators:
            for t in op.inputs if op.inputs is not None else []:
                if t >= 0:
                    users[t] += 1
        dequantize = []
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            slot = slots.get(max(code.builtinCode, code.deprecatedBuiltinCode))
            if slot is None or op.inputs is None or len(op.inputs) <= slot or op.inputs[slot] < 0:
                continue
            index = int(op.inputs[slot])
            tensor = graph.tensors[index]
            buf = model.buffers[tensor.buffer] if tensor.buffer else None
            if (
                tensor.type != schema.TensorType.FLOAT32
                or buf is None
                or buf.data is None
                or len(buf.data) == 0
                or users[index] != 1
                or holders[tensor.buffer] != 1
            ):
                continue
            w = np.frombuffer(np.asarray(buf.data, dtype=np.uint8).tobytes(), dtype=np.float32)
            if not storable(w):
                continue
            half_buf = schema.BufferT()
            half_buf.data = np.frombuffer(w.astype(np.float16).tobytes(), dtype=np.uint8)
            model.buffers.append(half_buf)
            half = schema.TensorT()
            half.name = (tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name) + "_fp16"
            half.shape = tensor.shape
            half.type = schema.TensorType.FLOAT16
            half.buffer = len(model.buffers) - 1
            graph.tensors.append(half)
            buf.data = None  # the FP32 tensor is now the DEQUANTIZE's output
            tensor.buffer = 0
            dequantize.append((len(graph.tensors) - 1, index))
        if not dequantize:
            continue
        opcode = _opcode(model, schema, schema.BuiltinOperator.DEQUANTIZE, 3)  # version 3: float16 input
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
    log.info("INT8: %d float ops' weights stored as float16 (computed in FP32)", converted)
    return pack(model, len(data)), converted
