"""Depthwise convolutions keep the full 8-bit weight grid on onnx-int8 (export/int8/weight_grid.py).

onnx-int8 writes 7-bit weights because onnxruntime's u8s8 matrix kernels saturate on x86 without
VNNI; its depthwise kernel sums in int32, so depthwise weights keep all 8 bits. These tests check
the premise on this CPU's kernels (exact answers at the extremes of both grids), that the exporter
writes those grids, and that the simulation the remedies are chosen on uses the same ones.
"""

from __future__ import annotations

from pathlib import Path

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


def _qdq_conv(weights: np.ndarray, groups: int, stride: int, x_zero: int, largest: float, unsigned: bool = False):
    """A QDQ graph of one convolution with integer ``weights`` (scale 1; ``unsigned``: stored as
    uint8 + 128, as onnx-int8 stores them), uint8 input of scale 1 and zero point ``x_zero``, and
    uint8 output (zero point 128) reaching +-``largest``: the pattern onnxruntime fuses into its
    integer kernel."""
    from onnx import TensorProto, helper, numpy_helper

    from gfn_edge.export.int8.unsigned_weights import ZERO_POINT, to_uint8

    cout, kernel = weights.shape[0], weights.shape[-1]
    cin = weights.shape[1] * groups
    inits = [
        numpy_helper.from_array(np.array(1.0, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(x_zero, np.uint8), "x_zero"),
        numpy_helper.from_array(to_uint8(weights.astype(np.int8)) if unsigned else weights.astype(np.int8), "w_int"),
        numpy_helper.from_array(np.ones(cout, np.float32), "w_scale"),
        numpy_helper.from_array(np.full(cout, ZERO_POINT, np.uint8) if unsigned else np.zeros(cout, np.int8), "w_zero"),
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


def _run(model, x: np.ndarray, fused: bool, input_name: str = "x") -> np.ndarray:
    """The model on onnxruntime's CPU provider; ``fused``: with its graph optimisations, which must
    have fused every convolution into an integer kernel (else the comparison proves nothing)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:
        if fused:
            options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
            options.log_severity_level = 3
        else:  # DequantizeLinear, a float Conv (exact for these integers), QuantizeLinear
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        if fused:
            ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
            assert "Conv" not in ops and "QLinearConv" in ops, f"onnxruntime did not fuse the convolutions: {ops}"
        return session.run(None, {input_name: x})[0]


def _assert_kernel_exact(weights: np.ndarray, groups: int, stride: int, x_zero: int, unsigned: bool = False, load=None) -> None:
    """Every uint8 input at 255: the fused kernel's output equals exact arithmetic's, to the output's
    one rounding step (a saturating kernel misses by about half the value). ``load``: what the device
    does to the model before onnxruntime sees it."""
    largest = float((255 - x_zero) * np.abs(weights[0]).sum())
    model, cin = _qdq_conv(weights, groups, stride, x_zero, largest, unsigned)
    if load is not None:
        model = load(model)
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


def test_onnxruntime_pointwise_kernels_are_exact_where_each_grid_is_used():
    """The same worst case for a 1x1 convolution over 32 channels: at the full 8-bit grid stored as
    uint8 + 128 (onnx-int8: the u8u8 kernel widens before it multiplies) and at the 7-bit grid in
    int8 (openvino-int8's QDQ route until 2026-12-06). At 127 int8 levels this AVX2 CPU's u8s8 kernel is about half
    the answer (CPUs with VNNI or ARM's are exact); not asserted, since it depends on the CPU."""
    pytest.importorskip("onnxruntime", reason="asset missing: onnxruntime (pip install 'gfn-edge[export]')")
    pytest.importorskip("onnx", reason="asset missing: onnx (pip install 'gfn-edge[export]')")
    from gfn_edge.export.targets.onnx_int8 import SEVEN_BIT_QMAX, WEIGHT_QMAX

    _assert_kernel_exact(np.full((8, 32, 1, 1), SEVEN_BIT_QMAX), 1, 1, 0)
    for sign in (1, -1):
        _assert_kernel_exact(np.full((8, 32, 1, 1), sign * WEIGHT_QMAX), 1, 1, 0, unsigned=True)
    _assert_kernel_exact(np.full((8, 32, 3, 3), WEIGHT_QMAX), 1, 1, 100, unsigned=True)  # a 3x3 stem, input zero point


def test_onnx_int8_weights_are_exact_as_the_device_loads_them_here():
    """onnxruntime on x86 with VNNI loads onnx-int8's uint8 weights back on int8 (runtimes/onnx_signed_weights:
    the u8s8 kernels are the fast ones there, VPDPBUSD sums in int32). The same worst cases, loaded as
    this CPU's rule loads them, are exact; where the rule keeps them uint8 that is the u8u8 case above."""
    onnx = pytest.importorskip("onnx", reason="asset missing: onnx (pip install 'gfn-edge[export]')")
    pytest.importorskip("onnxruntime", reason="asset missing: onnxruntime (pip install 'gfn-edge[export]')")
    from gfn_edge.export.targets.onnx_int8 import WEIGHT_QMAX
    from gfn_edge.runtimes.onnx_signed_weights import signed_weights, u8s8_kernels_exact

    def as_loaded(model):
        data, count = signed_weights(model.SerializeToString())
        assert count == 1
        loaded = onnx.load_from_string(data)
        kinds = {i.name: i.data_type for i in loaded.graph.initializer}
        assert kinds["w_int"] == kinds["w_zero"] == onnx.TensorProto.INT8 and kinds["x_zero"] == kinds["y_zero"] == onnx.TensorProto.UINT8
        return loaded if u8s8_kernels_exact() else model

    for sign in (1, -1):
        _assert_kernel_exact(np.full((8, 32, 1, 1), sign * WEIGHT_QMAX), 1, 1, 0, unsigned=True, load=as_loaded)
    _assert_kernel_exact(np.full((8, 32, 3, 3), WEIGHT_QMAX), 1, 1, 100, unsigned=True, load=as_loaded)


class _Separable(nn.Module):
    """A depthwise-separable block: full 3x3 stem, depthwise 3x3, pointwise 1x1."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pointwise = nn.Conv2d(8, 16, 1)

    def forward(self, x):
        return self.pointwise(torch.relu(self.depthwise(torch.relu(self.stem(x)))))


@pytest.mark.parametrize("target", ["onnx-int8", "openvino-int8"])
def test_qdq_targets_write_the_grids_the_simulation_assumes(tmp_path, target):
    """Each QDQ target's own settings on a separable block. onnx-int8: every weight on the full
    8-bit grid, the stem and pointwise ones stored as uint8 + 128 and the depthwise ones as int8, and
    onnxruntime fuses all three into integer kernels that match exact QDQ arithmetic on this CPU.
    openvino-int8's QDQ route: int8, 64 levels (reduce_range) but 127 for the depthwise weights.
    The simulation's per-layer grid gives every weight back."""
    pytest.importorskip("onnxruntime", reason="asset missing: onnxruntime (pip install 'gfn-edge[export]')")
    import onnx
    from onnx import numpy_helper
    from onnxruntime import quantization as q

    from gfn_edge.export.int8.learned.distill import _fake_weight
    from gfn_edge.export.int8.ort_calibration import CalibrationReader
    from gfn_edge.export.int8.unsigned_weights import ZERO_POINT, store_weights_unsigned
    from gfn_edge.export.targets import onnx_int8, openvino_int8

    grid = {"onnx-int8": onnx_int8.WEIGHT_QMAX, "openvino-int8": openvino_int8.WEIGHT_QMAX}[target]
    torch.manual_seed(0)
    model = _Separable().eval()
    x = np.random.default_rng(0).uniform(-1, 1, (8, 16, 16, 3)).astype(np.float32)
    raw, dst = tmp_path / "raw.onnx", tmp_path / "int8.onnx"
    torch.onnx.export(model, (torch.from_numpy(x[:1].transpose(0, 3, 1, 2).copy()),), str(raw), input_names=["input"], dynamo=False, opset_version=17)
    assert len(onnx_int8.depthwise_weights(raw)) == 1
    q.quantize_static(str(raw), str(dst), CalibrationReader(x, "input"), **onnx_int8.qdq_settings(q, raw, grid))
    if target == "onnx-int8":
        assert store_weights_unsigned(dst) == 2
    graph = onnx.load(str(dst)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    grids, types = {}, {}
    for node in graph.node:
        stored = inits.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if stored is None or stored.ndim != 4:
            continue
        layer = {(8, 1, 3, 3): model.depthwise, (8, 3, 3, 3): model.stem, (16, 8, 1, 1): model.pointwise}[stored.shape]
        ints = stored.astype(np.int64) - inits[node.input[2]].astype(np.int64).reshape(-1, 1, 1, 1)
        grids[stored.shape], types[stored.shape] = int(np.abs(ints).max()), stored.dtype
        dequantised = torch.from_numpy(ints * inits[node.input[1]].reshape(-1, 1, 1, 1)).float()
        assert torch.allclose(_fake_weight(dequantised, layer_qmax(layer, grid)), dequantised, rtol=1e-5, atol=1e-8)
    assert grids == {(8, 3, 3, 3): grid, (8, 1, 3, 3): FULL_QMAX, (16, 8, 1, 1): grid}
    unsigned = target == "onnx-int8"
    assert types == {(8, 3, 3, 3): np.uint8 if unsigned else np.int8, (8, 1, 3, 3): np.int8, (16, 8, 1, 1): np.uint8 if unsigned else np.int8}
    assert all(
        inits[n.input[2]].max(initial=0) == ZERO_POINT
        for n in graph.node
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None and inits[n.input[0]].dtype == np.uint8 and inits[n.input[0]].ndim == 4
    )
    if unsigned:  # the stored model in onnxruntime's fused integer kernels: exact QDQ arithmetic's answer
        model_proto = onnx.load(str(dst))
        inputs = x.transpose(0, 3, 1, 2).copy()[:1]
        fused, exact = (_run(model_proto, inputs, f, "input") for f in (True, False))
        np.testing.assert_allclose(fused, exact, rtol=0, atol=float(np.abs(exact).max()) / 100)
