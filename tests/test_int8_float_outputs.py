"""The outputs are handed over in float (export/int8/float_outputs.py).

A detector's boxes and landmarks are one concatenation of several levels whose values differ by
orders of magnitude; a single uint8 range over the concatenation leaves the fine level a few steps.
These tests check which nodes are left in float (in the ONNX graph and in the int8 simulation the
remedies are chosen on, alike) and that on onnxruntime this is what keeps the fine level's values.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="asset missing: torch (the training side: pip install 'gfn-edge[export]')")
from torch import nn  # noqa: E402

from gfn_edge.export.int8.float_outputs import onnx_output_nodes  # noqa: E402
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


def test_the_simulation_leaves_the_output_concatenation_and_softmax_in_float():
    x = torch.from_numpy(_inputs())
    gm = trace_folded(TwoLevels().eval(), x)
    placed = quantised_outputs(gm)
    handed_over = [n for n in gm.graph.nodes if any(u.op == "output" for u in n.users)]
    assert {str(n.target) for n in handed_over} >= {str(torch.cat), str(torch.softmax)}
    assert not set(handed_over) & set(placed), "an output's concatenation or softmax is quantised"
    # the heads themselves are: each level on its own range
    assert {"fine", "coarse", "cls"} <= {str(n.target) for n in placed}


def test_onnxruntime_keeps_the_fine_level_when_the_outputs_stay_in_float(tmp_path):
    pytest.importorskip("onnxruntime", reason="asset missing: onnxruntime (pip install 'gfn-edge[export]')")
    import onnx
    import onnxruntime as ort
    from onnxruntime import quantization as q

    from gfn_edge.export.int8.ort_calibration import CalibrationReader
    from gfn_edge.export.int8.unsigned_weights import store_weights_unsigned
    from gfn_edge.export.targets import onnx_int8

    model, x = TwoLevels().eval(), _inputs()
    raw = tmp_path / "raw.onnx"
    torch.onnx.export(model, (torch.from_numpy(x[:1]),), str(raw), input_names=["input"], output_names=["points", "scores"], dynamo=False, opset_version=17)
    handing_over = onnx_output_nodes(onnx.load(str(raw)).graph)
    assert len(handing_over) == 2, handing_over

    def fine_error(exclude: list[str]) -> float:
        dst = tmp_path / f"int8-{len(exclude)}.onnx"
        q.quantize_static(str(raw), str(dst), CalibrationReader(x.transpose(0, 2, 3, 1), "input"), **onnx_int8.qdq_settings(q), nodes_to_exclude=exclude)
        store_weights_unsigned(dst)  # as onnx-int8 writes them (u8u8 kernels: no saturation on AVX2)
        session = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
        got = np.concatenate([session.run(["points"], {"input": x[i : i + 1]})[0] for i in range(len(x))])
        with torch.no_grad():
            want = model(torch.from_numpy(x))[0].numpy()
        fine = 8 * 8 * 2  # the fine level's rows come first
        return float(np.abs(got[:, :fine] - want[:, :fine]).max() / np.abs(want[:, :fine]).max())

    shared, own = fine_error([]), fine_error(handing_over)
    assert shared > 0.05, f"one range over both levels should cost the fine one several percent: {shared:.4f}"
    assert own < shared / 10, f"in float the fine level keeps its own range: {own:.4f} vs {shared:.4f}"


def test_a_convolution_that_produces_an_output_keeps_its_integer_kernel(tmp_path):
    """Only nodes that move or normalise values are left in float: an output convolution's
    quantiser is what lets the backend fuse it."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="head"), helper.make_node("Flatten", ["y"], ["flat"], name="flatten")]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None), helper.make_tensor_value_info("flat", TensorProto.FLOAT, None)],
        [w],
    )
    assert onnx_output_nodes(graph) == ["flatten"]
