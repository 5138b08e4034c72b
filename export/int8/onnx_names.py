"""Short names for what the QDQ quantiser adds to an ONNX graph.

onnxruntime's quantiser names every tensor it adds after the float tensor it serves:
``/blocks/blocks.3/se/gate/Constant_1_output_0_DequantizeLinear_Output``, ``..._quantized_scale``,
``..._zero_point``, and the nodes alike, five or six names per quantised tensor. On the small
students the names outweighed the weights: ghostfacenet w0.5-e6 onnx-int8 was 272 KB, of which 107 KB
names and 122 KB weights; OpenVINO's IR, converted from the same graph, carries them into its XML.

Here every tensor and node name the quantiser made (absent from the float graph it quantised) is
replaced by a short one (``q17``); the float graph's names stay, so the float-vs-INT8 debugger and
anything else that matches an INT8 tensor to its float twin (a QuantizeLinear's input) still finds
it, and the graph's inputs and outputs keep theirs. Names do not change what any runtime computes.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def float_graph_names(graph) -> set[str]:
    """Every tensor, initializer, node and value-info name of an ``onnx.GraphProto``."""
    names = {i.name for i in graph.initializer} | {v.name for v in graph.input} | {v.name for v in graph.output}
    names |= {v.name for v in graph.value_info}
    for node in graph.node:
        names.add(node.name)
        names.update(node.input)
        names.update(node.output)
    names.discard("")
    return names


def shorten_added_names(path: Path, keep: set[str], prefix: str = "q") -> int:
    """Renames, in the ONNX file at ``path``, the tensors and nodes whose names are not in ``keep``
    (the float graph's names: :func:`float_graph_names`) to ``{prefix}{n}``; returns the bytes saved."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    keep = keep | {v.name for v in graph.input} | {v.name for v in graph.output}
    mapping: dict[str, str] = {}
    counter = itertools.count()

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        new = mapping.get(name)
        if new is None:
            new = f"{prefix}{next(counter)}"
            while new in keep:  # a float graph may already hold a name of this form
                new = f"{prefix}{next(counter)}"
            mapping[name] = new
        return new

    before = path.stat().st_size
    for init in graph.initializer:
        init.name = short(init.name)
    for info in graph.value_info:
        info.name = short(info.name)
    for node in graph.node:
        node.name = short(node.name)
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    onnx.save(model, str(path))
    saved = before - path.stat().st_size
    log.debug("INT8: %d quantiser-made names shortened in %s (%d bytes less)", len(mapping), path.name, saved)
    return saved


__all__ = ["float_graph_names", "shorten_added_names"]
