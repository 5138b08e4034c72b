"""Small QDQ graphs in the shape onnxruntime's quantiser writes, built by the INT8 storage tests."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def qdq_network(rng: np.random.Generator, channels_in: int = 4, biases: bool = False):
    """input -> QDQ -> conv A (shares its weight zero point with conv B) -> QDQ -> depthwise conv ->
    QDQ -> conv B -> conv C (weight-only: its input is not dequantised) -> asymmetric conv D.
    ``biases``: conv A and the depthwise conv get int32 biases on the input scale x weight scale
    grid, dequantised as onnxruntime's quantiser writes them."""
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
        conv_inputs = [src, f"{name}_wf"]
        if biases and dequantised_input and zero_value is None:
            inits.append(numpy_helper.from_array(rng.integers(-3000, 3000, shape[0]).astype(np.int32), f"{name}_b"))
            inits.append(numpy_helper.from_array(np.full(shape[0], 0.02 * 0.01, np.float32), f"{name}_bs"))
            nodes.append(helper.make_node("DequantizeLinear", [f"{name}_b", f"{name}_bs"], [f"{name}_bf"], axis=0))
            conv_inputs.append(f"{name}_bf")
        nodes.append(helper.make_node("Conv", conv_inputs, [f"{name}_y"], group=groups, pads=[1, 1, 1, 1] if shape[-1] == 3 else [0] * 4))
        if not dequantised_input:
            return f"{name}_y"
        nodes.append(helper.make_node("QuantizeLinear", [f"{name}_y", "s", "z"], [f"{name}_q"]))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", "s", "z"], [f"{name}_out"]))
        return f"{name}_out"

    a = conv("a", "x0", (8, channels_in, 3, 3))
    dw = conv("dw", a, (8, 1, 3, 3), groups=8)
    b = conv("b", dw, (8, 8, 1, 1), dequantised_input=False)
    c = conv("c", b, (8, 8, 1, 1), dequantised_input=False)  # reads conv B's float output
    d = conv("d", "x0", (8, channels_in, 1, 1), zero="wz_asym", zero_value=np.full(8, 3, np.int8))
    nodes.append(helper.make_node("Add", [c, d], ["out"]))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels_in, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 8, 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
