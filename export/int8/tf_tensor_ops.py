"""TensorFlow emitters for ``call_function`` and ``call_method`` nodes, keyed by function or method name.

Shapes and indexing (size, getattr shape, getitem, permute, view/reshape, flatten, cat),
arithmetic, activations (relu, relu6, leaky_relu, sigmoid, hard-sigmoid, clamp, softmax),
mean, pooling and nearest/bilinear resizing.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F

from ..models.retinaface_parts import nearest_resize
from .graph import ADD_OPS, MUL_OPS, node_shape
from .tf_ops import NodeEmitter, TFValue, UnsupportedOp, call_arg, nhwc_axis, plain, pool2d, registrar, same_layout, tensorflow

FUNCTION_EMITTERS: dict[Any, NodeEmitter] = {}
METHOD_EMITTERS: dict[str, NodeEmitter] = {}


def function_op(*functions: Any):
    """Register an emitter for ``call_function`` nodes calling one of ``functions``."""
    return registrar(FUNCTION_EMITTERS, functions)


def method_op(*names: str):
    """Register an emitter for ``call_method`` nodes calling a tensor method of one of ``names``."""
    return registrar(METHOD_EMITTERS, names)


# --- shapes, indexing, layout ----------------------------------------------------------------------


@function_op(getattr)
def _getattr(tr, node, val):
    obj, attr = node.args
    if attr == "shape":
        return tuple(node_shape(obj))
    raise UnsupportedOp(f"getattr {attr}")


@function_op(operator.getitem)
def _getitem(tr, node, val):
    base = val(node.args[0])
    if isinstance(base, (tuple, list)):
        return base[node.args[1]]
    index = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
    if base.nhwc:
        full = list(index) + [slice(None)] * (4 - len(index))
        n, c, h, w = full
        return TFValue(base.t[n, h, w, c], True)
    return TFValue(base.t[index], False)


@method_op("size")
def _size(tr, node, val):
    shape = node_shape(node.args[0])
    return shape[node.args[1]] if len(node.args) > 1 else tuple(shape)


@method_op("contiguous", "clone")
def _passthrough(tr, node, val):
    return val(node.args[0])


@method_op("permute")
def _permute(tr, node, val):
    args = node.args
    v = val(args[0])
    dims = [int(a) for a in (args[1] if isinstance(args[1], (list, tuple)) else args[1:])]
    if v.nhwc and dims == [0, 2, 3, 1]:
        return TFValue(v.t, False)  # NCHW permuted to NHWC is exactly the NHWC tensor
    return TFValue(tensorflow().transpose(plain(v), dims), False)


@method_op("view", "reshape")
@function_op(torch.reshape)
def _reshape(tr, node, val):
    args = node.args
    v = val(args[0])
    shape = args[1] if isinstance(args[1], (list, tuple)) else args[1:]
    shape = [int(val(s)) if not isinstance(val(s), int) else val(s) for s in shape]
    return TFValue(tensorflow().reshape(plain(v), shape), False)


@function_op(torch.flatten)
def _flatten(tr, node, val):
    v = val(node.args[0])
    start = call_arg(node, 1, "start_dim", 0)
    shape = node_shape(node)
    tf = tensorflow()
    return TFValue(tf.reshape(plain(v), list(shape)), False) if start >= 1 else TFValue(tf.reshape(plain(v), [-1]), False)


@function_op(torch.cat)
def _cat(tr, node, val):
    tensors = [val(t) for t in node.args[0]]
    dim = call_arg(node, 1, "dim", 0)
    rank = len(node_shape(node))
    nhwc = tensors[0].nhwc
    return TFValue(tensorflow().concat([t.t for t in tensors], axis=nhwc_axis(dim, tensors[0], rank) if nhwc else dim), nhwc)


# --- arithmetic and activations --------------------------------------------------------------------

_ARITHMETIC = {
    **dict.fromkeys(ADD_OPS, operator.add),
    **dict.fromkeys(MUL_OPS, operator.mul),
    operator.sub: operator.sub,
    torch.sub: operator.sub,
    operator.truediv: operator.truediv,
    torch.div: operator.truediv,
}


@function_op(*_ARITHMETIC)
def _arithmetic(tr, node, val):
    a, b = val(node.args[0]), val(node.args[1])
    ta, tb = (a.t if isinstance(a, TFValue) else a), (b.t if isinstance(b, TFValue) else b)
    nhwc = any(isinstance(z, TFValue) and z.nhwc for z in (a, b))
    if isinstance(a, TFValue) and isinstance(b, TFValue) and a.nhwc != b.nhwc:
        raise UnsupportedOp(f"{node.name}: mixing NHWC and plain tensors")
    return TFValue(_ARITHMETIC[node.target](ta, tb), nhwc)


@function_op(F.relu, torch.relu)
@method_op("relu")
def _relu(tr, node, val):
    tf = tensorflow()
    src = node.args[0]
    if isinstance(src, fx.Node) and src.op == "call_function" and src.target is torch.cat and len(src.users) == 1:
        # relu(cat(a, b)) = cat(relu(a), relu(b)): each ReLU can then fuse into the conv before it
        parts = [val(t) for t in src.args[0]]
        dim = call_arg(src, 1, "dim", 0)
        axis = nhwc_axis(dim, parts[0], len(node_shape(src))) if parts[0].nhwc else dim
        return TFValue(tf.concat([tf.nn.relu(p.t) for p in parts], axis=axis), parts[0].nhwc)
    v = val(src)
    return same_layout(v, tf.nn.relu(v.t))


@function_op(F.relu6)
def _relu6(tr, node, val):
    v = val(node.args[0])
    return same_layout(v, tensorflow().nn.relu6(v.t))


@function_op(F.leaky_relu)
def _leaky_relu(tr, node, val):
    v = val(node.args[0])
    slope = call_arg(node, 1, "negative_slope", 0.01)
    return same_layout(v, tensorflow().nn.leaky_relu(v.t, alpha=float(slope)))


@function_op(torch.sigmoid, F.sigmoid)
@method_op("sigmoid")
def _sigmoid(tr, node, val):
    v = val(node.args[0])
    return same_layout(v, tensorflow().sigmoid(v.t))


@function_op(F.hardsigmoid)
def _hardsigmoid(tr, node, val):
    v = val(node.args[0])
    return same_layout(v, tensorflow().nn.relu6(v.t + 3.0) / 6.0)


@function_op(torch.clamp)
@method_op("clamp")
def _clamp(tr, node, val):
    tf = tensorflow()
    v = val(node.args[0])
    lo = call_arg(node, 1, "min")
    hi = call_arg(node, 2, "max")
    t = v.t
    if lo == 0 and hi == 6:
        return same_layout(v, tf.nn.relu6(t))
    if lo == 0 and hi == 1:  # hard-sigmoid's clamp: relu6(6x)/6 lets the converter fuse it into the conv
        return same_layout(v, tf.nn.relu6(t * 6.0) * (1.0 / 6.0))
    if lo is not None:
        t = tf.maximum(t, float(lo))
    if hi is not None:
        t = tf.minimum(t, float(hi))
    return same_layout(v, t)


@function_op(F.softmax, torch.softmax)
def _softmax(tr, node, val):
    v = val(node.args[0])
    dim = call_arg(node, 1, "dim", -1)
    rank = len(node_shape(node.args[0]))
    return same_layout(v, tensorflow().nn.softmax(v.t, axis=nhwc_axis(dim, v, rank)))


# --- reductions, pooling, resizing -----------------------------------------------------------------


@method_op("mean")
def _mean(tr, node, val):
    args = node.args
    v = val(args[0])
    dims = call_arg(node, 1, "dim")
    dims = list(dims) if isinstance(dims, (list, tuple)) else [dims]
    keep = node.kwargs.get("keepdim", len(args) > 2 and args[2])
    rank = len(node_shape(args[0]))
    return TFValue(tensorflow().reduce_mean(v.t, axis=[nhwc_axis(d, v, rank) for d in dims], keepdims=bool(keep)), v.nhwc and bool(keep))


@function_op(F.adaptive_avg_pool2d)
def _adaptive_avg_pool(tr, node, val):
    v = val(node.args[0])
    return TFValue(tensorflow().reduce_mean(v.t, axis=[1, 2], keepdims=True), True)


@function_op(F.avg_pool2d, F.max_pool2d)
def _pool(tr, node, val):
    v = val(node.args[0])
    k = node.args[1]
    s = call_arg(node, 2, "stride", k)
    p = call_arg(node, 3, "padding", 0)
    return TFValue(pool2d(k, s, p, v, node.target is F.max_pool2d), True)


@function_op(F.interpolate, nearest_resize)
def _resize(tr, node, val):
    tf = tensorflow()
    v = val(node.args[0])
    out = node_shape(node)
    mode = "nearest" if node.target is nearest_resize else node.kwargs.get("mode", "nearest")
    if mode == "nearest":
        y = tf.compat.v1.image.resize_nearest_neighbor(v.t, [out[2], out[3]], align_corners=False, half_pixel_centers=False)
    elif mode == "bilinear" and not node.kwargs.get("align_corners"):
        y = tf.image.resize(v.t, [out[2], out[3]], method="bilinear")
    else:
        raise UnsupportedOp(f"interpolate mode {mode}")
    return TFValue(y, True)
