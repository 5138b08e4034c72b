"""Empirical bias correction for INT8 (export/int8/bias_correction.py): what it changes and by how much.

A small network with random weights checks the mechanics (the corrected layer's int8 output has
the FP32 mean, only biases move, float groups are left alone); whether it helps a real checkpoint
is measured on the real student in test_int8_learned.py.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="asset missing: torch (the training side: pip install 'gfn-edge[export]')")
from int8_tiny import Tiny  # noqa: E402
from torch import nn  # noqa: E402

from gfn_edge.export.int8.attempt import Attempt  # noqa: E402
from gfn_edge.export.int8.bias_correction import correct_biases  # noqa: E402
from gfn_edge.export.int8.candidates import bias_correction_wanted  # noqa: E402
from gfn_edge.export.int8.graph import trace_folded  # noqa: E402
from gfn_edge.export.int8.simulate import _fq_act, _fq_weight  # noqa: E402


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    model = Tiny()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
        # a coarse weight grid on conv1: few levels, so rounding shifts its channel means visibly
        model.conv1.weight[:, :, 0, 0] *= 40
    return model.eval()


def _calibration(n: int = 24) -> np.ndarray:
    # positive-leaning pictures, as normalised photos mostly are: rounding errors then add up
    return np.random.default_rng(0).uniform(-0.2, 1, (n, 16, 16, 3)).astype(np.float32)


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def test_the_first_layer_gets_the_fp32_channel_means_back():
    """conv1 sees the int8 input and int8 weights; after correction its per-channel output mean on
    the calibration inputs is the FP32 one, where before it was off."""
    model, x = _tiny(), _calibration()
    xt = _nchw(x)
    folded = trace_folded(model, xt[:2]).get_submodule("conv1")
    corrected = correct_biases(model, x, weight_qmax=7).model.conv1
    xq = _fq_act(xt, float(xt.min()), float(xt.max()))
    with torch.no_grad():
        want = folded(xt).mean(dim=(0, 2, 3))
        before = folded._conv_forward(xq, _fq_weight(folded.weight, qmax=7), folded.bias).mean(dim=(0, 2, 3))
        after = corrected._conv_forward(xq, _fq_weight(corrected.weight, qmax=7), corrected.bias).mean(dim=(0, 2, 3))
    assert float((before - want).abs().max()) > 1e-3, "the coarse grid should shift some channel's mean"
    assert torch.allclose(after, want, atol=1e-5), (after - want).abs().max()


def test_only_biases_move_and_the_original_is_untouched():
    model, x = _tiny(), _calibration()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = correct_biases(model, x, weight_qmax=127)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the given model must not change"
    folded = trace_folded(model, _nchw(x)[:2])
    tuned = result.model
    # the module tree the backends export: BatchNorms folded away, the same layers otherwise
    assert isinstance(tuned.bn1, nn.Identity) and isinstance(tuned.bn2, nn.Identity)
    for name in ("conv1", "conv2", "fc"):
        assert torch.equal(tuned.get_submodule(name).weight, folded.get_submodule(name).weight), name
    assert torch.equal(tuned.prelu.weight, model.prelu.weight)
    moved = {n: float((tuned.get_submodule(n).bias - folded.get_submodule(n).bias).detach().abs().max()) for n in ("conv1", "conv2", "fc")}
    assert all(v > 0 for v in moved.values()), moved
    assert result.report["layers"] == 3 and result.report["samples"] == len(x)
    with torch.no_grad():
        cos = nn.functional.cosine_similarity(tuned(_nchw(x)), model(_nchw(x)), dim=1)
    assert float(cos.min()) > 0.99, "the corrected FP32 model must stay close to the original"


def test_a_group_kept_in_float_is_not_corrected():
    model, x = _tiny(), _calibration()
    folded = trace_folded(model, _nchw(x)[:2])
    tuned = correct_biases(model, x, weight_qmax=127, float_groups=("conv2",)).model
    assert torch.equal(tuned.conv2.bias, folded.get_submodule("conv2").bias)
    assert not torch.equal(tuned.conv1.bias, folded.get_submodule("conv1").bias)


def test_non_finite_calibration_is_refused_by_name():
    from gfn_edge.errors import CalibrationError

    model, x = _tiny(), _calibration()
    x[5, 0, 0, 0] = np.nan
    with pytest.raises(CalibrationError, match=r"1 of 24 calibration inputs hold NaN.*index 5"):
        correct_biases(model, x, weight_qmax=127)


def test_each_corrected_model_has_its_own_cache_name():
    plain = Attempt("minmax")
    a = Attempt("minmax", bias_corrected=True)
    b = Attempt("minmax", ("blocks.3",), bias_corrected=True)
    keys = {plain.model_key(64), a.model_key(64), b.model_key(64), a.model_key(127)}
    assert len(keys) == 4 and all(k.replace("-", "").isalnum() for k in keys)
    assert "bias correction" in b.label() and "float blocks.3" in b.label()


class _Ctx:
    def __init__(self, value):
        self.options = {"bias_correction": value}


def test_the_option_only_switches_it_off():
    """On by default where the backend does not correct; --no-int8-bias-correction turns it off;
    it is never forced onto NNCF, which corrects its own."""
    assert bias_correction_wanted(_Ctx(None), True) and not bias_correction_wanted(_Ctx(None), False)
    assert not bias_correction_wanted(_Ctx(False), True)
    assert not bias_correction_wanted(_Ctx(True), False)


def test_the_cli_flag_reaches_the_options(tmp_path):
    from gfn_edge.export.cli import build_parser

    args = build_parser().parse_args(["--model", "m", "--target", "onnx-int8", "--no-int8-bias-correction", "--out", str(tmp_path)])
    assert args.int8_bias_correction is False
    assert build_parser().parse_args(["--model", "m", "--target", "onnx-int8", "--out", str(tmp_path)]).int8_bias_correction is True


class _TwoHeads(nn.Module):
    """A body and two output layers: a map of positions (a detector head's) and, after pooling,
    one vector per picture (an embedding)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Conv2d(8, 4, 1)
        self.embed = nn.Linear(8, 4)
        with torch.no_grad():
            for layer in (self.body, self.head, self.embed):
                layer.weight[:, 0] *= 40  # coarse grids: rounding shifts the means visibly

    def forward(self, x):
        feat = self.relu(self.body(x))
        return self.head(feat).permute(0, 2, 3, 1).reshape(x.shape[0], -1, 4), self.embed(feat.mean(dim=(2, 3)))


def test_an_output_map_of_positions_is_not_corrected():
    """A detector head's channel means are over every anchor (background, nearly all of them), and
    the device decodes it at the faces only: its bias stays; the body's and the embedding's move."""
    model = _TwoHeads().eval()
    corrected = correct_biases(model, _calibration(), weight_qmax=7).model
    assert torch.equal(corrected.head.bias, model.head.bias)
    assert not torch.equal(corrected.body.bias, model.body.bias)
    assert not torch.equal(corrected.embed.bias, model.embed.bias)
