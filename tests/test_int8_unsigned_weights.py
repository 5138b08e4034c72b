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
from onnx import numpy_helper  # noqa: E402
from qdq_graphs import qdq_network  # noqa: E402


@given(st.lists(st.integers(-127, 127), min_size=1, max_size=64))
def test_uint8_storage_keeps_every_symmetric_level(levels):
    q = np.array(levels, np.int8)
    stored = to_uint8(q)
    assert stored.dtype == np.uint8 and np.array_equal(stored.astype(np.int16) - ZERO_POINT, q.astype(np.int16))


def test_only_int8_levels_are_converted():
    with pytest.raises(TypeError, match="int8"):
        to_uint8(np.zeros(3, np.uint8))


def test_weights_of_integer_kernels_become_uint8_and_the_model_computes_the_same(tmp_path):
    path = tmp_path / "m.onnx"
    model = qdq_network(np.random.default_rng(0))
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
