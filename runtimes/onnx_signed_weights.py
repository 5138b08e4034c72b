"""onnx-int8's uint8 weights handed to onnxruntime as int8 where its u8s8 kernels are exact and faster.

Why: onnx-int8 stores its int8 weights as uint8 with zero point 128 (``gfn_edge.export.int8.unsigned_weights``)
so that onnxruntime picks its u8u8 kernels, exact on every CPU; its u8s8 kernels saturate on x86
without VNNI. On x86 *with* VNNI (AVX-512 VNNI, AVX-VNNI, AMX) the u8s8 kernels multiply with
VPDPBUSD, which sums four products in int32 and cannot saturate, and they are the fast ones: the
u8u8 path made onnx-int8's RetinaFace slower than FP32 there (measured in ``benchmarks/``).

So on such a CPU the bundle's model is loaded from memory with each of those weights back on int8
(level ``q + 128`` becomes ``q``, zero point 128 becomes 0: the dequantised weights are
bit-identical, the integer sums exact either way, so the outputs are the same). The file is never
changed. The rewrite keeps every byte's place: a TensorProto's ``data_type`` 2 (UINT8) becomes 3
(INT8), one varint byte either way, and ``raw_data`` is XORed with 0x80, which is ``u8 - 128`` as
two's-complement int8. It reads the ONNX protobuf wire format itself (the device side never imports
``onnx``) and rewrites a weight only when the pattern is unambiguous (below); anything else, or a
model it cannot walk, is loaded as shipped.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

import numpy as np

from .base import X86_MACHINES, cpu_has_vnni

_UINT8, _INT8 = 2, 3  # TensorProto.DataType
_LENGTH_DELIMITED, _VARINT, _FIXED64, _FIXED32 = 2, 0, 1, 5
_SUBGRAPH_OPS = frozenset({"If", "Loop", "Scan"})
_TRAINING_INFO = 20  # ModelProto.training_info


def u8s8_kernels_exact(machine: str | None = None, vnni: bool | None = None) -> bool:
    """Whether onnxruntime's u8s8 integer kernels are exact and preferred here: x86 with VNNI
    (``vnni`` read from /proc/cpuinfo when None). Elsewhere the bundle runs as shipped (u8u8)."""
    if (machine or platform.machine()).lower() not in X86_MACHINES:
        return False
    return cpu_has_vnni() if vnni is None else vnni


class WireFormatError(ValueError):
    """The bytes are not a protobuf message this walker can follow."""


def _varint(buf: bytes | bytearray, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise WireFormatError(f"truncated varint at byte {pos}")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes | bytearray, start: int, end: int):
    """(field number, wire type, value start, value end, varint value or None) of one message."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value_start = pos
            value, pos = _varint(buf, pos)
            yield number, wire, value_start, pos, value
        elif wire == _LENGTH_DELIMITED:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise WireFormatError(f"field {number} runs past its message ({pos + length} > {end})")
            yield number, wire, pos, pos + length, None
            pos += length
        elif wire == _FIXED64:
            yield number, wire, pos, pos + 8, None
            pos += 8
        elif wire == _FIXED32:
            yield number, wire, pos, pos + 4, None
            pos += 4
        else:
            raise WireFormatError(f"wire type {wire} (field {number}) at byte {pos}")
    if pos != end:
        raise WireFormatError(f"message ends at byte {pos}, not {end}")


@dataclass
class _Tensor:
    name: str = ""
    data_type: int = 0
    data_type_at: int = -1  # the byte of its one-byte varint
    raw: tuple[int, int] | None = None
    other_data: bool = False  # values outside raw_data (typed fields)
    external: bool = False  # values in a file beside the model, which a model loaded from memory cannot find


@dataclass
class _Graph:
    tensors: dict[str, _Tensor] = field(default_factory=dict)
    nodes: list[tuple[str, list[str]]] = field(default_factory=list)  # (op_type, inputs)
    training_info: bool = False  # graphs beside the main one that may read its initializers


def _text(buf: bytes | bytearray, a: int, b: int) -> str:
    return bytes(buf[a:b]).decode("utf-8", errors="replace")


def _tensor(buf: bytes | bytearray, a: int, b: int) -> _Tensor:
    t = _Tensor()
    for number, _wire, s, e, value in _fields(buf, a, b):
        if number == 2:  # data_type
            t.data_type, t.data_type_at = int(value or 0), (s if e - s == 1 else -1)
        elif number == 8:  # name
            t.name = _text(buf, s, e)
        elif number == 9:  # raw_data
            t.raw = (s, e)
        elif number in (4, 5, 6, 7, 10, 11):  # typed data
            t.other_data = True
        elif number in (13, 14):  # external data and its location
            t.external = True
    return t


def _node(buf: bytes | bytearray, a: int, b: int) -> tuple[str, list[str]]:
    op, inputs = "", []
    for number, _wire, s, e, _value in _fields(buf, a, b):
        if number == 1:
            inputs.append(_text(buf, s, e))
        elif number == 4:
            op = _text(buf, s, e)
    return op, inputs


def _graph(buf: bytes | bytearray) -> _Graph:
    top = list(_fields(buf, 0, len(buf)))
    graphs = [(s, e) for number, wire, s, e, _v in top if number == 7 and wire == _LENGTH_DELIMITED]
    if len(graphs) != 1:
        raise WireFormatError(f"expected one graph in the model, found {len(graphs)}")
    g = _Graph()
    g.training_info = any(number == _TRAINING_INFO for number, *_ in top)
    for number, wire, s, e, _value in _fields(buf, *graphs[0]):
        if wire != _LENGTH_DELIMITED:
            continue
        if number == 5:  # initializer
            t = _tensor(buf, s, e)
            g.tensors[t.name] = t
        elif number == 1:  # node
            g.nodes.append(_node(buf, s, e))
    return g


def _qualifies(model: bytes, g: _Graph, readers: dict[str, set[tuple[str, int]]], levels_name: str, zero_name: str) -> bool:
    """A weight and its zero point that only weight DequantizeLinears read, uint8 in ``raw_data``, zero point 128."""
    if readers[levels_name] != {("DequantizeLinear", 0)} or readers[zero_name] != {("DequantizeLinear", 2)}:
        return False
    levels, zero = g.tensors[levels_name], g.tensors[zero_name]
    if any(t.data_type != _UINT8 or t.raw is None or t.other_data or t.data_type_at < 0 for t in (levels, zero)):
        return False
    s, e = zero.raw
    return e > s and not any(b != 0x80 for b in model[s:e])


def signed_weights(model: bytes) -> tuple[bytes, int]:
    """``model`` with each uint8 weight of zero point 128 back on int8 (zero point 0), and how many.

    A weight qualifies when a DequantizeLinear reads it and its zero point from initializers, every
    zero point is 128, both are stored as ``raw_data``, and no other kind of node reads either (an
    activation's zero point is never touched). A model with subgraphs, training graphs or external
    data comes back unchanged.
    Raises :class:`WireFormatError` for bytes that are not a protobuf message.
    """
    g = _graph(model)
    if g.training_info or any(op in _SUBGRAPH_OPS for op, _ in g.nodes) or any(t.external for t in g.tensors.values()):
        return model, 0
    readers: dict[str, set[tuple[str, int]]] = {}
    for op, inputs in g.nodes:
        for slot, name in enumerate(inputs):
            readers.setdefault(name, set()).add((op, slot))
    pairs: set[tuple[str, str]] = set()
    pinned: set[str] = set()  # zero points an activation's DequantizeLinear reads too
    for op, inputs in g.nodes:
        if op != "DequantizeLinear" or len(inputs) < 3 or inputs[2] not in g.tensors:
            continue
        if inputs[0] not in g.tensors or inputs[0] == inputs[2]:
            pinned.add(inputs[2])
        else:
            pairs.add((inputs[0], inputs[2]))
    # tensors tied by a DequantizeLinear (a zero point shared by several weights, say) change together
    # or not at all: a tensor that cannot change holds back every pair it is in, and theirs in turn
    held = {t for a, b in pairs if b in pinned or not _qualifies(model, g, readers, a, b) for t in (a, b)}
    while True:
        spread = {t for a, b in pairs if a in held or b in held for t in (a, b)}
        if spread <= held:
            break
        held |= spread
    changing = [(a, b) for a, b in pairs if a not in held]
    out = bytearray(model)
    for name in {t for pair in changing for t in pair}:
        s, e = g.tensors[name].raw
        out[g.tensors[name].data_type_at] = _INT8
        out[s:e] = (np.frombuffer(model, dtype=np.uint8, count=e - s, offset=s) ^ np.uint8(0x80)).tobytes()
    count = len(changing)
    return bytes(out), count


__all__ = ["WireFormatError", "signed_weights", "u8s8_kernels_exact"]
