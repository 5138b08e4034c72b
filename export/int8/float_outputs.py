"""The outputs are handed over in float, from the last layer that computes them.

A QDQ quantiser puts a uint8 quantiser on every tensor, the graph outputs too. Where an output is
a concatenation of several levels (RetinaFace's boxes and landmarks: three strides, anchors from
16 to 512 pixels) one per-tensor range serves them all, and the finest level, whose offsets are
the small ones, gets a few steps of it. Measured on RetinaFace-MobileNet-0.25 onnx-int8 (plain
min/max, 25 scenes, 633 faces): the Concat and Softmax outputs in float took the largest box error
from 24.2 to 7.6 px and the landmark NME from 0.0201 to 0.0186.

The output layers themselves (the convolutions of RetinaFace's heads, each level its own) are not
requantised either: their int8 inputs and weights stay, their output is dequantised and handed
over. A landmark offset is in tenths of its anchor, so one uint8 step of the coarse level's output
(0.068 on the 256-512 px anchors) is 1.7-3.5 px of landmark: measured on the pairs photos with the
detector's onnx-int8 artifact, requantising there put the largest faces' landmarks 0.5-2 % of the
face from FP32's, and the embeddings of the aligned crops averaged cosine 0.9938 to the FP32
pipeline's (lowest 0.90); handed over in float, 0.9961. The cost is nothing that shows: these layers are
1x1 convolutions of a few thousand weights, and no integer kernel follows them (the device decodes
outputs in float).

What is left in float is decided here once, on the float ONNX graph (:func:`onnx_output_chain`)
and on the quantised one (:func:`drop_output_quantisers`); the int8 simulation the remedies are
chosen on leaves the same tensors alone (:func:`.simulate.quantised_outputs`). tflite-int8's
converter takes the same nodes by name (:func:`tflite_output_chain`) unless ``--int8-io`` asks
for integer outputs.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

ONNX_PASS_THROUGH = frozenset({"Concat", "Softmax", "Sigmoid", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity"})
"""ONNX operators that move, gather or normalise values without an integer kernel of their own."""

TFLITE_PASS_THROUGH = frozenset({"CONCATENATION", "SOFTMAX", "LOGISTIC", "RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS"})
"""TFLite's builtin operators of the same kind."""


def _consumers(nodes: Any, inputs_of: Any) -> dict[Any, list[int]]:
    """Tensor (ONNX name or TFLite index) -> indices of the nodes that read it."""
    found: dict[Any, list[int]] = {}
    for k, node in enumerate(nodes):
        for name in inputs_of(node):
            found.setdefault(name, []).append(k)
    return found


def _chain(count: int, op_of: Any, outputs_of: Any, consumers: dict[Any, list[int]], graph_outputs: set[Any], pass_through: frozenset[str]) -> set[int]:
    """Indices (of nodes in topological order) of the pass-through nodes each of whose outputs is a
    graph output or feeds only such nodes."""
    chain: set[int] = set()
    for k in reversed(range(count)):
        if op_of(k) not in pass_through:
            continue
        outs = outputs_of(k)
        if outs and all(o in graph_outputs or (consumers.get(o) and all(c in chain for c in consumers[o])) for o in outs):
            chain.add(k)
    return chain


def onnx_output_chain(graph: Any) -> list[str]:
    """Names of the nodes of an ONNX graph (``onnx.GraphProto``, topologically sorted as ONNX
    requires) that only move or normalise values on their way to the graph's outputs (unnamed
    nodes left out: nothing can exclude them by name)."""
    nodes = list(graph.node)
    consumers = _consumers(nodes, lambda n: n.input)
    outputs = {o.name for o in graph.output}
    chain = _chain(len(nodes), lambda k: nodes[k].op_type, lambda k: list(nodes[k].output), consumers, outputs, ONNX_PASS_THROUGH)
    return [nodes[k].name for k in sorted(chain) if nodes[k].name]


def drop_output_quantisers(model: Any) -> int:
    """Removes, in a QDQ ``onnx.ModelProto``, the quantise/dequantise pairs whose dequantised tensor
    is a graph output or only feeds the output chain: the output layers then hand over their float
    result. Returns how many pairs went."""
    graph = model.graph
    nodes = list(graph.node)
    outputs = {o.name for o in graph.output}
    consumers = _consumers(nodes, lambda n: n.input)
    chain = _chain(len(nodes), lambda k: nodes[k].op_type, lambda k: list(nodes[k].output), consumers, outputs, ONNX_PASS_THROUGH)
    producer = {o: k for k, n in enumerate(nodes) for o in n.output}
    rename: dict[str, str] = {}
    dropped: set[int] = set()
    for k, dq in enumerate(nodes):
        if dq.op_type != "DequantizeLinear" or producer.get(dq.input[0]) is None:
            continue
        q = producer[dq.input[0]]
        if nodes[q].op_type != "QuantizeLinear" or nodes[q].input[0] not in producer:
            continue  # a weight's dequantiser, or a quantised graph input
        users = consumers.get(dq.output[0], [])
        if not (dq.output[0] in outputs or (users and all(u in chain for u in users))):
            continue
        dropped.add(k)
        if all(c in dropped for c in consumers.get(nodes[q].output[0], [])):
            dropped.add(q)
        if dq.output[0] in outputs:  # the float tensor takes the output's name
            rename[nodes[q].input[0]] = dq.output[0]
        else:
            rename[dq.output[0]] = nodes[q].input[0]
    if not dropped:
        return 0
    kept = [n for k, n in enumerate(nodes) if k not in dropped]
    for node in kept:
        for seq in (node.input, node.output):
            for i, name in enumerate(seq):
                seq[i] = rename.get(name, name)
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for n in kept for name in n.input}
    unused = [t for t in graph.initializer if t.name not in used]
    for t in unused:
        graph.initializer.remove(t)
    pairs = sum(1 for k in dropped if nodes[k].op_type == "DequantizeLinear")
    log.info("INT8: %d output layers hand over float results (their requantisation removed)", pairs)
    return pairs


def tflite_output_chain(ops: list[dict[str, Any]], tensors: list[dict[str, Any]], graph_outputs: list[int]) -> list[str]:
    """Names of the tensors a float TFLite model computes from its last computing layers on (their
    outputs and the pass-through ops' after them): the denylist that hands the outputs over in
    float. ``ops``: ``Interpreter._get_ops_details()``; ``tensors``: ``get_tensor_details()``."""
    by_index = {t["index"]: t["name"] for t in tensors}
    consumers = _consumers(ops, lambda op: [int(i) for i in op["inputs"] if i >= 0])
    outs = set(graph_outputs)
    chain = _chain(len(ops), lambda k: ops[k]["op_name"], lambda k: [int(i) for i in ops[k]["outputs"]], consumers, outs, TFLITE_PASS_THROUGH)
    names: list[str] = []
    for k, op in enumerate(ops):
        for t in op["outputs"]:
            users = consumers.get(int(t), [])
            if k in chain or (op["op_name"] not in TFLITE_PASS_THROUGH and (int(t) in outs or (users and all(u in chain for u in users)))):
                names.append(by_index[int(t)])
    return names


__all__ = ["ONNX_PASS_THROUGH", "TFLITE_PASS_THROUGH", "drop_output_quantisers", "onnx_output_chain", "tflite_output_chain"]
