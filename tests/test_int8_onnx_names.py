"""The quantiser's own names are made short (export/int8/onnx_names.py).

onnxruntime's QDQ quantiser adds five or six long names per quantised tensor; on the small students
they outweighed the weights. These tests check, on a real QDQ quantisation of a small network,
that shortening them changes nothing a runtime computes, keeps every name of the float graph (the
float-vs-INT8 debugger pairs tensors by them) and the graph's inputs and outputs, and makes the
file smaller.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="asset missing: torch (the training side: pip install 'gfn-edge[export]')")
onnx = pytest.importorskip("onnx", reason="asset missing: onnx (pip install 'gfn-edge[export]')")
ort = pytest.importorskip("onnxruntime", reason="asset missing: onnxruntime (pip install 'gfn-edge[export]')")
from torch import nn  # noqa: E402

from gfn_edge.export.int8.onnx_names import float_graph_names, shorten_added_names  # noqa: E402


class Blocks(nn.Module):
    """A few named blocks, as an exporter names them (``/blocks/blocks.1/conv/Conv``)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.Sequential(*(nn.Sequential(nn.Conv2d(8 if i else 3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()) for i in range(4)))
        self.head = nn.Linear(8, 16)

    def forward(self, x):
        return self.head(self.blocks(x).mean(dim=(2, 3)))


def _quantised(tmp_path):
    from onnxruntime import quantization as q

    from gfn_edge.export.int8.ort_calibration import CalibrationReader
    from gfn_edge.export.int8.unsigned_weights import store_weights_unsigned
    from gfn_edge.export.targets import onnx_int8

    x = np.random.default_rng(0).uniform(-1, 1, (8, 3, 16, 16)).astype(np.float32)
    raw = tmp_path / "float.onnx"
    torch.onnx.export(Blocks().eval(), (torch.from_numpy(x[:1]),), str(raw), input_names=["input"], output_names=["embedding"], dynamo=False, opset_version=17)
    dst = tmp_path / "int8.onnx"
    q.quantize_static(str(raw), str(dst), CalibrationReader(x.transpose(0, 2, 3, 1), "input"), **onnx_int8.qdq_settings(q))
    store_weights_unsigned(dst)
    return raw, dst, x


def _run(path, x) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": x[i : i + 1]})[0] for i in range(len(x))])


def test_short_names_compute_the_same_keep_the_float_names_and_shrink_the_file(tmp_path):
    raw, dst, x = _quantised(tmp_path)
    before = _run(dst, x)
    long_size = dst.stat().st_size
    keep = float_graph_names(onnx.load(str(raw)).graph)
    added_before = float_graph_names(onnx.load(str(dst)).graph) - keep
    float_names_quantised = {n.input[0] for n in onnx.load(str(dst)).graph.node if n.op_type == "QuantizeLinear"} & keep
    assert any("QuantizeLinear" in n or n.endswith("_scale") for n in added_before), "the quantiser added no names of its own?"

    saved = shorten_added_names(dst, keep)
    graph = onnx.load(str(dst)).graph
    onnx.checker.check_model(onnx.load(str(dst)))
    assert saved > 0 and dst.stat().st_size == long_size - saved
    assert np.array_equal(_run(dst, x), before), "renaming changed what onnxruntime computes"
    names = float_graph_names(graph)
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["embedding"]
    # every name the quantiser made is now short; every float tensor a quantiser reads keeps its name
    added = names - keep
    assert added and all(len(n) <= 6 and n.startswith("q") for n in added), sorted(added)[:5]

    def read_by_quantisers(g) -> set[str]:
        return {n.input[0] for n in g.node if n.op_type == "QuantizeLinear"} & keep

    assert read_by_quantisers(graph) == float_names_quantised and len(float_names_quantised) >= 5


def test_the_debugger_still_pairs_every_quantised_tensor_with_its_float_twin(tmp_path):
    from gfn_edge.export.int8_debug.debugger import onnx_points

    raw, dst, _ = _quantised(tmp_path)
    long_points, long_read = onnx_points(raw, dst)
    shorten_added_names(dst, float_graph_names(onnx.load(str(raw)).graph))
    points, read = onnx_points(raw, dst)
    assert [p.name for p in points] == [p.name for p in long_points] and len(points) >= 5
    quantised = [p.name for p in points if p.scale is not None]
    assert quantised and all(read[t] != long_read[t] and len(read[t]) <= 6 for t in quantised)


def test_a_float_name_of_the_short_form_is_not_taken_twice(tmp_path):
    """A float graph may already hold a tensor called ``q0``: the added names go round it."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Relu", ["x"], ["q0"], name="relu"),
        helper.make_node("Mul", ["q0", "a_very_long_added_constant_name"], ["y_added_by_a_tool"], name="an_added_node"),
        helper.make_node("Identity", ["y_added_by_a_tool"], ["y"], name="out"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(np.full((1, 2), 2.0, np.float32), "a_very_long_added_constant_name")],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    shorten_added_names(path, {"x", "q0", "relu", "out", "y"})
    renamed = float_graph_names(onnx.load(str(path)).graph)
    assert "q0" in renamed and len(renamed) == 8 and "a_very_long_added_constant_name" not in renamed
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": np.array([[-1.0, 3.0]], np.float32)})[0]
    assert np.array_equal(got, [[0.0, 6.0]])
