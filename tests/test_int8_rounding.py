"""Learned rounding for INT8 (export/int8/learned/rounding.py): the roundings reach the backend.

Random weights are enough for the mechanics: that the learned weights lie on the grid the
backend's own quantiser rounds to, so onnxruntime writes exactly the learned integers; that float
layers, biases and the original model are left alone; that a rounding no better than the nearest
one is not kept. Whether it helps a real checkpoint is the search's measurement (the manifest).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="asset missing: torch (the training side: pip install 'gfn-edge[export]')")
from torch import nn  # noqa: E402

from gfn_edge.export.int8.learned.rounding import round_for_int8  # noqa: E402
from gfn_edge.export.int8.weight_grid import layer_qmax  # noqa: E402


class _Net(nn.Module):
    """A full convolution, a depthwise one (the full 8-bit grid on every backend), a pointwise one
    and a linear embedding; channel 0 of the first output 1000x larger and read back 1000x smaller
    (the same FP32 function), the range spread that costs per-tensor int8 most."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.prelu = nn.PReLU(8, init=0.2)
        self.fc = nn.Linear(8, 16)
        with torch.no_grad():
            self.stem.weight[0] *= 1000.0
            self.stem.bias[0] *= 1000.0
            self.dw.weight[0] /= 1000.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.stem(x))
        b = self.prelu(self.pw(self.act(self.dw(a)))) + a
        return self.fc(b.mean(dim=(2, 3)))


def _calibration(n: int = 40) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (n, 16, 16, 3)).astype(np.float32)


def _levels(w: torch.Tensor, qmax: int) -> torch.Tensor:
    """The weight in steps of its channel's grid (max|w| / qmax): integers where it lies on the grid."""
    dims = tuple(range(1, w.dim()))
    return w / (w.abs().amax(dim=dims, keepdim=True) / qmax)


@pytest.fixture(scope="module")
def rounded():
    model = _Net().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = round_for_int8(model, _calibration(), "embed", weight_qmax=127, budget_s=6.0, batch=8, seed=1)
    return model, before, result


def test_the_learned_weights_lie_on_the_grid_and_keep_each_channels_scale(rounded):
    model, before, result = rounded
    assert result.improved, result.report  # on this network the learned roundings fit better than nearest
    report = result.report
    assert 0 < report["weights_rounded_the_other_way"] < report["weights_learned"]
    assert report["calibration_loss"]["learned"] < report["calibration_loss"]["nearest_rounding"]
    assert report["held_out"] == 8 and report["block_terms"] > 0
    nearest_differs = 0
    for name in ("stem", "dw", "pw", "fc"):
        old, new = before[f"{name}.weight"], result.model.get_submodule(name).weight.detach()
        qmax = layer_qmax(model.get_submodule(name), 127)
        levels = _levels(new, qmax)
        assert torch.allclose(levels, torch.round(levels), atol=1e-3), f"{name}: off the grid"
        dims = tuple(range(1, old.dim()))
        assert torch.allclose(new.abs().amax(dim=dims), old.abs().amax(dim=dims), rtol=1e-6), f"{name}: a channel's scale moved"
        assert (torch.round(levels) - _levels(old, qmax)).abs().max() < 1 + 1e-3, f"{name}: a weight moved past its two neighbouring levels"
        nearest_differs += int((torch.round(levels) != torch.round(_levels(old, qmax))).sum())
        assert torch.equal(result.model.get_submodule(name).bias, before[f"{name}.bias"]), f"{name}: the bias moved"
    assert nearest_differs == report["weights_rounded_the_other_way"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the prepared model must not change"


def test_onnxruntime_writes_the_learned_integers(rounded, tmp_path):
    """The claim that carries the roundings to every backend: the backend's quantiser, given the
    learned FP32 weights, re-derives each channel's step and rounds every weight to its learned level."""
    pytest.importorskip("onnxruntime", reason="asset missing: onnxruntime (pip install 'gfn-edge[export]')")
    import onnx
    from onnx import numpy_helper
    from onnxruntime import quantization as q

    from gfn_edge.export.int8.ort_calibration import CalibrationReader
    from gfn_edge.export.targets import onnx_int8

    _, _, result = rounded
    x = _calibration()
    raw, dst = tmp_path / "raw.onnx", tmp_path / "int8.onnx"
    torch.onnx.export(result.model, (torch.from_numpy(x[:1].transpose(0, 3, 1, 2).copy()),), str(raw), input_names=["input"], dynamo=False, opset_version=17)
    q.quantize_static(str(raw), str(dst), CalibrationReader(x[:8], "input"), **onnx_int8.qdq_settings(q, raw, 127))
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(dst)).graph.initializer}
    learned = {
        name: torch.round(_levels(result.model.get_submodule(name).weight.detach(), 127)).numpy().astype(np.int64) for name in ("stem", "dw", "pw", "fc")
    }
    found = {}
    for name, ints in inits.items():
        if ints.dtype == np.int8 and ints.ndim >= 2:
            match = [k for k, v in learned.items() if v.shape == ints.shape and np.array_equal(v, ints.astype(np.int64))]
            found.update(dict.fromkeys(match, True))
    assert set(found) == set(learned), f"onnxruntime's integers differ from the learned ones for {set(learned) - set(found)}"


def test_float_layers_keep_their_weights_and_the_grid_follows_the_backend():
    """A 7-bit grid (64 levels a side; openvino-int8's until 2026-12-06) for the pointwise layers, the full 8 bits for the
    depthwise one; a float group is left exactly as it was."""
    model = _Net().eval()
    result = round_for_int8(model, _calibration(), "embed", weight_qmax=64, budget_s=3.0, batch=8, float_groups=("stem",))
    assert torch.equal(result.model.stem.weight, model.stem.weight)
    for name, qmax in (("dw", 127), ("pw", 64), ("fc", 64)):
        levels = _levels(result.model.get_submodule(name).weight.detach(), qmax)
        assert torch.allclose(levels, torch.round(levels), atol=1e-3), f"{name}: off its {qmax}-level grid"
    assert result.report["weight_qmax"] == 64 and result.report["float_groups"] == ["stem"]


def test_a_rounding_no_better_than_the_nearest_is_not_kept():
    """With nothing learned (a learning rate of 0, so every soft rounding hardens to the nearest
    level) the fit is no better: the model given back is the one it started from, and the report
    says nearest rounding was kept (the search then does not verify it again)."""
    model = _Net().eval()
    result = round_for_int8(model, _calibration(), "embed", budget_s=1.0, batch=8, lr=0.0)
    assert not result.improved and "kept" in result.report
    assert result.report["weights_rounded_the_other_way"] == 0
    assert all(torch.equal(a, b) for a, b in zip(result.model.state_dict().values(), model.state_dict().values()))


def test_a_budget_the_setup_uses_up_learns_nothing_and_says_so():
    """RetinaFace-mnet025's setup (the FP32 and nearest-rounding passes, the range measurements) took
    39 s of a 30 s budget and then learned one step: with under a quarter of the budget left the
    step stops at once and keeps nearest rounding, naming the reason."""
    model = _Net().eval()
    result = round_for_int8(model, _calibration(), "embed", budget_s=0.001, batch=8)
    assert not result.improved and result.report["steps"] == 0
    assert "too little left to learn" in result.report["kept"]
    assert all(torch.equal(a, b) for a, b in zip(result.model.state_dict().values(), model.state_dict().values()))
