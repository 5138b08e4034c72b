"""Headroom on small tensors' ranges (export/int8/headroom.py), the same on every backend.

The rule itself, then each place ranges are made: the int8 simulation (ranking, bias correction,
distillation), onnxruntime's calibration cache (onnx-int8 and the OpenVINO QDQ route) and the
TFLite calibration before its quantiser. Whether it helps a real checkpoint is measured by the
exports (docs/int8.md) and the real-student tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from gfn_edge.export.int8 import headroom

torch = pytest.importorskip("torch", reason="asset missing: torch (the training side: pip install 'gfn-edge[export]')")
from int8_tiny import Tiny  # noqa: E402


def test_rule_counts_positions_per_channel_in_either_layout():
    assert headroom.positions((1, 512, 7, 7)) == 49
    assert headroom.positions((1, 7, 7, 512), channels_last=True) == 49
    assert headroom.positions((8, 512)) == 1 and headroom.positions((1, 512), channels_last=True) == 1
    assert headroom.positions((1, 64, 56, 56)) == 3136
    assert headroom.positions((1, 64, None, 56)) is None and headroom.positions((4,)) is None
    assert headroom.factor(49) == headroom.factor(headroom.MAX_POSITIONS) == headroom.HEADROOM > 1
    assert headroom.factor(headroom.MAX_POSITIONS + 1) == headroom.factor(None) == 1.0
    assert headroom.widened(-2.0, 4.0, 1) == (-2.0 * headroom.HEADROOM, 4.0 * headroom.HEADROOM)
    assert headroom.widened(0.0, 4.0, 3136) == (0.0, 4.0)


def _tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return Tiny().eval()


def _pictures(n: int = 16, size: int = 16) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


def test_simulation_widens_small_tensors_only():
    from gfn_edge.export.int8.graph import trace_folded
    from gfn_edge.export.int8.simulate import calibrate_ranges

    x = torch.from_numpy(_pictures().transpose(0, 3, 1, 2).copy())
    gm = trace_folded(_tiny(), x[:2])
    ranges = calibrate_ranges(gm, [x])
    raw = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n in ranges:
                raw[n] = (float(out.min()), float(out.max()))
            return out

    with torch.no_grad():
        Recorder(gm).run(x)
    small = [n for n in ranges if headroom.positions(tuple(n.meta["tensor_meta"].shape)) <= headroom.MAX_POSITIONS]
    large = [n for n in ranges if n not in small]
    assert small and large  # the embedding (1 position) and the 16x16 feature maps
    for n in small:
        assert ranges[n].lo == pytest.approx(raw[n][0] * headroom.HEADROOM) and ranges[n].hi == pytest.approx(raw[n][1] * headroom.HEADROOM)
    for n in large:
        assert (ranges[n].lo, ranges[n].hi) == pytest.approx(raw[n])


def test_onnxruntime_ranges_widened_by_shape(tmp_path):
    pytest.importorskip("onnx", reason="asset missing: onnx (the training side)")
    from onnxruntime.quantization import calibrate

    from gfn_edge.export.int8.ort_calibration import CalibrationReader
    from gfn_edge.export.targets.onnx_int8 import _widen_small_tensors

    path = tmp_path / "tiny.onnx"
    torch.onnx.export(_tiny(), torch.zeros(1, 3, 16, 16), str(path), input_names=["input"], output_names=["embedding"], dynamo=False)
    calibrator = calibrate.create_calibrator(str(path), None, augmented_model_path=str(tmp_path / "aug.onnx"))
    calibrator.collect_data(CalibrationReader(_pictures(), "input"))
    data = calibrator.compute_data()
    before = {k: (float(np.ravel(v.lowest)[0]), float(np.ravel(v.highest)[0])) for k, v in data.items()}
    _widen_small_tensors(data, path)
    after = {k: (float(np.ravel(v.lowest)[0]), float(np.ravel(v.highest)[0])) for k, v in data.items()}
    assert all(np.asarray(v.lowest).dtype == np.float32 for v in data.values())
    assert after["embedding"] == pytest.approx(tuple(b * headroom.HEADROOM for b in before["embedding"]))
    assert after["input"] == pytest.approx(before["input"])  # 16x16 positions: no headroom
    widened = [k for k in before if after[k] != before[k]]
    assert 0 < len(widened) < len(before)


def test_tflite_quantiser_gets_the_widened_ranges():
    pytest.importorskip("tensorflow", reason="asset missing: tensorflow-cpu (the training side)")
    from ai_edge_litert.interpreter import Interpreter

    from gfn_edge.export.targets.tflite_int8 import int8_converter, quantized_model, tf_function_of

    model, x = _tiny(), _pictures()
    fn = tf_function_of(model, (16, 16))
    plain = Interpreter(model_content=int8_converter(fn, x).convert()).get_tensor_details()
    wide = Interpreter(model_content=quantized_model(int8_converter(fn, x))).get_tensor_details()
    scale = {d["name"]: (d["quantization"][0], tuple(d["shape"])) for d in plain if d["dtype"] == np.int8 and d["quantization"][0]}
    ratios = {"small": [], "large": []}
    for d in wide:
        if d["name"] in scale and d["dtype"] == np.int8 and d["quantization"][0] and len(d["shape"]) in (2, 4):
            before, shape = scale[d["name"]]
            kind = "small" if headroom.positions(shape, channels_last=True) <= headroom.MAX_POSITIONS else "large"
            ratios[kind].append(d["quantization"][0] / before)
    assert ratios["small"] and ratios["large"], ratios
    assert np.allclose(ratios["small"], headroom.HEADROOM, rtol=0.02), ratios
    assert np.allclose(ratios["large"], 1.0, rtol=0.02), ratios


def test_tflite_route_keeps_int8_edges_and_float_denylist():
    """The calibrate-then-quantise route does what ``convert()`` did: int8 edges with ``int8_io``,
    float edges without, and denylisted tensors left in float."""
    pytest.importorskip("tensorflow", reason="asset missing: tensorflow-cpu (the training side)")
    from ai_edge_litert.interpreter import Interpreter

    from gfn_edge.export.targets.tflite_int8 import int8_converter, quantized_model, tf_function_of

    model, x = _tiny(), _pictures()
    fn = tf_function_of(model, (16, 16))
    edges = Interpreter(model_content=quantized_model(int8_converter(fn, x, int8_io=True), int8_io=True))
    assert edges.get_input_details()[0]["dtype"] == np.int8 and edges.get_output_details()[0]["dtype"] == np.int8
    plain = Interpreter(model_content=quantized_model(int8_converter(fn, x)))
    assert plain.get_input_details()[0]["dtype"] == np.float32 and plain.get_output_details()[0]["dtype"] == np.float32
    int8_names = [d["name"] for d in plain.get_tensor_details() if d["dtype"] == np.int8 and len(d["shape"]) == 4]
    denied = Interpreter(model_content=quantized_model(int8_converter(fn, x), denylist=int8_names[-1:]))
    assert int8_names[-1] in [d["name"] for d in denied.get_tensor_details() if d["dtype"] == np.float32]
