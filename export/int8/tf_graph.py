"""Translate a traced PyTorch model into an NHWC TensorFlow function, for TFLite full-integer conversion.

Why: the TFLite post-training quantiser behind ``tf.lite.TFLiteConverter`` is the mature route to
full-integer models (int8 weights and activations, int8 I/O, PRELU/LEAKY_RELU/HARD_SWISH kernels,
selective float fallback), and it quantises TensorFlow graphs. The models here are plain after
BatchNorm folding (convolutions and element-wise ops), so a direct translation keeps every tensor
NHWC — no transposes — and avoids ONNX-to-TF converters and their pinned dependencies.

Supported: Conv2d (any groups/stride/dilation/padding), ZeroPad2d, BatchNorm, ReLU/ReLU6/LeakyReLU/
PReLU/sigmoid/hard-sigmoid/hard-swish/clamp, add/sub/mul/div, cat, mean, pooling, nearest/bilinear
resizing, flatten, Linear, permute/view/reshape, softmax, channel slicing. Anything else raises
with the node's name. Each op is created under the name scope of the module it came from, so
layers can be kept in float by name.
"""

from __future__ import annotations

from typing import Any

import torch.fx as fx

from .graph import node_shape
from .tf_layers import module_emitter
from .tf_ops import TFValue, UnsupportedOp, const
from .tf_tensor_ops import FUNCTION_EMITTERS, METHOD_EMITTERS

__all__ = ["TFTranslator", "UnsupportedOp", "tf_function_for"]


class TFTranslator:
    """Emit TF ops for an fx graph; ``prelu="decompose"`` writes PReLU as two 1x1 depthwise convs.

    ``a*x + (1-a)*relu(x)`` keeps every op on XNNPACK's int8 path (its int8 PRELU kernel is missing
    and the reference one several times slower than float); depthwise weights, unlike a MUL's
    constant operand, are quantised per channel, so small slopes survive int8.

    Each node is translated by the emitter registered for its module type (:mod:`.tf_layers`) or
    its function or tensor method (:mod:`.tf_tensor_ops`).
    """

    def __init__(self, gm: fx.GraphModule, prelu: str = "decompose"):
        self.gm = gm
        self.prelu = prelu
        self.modules = dict(gm.named_modules())

    def _scope(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return str(node.target)
        stack = list(node.meta.get("nn_module_stack", {}).keys())
        return stack[-1] if stack else ""

    def build(self, x):
        """Emit the graph for NHWC input ``x``; returns the list of outputs (torch semantics)."""
        import tensorflow as tf

        env: dict[fx.Node, Any] = {}

        def val(a):
            if isinstance(a, fx.Node):
                return env[a]
            if isinstance(a, (list, tuple)):
                return type(a)(val(i) for i in a)
            return a

        for node in self.gm.graph.nodes:
            with tf.name_scope(self._scope(node).replace(".", "_") or "graph"):
                if node.op == "placeholder":
                    env[node] = TFValue(x, True)
                elif node.op == "output":
                    return [tf.transpose(v.t, [0, 3, 1, 2]) if v.nhwc else v.t for v in map(env.__getitem__, _as_tuple(node.args[0]))]
                elif node.op == "get_attr":
                    env[node] = TFValue(const(getattr(self.gm, node.target)), False)
                else:
                    env[node] = self._emit(node, val)
        raise UnsupportedOp("graph without output")

    def _emit(self, node: fx.Node, val):
        if node.op == "call_module":
            return self._emit_module(node, val)
        table = {"call_function": FUNCTION_EMITTERS, "call_method": METHOD_EMITTERS}.get(node.op, {})
        emitter = table.get(node.target)
        if emitter is None:
            fn = node.target
            raise UnsupportedOp(f"{node.op} {getattr(fn, '__name__', fn)} at {node.name}")
        return emitter(self, node, val)

    def _emit_module(self, node: fx.Node, val):
        mod = self.modules[node.target]
        v = val(node.args[0])
        in_shape = node_shape(node.args[0])
        emitter = module_emitter(mod)
        out = emitter(self, mod, v, in_shape) if emitter is not None else None
        if out is None:
            raise UnsupportedOp(f"module {type(mod).__name__} at {node.target}")
        return out


def _as_tuple(outs) -> tuple:
    return tuple(outs) if isinstance(outs, (list, tuple)) else (outs,)


def tf_function_for(gm: fx.GraphModule, input_hw: tuple[int, int], prelu: str = "decompose"):
    """A ``tf.function`` taking NHWC float input of shape [1, H, W, 3], returning a dict output_i -> tensor."""
    import tensorflow as tf

    translator = TFTranslator(gm, prelu=prelu)
    h, w = input_hw

    @tf.function(input_signature=[tf.TensorSpec([1, h, w, 3], tf.float32, name="input")])
    def serve(x):
        outs = translator.build(x)
        return {f"output_{i}": o for i, o in enumerate(outs)}

    return serve
