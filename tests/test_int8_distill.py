"""Distillation QAT for INT8 (export/int8/learned/distill.py): what it simulates and what it returns.

A small network with random weights is enough for the mechanics (where quantisers sit, that the
original is untouched, that the tuned module tree loads the way the backends read it); whether it
helps a real checkpoint is measured on the real student in test_int8_learned.py.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="asset missing: torch (the training side: pip install 'gfn-edge[export]')")
from int8_tiny import Tiny  # noqa: E402
from torch import nn  # noqa: E402

from gfn_edge.export.int8.graph import trace_folded  # noqa: E402
from gfn_edge.export.int8.learned.distill import _fake_weight, distill_for_int8  # noqa: E402
from gfn_edge.export.int8.simulate import quantised_outputs  # noqa: E402


def _tiny(outlier: float = 1.0) -> nn.Module:
    """``outlier``: channel 0 of the first block's output this many times larger (and read back that
    many times smaller, the same FP32 function), the range spread that costs per-tensor int8 most."""
    torch.manual_seed(0)
    model = Tiny()
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so folding matters
        for bn in (model.bn1, model.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
        model.bn1.weight[0] *= outlier
        model.bn1.bias[0] *= outlier
        model.conv2.weight[:, 0] /= outlier
    return model.eval()


def _calibration(n: int = 24) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (n, 16, 16, 3)).astype(np.float32)


def test_quantisers_sit_where_backends_put_them():
    """A convolution followed only by a ReLU is fused (one quantiser after the ReLU); the PReLU,
    the residual add and the pooling each get one; the embedding layer hands its result over in
    float (export/int8/float_outputs.py)."""
    gm = trace_folded(_tiny(), torch.zeros(2, 3, 16, 16))
    names = {n.name for n in quantised_outputs(gm)}
    conv1 = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == "conv1")
    relu = next(iter(conv1.users))
    assert conv1.name not in names and relu.name in names
    assert any("prelu" in n for n in names) and any("add" in n for n in names)
    assert not any("fc" in n for n in names), "the output layer's result is requantised"


def test_weight_simulation_is_the_backends_per_channel_rule():
    w = torch.randn(4, 3, 3, 3)
    q = _fake_weight(w, 127)
    scale = w.abs().amax(dim=(1, 2, 3), keepdim=True) / 127
    assert torch.allclose(q / scale, torch.round(w / scale), atol=1e-4)
    assert torch.allclose(q.abs().amax(dim=(1, 2, 3)), w.abs().amax(dim=(1, 2, 3)), rtol=1e-6)  # each channel's largest weight keeps its level
    assert len(torch.unique(torch.round(_fake_weight(w, 63) / (scale * 127 / 63)))) <= 127


def test_traced_graph_has_no_identities_and_fuses_the_relu_behind_one():
    """Where the INT8 preparation folded a BatchNorm it leaves an identity, which every exporter
    drops: the traced graph erases it (and dropout), so it is neither a quantised tensor nor a layer
    group, and a convolution whose ReLU sits behind one is still fused with it."""

    class WithNoOps(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.Identity()
            self.drop = nn.Dropout(0.5)
            self.relu = nn.ReLU()
            self.head = nn.Conv2d(4, 2, 1)

        def forward(self, x):
            return self.head(self.drop(self.relu(self.bn(self.conv(x)))))

    model = WithNoOps().eval()
    x = torch.from_numpy(_calibration(2).transpose(0, 3, 1, 2).copy())
    gm = trace_folded(model, x)
    kinds = {type(gm.get_submodule(str(n.target))) for n in gm.graph.nodes if n.op == "call_module"}
    assert kinds == {nn.Conv2d, nn.ReLU}
    assert torch.equal(gm(x), model(x))
    # the conv's output is fused; the head's result is handed over in float
    assert [str(n.target) for n in quantised_outputs(gm)] == ["relu"]


@pytest.mark.parametrize("target", ["onnx-int8", "openvino-int8"])
def test_qdq_grid_is_the_one_onnxruntime_quantises_to(tmp_path, target):
    """The grid the simulation (ranking, bias correction, distillation) uses for a QDQ target is the
    one its quantiser writes: the full 8 bits (levels -127..127) for both, stored as uint8 + 128 for
    onnxruntime's u8u8 kernels on onnx-int8 and as int8 on openvino-int8 (whose runtime uses the
    integer kernels only where VNNI makes them exact; 7 bits, levels -64..64, until 2026-12-06).
    Checked on the quantised graph itself: integers and dequantised weights."""
    pytest.importorskip("onnxruntime", reason="asset missing: onnxruntime (pip install 'gfn-edge[export]')")
    import onnx
    from onnx import numpy_helper
    from onnxruntime import quantization as q

    from gfn_edge.export.int8.ort_calibration import CalibrationReader
    from gfn_edge.export.int8.unsigned_weights import store_weights_unsigned
    from gfn_edge.export.targets import onnx_int8, openvino_int8

    grid = {"onnx-int8": onnx_int8.WEIGHT_QMAX, "openvino-int8": openvino_int8.WEIGHT_QMAX}[target]
    assert grid == 127
    model = _tiny()
    raw, dst = tmp_path / "raw.onnx", tmp_path / "int8.onnx"
    x = _calibration()
    torch.onnx.export(model, (torch.from_numpy(x[:1].transpose(0, 3, 1, 2).copy()),), str(raw), input_names=["input"], dynamo=False, opset_version=17)
    q.quantize_static(str(raw), str(dst), CalibrationReader(x[:8], "input"), **onnx_int8.qdq_settings(q, raw, grid))  # the target's own settings
    unsigned = store_weights_unsigned(dst) if target == "onnx-int8" else 0  # quantize_qdq's unsigned_weights
    assert unsigned == (3 if target == "onnx-int8" else 0)  # conv1, conv2 and the linear embedding
    graph = onnx.load(str(dst)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    checked = 0
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or inits.get(node.input[0]) is None or inits[node.input[0]].ndim != 4:
            continue
        stored, zero = inits[node.input[0]], inits[node.input[2]]
        assert stored.dtype == (np.uint8 if target == "onnx-int8" else np.int8)
        ints, scale = stored.astype(np.int64) - zero.astype(np.int64).reshape(-1, 1, 1, 1), inits[node.input[1]]
        assert int(np.abs(ints).max()) == grid
        dequantised = torch.from_numpy(ints * scale.reshape(-1, 1, 1, 1)).float()
        # the float weight the integers came from is the simulation's input; its grid must give them back
        simulated = _fake_weight(dequantised, grid)
        assert torch.allclose(simulated, dequantised, rtol=1e-5, atol=1e-8)
        checked += 1
    assert checked == 2  # conv1, conv2


def test_distillation_lowers_its_loss_and_leaves_the_original_alone():
    model = _tiny(outlier=1000.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = _calibration()
    result = distill_for_int8(model, x, "embed", budget_s=4.0, batch=8, seed=1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the prepared model must not change"
    report = result.report
    assert report["steps"] >= 5
    sim = report["simulated_on_calibration"]
    assert sim["before"]["cos_mean"] < 0.999, f"the outlier should cost plain int8 something: {sim}"
    assert sim["after"]["cos_mean"] > sim["before"]["cos_mean"], sim
    # the tuned model is the same module tree (BatchNorms folded away), so every backend exports it as before
    tuned = result.model
    assert isinstance(tuned.bn1, nn.Identity) and isinstance(tuned.bn2, nn.Identity)
    assert [type(m).__name__ for m in tuned.children()] == ["Conv2d", "Identity", "ReLU", "Conv2d", "Identity", "PReLU", "Linear"]
    with torch.no_grad():
        a = tuned(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
        b = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    cos = nn.functional.cosine_similarity(a, b, dim=1)
    assert a.shape == b.shape and float(cos.min()) > 0.9, "the tuned FP32 model must stay close to the original"
    assert not torch.allclose(a, b), "distillation changed nothing"
    assert torch.equal(tuned.prelu.weight, model.prelu.weight), "only convolution and linear weights and biases are trained"


def test_detector_outputs_use_a_relative_error_loss():
    """Tasks other than embeddings (boxes, scores, landmarks; the live probability) are matched by
    relative squared error over every output, so a multi-output model distils too."""

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Conv2d(3, 4, 3, padding=1)
            self.a = nn.Conv2d(4, 2, 1)
            self.b = nn.Conv2d(4, 8, 1)

        def forward(self, x):
            y = torch.relu(self.body(x))
            return self.a(y), self.b(y)

    torch.manual_seed(0)
    model = TwoHeads().eval()
    with torch.no_grad():  # one body channel 1000x larger, read back 1000x smaller: the same FP32 function
        model.body.weight[0] *= 1000
        model.body.bias[0] *= 1000
        model.a.weight[:, 0] /= 1000
        model.b.weight[:, 0] /= 1000
    result = distill_for_int8(model, _calibration(16), "detect", budget_s=3.0, batch=4)
    sim = result.report["simulated_on_calibration"]
    assert sim["before"]["rel_err"] > 1e-3, sim
    assert sim["after"]["rel_err"] < sim["before"]["rel_err"], sim


def test_groups_kept_in_float_are_simulated_unquantised():
    """With every layer group in float the simulation is the FP32 model up to the input's int8
    step; the report names the groups (the backend then keeps the same ones in float)."""
    from gfn_edge.export.int8.prepare import group_nodes

    model, x = _tiny(outlier=1000.0), _calibration()
    gm = trace_folded(model, torch.from_numpy(x[:2].transpose(0, 3, 1, 2).copy()))
    every = tuple(group_nodes(gm, [n for n in gm.graph.nodes if n.op.startswith("call_")]))
    plain = distill_for_int8(model, x, "embed", budget_s=1.0, batch=8).report
    floated = distill_for_int8(model, x, "embed", budget_s=1.0, batch=8, float_groups=every).report
    assert floated["float_groups"] == list(every) and plain["float_groups"] == []
    assert plain["simulated_on_calibration"]["before"]["cos_mean"] < 0.999
    assert floated["simulated_on_calibration"]["before"]["cos_mean"] > 0.9999, floated["simulated_on_calibration"]
