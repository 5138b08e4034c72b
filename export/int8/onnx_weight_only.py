"""Int8 storage for the weights of the layers an INT8 search keeps in float (ONNX QDQ graphs).

Why: a layer group kept in float keeps its FP32 weights, so a model that needs many groups in
float ships at 55-90 % of its FP32 size (the detector at the issue's landmark tolerance: 24
groups, 1.56 MB of 1.73). Those layers were kept in float for their activations (the int8
simulation puts most of the error there), not for their weights: stored as per-output-channel
int8, they still compute in float on every runtime (no integer kernel, so no u8s8 saturation and
the full 8-bit grid), and those layers' bytes shrink to a quarter. The bias stays float, as in a QDQ graph.

Stored as an int8 constant behind a Cast and a Mul by the per-channel scales, not behind a
DequantizeLinear: every runtime folds a Cast and a Mul of constants when it loads the model
(onnxruntime's constant folding, OpenVINO's), so the float layer runs the same FP32 kernel on the
same dequantised weights it would have behind a DequantizeLinear, which onnxruntime leaves in the
graph for its QDQ fusions and so runs on every inference (measured on w0.5-e16, 10 groups in float,
one thread: FP32 weights 2.03 ms, DequantizeLinear 2.21 ms, Cast+Mul 2.02 ms; 1.67 -> 1.00 MB; the
outputs of the last two bit-identical). The search still tries it on its winner and ships it only
where it verifies (``slimmer.slimmer``): rounded weights move accuracy.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

WEIGHT_QMAX = 127
"""Symmetric per-channel int8 levels of a weight-only layer (computed in float: no saturation)."""

MIN_WEIGHTS = 64
"""Weights below this many values stay float (a DequantizeLinear costs more than it saves)."""

BYTE_SHARE = 0.9
"""Only the largest float weights, those that together hold this share of the float weights' bytes,
are stored as int8; the many small ones (depthwise kernels, thin pointwise layers) stay FP32. They
cost few bytes and much accuracy: RetinaFace-mnet025 onnx-int8 with 16 groups in float, scenes NME
0.00822 with FP32 weights; every float weight in int8 0.0110 (fails 0.01, 0.53 MB); the largest
twelve, 91 % of the bytes, 0.00899 (0.62 MB of 1.42); one 2,048-value layer alone adds 0.001."""

# op type -> (input index of the weight, the weight's output-channel axis)
_WEIGHT_INPUTS = {"Conv": (1, 0), "ConvTranspose": (1, 1), "MatMul": (1, 1)}


def _gemm_axis(node) -> int:
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    return 0 if trans_b else 1


def quantize_weights(w: np.ndarray, axis: int, qmax: int = WEIGHT_QMAX) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel symmetric int8 of ``w`` along ``axis``: (integers, scales); an all-zero channel
    gets scale 1 (its integers are 0 either way)."""
    reduce = tuple(d for d in range(w.ndim) if d != axis)
    amax = np.abs(w).max(axis=reduce) if reduce else np.abs(w)
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -qmax, qmax).astype(np.int8)
    return q, scale


def float_weights(graph, inits: dict) -> dict[str, int]:
    """Float layers' weights stored as FP32 initializers (not yet behind a DequantizeLinear, a Cast or
    a Mul): name -> output-channel axis."""
    import onnx

    users = Counter(name for node in graph.node for name in node.input)
    found = {}
    for node in graph.node:
        if node.op_type == "Gemm":
            slot, axis = 1, _gemm_axis(node)
        elif node.op_type in _WEIGHT_INPUTS:
            slot, axis = _WEIGHT_INPUTS[node.op_type]
        else:
            continue
        name = node.input[slot] if len(node.input) > slot else ""
        init = inits.get(name)
        if init is None or init.data_type != onnx.TensorProto.FLOAT or users[name] != 1:
            continue
        if len(init.dims) >= 2 and int(np.prod(init.dims)) >= MIN_WEIGHTS:  # from the header: only the chosen are decoded
            found[name] = axis
    return found


def largest_share(sizes: dict[str, int], share: float) -> set[str]:
    """The fewest names, largest first, whose sizes add up to ``share`` of the total."""
    total, chosen, held = sum(sizes.values()), set(), 0
    for name, size in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0])):
        if held >= share * total:
            break
        chosen.add(name)
        held += size
    return chosen


def compress_float_weights(path: Path, byte_share: float = BYTE_SHARE) -> int:
    """Rewrite the model at ``path`` so the float layers' largest weight initializers (Conv,
    ConvTranspose, Gemm, MatMul weights still stored in float; :data:`BYTE_SHARE` of their bytes)
    are stored as int8 behind a Cast and a Mul by their scales; returns how many were converted."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    axes = float_weights(graph, inits)
    chosen = largest_share({name: int(np.prod(inits[name].dims)) for name in axes}, byte_share)
    converted = 0
    new_nodes = []
    for node in graph.node:
        name = next((i for i in node.input if i in chosen), None)
        if name is None:
            new_nodes.append(node)
            continue
        chosen.discard(name)
        init, axis = inits[name], axes[name]
        w = numpy_helper.to_array(init)
        q, scale = quantize_weights(w, axis)
        base = f"{name}_weight_only"
        shape = [1] * w.ndim
        shape[axis] = -1  # broadcast along the output channels
        graph.initializer.remove(init)
        graph.initializer.extend([numpy_helper.from_array(q, f"{base}_int8"), numpy_helper.from_array(scale.reshape(shape), f"{base}_scale")])
        new_nodes.append(helper.make_node("Cast", [f"{base}_int8"], [f"{base}_levels"], name=f"{base}_cast", to=onnx.TensorProto.FLOAT))
        new_nodes.append(helper.make_node("Mul", [f"{base}_levels", f"{base}_scale"], [name], name=f"{base}_dequantize"))
        new_nodes.append(node)
        converted += 1
    if converted:
        del graph.node[:]
        graph.node.extend(new_nodes)
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
        log.info("INT8: %d float layers' weights stored as int8 (weight-only, computed in float)", converted)
    return converted


def weight_only_levels(graph) -> dict[str, tuple[str, str]]:
    """The weights :func:`compress_float_weights` stored: weight name -> (its int8 initializer, its
    scales' initializer)."""
    casts = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Cast" and n.name.endswith("_weight_only_cast")}
    return {n.output[0]: (casts[n.input[0]], n.input[1]) for n in graph.node if n.op_type == "Mul" and n.input[0] in casts}
