"""Carry a learned quantisation exactly into an ONNX QDQ graph that ONNX Runtime and OpenVINO run.

1. The learned integer weights go into a copy of the prepared FP32 model as their dequantised
   values. Each channel's largest weight stays on level +-127, so the backend's per-channel rule
   (scale = max|w| / 127) re-derives the learned scale and the same integers.
2. The model is exported to ONNX; every ONNX tensor is matched to the twin's node that computes
   the same values (same shape, same numbers on one calibration batch), because exporters rename
   and re-order but do not change what a tensor holds.
3. onnxruntime's quantize_static writes the QDQ graph from a calibration cache holding, for every
   matched tensor, the learned (lo, hi) range; unmatched tensors (reshapes and the like) keep
   their min/max over the calibration inputs.

:func:`carried` checks the result where exactness can be checked: the graph's int8 weights and
its quantisers' scales and zero points. Its outputs are another matter: onnxruntime's integer
kernels round and requantise otherwise than the float twin, so the two are two int8 realisations
of one quantisation, and on a model whose int8 error is large they differ as much as such
realisations do. Measured 2026-12-07 on w0.5-e16, every layer int8, 24 held-out faces: plain
min/max simulation against onnxruntime's min/max QDQ graph of the same ranges cos 0.988, the
learned twin against its QDQ graph 0.986 (each about 0.98 to FP32).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..ort_calibration import CalibrationReader
from .quantizers import on_grid
from .reconstruct import LearnedQuantisation
from .tensors import match_to_twin

log = logging.getLogger(__name__)


def model_with_learned_weights(model: nn.Module, learned: LearnedQuantisation) -> nn.Module:
    """A copy of the prepared FP32 ``model`` whose conv/linear weights are the learned int8 ones."""
    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        for target, w in learned.weights().items():
            out.get_submodule(target).weight.copy_(w)
    return out


def _all_tensor_values(onnx_path: Path, feed: np.ndarray) -> dict[str, np.ndarray]:
    """Every float tensor the graph computes, by name, on ``feed`` (NCHW)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    have = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for name in node.output:
            if name and name not in have:
                model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
                have.add(name)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(names, {sess.get_inputs()[0].name: feed})
    return {n: v for n, v in zip(names, values) if isinstance(v, np.ndarray) and v.dtype == np.float32}


def match_tensors(onnx_path: Path, learned: LearnedQuantisation, feed_nhwc: np.ndarray, rtol: float = 1e-3) -> dict[str, str]:
    """ONNX tensor name -> twin node name computing the same values (weights quantised, activations float)."""
    x = np.ascontiguousarray(feed_nhwc.transpose(0, 3, 1, 2), dtype=np.float32)
    mapping = match_to_twin(_all_tensor_values(onnx_path, x), learned.twin, feed_nhwc, channels_last=False, rtol=rtol)
    graph_input = next(n for n in learned.twin.act_names if learned.twin.nodes[0].name == n)
    import onnx

    first_input = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name
    mapping[first_input] = graph_input
    return mapping


def write_calibration_cache(onnx_path: Path, learned: LearnedQuantisation, calibration: np.ndarray, path: Path, reader_factory: Callable) -> dict[str, int]:
    """onnxruntime's calibration cache with the learned ranges written over the min/max ones."""
    from onnxruntime.quantization import calibrate

    augmented = path.with_suffix(".augmented.onnx")
    calibrator = calibrate.create_calibrator(onnx_path, None, augmented_model_path=str(augmented), calibrate_method=calibrate.CalibrationMethod.MinMax)
    calibrator.collect_data(reader_factory())
    data = calibrator.compute_data()
    del calibrator
    augmented.unlink(missing_ok=True)
    mapping = match_tensors(onnx_path, learned, calibration[:8])
    ranges = learned.ranges()
    written = 0
    for tensor in list(data.keys()):
        node = mapping.get(tensor)
        if node is not None and node in ranges:
            lo, hi = ranges[node]
            data[tensor] = calibrate.TensorData(lowest=np.array(lo, dtype=np.float32), highest=np.array(hi, dtype=np.float32))
            written += 1
    calibrate.save_tensors_data(data, path)
    stats = {"tensors": len(data.keys()), "learned_ranges": written, "matched": len(mapping)}
    log.info("learned INT8 -> ONNX: %d of %d calibrated tensors take a learned range (%d tensors matched to the twin)", written, stats["tensors"], len(mapping))
    return stats


def _learned_target(initializer: str) -> str:
    """The module path of a quantised weight initializer (``blocks.4.se.expand.weight_quantized``,
    ``ConvMulFusion_W_blocks.4.se.expand.weight_quantized`` after onnxruntime's fusions)."""
    base = initializer.removesuffix("_quantized").removesuffix(".weight")
    return base.split("_W_", 1)[-1]


def carried(qdq_onnx: Path, learned: LearnedQuantisation, mapping: dict[str, str]) -> dict[str, int]:
    """How much of ``learned`` the QDQ graph holds exactly: weights whose int8 integers are the
    learned ones (a fused constant factor changes the scale, not the integers), and quantisers
    whose scale and zero point are those of the learned range of the twin node ``mapping`` (ONNX
    tensor -> twin node, :func:`match_tensors`) gives their input."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(qdq_onnx)).graph
    inits = {i.name: i for i in graph.initializer}
    integers = {t: q.integers().detach().numpy() for t, q in zip(learned.twin.weight_targets, learned.twin.weights)}
    weights = weights_exact = 0
    for name, init in inits.items():
        target = _learned_target(name)
        if not name.endswith("_quantized") or target not in integers:
            continue
        weights += 1
        ours, learned_ints = numpy_helper.to_array(init).astype(np.int64), integers[target]
        if ours.shape != learned_ints.shape and ours.ndim == 2:
            ours = ours.T  # a Gemm/MatMul weight stored transposed
        weights_exact += int(ours.shape == learned_ints.shape and np.array_equal(ours, learned_ints.astype(np.int64)))
    ranges = learned.ranges()
    points = points_exact = 0
    for node in graph.node:
        twin_node = mapping.get(node.input[0]) if node.op_type == "QuantizeLinear" else None
        if twin_node not in ranges:
            continue
        points += 1
        scale = float(numpy_helper.to_array(inits[node.input[1]]))
        zero = int(numpy_helper.to_array(inits[node.input[2]]))
        points_exact += int(on_grid(scale, zero, *ranges[twin_node]))
    return {"weights": weights, "weights_exact": weights_exact, "quantisers": points, "quantisers_exact": points_exact}


def emit_qdq(fp32_onnx: Path, learned: LearnedQuantisation, calibration: np.ndarray, dst: Path, nodes_to_exclude: list[str] | None = None) -> dict[str, int]:
    """Write ``dst``: the QDQ graph of ``fp32_onnx`` (exported from :func:`model_with_learned_weights`,
    shape-inferred) with the learned weights and ranges. Returns counts for the manifest."""
    import onnx
    from onnxruntime import quantization as q

    input_name = onnx.load(str(fp32_onnx), load_external_data=False).graph.input[0].name
    cache = dst.with_name(dst.stem + "-learned-ranges.json")
    stats = write_calibration_cache(fp32_onnx, learned, calibration, cache, lambda: CalibrationReader(calibration, input_name))
    q.quantize_static(
        str(fp32_onnx),
        str(dst),
        None,
        quant_format=q.QuantFormat.QDQ,
        per_channel=True,
        activation_type=q.QuantType.QUInt8,
        weight_type=q.QuantType.QInt8,
        calibrate_method=q.CalibrationMethod.MinMax,
        nodes_to_exclude=nodes_to_exclude or [],
        calibration_cache_path=str(cache),
    )
    cache.unlink(missing_ok=True)
    return stats
