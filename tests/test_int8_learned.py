"""Learned INT8 (AdaRound rounding + learned ranges) on the real w0.5 epoch-16 student and real faces.

Calibration faces come from ../shared/faces/portraits, held-out faces from ../shared/faces/pairs
(calibration pictures excluded), the FP32 targets from the INT8-prepared model itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_path

pytestmark = [pytest.mark.slow, pytest.mark.int8_export]  # minutes of learned quantisation on 2 cores

CHECKPOINT = ("models", "ghostfacenets", "ghostnetv1_w0.5_s2_basic_vn_big_epoch_16_0.711309.h5")


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


@pytest.fixture(scope="module")
def student(mirror: Path):
    """(prepared FP32 model, calibration NHWC inputs, held-out NHWC inputs, FP32 held-out embeddings)."""
    from gfn_edge.calib import resolve_calibration
    from gfn_edge.export.faces import ReferenceFaces
    from gfn_edge.export.int8.prepare import prepare_for_int8
    from gfn_edge.export.reference import reference_for, resolve_spec
    from gfn_edge.export.verify_data import build_verification_set

    checkpoint = shared_path(*CHECKPOINT)
    spec, ck = resolve_spec(str(checkpoint), None, None, False, str(mirror))
    calib = resolve_calibration(str(shared_path("faces", "portraits")), spec, faces=ReferenceFaces(mirror=str(mirror)))
    vset = build_verification_set(spec, shared_path("faces", "pairs"), mirror=str(mirror), exclude=set(calib.source_images), max_images=24)
    ref = reference_for(spec, ck, seed=0)
    x = calib.inputs()
    prep = prepare_for_int8(ref.torch_model, x)
    with torch.no_grad():
        held_ref = prep.model(torch.from_numpy(np.ascontiguousarray(vset.inputs.transpose(0, 3, 1, 2)))).numpy()
    return prep.model, x, vset.inputs, held_ref


@pytest.fixture(scope="module")
def learned(student):
    from gfn_edge.export.int8.learned import learn_quantisation

    model, x, _, _ = student
    return learn_quantisation(model, x, budget_s=60)


def test_learned_weights_stay_on_the_backend_grid(learned):
    """Each channel keeps a weight on +-127, so a backend re-deriving scale = max|w|/127 from the
    learned weights finds the learned scale and the learned integers exactly."""
    assert learned.twin.weights[0].hard, "rounding must be hard after learning"
    for quantiser, w in zip(learned.twin.weights, learned.weights().values()):
        scale = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True) / 127
        live = quantiser.scale.flatten() > 1e-10
        assert torch.allclose(scale.flatten()[live], quantiser.scale.flatten()[live], rtol=1e-5)
        ints = w / quantiser.scale
        assert torch.allclose(ints, torch.round(ints), atol=1e-3) and float(ints.abs().max()) <= 127 + 1e-3


def test_learning_moves_the_rounding(learned):
    """The fit really changed something: some weights round away from nearest."""
    moved_rounding = 0
    for t, q in zip(learned.twin.weight_targets, learned.twin.weights):
        original = learned.gm.get_submodule(t).weight.detach()
        nearest = torch.round(original / q.scale).clamp(-127, 127)
        moved_rounding += int((q.integers() != nearest).sum())
    assert moved_rounding > 100, f"only {moved_rounding} weights rounded away from nearest"
    assert learned.report["steps"] >= 5 and learned.report["augmentation"] is not None  # 38 faces: small set


def test_learned_beats_minmax_ptq_on_the_calibration_faces(learned):
    """Fitted cosine to the FP32 embedding (simulated int8) improves on plain min/max PTQ's worst face."""
    cal = learned.report["calibration_cos"]
    assert cal["learned"]["min"] > cal["plain_minmax"]["min"] + 0.005, cal
    assert cal["learned"]["mean"] > cal["plain_minmax"]["mean"], cal


def test_learned_rounding_holds_up_on_held_out_faces(student, learned):
    """What the time-bounded fit does on faces it never saw: as good as min/max PTQ within 0.03
    on the worst face and 0.01 on the mean, not reliably better (held-out cos_min, min/max 0.898:
    learned 0.878 in a 60 s run, 0.901 in a 90 s one, 2026-12-01; better than min/max on both
    in a 60 s run, 2026-12-05). Why it is not in the search: it wins on the calibration faces
    (above), not on new ones; distillation QAT is what the search escalates to."""
    from gfn_edge.export.int8.simulate import calibrate_ranges, run_fake_quant

    _, x, held, held_ref = student
    xs = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    ranges = calibrate_ranges(learned.gm, [xs])
    plain = _cos(run_fake_quant(learned.gm, torch.from_numpy(np.ascontiguousarray(held.transpose(0, 3, 1, 2))), ranges)[0], held_ref)
    ours = _cos(learned.run(held)[0], held_ref)
    assert ours.min() > plain.min() - 0.03 and ours.mean() > plain.mean() - 0.01, (ours.min(), plain.min(), ours.mean(), plain.mean())


def _onnx_of(model, sample: torch.Tensor, raw: Path, pre: Path) -> Path:
    """``model`` exported as the ONNX target does it, shape-inferred for quantize_static."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    torch.onnx.export(
        model,
        (sample,),
        str(raw),
        opset_version=17,
        dynamo=False,
        input_names=["input"],
        output_names=["embedding"],
        dynamic_axes={"input": {0: "b"}, "embedding": {0: "b"}},
    )
    quant_pre_process(str(raw), str(pre), skip_symbolic_shape=True)
    return pre


def test_qdq_emission_carries_the_learned_quantisation_into_onnxruntime_and_openvino(student, learned, tmp_path: Path):
    """Exact where exactness is defined: every int8 weight of the QDQ graph is the learned integer,
    and every quantiser on a tensor the twin quantises has the learned range's scale and zero point.

    What onnxruntime then computes is a second int8 realisation of that quantisation (integer
    kernels that round and requantise otherwise than the float twin), and on a model whose every
    layer is int8 (cos ~0.98 to FP32) two realisations of the same ranges differ as much as noise:
    measured 2026-12-07 on these 24 held-out faces, the min/max simulation against onnxruntime's
    min/max graph cos 0.988, the learned twin against its graph 0.986 (the old bar, 0.999, was
    above that floor). So the learned graph must agree with its twin as well as min/max agrees with
    its simulation, and hold up as the twin does against min/max (held-out test above), on
    onnxruntime and on OpenVINO reading the same graph (its FakeQuantize from the Q/DQ pairs).
    """
    import onnxruntime as ort
    from onnxruntime import quantization as q

    from gfn_edge.export.int8.learned.onnx_qdq import carried, emit_qdq, match_tensors, model_with_learned_weights
    from gfn_edge.export.int8.learned.tensors import nchw
    from gfn_edge.export.int8.ort_calibration import CalibrationReader
    from gfn_edge.export.int8.simulate import calibrate_ranges, run_fake_quant

    model, x, held, held_ref = student
    sample = torch.from_numpy(np.ascontiguousarray(x[:2].transpose(0, 3, 1, 2)))
    pre = _onnx_of(model_with_learned_weights(model, learned), sample, tmp_path / "raw.onnx", tmp_path / "pre.onnx")
    dst = tmp_path / "qdq.onnx"
    stats = emit_qdq(pre, learned, x, dst)
    assert stats["learned_ranges"] > 0.9 * stats["tensors"]

    exact = carried(dst, learned, match_tensors(pre, learned, x[:8]))
    assert exact["weights"] == len(learned.twin.weight_targets) and exact["weights_exact"] == exact["weights"], exact
    assert exact["quantisers"] > 0.9 * stats["tensors"] and exact["quantisers_exact"] == exact["quantisers"], exact

    feed = np.ascontiguousarray(held.transpose(0, 3, 1, 2))

    def on_ort(path: Path) -> np.ndarray:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": feed})[0]

    plain_pre = _onnx_of(model, sample, tmp_path / "plain-raw.onnx", tmp_path / "plain-pre.onnx")
    plain_dst = tmp_path / "plain-qdq.onnx"
    q.quantize_static(
        str(plain_pre),
        str(plain_dst),
        CalibrationReader(x, "input"),
        quant_format=q.QuantFormat.QDQ,
        per_channel=True,
        activation_type=q.QuantType.QUInt8,
        weight_type=q.QuantType.QInt8,
        calibrate_method=q.CalibrationMethod.MinMax,
    )
    plain_sim = run_fake_quant(learned.gm, torch.from_numpy(feed), calibrate_ranges(learned.gm, [nchw(x)]))[0]

    def on_openvino(path: Path) -> np.ndarray:  # the same QDQ graph, OpenVINO's int8 kernels, f32 pinned
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return compiled(feed)[compiled.output(0)]

    twin_out = learned.run(held)[0]
    for backend, run in (("onnxruntime", on_ort), ("openvino", on_openvino)):
        plain_out, learned_out = run(plain_dst), run(dst)
        floor = _cos(plain_out, plain_sim).mean()
        agree = _cos(learned_out, twin_out).mean()
        assert agree >= floor - 0.01, (backend, agree, floor)
        ours, plain = _cos(learned_out, held_ref), _cos(plain_out, held_ref)
        assert ours.min() > plain.min() - 0.03 and ours.mean() > plain.mean() - 0.01, (backend, ours.min(), plain.min(), ours.mean(), plain.mean())


def test_tflite_quantiser_takes_the_learned_quantisation(student, learned):
    """The learned ranges written into TFLite's calibrated model (weights on their levels need no
    carrying) reach the quantiser: every int8 activation matched to the twin has its learned scale
    and zero point, or that of the concatenation it feeds (TFLite's CONCATENATION takes its inputs
    on its output's scale). The converted model agrees with its twin as well as a min/max
    conversion agrees with the min/max simulation (two int8 realisations, see the ONNX test), and
    holds up on held-out faces. Measured 2026-12-07, 24 held-out faces, every layer int8: 173
    exact and 46 on their concatenation's of 219; twin agreement 0.982 (min/max floor 0.977);
    against FP32 0.981 / 0.944 (mean / worst) where the min/max conversion gives 0.971 / 0.888.
    (The fixture learns the rounding and keeps the simulation's ranges, range learning being off by
    default; tests/test_int8_learned_carry.py carries ranges that were learned.)"""
    from gfn_edge.export.int8.learned.onnx_qdq import model_with_learned_weights
    from gfn_edge.export.int8.learned.tensors import nchw
    from gfn_edge.export.int8.learned.tflite_ranges import carried, match_tensors, with_learned_ranges
    from gfn_edge.export.int8.simulate import calibrate_ranges, run_fake_quant
    from gfn_edge.export.targets.tflite_int8 import calibrated_model, int8_converter, quantize_calibrated, tf_function_of

    model, x, held, held_ref = student
    x = x.astype(np.float32)
    calibrated = calibrated_model(int8_converter(tf_function_of(model_with_learned_weights(model, learned), (112, 112)), x))
    mapping = match_tensors(calibrated, learned, x[:4])
    with_ranges, stats = with_learned_ranges(calibrated, learned, mapping)
    assert stats["learned_ranges"] >= 0.8 * len(learned.twin.act_names), stats
    content = quantize_calibrated(with_ranges)
    held_in = carried(content, learned, calibrated, mapping)
    assert held_in["quantisers"] >= stats["learned_ranges"] - 2, (held_in, stats)  # the model input is float
    assert held_in["exact"] + held_in["concat_shared"] == held_in["quantisers"], held_in
    assert held_in["exact"] >= 0.7 * held_in["quantisers"], held_in

    learned_out, plain_out = _tflite_runner(content)(held), _tflite_int8(model, x)(held)
    plain_sim = run_fake_quant(learned.gm, nchw(held), calibrate_ranges(learned.gm, [nchw(x)]))[0]
    floor = _cos(plain_out, plain_sim).mean()
    agree = _cos(learned_out, learned.run(held)[0]).mean()
    assert agree >= floor - 0.01, (agree, floor)
    ours, plain = _cos(learned_out, held_ref), _cos(plain_out, held_ref)
    assert ours.min() > plain.min() - 0.03 and ours.mean() > plain.mean() - 0.01, (ours.min(), plain.min(), ours.mean(), plain.mean())


@pytest.fixture(scope="module")
def distilled(student):
    from gfn_edge.export.int8.learned.distill import distill_for_int8

    model, x, _, _ = student
    return distill_for_int8(model, x, "embed", steps=40, budget_s=120)  # the 40 steps of the measurement below


def _tflite_int8(model, x: np.ndarray):
    """The tflite-int8 target's conversion of ``model`` (min/max ranges from ``x``) as a function of NHWC inputs."""
    from gfn_edge.export.targets.tflite_int8 import int8_converter, quantized_model, tf_function_of

    return _tflite_runner(quantized_model(int8_converter(tf_function_of(model, (112, 112)), x.astype(np.float32))))


def _tflite_runner(content: bytes):
    """A .tflite model as a function of NHWC inputs (one at a time, as the converted function takes them)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content)
    it.allocate_tensors()
    i0, o0 = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

    def run(a: np.ndarray) -> np.ndarray:
        out = []
        for k in range(len(a)):
            it.set_tensor(i0, a[k : k + 1].astype(np.float32))
            it.invoke()
            out.append(it.get_tensor(o0).reshape(1, -1).copy())
        return np.concatenate(out)

    return run


def test_distillation_improves_tflite_int8_on_held_out_faces(student, distilled):
    """The tuned FP32 weights, quantised by TFLite's own converter (the tflite-int8 route), agree
    better with the original FP32 model on faces neither step saw. Measured 2026-12-01 (60 s, 40
    steps, 38 calibration faces, 133 held-out): mean 0.9451 -> 0.9501, worst 0.839 -> 0.881."""
    model, x, held, held_ref = student
    plain = _cos(_tflite_int8(model, x)(held), held_ref)
    tuned = _cos(_tflite_int8(distilled.model, x)(held), held_ref)
    assert distilled.report["steps"] >= 10, distilled.report
    assert tuned.mean() > plain.mean() + 0.002 and tuned.min() > plain.min() + 0.01, (plain.mean(), plain.min(), tuned.mean(), tuned.min())


def test_bias_correction_improves_simulated_int8_on_held_out_faces(student):
    """Measured 2026-12-02 on all 133 held-out pairs faces (7-bit weights, onnx-int8's grid): the
    simulated int8 embedding's cosine to FP32 mean 0.969 -> 0.981, worst 0.893 -> 0.911; the faces
    here are the fixture's 24. The corrected model is what onnx-int8 and tflite-int8 quantise."""
    from gfn_edge.export.int8.bias_correction import correct_biases
    from gfn_edge.export.int8.graph import trace_folded
    from gfn_edge.export.int8.simulate import calibrate_ranges, run_fake_quant

    model, x, held, held_ref = student
    xs = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    ht = torch.from_numpy(np.ascontiguousarray(held.transpose(0, 3, 1, 2)))

    def simulated(m) -> np.ndarray:
        gm = trace_folded(m, xs[:2])
        ranges = calibrate_ranges(gm, [xs[i : i + 64] for i in range(0, len(xs), 64)])
        return _cos(run_fake_quant(gm, ht, ranges)[0], held_ref)

    result = correct_biases(model, x, weight_qmax=127)
    plain, corrected = simulated(model), simulated(result.model)
    assert corrected.mean() > plain.mean() + 0.004, (plain.mean(), corrected.mean())
    assert corrected.min() > plain.min(), (plain.min(), corrected.min())
    assert result.report["layers"] > 100 and result.report["samples"] == len(x)
