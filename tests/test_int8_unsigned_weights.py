"""onnx-int8 stores its int8 weights as uint8 + 128 where they feed an integer kernel
(export/int8/unsigned_weights.py): the dequantised weights stay bit-identical, onnxruntime picks its
exact u8u8 kernels, and nothing else in the graph changes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gfn_edge.export.int8.unsigned_weights import ZERO_POINT, store_weights_unsigned, to_uint8

onnx = pytest.importorskip("onnx", reason="asset missing: onnx (pip install 'gfn-edge[export]')")
ort = pytest.importorskip("onnxruntime", reason="asset missing: onnxruntime (pip install 'gfn-edge[export]')")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


@given(st.lists(st.integers(-127, 127), min_size=1, max_size=64))
def test_uint8_storage_keeps_every_symmetric_level(levels):
    q = np.array(levels, np.int8)
    stored = to_uint8(q)
    assert stored.dtype == np.uint8 and np.array_equal(stored.astype(np.int16) - ZERO_POINT, q.astype(np.int16))


def test_only_int8_levels_are_converted():
    with pytest.raises(TypeError, match="int8"):
        to_uint8(np.zeros(3, np.uint8))


def _graph(rng: np.random.Generator):
    """input -> QDQ -> conv A (shares its weight zero point with conv B) -> QDQ -> depthwise conv ->
    QDQ -> conv B -> conv C (weight-only: its input is not dequantised) -> asymmetric conv D."""
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "s"),
        numpy_helper.from_array(np.array(128, np.uint8), "z"),
        numpy_helper.from_array(np.zeros(8, np.int8), "wz_shared"),
        numpy_helper.from_array(np.full(8, 0.01, np.float32), "ws"),
    ]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]), helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["x0"])]

    def conv(name: str, src: str, shape, groups: int = 1, dequantised_input: bool = True, zero: str = "wz_shared", zero_value=None):
        levels = rng.integers(-127, 128, shape).astype(np.int8)
        inits.append(numpy_helper.from_array(levels, f"{name}_w"))
        if zero_value is not None:
            inits.append(numpy_helper.from_array(zero_value, zero))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_w", "ws", zero], [f"{name}_wf"], axis=0))
        nodes.append(helper.make_node("Conv", [src, f"{name}_wf"], [f"{name}_y"], group=groups, pads=[1, 1, 1, 1] if shape[-1] == 3 else [0] * 4))
        if not dequantised_input:
            return f"{name}_y"
        nodes.append(helper.make_node("QuantizeLinear", [f"{name}_y", "s", "z"], [f"{name}_q"]))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", "s", "z"], [f"{name}_out"]))
        return f"{name}_out"

    a = conv("a", "x0", (8, 4, 3, 3))
    dw = conv("dw", a, (8, 1, 3, 3), groups=8)
    b = conv("b", dw, (8, 8, 1, 1), dequantised_input=False)
    c = conv("c", b, (8, 8, 1, 1), dequantised_input=False)  # reads conv B's float output
    d = conv("d", "x0", (8, 4, 1, 1), zero="wz_asym", zero_value=np.full(8, 3, np.int8))
    nodes.append(helper.make_node("Add", [c, d], ["out"]))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 8, 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_weights_of_integer_kernels_become_uint8_and_the_model_computes_the_same(tmp_path):
    path = tmp_path / "m.onnx"
    model = _graph(np.random.default_rng(0))
    onnx.save(model, str(path))
    x = np.random.default_rng(1).uniform(-1, 1, (1, 4, 8, 8)).astype(np.float32)

    def run():
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # exact QDQ arithmetic
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    before = run()
    assert store_weights_unsigned(path) == 2  # conv A and conv B; not the depthwise, weight-only or asymmetric ones
    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    dq = {n.output[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    dtypes = {name: inits[dq[f"{name}_wf"].input[0]].dtype for name in ["a", "dw", "b", "c", "d"]}
    assert dtypes == {"a": np.uint8, "dw": np.int8, "b": np.uint8, "c": np.int8, "d": np.int8}
    for name in "ab":  # each its own zero point: the shared one still serves the layers left as int8
        assert inits[dq[f"{name}_wf"].input[2]].dtype == np.uint8 and (inits[dq[f"{name}_wf"].input[2]] == ZERO_POINT).all()
    assert inits["wz_shared"].dtype == np.int8
    np.testing.assert_array_equal(run(), before)  # bit-identical dequantised weights
    assert store_weights_unsigned(path) == 0  # converted once
