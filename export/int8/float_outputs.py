"""The nodes that hand a model's outputs over are left unquantised.

A QDQ quantiser puts a uint8 quantiser on every tensor, the graph outputs too. Where an output is
a concatenation of several levels (RetinaFace's boxes and landmarks: three strides, anchors from
16 to 512 pixels) one per-tensor range serves them all, and the finest level, whose offsets are
the small ones, gets a few steps of it. The device decodes outputs in float anyway, so requantising
them buys nothing: no integer kernel follows. Measured on RetinaFace-MobileNet-0.25 onnx-int8
(plain min/max, 25 scenes, 633 faces): the Concat and Softmax outputs in float took the largest box
error from 24.2 to 7.6 px and the landmark NME from 0.0201 to 0.0186, at no cost in speed (the
Concat copies, in float instead of uint8).

Only data-movement and normalisation nodes are left in float: a convolution or matrix product
that produces an output keeps its integer kernel (its output quantiser is what lets the backend
fuse it). The int8 simulation the remedies are chosen on leaves the same outputs alone
(:func:`.simulate.quantised_outputs`). tflite-int8's full-integer converter still quantises its
output concatenations (it has no per-node exclusion; float groups are whole modules): there the
simulation is a little kinder than the artifact, and the verification judges the artifact.
"""

from __future__ import annotations

from typing import Any

ONNX_PASS_THROUGH = frozenset({"Concat", "Softmax", "Sigmoid", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity"})
"""ONNX operators that move, gather or normalise values without an integer kernel of their own."""


def onnx_output_nodes(graph: Any) -> list[str]:
    """Names of the nodes of an ONNX graph (``onnx.GraphProto``) that produce a graph output and
    only move or normalise values (unnamed nodes left out: nothing can exclude them by name)."""
    outputs = {o.name for o in graph.output}
    return [n.name for n in graph.node if n.name and n.op_type in ONNX_PASS_THROUGH and any(o in outputs for o in n.output)]


__all__ = ["ONNX_PASS_THROUGH", "onnx_output_nodes"]
