"""The layers an INT8 search keeps in float ship their weights as int8 (weight-only) all the same."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="asset missing: onnx (pip install 'gfn-edge[export]')")
ort = pytest.importorskip("onnxruntime", reason="asset missing: onnxruntime (pip install 'gfn-edge[export]')")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from gfn_edge.export.int8.onnx_weight_only import BYTE_SHARE, compress_float_weights, largest_share, quantize_weights, weight_only_levels  # noqa: E402


def _conv_gemm_model(path, rng):
    """input (1,4,8,8) -> Conv 16x4x3x3 -> Relu -> Flatten -> Gemm (transB) 10x1024, plus a
    scalar-ish Mul whose 4-value constant must stay float."""
    w1 = rng.normal(size=(16, 4, 3, 3)).astype(np.float32)
    w1[3] = 0.0  # a dead channel: scale 1, integers 0
    w1[5] *= 100.0  # channels of very different magnitude: per-channel scales
    b1 = rng.normal(size=16).astype(np.float32)
    w2 = rng.normal(size=(10, 16 * 8 * 8)).astype(np.float32)
    b2 = rng.normal(size=10).astype(np.float32)
    k = np.array([[[[1.5]], [[0.5]], [[2.0]], [[1.0]]]], np.float32)
    nodes = [
        helper.make_node("Mul", ["input", "k"], ["scaled"]),
        helper.make_node("Conv", ["scaled", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["output"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(a, n) for a, n in [(w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"), (k, "k")]],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return w1, b1, w2, b2, k


def _run(path, x, optimised: bool = True):
    options = ort.SessionOptions()
    if not optimised:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def _optimised_graph(path, tmp_path):
    """The graph onnxruntime runs after its load-time optimisation (basic level: constant folding)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return onnx.load(str(tmp_path / "optimised.onnx")).graph


def test_float_layers_weights_become_per_channel_int8_and_compute_the_dequantised_model(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "m.onnx"
    w1, b1, w2, b2, k = _conv_gemm_model(path, rng)
    x = rng.normal(size=(1, 4, 8, 8)).astype(np.float32)
    before_bytes = path.stat().st_size
    fp32 = _run(path, x)

    assert compress_float_weights(path, byte_share=1.0) == 2
    graph = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    assert inits["k"].dtype == np.float32 and "b1" in inits and inits["b1"].dtype == np.float32  # small constants, biases: float
    stored = weight_only_levels(graph)
    assert set(stored) == {"w1", "w2"} and not any(n.op_type == "DequantizeLinear" for n in graph.node)
    q1, s1 = inits[stored["w1"][0]], inits[stored["w1"][1]]
    q2, s2 = inits[stored["w2"][0]], inits[stored["w2"][1]]
    # scales along the output channels: Conv's dim 0, a transB Gemm's dim 0
    assert s1.shape == (16, 1, 1, 1) and s2.shape == (10, 1)
    assert q1.dtype == np.int8 and np.abs(q1).max() == 127
    assert s1[3] == 1.0 and not q1[3].any()  # the dead channel
    assert s1[5] > 50 * np.median(s1)  # per channel, not per tensor

    # what onnxruntime computes is exactly the model with the dequantised weights
    deq1 = q1.astype(np.float32) * s1
    deq2 = q2.astype(np.float32) * s2
    ref_path = tmp_path / "deq.onnx"
    _conv_gemm_model(ref_path, np.random.default_rng(0))
    model = onnx.load(str(ref_path))
    for t in model.graph.initializer:
        if t.name in ("w1", "w2"):
            t.CopyFrom(numpy_helper.from_array(deq1 if t.name == "w1" else deq2, t.name))
    onnx.save(model, str(ref_path))
    np.testing.assert_allclose(_run(path, x), _run(ref_path, x), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(_run(path, x), _run(path, x, optimised=False), rtol=1e-5, atol=1e-4)  # folded or not: the same weights
    # and close to FP32: at most half a step of each channel's grid per weight
    assert np.abs(deq1 - w1).max(axis=(1, 2, 3)).max() <= 0.5 * s1.max() * 1.0001
    assert np.linalg.norm(_run(path, x) - fp32) / np.linalg.norm(fp32) < 0.01
    assert path.stat().st_size < 0.35 * before_bytes  # about a quarter, plus scales and the graph


def test_weights_a_quantiser_already_feeds_are_left_alone(tmp_path):
    """Run twice, the second pass finds nothing: a weight behind a DequantizeLinear is not a float weight."""
    path = tmp_path / "m.onnx"
    _conv_gemm_model(path, np.random.default_rng(1))
    assert compress_float_weights(path, byte_share=1.0) == 2
    text = path.read_bytes()
    assert compress_float_weights(path, byte_share=1.0) == 0
    assert path.read_bytes() == text


def test_quantize_weights_rounds_to_the_nearest_level_of_each_channel():
    w = np.array([[0.0, 0.5, -1.0], [2.0, -0.01, 0.02]], np.float32)
    q, scale = quantize_weights(w, axis=0)
    np.testing.assert_allclose(scale, [1.0 / 127, 2.0 / 127])
    assert q.tolist() == [[0, 64, -127], [127, -1, 1]]


def test_by_default_only_the_largest_float_weights_are_stored_as_int8(tmp_path):
    """The Gemm's 10,240 weights are 95 % of the float bytes, the Conv's 576 the rest: only the Gemm's
    change (small layers cost few bytes and much accuracy; see BYTE_SHARE)."""
    path = tmp_path / "m.onnx"
    _conv_gemm_model(path, np.random.default_rng(2))
    assert compress_float_weights(path) == 1
    graph = onnx.load(str(path)).graph
    assert list(weight_only_levels(graph)) == ["w2"]
    assert {t.name: t.data_type for t in graph.initializer}["w1"] == TensorProto.FLOAT


def test_largest_share_takes_the_fewest_largest_names():
    sizes = {"a": 50, "b": 30, "c": 10, "d": 6, "e": 4}
    assert largest_share(sizes, 0.9) == {"a", "b", "c"}
    assert largest_share(sizes, 0.5) == {"a"}
    assert largest_share(sizes, 1.0) == set(sizes)
    assert largest_share(sizes, 0.0) == set() and largest_share({}, BYTE_SHARE) == set()


def test_onnxruntime_folds_the_stored_weights_when_it_loads_the_model(tmp_path):
    """The int8 weights cost nothing per inference: onnxruntime's load-time optimisation turns the
    Cast and the Mul into one FP32 constant (a DequantizeLinear there would stay in the graph and run
    on every inference: w0.5-e16 2.21 against 2.03 ms), so the float layers run their FP32 kernels."""
    path = tmp_path / "m.onnx"
    _conv_gemm_model(path, np.random.default_rng(3))
    assert compress_float_weights(path, byte_share=1.0) == 2
    graph = _optimised_graph(path, tmp_path)
    assert {"Cast", "DequantizeLinear"}.isdisjoint(n.op_type for n in graph.node)
    assert [n.op_type for n in graph.node if n.op_type == "Mul"] == ["Mul"]  # the model's own Mul, kept
    weights = {n.op_type: n.input[1] for n in graph.node if n.op_type in ("Conv", "Gemm")}
    inits = {t.name: t for t in graph.initializer}
    assert all(inits[w].data_type == TensorProto.FLOAT for w in weights.values()), weights


def test_fp16_storage_after_int8_storage_takes_only_the_weights_left_fp32(tmp_path):
    """The search's fp16 step on a winner whose float groups' weights shipped int8 (export/int8/search.py):
    the Gemm's int8 levels stay as they are, the Conv's 576 FP32 weights become float16, and the model
    computes what the FP32 model with the Gemm on its int8 grid and the Conv rounded to float16 does."""
    from gfn_edge.export.int8.onnx_half_weights import store_float_weights_fp16

    path, rng = tmp_path / "m.onnx", np.random.default_rng(2)
    w1, b1, w2, b2, k = _conv_gemm_model(path, rng)
    assert compress_float_weights(path) == 1
    int8_levels = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer if t.data_type == TensorProto.INT8}
    size_int8 = path.stat().st_size
    assert store_float_weights_fp16(path) == 1
    graph = onnx.load(str(path)).graph
    stored = {t.name: t for t in graph.initializer}
    assert stored["w1_fp16"].data_type == TensorProto.FLOAT16 and "w1" not in stored
    for name, levels in int8_levels.items():
        np.testing.assert_array_equal(numpy_helper.to_array(stored[name]), levels)
    assert size_int8 - path.stat().st_size >= w1.nbytes // 2 - 64
    q, scale = quantize_weights(w2, 0)
    expected_path = tmp_path / "expected.onnx"
    _conv_gemm_model(expected_path, np.random.default_rng(2))
    expected = onnx.load(str(expected_path))
    for init in expected.graph.initializer:
        if init.name == "w1":
            init.CopyFrom(numpy_helper.from_array(w1.astype(np.float16).astype(np.float32), "w1"))
        elif init.name == "w2":
            init.CopyFrom(numpy_helper.from_array((q * scale[:, None]).astype(np.float32), "w2"))
    onnx.save(expected, str(expected_path))
    x = rng.normal(size=(1, 4, 8, 8)).astype(np.float32)
    want = _run(expected_path, x)
    np.testing.assert_allclose(_run(path, x), want, rtol=0, atol=1e-5 * np.abs(want).max())
    assert store_float_weights_fp16(path) == 0
