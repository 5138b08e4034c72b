"""The outputs are handed over in float, from the output layers on (export/int8/float_outputs.py).

A detector's boxes and landmarks are one concatenation of several levels whose values differ by
orders of magnitude; a single uint8 range over the concatenation leaves the fine level a few steps,
and even each level's own uint8 range costs the coarse level pixels of landmark. These tests check
which nodes are left in float (in the ONNX graph, in the TFLite model and in the int8 simulation the
remedies are chosen on, alike) and that on onnxruntime this is what keeps the levels' values.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="asset missing: torch (the training side: pip install 'gfn-edge[export]')")
from torch import nn  # noqa: E402

from gfn_edge.export.int8.float_outputs import drop_output_quantisers, onnx_output_chain  # noqa: E402
from gfn_edge.export.int8.graph import trace_folded  # noqa: E402
from gfn_edge.export.int8.simulate import quantised_outputs  # noqa: E402


class TwoLevels(nn.Module):
    """Two heads a hundred times apart in scale, concatenated (like RetinaFace's levels), and a
    softmax over a third."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fine = nn.Conv2d(3, 4, 3, padding=1)
        self.coarse = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.cls = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.coarse.weight.mul_(100.0)

    def forward(self, x):
        fine = self.fine(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1, 2)
        coarse = self.coarse(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1, 2)
        scores = torch.softmax(self.cls(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1, 2), dim=-1)
        return torch.cat([fine, coarse], dim=1), scores


def _inputs(n: int = 8) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (n, 3, 8, 8)).astype(np.float32)


def test_the_simulation_leaves_the_output_layers_and_what_follows_in_float():
    x = torch.from_numpy(_inputs())
    gm = trace_folded(TwoLevels().eval(), x)
    placed = quantised_outputs(gm)
    handed_over = [n for n in gm.graph.nodes if any(u.op == "output" for u in n.users)]
    assert {str(n.target) for n in handed_over} >= {str(torch.cat), str(torch.softmax)}
    assert not set(handed_over) & set(placed), "an output's concatenation or softmax is quantised"
    # nor are the heads that compute them (their weights and inputs are), nor the reshapes between
    assert not {"fine", "coarse", "cls"} & {str(n.target) for n in placed}
    assert placed == [], [n.name for n in placed]


def _export(model, x, path) -> None:
    torch.onnx.export(model, (torch.from_numpy(x[:1]),), str(path), input_names=["input"], output_names=["points", "scores"], dynamo=False, opset_version=17)


def test_the_onnx_output_chain_is_every_pass_through_node_after_the_heads(tmp_path):
    import onnx

    raw = tmp_path / "raw.onnx"
    _export(TwoLevels().eval(), _inputs(), raw)
    graph = onnx.load(str(raw)).graph
    chain = onnx_output_chain(graph)
    kinds = {n.name: n.op_type for n in graph.node}
    assert {kinds[n] for n in chain} >= {"Concat", "Softmax", "Reshape", "Transpose"}
    assert not any(kinds[n] == "Conv" for n in chain)
    # three heads, each through a transpose and a reshape; the levels' concatenation; the softmax
    assert sum(kinds[n] == "Transpose" for n in chain) == 3 and sum(kinds[n] == "Softmax" for n in chain) == 1


def test_onnxruntime_keeps_every_level_when_the_heads_hand_over_in_float(tmp_path):
    """Requantised after the concatenation, the fine level has a few steps of the coarse one's
    range; requantised after each head, each level a few of its own; handed over in float, the
    error is that of the heads' int8 inputs and weights only."""
    pytest.importorskip("onnxruntime", reason="asset missing: onnxruntime (pip install 'gfn-edge[export]')")
    import onnx
    import onnxruntime as ort
    from onnxruntime import quantization as q

    from gfn_edge.export.int8.ort_calibration import CalibrationReader
    from gfn_edge.export.int8.unsigned_weights import store_weights_unsigned
    from gfn_edge.export.targets import onnx_int8

    model, x = TwoLevels().eval(), _inputs()
    raw = tmp_path / "raw.onnx"
    _export(model, x, raw)
    chain = onnx_output_chain(onnx.load(str(raw)).graph)
    with torch.no_grad():
        want = model(torch.from_numpy(x))[0].numpy()

    def errors(exclude: list[str], drop: bool) -> tuple[float, float]:
        dst = tmp_path / f"int8-{len(exclude)}-{drop}.onnx"
        q.quantize_static(str(raw), str(dst), CalibrationReader(x.transpose(0, 2, 3, 1), "input"), **onnx_int8.qdq_settings(q), nodes_to_exclude=exclude)
        if drop:
            quantised = onnx.load(str(dst))
            assert drop_output_quantisers(quantised) == 3  # one requantisation per head
            onnx.save(quantised, str(dst))
        store_weights_unsigned(dst)  # as onnx-int8 writes them (u8u8 kernels: no saturation on AVX2)
        session = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
        got = np.concatenate([session.run(["points"], {"input": x[i : i + 1]})[0] for i in range(len(x))])
        fine = 8 * 8 * 2  # the fine level's rows come first
        rel = lambda a, b: float(np.abs(a - b).max() / np.abs(b).max())  # noqa: E731
        return rel(got[:, :fine], want[:, :fine]), rel(got[:, fine:], want[:, fine:])

    shared, own, handed = errors([], False), errors(chain, False), errors(chain, True)
    assert shared[0] > 0.05, f"one range over both levels should cost the fine one several percent: {shared}"
    assert own[0] < shared[0] / 10, f"each level on its own range keeps the fine one: {own} vs {shared}"
    assert handed[0] <= own[0] and handed[1] < own[1] * 0.8, f"handed over in float the levels lose less: {handed} vs {own}"


def test_only_requantisations_before_the_output_chain_are_dropped(tmp_path):
    """A layer whose result also feeds another layer keeps its quantiser (that layer's integer
    kernel needs it); a weight's dequantiser is never touched."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((3, 3, 1, 1), np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["y"], name="body"),
        helper.make_node("Conv", ["y", "w"], ["z"], name="head"),
        helper.make_node("Flatten", ["z"], ["flat"], name="flatten"),
        helper.make_node("Flatten", ["y"], ["side"], name="flatten_body"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("flat", TensorProto.FLOAT, None), helper.make_tensor_value_info("side", TensorProto.FLOAT, None)],
        [w],
    )
    assert onnx_output_chain(graph) == ["flatten", "flatten_body"]
    pytest.importorskip("onnxruntime", reason="asset missing: onnxruntime (pip install 'gfn-edge[export]')")
    import onnx
    import onnxruntime as ort
    from onnxruntime import quantization as q

    from gfn_edge.export.int8.ort_calibration import CalibrationReader
    from gfn_edge.export.targets import onnx_int8

    raw, dst = tmp_path / "raw.onnx", tmp_path / "int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(raw))
    x = np.random.default_rng(0).uniform(0, 1, (4, 4, 4, 3)).astype(np.float32)
    q.quantize_static(str(raw), str(dst), CalibrationReader(x, "x"), **onnx_int8.qdq_settings(q), nodes_to_exclude=["flatten", "flatten_body"])
    model = onnx.load(str(dst))

    def dequantisers(m) -> tuple[int, int]:
        weights = {t.name for t in m.graph.initializer}
        dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
        return sum(n.input[0] in weights for n in dq), sum(n.input[0] not in weights for n in dq)

    weight_dq, act_dq = dequantisers(model)
    assert drop_output_quantisers(model) == 1  # the head's; the body's also feeds the head
    assert dequantisers(model) == (weight_dq, act_dq - 1)
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    flat, side = session.run(None, {"x": x[:1].transpose(0, 3, 1, 2)})
    assert np.allclose(flat.reshape(-1), np.tile(side.reshape(3, -1).sum(0), 3), rtol=0.02, atol=0.05)


class ShapeReadingHead(nn.Module):
    """RetinaFace's head: ``out.view(out.shape[0], -1, 10)`` reads its own tensor's shape."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        out = self.head(torch.relu(self.conv(x))).permute(0, 2, 3, 1).contiguous()
        return out.view(out.shape[0], -1, 2)


def test_reading_a_shape_does_not_keep_a_head_from_handing_over():
    from gfn_edge.export.int8.simulate import output_layers

    gm = trace_folded(ShapeReadingHead().eval(), torch.from_numpy(_inputs(2)))
    assert {str(n.target) for n in output_layers(gm)} == {"head"}
    assert "head" not in {str(n.target) for n in quantised_outputs(gm)}
    assert "relu" in {str(n.target) if n.op == "call_module" else n.name for n in quantised_outputs(gm)}
