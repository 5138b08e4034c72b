"""Float16 storage of the weights an INT8 model computes in float (export/int8/*_half_weights.py).

What must hold on every runtime: the float ops' weights are stored as float16 (half their bytes),
the int8 weights and the weights too small or too large for float16 are left as they are, and the
model computes exactly what the same model with those weights rounded to float16 computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="asset missing: onnx (the training side: pip install 'gfn-edge[export]')")
ort = pytest.importorskip("onnxruntime", reason="asset missing: onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(7)
X = RNG.normal(size=(1, 4, 12, 12)).astype(np.float32)


def _weights(scale: float = 1.0) -> dict[str, np.ndarray]:
    return {
        "w_float": (RNG.normal(size=(16, 4, 3, 3)) * 0.3 * scale).astype(np.float32),  # 576 values: stored fp16
        "w_tiny": (RNG.normal(size=(2, 16, 1, 1)) * 0.3).astype(np.float32),  # 32 values: stays FP32
        "w_int8": RNG.integers(-127, 128, size=(16, 16, 1, 1)).astype(np.int8),  # an int8 layer's weights
    }


def _model(path: Path, w: dict[str, np.ndarray]) -> Path:
    """float conv -> relu -> int8-weight conv (DequantizeLinear) -> float conv (tiny weight)."""
    nodes = [
        helper.make_node("Conv", ["x", "w_float", "b_float"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("DequantizeLinear", ["w_int8", "w_scale", "w_zero"], ["w_deq"], axis=0),
        helper.make_node("Conv", ["r", "w_deq"], ["c"]),
        helper.make_node("Conv", ["c", "w_tiny"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(w["w_float"], "w_float"),
        numpy_helper.from_array(np.linspace(-1, 1, 16, dtype=np.float32), "b_float"),
        numpy_helper.from_array(w["w_int8"], "w_int8"),
        numpy_helper.from_array(np.full(16, 0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(16, np.int8), "w_zero"),
        numpy_helper.from_array(w["w_tiny"], "w_tiny"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(X.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 12, 12])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _run(path: Path) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": X})[0]


def _rounded(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {**w, "w_float": w["w_float"].astype(np.float16).astype(np.float32)}


def test_onnx_float_weights_stored_fp16_compute_what_rounded_fp32_weights_compute(tmp_path: Path):
    from gfn_edge.export.int8.onnx_half_weights import store_float_weights_fp16

    w = _weights()
    path = _model(tmp_path / "m.onnx", w)
    before, size = _run(path), path.stat().st_size
    assert store_float_weights_fp16(path) == 1
    inits = {i.name: i for i in onnx.load(str(path)).graph.initializer}
    assert inits["w_float_fp16"].data_type == TensorProto.FLOAT16 and "w_float" not in inits
    assert inits["w_tiny"].data_type == TensorProto.FLOAT and inits["w_int8"].data_type == TensorProto.INT8
    assert size - path.stat().st_size >= w["w_float"].nbytes // 2 - 200  # half the weight's bytes (less the Cast node)
    after = _run(path)
    expected = _run(_model(tmp_path / "rounded.onnx", _rounded(w)))
    np.testing.assert_array_equal(after, expected)
    assert 0 < np.abs(after - before).max() < 1e-3 * np.abs(before).max()  # rounded, not changed otherwise
    assert store_float_weights_fp16(path) == 0  # done once: nothing FP32 left to store


def test_onnx_weights_beyond_float16_stay_fp32(tmp_path: Path):
    from gfn_edge.export.int8.onnx_half_weights import store_float_weights_fp16

    path = _model(tmp_path / "big.onnx", _weights(scale=1e6))  # up to ~1e6: float16 would overflow
    data = path.read_bytes()
    assert store_float_weights_fp16(path) == 0 and path.read_bytes() == data


def test_openvino_float_weights_stored_fp16_compute_what_rounded_fp32_weights_compute(tmp_path: Path):
    ov = pytest.importorskip("openvino", reason="asset missing: openvino")
    from gfn_edge.export.int8.openvino_half_weights import store_float_weights_fp16

    w = _weights()
    src = _model(tmp_path / "m.onnx", w)
    config = {"INFERENCE_PRECISION_HINT": "f32"}  # pinned: bf16 on this CPU, f16 on ARM otherwise
    sizes, outs = {}, {}
    for name, halve in (("fp32", False), ("fp16", True)):
        model = ov.convert_model(str(src))
        if halve:
            assert store_float_weights_fp16(model) == 1
        xml = tmp_path / f"{name}.xml"
        ov.save_model(model, str(xml), compress_to_fp16=False)
        sizes[name] = xml.with_suffix(".bin").stat().st_size
        outs[name] = ov.Core().compile_model(str(xml), "CPU", config)(X)[0]
    assert sizes["fp32"] - sizes["fp16"] == w["w_float"].nbytes // 2  # the .bin holds it as float16
    rounded = ov.Core().compile_model(ov.convert_model(str(_model(tmp_path / "r.onnx", _rounded(w)))), "CPU", config)(X)[0]
    np.testing.assert_allclose(outs["fp16"], rounded, rtol=0, atol=1e-5 * np.abs(rounded).max())
    assert np.abs(outs["fp16"] - outs["fp32"]).max() < 1e-3 * np.abs(outs["fp32"]).max()


def _tflite_model(w: np.ndarray, fc: np.ndarray) -> bytes:
    from gfn_edge.export.targets.tflite_int8 import _tf  # TF_USE_LEGACY_KERAS set before the import

    tf = _tf()

    @tf.function(input_signature=[tf.TensorSpec([1, 12, 12, 4], tf.float32)])
    def fn(x):
        y = tf.nn.relu(tf.nn.conv2d(x, tf.constant(w.transpose(2, 3, 1, 0)), 1, "SAME"))
        return tf.matmul(tf.reshape(y, [1, -1]), tf.constant(fc))

    return tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert()


def _invoke(content: bytes) -> tuple[np.ndarray, list[str]]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], X.transpose(0, 2, 3, 1).copy())
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy(), [op["op_name"] for op in it._get_ops_details()]


def test_tflite_float_weights_stored_fp16_compute_what_rounded_fp32_weights_compute():
    pytest.importorskip("tensorflow", reason="asset missing: tensorflow (the training side)")
    pytest.importorskip("ai_edge_litert", reason="asset missing: ai-edge-litert")
    from gfn_edge.export.int8.tflite_float_weights import store_float_weights

    w = _weights()["w_float"]
    fc = (RNG.normal(size=(12 * 12 * 16, 8)) * 0.05).astype(np.float32)
    content = _tflite_model(w, fc)
    halved, count = store_float_weights(content)
    assert count == 2  # the convolution's and the fully connected layer's weights
    assert len(content) - len(halved) >= (w.nbytes + fc.nbytes) // 2 - 1024
    out, ops = _invoke(halved)
    assert ops.count("DEQUANTIZE") == 2 and ops[:2] == ["DEQUANTIZE", "DEQUANTIZE"]
    expected, _ = _invoke(_tflite_model(w.astype(np.float16).astype(np.float32), fc.astype(np.float16).astype(np.float32)))
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    before, _ = _invoke(content)
    assert 0 < np.abs(out - before).max() < 1e-3 * np.abs(before).max()
    assert store_float_weights(halved) == (halved, 0)


def test_tflite_largest_float_weights_stored_int8_compute_what_rounded_weights_compute():
    """The int8 form: per-output-channel int8 constants behind a DEQUANTIZE, for the largest float
    weights only (the same 90 % byte share as the QDQ graphs' weight-only storage); the model then
    computes what the FP32 model with those weights rounded to their int8 grid computes."""
    pytest.importorskip("tensorflow", reason="asset missing: tensorflow (the training side)")
    pytest.importorskip("ai_edge_litert", reason="asset missing: ai-edge-litert")
    from gfn_edge.export.int8.tflite_float_weights import store_float_weights

    w = _weights()["w_float"]
    fc = (RNG.normal(size=(12 * 12 * 16, 8)) * 0.05).astype(np.float32)
    content = _tflite_model(w, fc)
    small, count = store_float_weights(content, "int8")
    assert count == 1  # the fully connected layer: 97 % of the float bytes; the 576-value kernel stays FP32
    assert len(content) - len(small) >= fc.nbytes * 3 // 4 - 1024
    out, ops = _invoke(small)
    assert ops[0] == "DEQUANTIZE" and ops.count("DEQUANTIZE") == 1
    scale = np.abs(fc).max(axis=0) / 127  # per output channel (a column of the matmul's weights)
    rounded = np.clip(np.rint(fc / scale), -127, 127) * scale
    expected, _ = _invoke(_tflite_model(w, rounded.astype(np.float32)))
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    before, _ = _invoke(content)
    assert 0 < np.abs(out - before).max() < 2e-2 * np.abs(before).max()
    with pytest.raises(ValueError, match="unknown weight storage 'int4'"):
        store_float_weights(content, "int4")


def test_tflite_int8_storage_then_fp16_stores_the_weights_int8_left_fp32():
    """An int8 variant that shipped leaves its small float weights FP32 (w0.5-e16 tflite-int8: most
    of its 169 KB of FP32); the fp16 pass after it stores exactly those as float16, leaves the int8
    constants as they are, and the model computes what the FP32 model with the large weights on
    their int8 grid and the small ones rounded to float16 computes."""
    pytest.importorskip("tensorflow", reason="asset missing: tensorflow (the training side)")
    pytest.importorskip("ai_edge_litert", reason="asset missing: ai-edge-litert")
    from gfn_edge.export.int8.tflite_float_weights import store_float_weights

    w = _weights()["w_float"]
    fc = (RNG.normal(size=(12 * 12 * 16, 8)) * 0.05).astype(np.float32)
    small, int8_count = store_float_weights(_tflite_model(w, fc), "int8")
    both, fp16_count = store_float_weights(small, "float16")
    assert (int8_count, fp16_count) == (1, 1)  # the matmul's weights int8, then the conv kernel float16
    assert len(small) - len(both) >= w.nbytes // 2 - 256
    out, ops = _invoke(both)
    assert ops.count("DEQUANTIZE") == 2 and ops[:2] == ["DEQUANTIZE", "DEQUANTIZE"]
    scale = np.abs(fc).max(axis=0) / 127
    rounded_fc = (np.clip(np.rint(fc / scale), -127, 127) * scale).astype(np.float32)
    expected, _ = _invoke(_tflite_model(w.astype(np.float16).astype(np.float32), rounded_fc))
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    assert store_float_weights(both, "float16") == (both, 0) and store_float_weights(both, "int8") == (both, 0)
