"""Carrying a learned quantisation into the backends' own quantisers (export/int8/learned/).

Random weights and inputs are enough for the mechanics: that the range each learned quantiser
reports is its grid (so a backend derives the same scale and an integral zero point, ties
included), and that what onnxruntime's QDQ graph and TFLite's quantiser hold is that grid and
the learned integers. Whether learning helps a real checkpoint is tests/test_int8_learned.py's.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch", reason="asset missing: torch (the training side: pip install 'gfn-edge[export]')")
from int8_tiny import Tiny  # noqa: E402

from gfn_edge.export.int8.learned.quantizers import ACT_LEVELS, LearnedRange  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(st.floats(-50, 0, allow_nan=False), st.floats(0, 50, allow_nan=False), st.floats(0.3, 3.0), st.floats(0.3, 3.0))
def test_a_learned_range_reports_the_grid_it_rounds_to(lo, hi, g_lo, g_hi):
    q = LearnedRange(lo, hi)
    with torch.no_grad():
        q.g_lo.fill_(g_lo)
        q.g_hi.fill_(g_hi)
    grid_lo, grid_hi = q.range()
    scale = (grid_hi - grid_lo) / ACT_LEVELS
    zero = -grid_lo / scale
    assert grid_lo <= 0 <= grid_hi
    assert abs(zero - round(zero)) < 1e-3  # integral: no backend has a tie to break
    x = torch.linspace(2 * grid_lo - 1, 2 * grid_hi + 1, 997)
    ours = np.clip(np.round(x.numpy() / scale) + round(zero), 0, ACT_LEVELS)
    expected = (ours - round(zero)) * scale  # what a backend given (grid_lo, grid_hi) computes
    with torch.no_grad():
        np.testing.assert_allclose(q(x).numpy(), expected, rtol=1e-5, atol=1e-5 * scale)


def test_a_symmetric_range_keeps_the_twins_zero_point():
    """-lo/scale on a half (127.5 in exact arithmetic): the twin rounds it one way in float32, a
    backend's quantiser may round it the other; the grid range leaves no half to round."""
    q = LearnedRange(-1.0, 1.0)
    with torch.no_grad():
        lo, hi = q.bounds()
        twin_zero = int(torch.round(-lo / ((hi - lo) / ACT_LEVELS)))
    grid_lo, grid_hi = q.range()
    zero = -grid_lo / ((grid_hi - grid_lo) / ACT_LEVELS)
    assert abs(zero - twin_zero) < 1e-4 and abs(zero - 127.5) > 0.4


@pytest.fixture(scope="module")
def tiny_learned():
    from gfn_edge.export.int8.learned import learn_quantisation
    from gfn_edge.export.int8.prepare import prepare_for_int8

    torch.manual_seed(0)
    x = np.random.default_rng(0).uniform(-1, 1, (16, 24, 24, 3)).astype(np.float32)
    model = prepare_for_int8(Tiny().eval(), x).model
    return model, x, learn_quantisation(model, x, budget_s=3, lr_ranges=2e-3)


def test_onnxruntime_qdq_graph_holds_the_learned_integers_and_grids(tiny_learned, tmp_path):
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from gfn_edge.export.int8.learned.onnx_qdq import carried, emit_qdq, match_tensors, model_with_learned_weights

    model, x, learned = tiny_learned
    raw, pre, dst = tmp_path / "raw.onnx", tmp_path / "pre.onnx", tmp_path / "qdq.onnx"
    sample = torch.from_numpy(np.ascontiguousarray(x[:2].transpose(0, 3, 1, 2)))
    torch.onnx.export(
        model_with_learned_weights(model, learned),
        (sample,),
        str(raw),
        opset_version=17,
        dynamo=False,
        input_names=["input"],
        output_names=["out"],
        dynamic_axes={"input": {0: "b"}},
    )
    quant_pre_process(str(raw), str(pre), skip_symbolic_shape=True)
    emit_qdq(pre, learned, x, dst)
    held = carried(dst, learned, match_tensors(pre, learned, x[:4]))
    assert held["weights"] == len(learned.twin.weight_targets) and held["weights_exact"] == held["weights"], held
    assert held["quantisers"] >= 4 and held["quantisers_exact"] == held["quantisers"], held
    assert any(abs(g - 1.0) > 1e-4 for a in learned.twin.acts for g in (float(a.g_lo), float(a.g_hi))), "no range was learned"


def test_tflite_quantiser_holds_the_learned_grids(tiny_learned):
    from gfn_edge.export.int8.learned.onnx_qdq import model_with_learned_weights
    from gfn_edge.export.int8.learned.tflite_ranges import carried, match_tensors, with_learned_ranges
    from gfn_edge.export.targets.tflite_int8 import calibrated_model, int8_converter, quantize_calibrated, tf_function_of

    model, x, learned = tiny_learned
    calibrated = calibrated_model(int8_converter(tf_function_of(model_with_learned_weights(model, learned), (24, 24)), x))
    mapping = match_tensors(calibrated, learned, x[:4])
    with_ranges, stats = with_learned_ranges(calibrated, learned, mapping)
    assert stats["learned_ranges"] >= 4, stats
    held = carried(quantize_calibrated(with_ranges), learned, calibrated, mapping)
    assert held["quantisers"] >= 4 and held["exact"] + held["concat_shared"] == held["quantisers"], held
    untouched = carried(quantize_calibrated(calibrated), learned, calibrated, mapping)
    assert untouched["exact"] + untouched["concat_shared"] < held["quantisers"], untouched  # learned ranges moved
