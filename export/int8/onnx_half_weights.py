"""FP16 storage for the weights of the ops an INT8 ONNX graph computes in float.

Why: the layer groups an INT8 search keeps in float, and the output layers handed over in float,
keep FP32 weights; on RetinaFace-mnet025 (16 groups in float) they are 1.19 of the 1.42 MB.
Stored as float16 behind a Cast to float, they take half the bytes and compute exactly as before
on weights rounded to 11 significant bits (relative error <= 2**-11, far below what the int8
tensors around them add). onnxruntime folds a Cast of a constant when it loads the model, so the
runtime runs the same FP32 kernels at the same speed (measured on that detector: 17.3 ms either
way, 1.42 -> 0.80 MB; scenes landmark NME 0.00822 -> 0.00825).

Int8 weight-only storage (:mod:`.onnx_weight_only`) is smaller still but moves accuracy more; the
search tries it first and this where it is refused (``slimmer.slimmer``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .half_weights import storable
from .onnx_weight_only import float_weights

log = logging.getLogger(__name__)


def store_float_weights_fp16(path: Path) -> int:
    """Rewrite the model at ``path`` with its float ops' weights stored as float16 behind a Cast;
    returns how many were converted (the file is left as it was when none)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    chosen = {}
    for name in float_weights(graph, inits):  # the float ops' FP32 weights, found as the int8 storage finds them
        w = numpy_helper.to_array(inits[name])
        if storable(w):
            chosen[name] = w
    if not chosen:
        return 0
    casts = []
    for name, w in chosen.items():
        graph.initializer.remove(inits[name])
        graph.initializer.append(numpy_helper.from_array(w.astype(np.float16), f"{name}_fp16"))
        casts.append(helper.make_node("Cast", [f"{name}_fp16"], [name], name=f"{name}_to_fp32", to=onnx.TensorProto.FLOAT))
    nodes = casts + list(graph.node)  # constants first: the graph stays topologically sorted
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    log.info("INT8: %d float ops' weights stored as float16 (computed in FP32)", len(chosen))
    return len(chosen)
