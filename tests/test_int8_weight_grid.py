"""Depthwise convolutions keep the full 8-bit weight grid on onnx-int8 (export/int8/weight_grid.py).

onnx-int8 writes 7-bit weights because onnxruntime's u8s8 matrix kernels saturate on x86 without
VNNI; its depthwise kernel sums in int32, so depthwise weights keep all 8 bits. These tests check
the premise on this CPU's kernels (exact answers at the extremes of both grids), that the exporter
writes those grids, and that the simulation the remedies are chosen on uses the same ones.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="asset missing: torch (the training side: pip install 'gfn-edge[export]')")
from torch import nn  # noqa: E402

from gfn_edge.export.int8.weight_grid import FULL_QMAX, is_depthwise, layer_qmax  # noqa: E402


def test_only_one_filter_per_channel_convolutions_are_depthwise():
    assert layer_qmax(nn.Conv2d(8, 8, 3, groups=8), 64) == FULL_QMAX
    assert layer_qmax(nn.Conv2d(8, 8, 3, groups=8), 127) == 127
    assert layer_qmax(nn.Conv2d(8, 16, 1), 64) == 64
    assert layer_qmax(nn.Conv2d(8, 16, 3, groups=8), 64) == 64  # a channel multiplier: a grouped kernel
    assert layer_qmax(nn.Conv2d(8, 8, 3, groups=4), 64) == 64  # grouped, two channels a group
    assert layer_qmax(nn.Linear(8, 4), 64) == 64
    assert layer_qmax(nn.PReLU(8), 64) == 64  # a weight, but no convolution
    assert is_depthwise([32, 1, 3, 3], 32) and not is_depthwise([32, 1, 3, 3], 1) and not is_depthwise([32], 32)


def _qdq_conv(weights: np.ndarray, groups: int, stride: int, x_zero: int, largest: float):
    """A QDQ graph of one convolution with integer ``weights`` (scale 1), uint8 input of scale 1 and
    zero point ``x_zero``, and uint8 output (zero point 128) reaching +-``largest``: the pattern
    onnxruntime fuses into its integer kernel."""
    from onnx import TensorProto, helper, numpy_helper

    cout, kernel = weights.shape[0], weights.shape[-1]
    cin = weights.shape[1] * groups
    inits = [
        numpy_helper.from_array(np.array(1.0, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(x_zero, np.uint8), "x_zero"),
        numpy_helper.from_array(weights.astype(np.int8), "w_int"),
        numpy_helper.from_array(np.ones(cout, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(cout, np.int8), "w_zero"),
        numpy_helper.from_array(np.array(largest / 120, np.float32), "y_scale"),
        numpy_helper.from_array(np.array(128, np.uint8), "y_zero"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_int", "w_scale", "w_zero"], ["w"], axis=0),
        helper.make_node("Conv", ["x_dq", "w"], ["y"], group=groups, strides=[stride, stride], pads=[kernel // 2] * 4),
        helper.make_node("QuantizeLinear", ["y", "y_scale", "y_zero"], ["y_q"]),
        helper.make_node("DequantizeLinear", ["y_q", "y_scale", "y_zero"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 9, 9])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), cin


def _run(model, x: np.ndarray, fused: bool) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    if not fused:  # DequantizeLinear, a float Conv (exact for these integers), QuantizeLinear
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _assert_kernel_exact(weights: np.ndarray, groups: int, stride: int, x_zero: int) -> None:
    """Every uint8 input at 255: the fused kernel's output equals exact arithmetic's, to the output's
    one rounding step (a saturating kernel misses by about half the value)."""
    largest = float((255 - x_zero) * np.abs(weights[0]).sum())
    model, cin = _qdq_conv(weights, groups, stride, x_zero, largest)
    x = np.full((1, cin, 9, 9), 255.0 - x_zero, np.float32)
    fused, exact = _run(model, x, True), _run(model, x, False)
    step = largest / 120
    assert abs(abs(float(exact[0, 0, 4 // stride, 4 // stride])) - largest) <= step  # the centre reaches the worst case
    np.testing.assert_allclose(fused, exact, rtol=0, atol=step * 1.01)


@pytest.mark.parametrize(("kernel", "stride", "x_zero"), [(3, 1, 0), (3, 2, 0), (5, 1, 0), (3, 1, 100)])
def test_onnxruntime_depthwise_kernel_is_exact_at_the_full_8_bit_grid(kernel, stride, x_zero):
    """Every weight at +-127 (the worst case for int16 pair sums): the fused depthwise kernel still
    gives the exact answer, so its weights need no 7-bit range."""
    pytest.importorskip("onnxruntime", reason="asset missing: onnxruntime (pip install 'gfn-edge[export]')")
    pytest.importorskip("onnx", reason="asset missing: onnx (pip install 'gfn-edge[export]')")
    channels = 16
    weights = np.full((channels, 1, kernel, kernel), FULL_QMAX)
    weights[1::2] = -FULL_QMAX
    _assert_kernel_exact(weights, channels, stride, x_zero)


def test_onnxruntime_pointwise_kernel_is_exact_at_the_7_bit_grid():
    """The same worst case for a 1x1 convolution over 32 channels on the 7-bit grid onnx-int8 writes
    for it (at 127 levels this AVX2 CPU's kernel saturates; CPUs with VNNI or ARM's do not)."""
    pytest.importorskip("onnxruntime", reason="asset missing: onnxruntime (pip install 'gfn-edge[export]')")
    pytest.importorskip("onnx", reason="asset missing: onnx (pip install 'gfn-edge[export]')")
    from gfn_edge.export.targets.onnx_int8 import WEIGHT_QMAX

    _assert_kernel_exact(np.full((8, 32, 1, 1), WEIGHT_QMAX), 1, 1, 0)


class _Separable(nn.Module):
    """A depthwise-separable block: full 3x3 stem, depthwise 3x3, pointwise 1x1."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pointwise = nn.Conv2d(8, 16, 1)

    def forward(self, x):
        return self.pointwise(torch.relu(self.depthwise(torch.relu(self.stem(x)))))


def test_onnx_int8_writes_8_bit_depthwise_and_7_bit_other_weights_as_the_simulation_assumes(tmp_path):
    """The exporter's own settings on a separable block: the depthwise weights' largest integer is
    127, the others' 64 (reduce_range), and the simulation's per-layer grid gives each back."""
    pytest.importorskip("onnxruntime", reason="asset missing: onnxruntime (pip install 'gfn-edge[export]')")
    import onnx
    from onnx import numpy_helper
    from onnxruntime import quantization as q

    from gfn_edge.export.int8.learned.distill import _fake_weight
    from gfn_edge.export.int8.ort_calibration import CalibrationReader
    from gfn_edge.export.targets import onnx_int8

    torch.manual_seed(0)
    model = _Separable().eval()
    x = np.random.default_rng(0).uniform(-1, 1, (8, 16, 16, 3)).astype(np.float32)
    raw, dst = tmp_path / "raw.onnx", tmp_path / "int8.onnx"
    torch.onnx.export(model, (torch.from_numpy(x[:1].transpose(0, 3, 1, 2).copy()),), str(raw), input_names=["input"], dynamo=False, opset_version=17)
    assert len(onnx_int8.depthwise_weights(raw)) == 1
    q.quantize_static(str(raw), str(dst), CalibrationReader(x, "input"), **onnx_int8.qdq_settings(q, raw))
    graph = onnx.load(str(dst)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    grids = {}
    for node in graph.node:
        ints = inits.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if ints is None or ints.ndim != 4:
            continue
        layer = {(8, 1, 3, 3): model.depthwise, (8, 3, 3, 3): model.stem, (16, 8, 1, 1): model.pointwise}[ints.shape]
        qmax = layer_qmax(layer, onnx_int8.WEIGHT_QMAX)
        grids[ints.shape] = int(np.abs(ints.astype(np.int64)).max())
        dequantised = torch.from_numpy(ints.astype(np.int64) * inits[node.input[1]].reshape(-1, 1, 1, 1)).float()
        assert torch.allclose(_fake_weight(dequantised, qmax), dequantised, rtol=1e-5, atol=1e-8)
    assert grids == {(8, 3, 3, 3): onnx_int8.WEIGHT_QMAX, (8, 1, 3, 3): FULL_QMAX, (16, 8, 1, 1): onnx_int8.WEIGHT_QMAX}
