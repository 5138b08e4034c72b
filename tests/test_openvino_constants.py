"""export/targets/openvino_ir.share_equal_constants: equal small constants read once, outputs unchanged."""

from __future__ import annotations

import numpy as np
import pytest

ov = pytest.importorskip("openvino", reason="asset missing: openvino")

from gfn_edge.export.targets.openvino_ir import share_equal_constants  # noqa: E402


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
