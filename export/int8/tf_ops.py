"""The pieces every TensorFlow emitter shares: the value type, the emitter tables' registration,
and the layout helpers that keep 4-D tensors NHWC.

Why tables: the translator in :mod:`.tf_graph` stays a short walk, and supporting a new op is one
small registered function (in :mod:`.tf_layers` for modules, :mod:`.tf_tensor_ops` for functions
and tensor methods) instead of another branch in a long chain. Every emitter creates its TF ops in
a fixed order, so the graph (and the op names the float fallback matches) is the same on every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
import torch.fx as fx

if TYPE_CHECKING:
    from .tf_graph import TFTranslator


class UnsupportedOp(NotImplementedError):
    pass


@dataclass
class TFValue:
    """A TF tensor and whether it holds a 4-D torch (NCHW) tensor laid out as NHWC."""

    t: Any
    nhwc: bool


Lookup = Callable[[Any], Any]  # fx argument (node, list, constant) -> its TFValue / Python value
NodeEmitter = Callable[["TFTranslator", fx.Node, Lookup], Any]


def registrar(table: dict, keys):
    """A decorator that enters the decorated emitter in ``table`` under every key of ``keys``."""

    def register(fn):
        for key in keys:
            table[key] = fn
        return fn

    return register


# --- layout helpers --------------------------------------------------------------------------------

_TO_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2, -1: 2, -2: 1, -3: 3, -4: 0}


def tensorflow():
    """The tensorflow module (imported on first use: only INT8 TFLite export needs it)."""
    import tensorflow as tf

    return tf


def nhwc_axis(dim: int, v: TFValue, rank: int) -> int:
    """The TF axis of torch dimension ``dim`` (of a rank-``rank`` tensor) in ``v``'s layout."""
    return _TO_NHWC_AXIS[dim] if v.nhwc else dim


def same_pads(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TF "SAME" padding (before, after) for one spatial axis."""
    eff = (k - 1) * d + 1
    out = math.ceil(size / s)
    total = max((out - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


def const(x: torch.Tensor | np.ndarray):
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return tensorflow().constant(arr.astype(np.float32))


def plain(v: TFValue):
    """The tensor in torch's layout (NCHW for 4-D)."""
    return tensorflow().transpose(v.t, [0, 3, 1, 2]) if v.nhwc else v.t


def call_arg(node: fx.Node, index: int, keyword: str, default: Any = None) -> Any:
    """A call's argument given by position or keyword."""
    return node.args[index] if len(node.args) > index else node.kwargs.get(keyword, default)


def same_layout(v: TFValue, t) -> TFValue:
    """``t`` (an element-wise result of ``v``) in ``v``'s layout."""
    return TFValue(t, v.nhwc)


def pool2d(k, s, p, v: TFValue, is_max: bool):
    """Max or average pooling; torch's padding as an explicit pad (-inf-like for max)."""
    tf = tensorflow()
    k = (k, k) if isinstance(k, int) else tuple(k)
    s = (s, s) if isinstance(s, int) else tuple(s or k)
    p = (p, p) if isinstance(p, int) else tuple(p)
    x = v.t
    if p != (0, 0):
        fill = -1e30 if is_max else 0.0
        x = tf.pad(x, [[0, 0], [p[0], p[0]], [p[1], p[1]], [0, 0]], constant_values=fill)
    pool = tf.nn.max_pool2d if is_max else tf.nn.avg_pool2d
    return pool(x, list(k), list(s), "VALID")
