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

import math
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..models.retinaface_parts import nearest_resize
from .graph import ADD_OPS, MUL_OPS, node_shape


class UnsupportedOp(NotImplementedError):
    pass


@dataclass
class _V:
    """A TF tensor and whether it holds a 4-D torch (NCHW) tensor laid out as NHWC."""

    t: Any
    nhwc: bool


_TO_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2, -1: 2, -2: 1, -3: 3, -4: 0}


def _axis(dim: int, v: _V, rank: int) -> int:
    if v.nhwc:
        return _TO_NHWC_AXIS[dim if dim >= 0 or rank != 4 else dim]
    return dim


def _same_pads(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    eff = (k - 1) * d + 1
    out = math.ceil(size / s)
    total = max((out - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


class TFTranslator:
    """Emit TF ops for an fx graph; ``prelu="decompose"`` writes PReLU as two 1x1 depthwise convs.

    ``a*x + (1-a)*relu(x)`` keeps every op on XNNPACK's int8 path (its int8 PRELU kernel is missing
    and the reference one several times slower than float); depthwise weights, unlike a MUL's
    constant operand, are quantised per channel, so small slopes survive int8.
    """

    def __init__(self, gm: fx.GraphModule, prelu: str = "decompose"):
        self.gm = gm
        self.prelu = prelu
        self.modules = dict(gm.named_modules())

    # --- helpers ---------------------------------------------------------------------
    @staticmethod
    def _const(x: torch.Tensor | np.ndarray):
        import tensorflow as tf

        arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        return tf.constant(arr.astype(np.float32))

    def _scope(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return str(node.target)
        stack = list(node.meta.get("nn_module_stack", {}).keys())
        return stack[-1] if stack else ""

    def _conv(self, conv: nn.Conv2d, v: _V, in_shape: tuple[int, ...]):
        import tensorflow as tf

        x = v.t
        kh, kw = conv.kernel_size
        sh, sw = conv.stride
        dh, dw = conv.dilation
        ph, pw = conv.padding if isinstance(conv.padding, tuple) else (conv.padding, conv.padding)
        h, w = in_shape[2], in_shape[3]
        if (ph, pw) == (0, 0):
            padding = "VALID"
        elif (ph, ph) == _same_pads(h, kh, sh, dh) and (pw, pw) == _same_pads(w, kw, sw, dw):
            padding = "SAME"
        else:
            x = tf.pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]])
            padding = "VALID"
        weight = conv.weight.detach()
        cin, cout, g = conv.in_channels, conv.out_channels, conv.groups
        if g == 1:
            y = tf.nn.conv2d(x, self._const(weight.permute(2, 3, 1, 0)), [1, sh, sw, 1], padding, dilations=[1, dh, dw, 1])
        elif g == cin and cout % cin == 0:
            mult = cout // cin
            filt = weight.view(cin, mult, kh, kw).permute(2, 3, 0, 1)
            if (sh, sw) != (1, 1) and (dh, dw) != (1, 1):
                raise UnsupportedOp("depthwise conv with both stride and dilation")
            y = tf.nn.depthwise_conv2d(x, self._const(filt), [1, sh, sw, 1], padding, dilations=[dh, dw])
        else:
            xs = tf.split(x, g, axis=3)
            ws = torch.chunk(weight, g, dim=0)
            y = tf.concat(
                [tf.nn.conv2d(a, self._const(b.permute(2, 3, 1, 0)), [1, sh, sw, 1], padding, dilations=[1, dh, dw, 1]) for a, b in zip(xs, ws)],
                axis=3,
            )
        if conv.bias is not None:
            y = tf.nn.bias_add(y, self._const(conv.bias))
        return y

    def _prelu(self, mod: nn.PReLU, v: _V):
        import tensorflow as tf

        a = mod.weight.detach().view(-1).float()
        x = v.t
        channels = int(x.shape[-1]) if v.nhwc else None
        if a.numel() == 1 and channels:
            a = a.expand(channels).clone()
        if self.prelu != "decompose" or not v.nhwc:
            return tf.maximum(x, 0.0) + self._const(a) * tf.minimum(x, 0.0)
        # prelu(x) = relu(x) - a*relu(-x) = relu(1*x) - sign(a)*relu(-|a|*x): both ReLUs fused into 1x1
        # depthwise convs, which XNNPACK runs in int8 (a standalone int8 RELU or PRELU it does not).
        ones = self._const(torch.ones(1, 1, len(a), 1))
        neg = self._const((-a.abs()).view(1, 1, -1, 1))
        pos_part = tf.nn.relu(tf.nn.depthwise_conv2d(x, ones, [1, 1, 1, 1], "VALID"))
        neg_part = tf.nn.relu(tf.nn.depthwise_conv2d(x, neg, [1, 1, 1, 1], "VALID"))
        if bool((a >= 0).all()):
            return pos_part - neg_part
        sign = self._const((-torch.sign(a)).view(1, 1, -1, 1))
        return pos_part + tf.nn.depthwise_conv2d(neg_part, sign, [1, 1, 1, 1], "VALID")

    # --- the walk --------------------------------------------------------------------
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
                    env[node] = _V(x, True)
                elif node.op == "output":
                    outs = node.args[0]
                    outs = outs if isinstance(outs, (list, tuple)) else (outs,)
                    result = []
                    for o in outs:
                        v = env[o]
                        result.append(tf.transpose(v.t, [0, 3, 1, 2]) if v.nhwc else v.t)
                    return result
                elif node.op == "get_attr":
                    env[node] = _V(self._const(getattr(self.gm, node.target)), False)
                else:
                    env[node] = self._emit(node, val)
        raise UnsupportedOp("graph without output")

    def _emit(self, node: fx.Node, val):
        import tensorflow as tf

        args = node.args
        if node.op == "call_module":
            mod = self.modules[node.target]
            v = val(args[0])
            in_shape = node_shape(args[0])
            if isinstance(mod, nn.Conv2d):
                return _V(self._conv(mod, v, in_shape), True)
            if isinstance(mod, (nn.Identity, nn.Dropout)):
                return v
            if isinstance(mod, nn.ZeroPad2d):
                left, right, top, bottom = mod.padding
                return _V(tf.pad(v.t, [[0, 0], [top, bottom], [left, right], [0, 0]]), True)
            if isinstance(mod, nn.ReLU):
                return _V(tf.nn.relu(v.t), v.nhwc)
            if isinstance(mod, nn.ReLU6):
                return _V(tf.nn.relu6(v.t), v.nhwc)
            if isinstance(mod, nn.LeakyReLU):
                return _V(tf.nn.leaky_relu(v.t, alpha=float(mod.negative_slope)), v.nhwc)
            if isinstance(mod, nn.PReLU):
                return _V(self._prelu(mod, v), v.nhwc)
            if isinstance(mod, (nn.Sigmoid,)):
                return _V(tf.sigmoid(v.t), v.nhwc)
            if isinstance(mod, (nn.Hardsigmoid,)):
                return _V(tf.nn.relu6(v.t + 3.0) / 6.0, v.nhwc)
            if isinstance(mod, (nn.Hardswish,)):
                return _V(v.t * tf.nn.relu6(v.t + 3.0) / 6.0, v.nhwc)
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                scale = mod.weight.detach() / torch.sqrt(mod.running_var + mod.eps)
                shift = mod.bias.detach() - mod.running_mean * scale
                return _V(v.t * self._const(scale) + self._const(shift), v.nhwc)
            if isinstance(mod, nn.Linear):
                y = tf.matmul(v.t, self._const(mod.weight.detach().t()))
                return _V(y + self._const(mod.bias) if mod.bias is not None else y, False)
            if isinstance(mod, nn.AdaptiveAvgPool2d) and mod.output_size in (1, (1, 1)):
                return _V(tf.reduce_mean(v.t, axis=[1, 2], keepdims=True), True)
            if isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)):
                return _V(self._pool(mod.kernel_size, mod.stride, mod.padding, v, in_shape, isinstance(mod, nn.MaxPool2d)), True)
            raise UnsupportedOp(f"module {type(mod).__name__} at {node.target}")
        fn = node.target
        if node.op == "call_function" and fn is getattr:
            obj, attr = args
            if attr == "shape":
                return tuple(node_shape(obj))
            raise UnsupportedOp(f"getattr {attr}")
        if node.op == "call_function" and fn is operator.getitem:
            base = val(args[0])
            if isinstance(base, (tuple, list)):
                return base[args[1]]
            return self._slice(base, args[1], node_shape(args[0]))
        if node.op == "call_method" and fn == "size":
            shape = node_shape(args[0])
            return shape[args[1]] if len(args) > 1 else tuple(shape)
        if node.op == "call_method" and fn in ("contiguous", "clone"):
            return val(args[0])
        if node.op == "call_method" and fn == "permute":
            return self._permute(val(args[0]), [int(a) for a in (args[1] if isinstance(args[1], (list, tuple)) else args[1:])])
        if node.op == "call_method" and fn in ("view", "reshape") or (node.op == "call_function" and fn is torch.reshape):
            v = val(args[0])
            shape = args[1] if isinstance(args[1], (list, tuple)) else args[1:]
            shape = [int(val(s)) if not isinstance(val(s), int) else val(s) for s in shape]
            return _V(tf.reshape(self._plain(v), shape), False)
        if node.op == "call_function" and fn in (torch.flatten,):
            v = val(args[0])
            start = args[1] if len(args) > 1 else node.kwargs.get("start_dim", 0)
            shape = node_shape(node)
            return _V(tf.reshape(self._plain(v), list(shape)), False) if start >= 1 else _V(tf.reshape(self._plain(v), [-1]), False)
        if node.op == "call_function" and fn in ADD_OPS | MUL_OPS | {operator.sub, operator.truediv, torch.sub, torch.div}:
            a, b = val(args[0]), val(args[1])
            ta, tb = (a.t if isinstance(a, _V) else a), (b.t if isinstance(b, _V) else b)
            nhwc = any(isinstance(z, _V) and z.nhwc for z in (a, b))
            if isinstance(a, _V) and isinstance(b, _V) and a.nhwc != b.nhwc:
                raise UnsupportedOp(f"{node.name}: mixing NHWC and plain tensors")
            op = {operator.add: operator.add, operator.iadd: operator.add, torch.add: operator.add, operator.mul: operator.mul, operator.imul: operator.mul, torch.mul: operator.mul, operator.sub: operator.sub, torch.sub: operator.sub, operator.truediv: operator.truediv, torch.div: operator.truediv}[fn]
            return _V(op(ta, tb), nhwc)
        if node.op == "call_function" and fn is torch.cat:
            tensors = [val(t) for t in args[0]]
            dim = args[1] if len(args) > 1 else node.kwargs.get("dim", 0)
            rank = len(node_shape(node))
            nhwc = tensors[0].nhwc
            return _V(tf.concat([t.t for t in tensors], axis=_axis(dim, tensors[0], rank) if nhwc else dim), nhwc)
        if (node.op == "call_function" and fn in (F.relu, torch.relu)) or (node.op == "call_method" and fn == "relu"):
            src = args[0]
            if isinstance(src, fx.Node) and src.op == "call_function" and src.target is torch.cat and len(src.users) == 1:
                # relu(cat(a, b)) = cat(relu(a), relu(b)): each ReLU can then fuse into the conv before it
                parts = [val(t) for t in src.args[0]]
                dim = src.args[1] if len(src.args) > 1 else src.kwargs.get("dim", 0)
                axis = _axis(dim, parts[0], len(node_shape(src))) if parts[0].nhwc else dim
                return _V(tf.concat([tf.nn.relu(p.t) for p in parts], axis=axis), parts[0].nhwc)
            v = val(args[0])
            return _V(tf.nn.relu(v.t), v.nhwc)
        if node.op == "call_function" and fn is F.relu6:
            v = val(args[0])
            return _V(tf.nn.relu6(v.t), v.nhwc)
        if node.op == "call_function" and fn is F.leaky_relu:
            v = val(args[0])
            slope = args[1] if len(args) > 1 else node.kwargs.get("negative_slope", 0.01)
            return _V(tf.nn.leaky_relu(v.t, alpha=float(slope)), v.nhwc)
        if (node.op == "call_function" and fn in (torch.sigmoid, F.sigmoid)) or (node.op == "call_method" and fn == "sigmoid"):
            v = val(args[0])
            return _V(tf.sigmoid(v.t), v.nhwc)
        if node.op == "call_function" and fn is F.hardsigmoid:
            v = val(args[0])
            return _V(tf.nn.relu6(v.t + 3.0) / 6.0, v.nhwc)
        if (node.op == "call_function" and fn is torch.clamp) or (node.op == "call_method" and fn == "clamp"):
            v = val(args[0])
            lo = args[1] if len(args) > 1 else node.kwargs.get("min")
            hi = args[2] if len(args) > 2 else node.kwargs.get("max")
            t = v.t
            if lo == 0 and hi == 6:
                return _V(tf.nn.relu6(t), v.nhwc)
            if lo == 0 and hi == 1:  # hard-sigmoid's clamp: relu6(6x)/6 lets the converter fuse it into the conv
                return _V(tf.nn.relu6(t * 6.0) * (1.0 / 6.0), v.nhwc)
            if lo is not None:
                t = tf.maximum(t, float(lo))
            if hi is not None:
                t = tf.minimum(t, float(hi))
            return _V(t, v.nhwc)
        if node.op == "call_method" and fn == "mean":
            v = val(args[0])
            dims = args[1] if len(args) > 1 else node.kwargs.get("dim")
            dims = list(dims) if isinstance(dims, (list, tuple)) else [dims]
            keep = node.kwargs.get("keepdim", len(args) > 2 and args[2])
            rank = len(node_shape(args[0]))
            return _V(tf.reduce_mean(v.t, axis=[_axis(d, v, rank) for d in dims], keepdims=bool(keep)), v.nhwc and bool(keep))
        if node.op == "call_function" and fn is F.adaptive_avg_pool2d:
            v = val(args[0])
            return _V(tf.reduce_mean(v.t, axis=[1, 2], keepdims=True), True)
        if node.op == "call_function" and fn in (F.avg_pool2d, F.max_pool2d):
            v = val(args[0])
            k = args[1]
            s = args[2] if len(args) > 2 else node.kwargs.get("stride", k)
            p = args[3] if len(args) > 3 else node.kwargs.get("padding", 0)
            return _V(self._pool(k, s, p, v, node_shape(args[0]), fn is F.max_pool2d), True)
        if node.op == "call_function" and fn in (F.interpolate, nearest_resize):
            v = val(args[0])
            out = node_shape(node)
            mode = "nearest" if fn is nearest_resize else node.kwargs.get("mode", "nearest")
            if mode == "nearest":
                y = tf.compat.v1.image.resize_nearest_neighbor(v.t, [out[2], out[3]], align_corners=False, half_pixel_centers=False)
            elif mode == "bilinear" and not node.kwargs.get("align_corners"):
                y = tf.image.resize(v.t, [out[2], out[3]], method="bilinear")
            else:
                raise UnsupportedOp(f"interpolate mode {mode}")
            return _V(y, True)
        if node.op == "call_function" and fn in (F.softmax, torch.softmax):
            v = val(args[0])
            dim = args[1] if len(args) > 1 else node.kwargs.get("dim", -1)
            rank = len(node_shape(args[0]))
            return _V(tf.nn.softmax(v.t, axis=_axis(dim, v, rank)), v.nhwc)
        raise UnsupportedOp(f"{node.op} {getattr(fn, '__name__', fn)} at {node.name}")

    def _pool(self, k, s, p, v: _V, in_shape, is_max: bool):
        import tensorflow as tf

        k = (k, k) if isinstance(k, int) else tuple(k)
        s = (s, s) if isinstance(s, int) else tuple(s or k)
        p = (p, p) if isinstance(p, int) else tuple(p)
        x = v.t
        if p != (0, 0):
            fill = -1e30 if is_max else 0.0
            x = tf.pad(x, [[0, 0], [p[0], p[0]], [p[1], p[1]], [0, 0]], constant_values=fill)
        pool = tf.nn.max_pool2d if is_max else tf.nn.avg_pool2d
        return pool(x, list(k), list(s), "VALID")

    def _plain(self, v: _V):
        import tensorflow as tf

        return tf.transpose(v.t, [0, 3, 1, 2]) if v.nhwc else v.t

    def _permute(self, v: _V, dims: list[int]) -> _V:
        import tensorflow as tf

        if v.nhwc and dims == [0, 2, 3, 1]:
            return _V(v.t, False)  # NCHW permuted to NHWC is exactly the NHWC tensor
        return _V(tf.transpose(self._plain(v), dims), False)

    def _slice(self, v: _V, index, shape) -> _V:
        if not isinstance(index, tuple):
            index = (index,)
        if v.nhwc:
            full = list(index) + [slice(None)] * (4 - len(index))
            n, c, h, w = full
            return _V(v.t[n, h, w, c], True)
        return _V(v.t[index], False)


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
