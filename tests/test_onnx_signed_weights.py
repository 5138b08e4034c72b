"""onnxruntime on x86 with VNNI loads onnx-int8's uint8 weights back on int8 (runtimes/onnx_signed_weights.py):
only weights and their zero points change, byte for byte in place, and the model computes the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gfn_edge.errors import InvalidTypeError
from gfn_edge.runtimes.onnx_signed_weights import WireFormatError, signed_weights, u8s8_kernels_exact

onnx = pytest.importorskip("onnx", reason="asset missing: onnx (pip install 'gfn-edge[export]')")
ort = pytest.importorskip("onnxruntime", reason="asset missing: onnxruntime (pip install 'gfn-edge[export]')")
from bare_bundles import int8_manifest  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from qdq_graphs import qdq_network  # noqa: E402

from gfn_edge.export.int8.unsigned_weights import store_weights_unsigned  # noqa: E402


@pytest.fixture(scope="module")
def unsigned_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("signed") / "model.onnx"
    onnx.save(qdq_network(np.random.default_rng(0), channels_in=3), str(path))  # uint8 activations, zero point 128
    assert store_weights_unsigned(path) == 2
    return path


def _types(data: bytes) -> dict[str, int]:
    return {i.name: i.data_type for i in onnx.load_from_string(data).graph.initializer}


def _run(source: str | bytes, x: np.ndarray, fused: bool) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    if not fused:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_weights_go_back_to_int8_in_place_and_nothing_else_changes(unsigned_model):
    data = unsigned_model.read_bytes()
    before = _types(data)
    signed, count = signed_weights(data)
    assert count == 2 and len(signed) == len(data)
    after = _types(signed)
    changed = {name for name in before if before[name] != after[name]}
    weights = {n for n in before if n in ("a_w", "b_w") or n.startswith("wz_shared_u8")}  # each layer's levels and its own zero point
    assert changed == weights and all(after[n] == TensorProto.INT8 for n in changed)
    assert after["z"] == TensorProto.UINT8  # the activations' zero point, read by QuantizeLinear too
    assert after["dw_w"] == after["c_w"] == after["d_w"] == TensorProto.INT8  # depthwise, weight-only, asymmetric: never uint8
    original, loaded = onnx.load_from_string(data), onnx.load_from_string(signed)
    levels = {i.name: numpy_helper.to_array(i).astype(np.int16) for i in original.graph.initializer}
    for init in loaded.graph.initializer:
        if init.name in changed:
            np.testing.assert_array_equal(numpy_helper.to_array(init).astype(np.int16), levels[init.name] - 128)
    assert [n.SerializeToString() for n in original.graph.node] == [n.SerializeToString() for n in loaded.graph.node]
    assert signed_weights(signed) == (signed, 0)  # nothing left to change


@pytest.mark.parametrize("fused", [False, True], ids=["qdq-arithmetic", "integer-kernels"])
def test_the_model_computes_the_same(unsigned_model, fused):
    x = np.random.default_rng(1).uniform(-3, 3, (1, 3, 8, 8)).astype(np.float32)
    signed, _ = signed_weights(unsigned_model.read_bytes())
    np.testing.assert_array_equal(_run(signed, x, fused), _run(str(unsigned_model), x, fused))


def _dq_model(weight_zero: np.ndarray, shared_with_activation: bool, second_weight: bool = False) -> bytes:
    """x -> QDQ -> conv with uint8 weights; the weight's zero point optionally also the activation's."""
    zero_name = "z" if shared_with_activation else "wz"
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "s"),
        numpy_helper.from_array(np.array(128, np.uint8), "z"),
        numpy_helper.from_array(np.full(4, 129, np.uint8).reshape(4, 1, 1, 1).repeat(4, 1), "w"),
        numpy_helper.from_array(np.array(0.01, np.float32), "ws"),
    ]
    if not shared_with_activation:
        inits.append(numpy_helper.from_array(weight_zero, "wz"))
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["x0"]),
        helper.make_node("DequantizeLinear", ["w", "ws", zero_name], ["wf"]),
        helper.make_node("Conv", ["x0", "wf"], ["y"]),
    ]
    if second_weight:  # a second layer reading the same zero point
        inits.append(numpy_helper.from_array(np.full((4, 4, 1, 1), 3, np.uint8), "w2"))
        nodes += [helper.make_node("DequantizeLinear", ["w2", "ws", zero_name], ["wf2"]), helper.make_node("Conv", ["y", "wf2"], ["y2"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4, 4])],
        [helper.make_tensor_value_info("y2" if second_weight else "y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_a_zero_point_the_activations_share_is_left_alone():
    data = _dq_model(np.array(128, np.uint8), shared_with_activation=True)
    assert signed_weights(data) == (data, 0)


def test_weights_that_share_a_zero_point_change_together():
    data = _dq_model(np.array(128, np.uint8), shared_with_activation=False, second_weight=True)
    signed, count = signed_weights(data)
    assert count == 2 and {k: v for k, v in _types(signed).items() if k in ("w", "w2", "wz")} == dict.fromkeys(("w", "w2", "wz"), TensorProto.INT8)
    x = np.random.default_rng(2).uniform(-3, 3, (1, 4, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(_run(signed, x, True), _run(data, x, True))


def test_a_weight_that_cannot_change_holds_back_the_weights_sharing_its_zero_point():
    """The second weight is also read by a node that is no DequantizeLinear: it stays uint8, so the
    zero point it shares stays 128, so the first weight stays uint8 too."""
    model = onnx.load_from_string(_dq_model(np.array(128, np.uint8), shared_with_activation=False, second_weight=True))
    model.graph.node.append(helper.make_node("Identity", ["w2"], ["w2_copy"]))
    model.graph.output.append(helper.make_tensor_value_info("w2_copy", TensorProto.UINT8, None))
    data = model.SerializeToString()
    assert signed_weights(data) == (data, 0)


def test_asymmetric_uint8_weights_stay_uint8():
    data = _dq_model(np.array(120, np.uint8), shared_with_activation=False)
    assert signed_weights(data) == (data, 0)


def test_a_model_with_external_data_is_loaded_as_shipped(tmp_path):
    """Loaded from memory, onnxruntime could not find the file beside it: one tensor outside is enough to leave the model alone."""
    from onnx.external_data_helper import set_external_data, write_external_data_tensors

    data = _dq_model(np.array(128, np.uint8), shared_with_activation=False)
    assert signed_weights(data)[1] == 1  # the weight qualifies on its own
    model = onnx.load_from_string(data)
    set_external_data(next(i for i in model.graph.initializer if i.name == "s"), location="m.data")  # the activations' scale
    write_external_data_tensors(model, str(tmp_path))
    onnx.save(model, str(tmp_path / "m.onnx"))
    data = (tmp_path / "m.onnx").read_bytes()
    assert signed_weights(data) == (data, 0)


def test_a_model_with_training_graphs_is_loaded_as_shipped():
    """Graphs beside the main one may read its initializers: the walker does not follow them, so it changes nothing."""
    data = _dq_model(np.array(128, np.uint8), shared_with_activation=False)
    model = onnx.load_from_string(data)
    model.training_info.add()
    data = model.SerializeToString()
    assert signed_weights(data) == (data, 0)


def test_bytes_that_are_not_a_model_are_refused():
    with pytest.raises(WireFormatError):
        signed_weights(b"\x0a\xff\xff\xff\xff\x0f")  # a length past the end
    with pytest.raises(WireFormatError, match="graph"):
        signed_weights(b"")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_damage_is_a_wire_format_error_or_the_same_length(unsigned_model, data):
    """Cut or flipped anywhere, the walker either refuses the bytes or returns as many as it was given."""
    model = unsigned_model.read_bytes()
    cut = data.draw(st.integers(0, len(model)))
    damaged = bytearray(model[:cut])
    if damaged and data.draw(st.booleans()):
        damaged[data.draw(st.integers(0, len(damaged) - 1))] ^= data.draw(st.integers(1, 255))
    try:
        out, _ = signed_weights(bytes(damaged))
    except WireFormatError:
        return
    assert len(out) == len(damaged)


def test_the_rule_loads_int8_weights_only_on_x86_with_vnni():
    assert u8s8_kernels_exact("x86_64", vnni=True)
    assert not u8s8_kernels_exact("x86_64", vnni=False)  # AVX2: the u8s8 kernels saturate
    assert not u8s8_kernels_exact("aarch64", vnni=True)  # ARM: runs as shipped (verified in emulation)


def _open(path: Path, **options):
    from gfn_edge.runtimes import open_model_file

    manifest = int8_manifest(path, "onnx-int8", "x", (1, 3, 8, 8), "out")
    return open_model_file(path, manifest, backend="onnxruntime", threads=1, **options)


def test_the_backend_applies_the_rule_and_says_so(unsigned_model):
    x = np.random.default_rng(3).uniform(-3, 3, (1, 8, 8, 3)).astype(np.float32)  # NHWC, as pictures come
    auto, shipped, forced = _open(unsigned_model), _open(unsigned_model, signed_weights=False), _open(unsigned_model, signed_weights=True)
    assert auto.describe()["signed_weights"] == (2 if u8s8_kernels_exact() else 0)
    assert shipped.describe()["signed_weights"] == 0 and forced.describe()["signed_weights"] == 2
    np.testing.assert_array_equal(auto.run(x)["embedding"], shipped.run(x)["embedding"])
    with pytest.raises(InvalidTypeError, match="signed_weights"):
        _open(unsigned_model, signed_weights="yes")


def test_a_damaged_int8_model_is_the_sdks_error_whatever_the_rule(unsigned_model, tmp_path):
    """A truncated file the walker cannot follow goes to onnxruntime as it is, which names the problem."""
    from gfn_edge.errors import ArtifactError

    damaged = tmp_path / "model.onnx"
    damaged.write_bytes(unsigned_model.read_bytes()[: unsigned_model.stat().st_size // 2])
    for signed in (True, False):
        with pytest.raises(ArtifactError, match="onnxruntime cannot load"):
            _open(damaged, signed_weights=signed)
