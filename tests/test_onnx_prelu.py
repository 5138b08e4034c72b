"""export/onnx_prelu.py: onnxruntime's files get PRelu as Relu + Min * slope, output for output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="asset missing: onnx (the training side: pip install 'gfn-edge[export]')")
ort = pytest.importorskip("onnxruntime", reason="asset missing: onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from gfn_edge.export.onnx_prelu import decompose_prelu  # noqa: E402


def _model(path: Path, slopes: list[np.ndarray]) -> Path:
    """input -> PRelu(slope 0) -> Conv 1x1 -> PRelu(slope 1) -> output, dynamic batch."""
    c = slopes[0].shape[0]
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(s.astype(np.float32), f"slope{i}") for i, s in enumerate(slopes)]
    inits.append(numpy_helper.from_array(rng.normal(size=(c, c, 1, 1)).astype(np.float32), "w"))
    nodes = [
        helper.make_node("PRelu", ["input", "slope0"], ["a"], name="act0"),
        helper.make_node("Conv", ["a", "w"], ["b"], name="conv"),
        helper.make_node("PRelu", ["b", "slope1"], ["output"], name="act1"),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", c, 6, 5]) for n in ("input", "output")]
    graph = helper.make_graph(nodes, "prelus", [io[0]], [io[1]], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_prelu_is_rewritten_output_for_output(tmp_path: Path):
    c = 4
    # per-channel slopes of every kind a trained PReLU holds: small, zero, negative, above one
    slopes = [np.array([0.25, 0.0, -0.5, 1.5]).reshape(c, 1, 1), np.array([0.1, 0.2, 0.3, 3.0]).reshape(c, 1, 1)]
    path = _model(tmp_path / "m.onnx", slopes)
    x = np.random.default_rng(1).normal(size=(2, c, 6, 5)).astype(np.float32)
    x[0, :, 0, :] = 0.0  # exact zeros
    x[1, 0, 0, 0], x[1, 1, 0, 0] = 1e30, -1e30  # large values stay what PRelu makes of them
    before = _run(path, x)
    assert decompose_prelu(path) == 2
    after = _run(path, x)
    assert np.array_equal(before, after)  # bit for bit (a zero's sign aside, which equality ignores)
    graph = onnx.load(str(path)).graph
    ops = [n.op_type for n in graph.node]
    assert "PRelu" not in ops and ops.count("Relu") == ops.count("Min") == 2
    assert [o.name for o in graph.output] == ["output"] and "a" in {t for n in graph.node for t in n.output}  # tensor names kept
    assert decompose_prelu(path) == 0  # nothing left to rewrite: the file is left alone
    assert np.array_equal(_run(path, x), before)
