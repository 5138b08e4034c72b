"""export/targets/openvino_constants: equal small constants read once, outputs unchanged."""

from __future__ import annotations

import numpy as np
import pytest

ov = pytest.importorskip("openvino", reason="asset missing: openvino")

from gfn_edge.export.targets.openvino_constants import share_equal_constants  # noqa: E402


def _model():
    """input -> FakeQuantize -> Conv (weights W) -> FakeQuantize -> Conv (the same W, a separate constant)."""
    ops = ov.opset13 if hasattr(ov, "opset13") else __import__("openvino.runtime.opset13", fromlist=["x"])
    x = ops.parameter([1, 5, 6, 6], np.float32, name="input")
    weights = np.random.default_rng(0).normal(size=(5, 5, 1, 1)).astype(np.float32)

    def fq(node):
        lo, hi = np.float32(-2.0), np.float32(2.0)
        return ops.fake_quantize(node, ops.constant(lo), ops.constant(hi), ops.constant(lo), ops.constant(hi), 256)

    a = ops.convolution(fq(x), ops.constant(weights), [1, 1], [0, 0], [0, 0], [1, 1])
    b = ops.convolution(fq(a), ops.constant(weights), [1, 1], [0, 0], [0, 0], [1, 1])
    return ov.Model([b], [x], "fq")


def _constants(model) -> int:
    return sum(op.get_type_name() == "Constant" for op in model.get_ordered_ops())


def test_equal_small_constants_are_shared_and_the_outputs_stay(tmp_path):
    core = ov.Core()
    x = np.random.default_rng(1).uniform(-3, 3, size=(1, 5, 6, 6)).astype(np.float32)
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    before_model = _model()
    before = core.compile_model(before_model, "CPU", config)(x)[0]
    model = _model()
    assert _constants(model) == 10  # 2 x 4 ranges + 2 weight tensors
    assert share_equal_constants(model) == 6  # the eight scalars are two values; the weights (25 values) stay apart
    assert _constants(model) == 4
    ov.save_model(model, str(tmp_path / "m.xml"))
    after = core.compile_model(core.read_model(str(tmp_path / "m.xml")), "CPU", config)(x)[0]
    assert np.array_equal(before, after)
    assert share_equal_constants(model) == 0


def _qdq_ir(tmp_path):
    """onnxruntime's QDQ shape (int8 weights, int32 biases, a depthwise conv, an asymmetric conv)
    as OpenVINO reads it: the graph openvino-int8 compiles."""
    import onnx
    from qdq_graphs import qdq_network

    path = tmp_path / "qdq.onnx"
    onnx.save(qdq_network(np.random.default_rng(0), channels_in=3, biases=True), str(path))
    return lambda: ov.convert_model(str(path))


def _layers(model, kind: str) -> int:
    return sum(op.get_type_name() == kind for op in model.get_ordered_ops())


@pytest.mark.parametrize("int8_kernels", [True, False], ids=["integer-kernels", "simulated-f32"])
def test_slimmed_qdq_ir_computes_the_same_in_fewer_smaller_layers(tmp_path, int8_kernels):
    from gfn_edge.export.targets.openvino_constants import slim_constants
    from gfn_edge.export.targets.openvino_ir import compact_xml
    from gfn_edge.runtimes.openvino_backend import SIMULATED_INT8

    pytest.importorskip("onnx", reason="asset missing: onnx (the training side)")
    fresh = _qdq_ir(tmp_path)
    config = {"INFERENCE_PRECISION_HINT": "f32", **({} if int8_kernels else SIMULATED_INT8)}
    x = np.random.default_rng(1).uniform(-2, 2, size=(4, 1, 3, 8, 8)).astype(np.float32)
    core = ov.Core()

    def saved(model, name):
        xml = tmp_path / f"{name}.xml"
        ov.save_model(model, str(xml), compress_to_fp16=False)
        compact_xml(xml)
        return xml

    before_xml = saved(fresh(), "before")
    model = fresh()
    assert _layers(model, "Reshape") == 3  # the depthwise weights' and the two biases' layouts
    done = slim_constants(model)
    assert done["integer_biases_folded"] == 2 and done["reshapes_folded"] == 3 and done["scalar_ranges"] > 0
    assert _layers(model, "Reshape") == 0
    # the int8 weights stay int8 and are dequantised where they are used; the biases are FP32 now
    constants = [op for op in model.get_ordered_ops() if op.get_type_name() == "Constant"]
    assert sum(c.get_element_type() == ov.Type.i8 for c in constants) == 6  # 5 convolutions' weights + conv D's zero point
    assert not any(c.get_element_type() == ov.Type.i32 for c in constants)
    after_xml = saved(model, "after")
    size = lambda xml: xml.stat().st_size + xml.with_suffix(".bin").stat().st_size  # noqa: E731
    assert size(after_xml) < 0.85 * size(before_xml)
    before = core.compile_model(str(before_xml), "CPU", config)
    after = core.compile_model(str(after_xml), "CPU", config)
    for sample in x:
        assert np.array_equal(before(sample)[0], after(sample)[0])
    assert slim_constants(model) == {"integer_biases_folded": 0, "reshapes_folded": 0, "scalar_ranges": 0, "constants_shared": 0}
