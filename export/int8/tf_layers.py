"""TensorFlow emitters for ``call_module`` nodes, one per torch module kind, keyed by module type.

Conv2d of any groups/stride/dilation/padding, ZeroPad2d, BatchNorm, ReLU/ReLU6/LeakyReLU/PReLU,
sigmoid/hard-sigmoid/hard-swish, Linear, global average pooling, max/average pooling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from .tf_ops import TFValue, UnsupportedOp, const, pool2d, registrar, same_layout, same_pads, tensorflow

if TYPE_CHECKING:
    from .tf_graph import TFTranslator

ModuleEmitter = Callable[["TFTranslator", nn.Module, TFValue, tuple], "TFValue | None"]
MODULE_EMITTERS: dict[type, ModuleEmitter] = {}


def module_op(*types: type):
    """Register an emitter for ``call_module`` nodes of these module types (and their subclasses).

    The emitter returns ``None`` for a configuration it cannot translate.
    """
    return registrar(MODULE_EMITTERS, types)


def module_emitter(mod: nn.Module) -> ModuleEmitter | None:
    """The emitter for the most specific registered class of ``mod`` (so Conv2d subclasses are convs)."""
    for cls in type(mod).__mro__:
        if cls in MODULE_EMITTERS:
            return MODULE_EMITTERS[cls]
    return None


def _conv_padding(conv: nn.Conv2d, x, in_shape: tuple[int, ...]):
    """(input, TF padding mode): SAME or VALID where torch's symmetric padding matches, else explicit."""
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    dh, dw = conv.dilation
    ph, pw = conv.padding if isinstance(conv.padding, tuple) else (conv.padding, conv.padding)
    h, w = in_shape[2], in_shape[3]
    if (ph, pw) == (0, 0):
        return x, "VALID"
    if (ph, ph) == same_pads(h, kh, sh, dh) and (pw, pw) == same_pads(w, kw, sw, dw):
        return x, "SAME"
    return tensorflow().pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]]), "VALID"


def conv2d(conv: nn.Conv2d, v: TFValue, in_shape: tuple[int, ...]):
    """Any Conv2d as a TF conv: dense, depthwise (with multiplier), or grouped as split + concat."""
    tf = tensorflow()
    x, padding = _conv_padding(conv, v.t, in_shape)
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    dh, dw = conv.dilation
    weight = conv.weight.detach()
    cin, cout, g = conv.in_channels, conv.out_channels, conv.groups
    if g == 1:
        y = tf.nn.conv2d(x, const(weight.permute(2, 3, 1, 0)), [1, sh, sw, 1], padding, dilations=[1, dh, dw, 1])
    elif g == cin and cout % cin == 0:
        mult = cout // cin
        filt = weight.view(cin, mult, kh, kw).permute(2, 3, 0, 1)
        if (sh, sw) != (1, 1) and (dh, dw) != (1, 1):
            raise UnsupportedOp("depthwise conv with both stride and dilation")
        y = tf.nn.depthwise_conv2d(x, const(filt), [1, sh, sw, 1], padding, dilations=[dh, dw])
    else:
        xs = tf.split(x, g, axis=3)
        ws = torch.chunk(weight, g, dim=0)
        y = tf.concat(
            [tf.nn.conv2d(a, const(b.permute(2, 3, 1, 0)), [1, sh, sw, 1], padding, dilations=[1, dh, dw, 1]) for a, b in zip(xs, ws)],
            axis=3,
        )
    if conv.bias is not None:
        y = tf.nn.bias_add(y, const(conv.bias))
    return y


def prelu(mod: nn.PReLU, v: TFValue, mode: str):
    """PReLU; ``mode="decompose"`` writes it as ReLU-fused 1x1 depthwise convs (see TFTranslator)."""
    tf = tensorflow()
    a = mod.weight.detach().view(-1).float()
    x = v.t
    channels = int(x.shape[-1]) if v.nhwc else None
    if a.numel() == 1 and channels:
        a = a.expand(channels).clone()
    if mode != "decompose" or not v.nhwc:
        return tf.maximum(x, 0.0) + const(a) * tf.minimum(x, 0.0)
    # prelu(x) = relu(x) - a*relu(-x) = relu(1*x) - sign(a)*relu(-|a|*x): both ReLUs fused into 1x1
    # depthwise convs, which XNNPACK runs in int8 (a standalone int8 RELU or PRELU it does not).
    ones = const(torch.ones(1, 1, len(a), 1))
    neg = const((-a.abs()).view(1, 1, -1, 1))
    pos_part = tf.nn.relu(tf.nn.depthwise_conv2d(x, ones, [1, 1, 1, 1], "VALID"))
    neg_part = tf.nn.relu(tf.nn.depthwise_conv2d(x, neg, [1, 1, 1, 1], "VALID"))
    if bool((a >= 0).all()):
        return pos_part - neg_part
    sign = const((-torch.sign(a)).view(1, 1, -1, 1))
    return pos_part + tf.nn.depthwise_conv2d(neg_part, sign, [1, 1, 1, 1], "VALID")


@module_op(nn.Conv2d)
def _conv_module(tr, mod, v, in_shape):
    return TFValue(conv2d(mod, v, in_shape), True)


@module_op(nn.Identity, nn.Dropout)
def _identity_module(tr, mod, v, in_shape):
    return v


@module_op(nn.ZeroPad2d)
def _zero_pad_module(tr, mod, v, in_shape):
    left, right, top, bottom = mod.padding
    return TFValue(tensorflow().pad(v.t, [[0, 0], [top, bottom], [left, right], [0, 0]]), True)


@module_op(nn.ReLU)
def _relu_module(tr, mod, v, in_shape):
    return same_layout(v, tensorflow().nn.relu(v.t))


@module_op(nn.ReLU6)
def _relu6_module(tr, mod, v, in_shape):
    return same_layout(v, tensorflow().nn.relu6(v.t))


@module_op(nn.LeakyReLU)
def _leaky_relu_module(tr, mod, v, in_shape):
    return same_layout(v, tensorflow().nn.leaky_relu(v.t, alpha=float(mod.negative_slope)))


@module_op(nn.PReLU)
def _prelu_module(tr, mod, v, in_shape):
    return same_layout(v, prelu(mod, v, tr.prelu))


@module_op(nn.Sigmoid)
def _sigmoid_module(tr, mod, v, in_shape):
    return same_layout(v, tensorflow().sigmoid(v.t))


@module_op(nn.Hardsigmoid)
def _hardsigmoid_module(tr, mod, v, in_shape):
    return same_layout(v, tensorflow().nn.relu6(v.t + 3.0) / 6.0)


@module_op(nn.Hardswish)
def _hardswish_module(tr, mod, v, in_shape):
    return same_layout(v, v.t * tensorflow().nn.relu6(v.t + 3.0) / 6.0)


@module_op(nn.modules.batchnorm._BatchNorm)
def _batchnorm_module(tr, mod, v, in_shape):
    scale = mod.weight.detach() / torch.sqrt(mod.running_var + mod.eps)
    shift = mod.bias.detach() - mod.running_mean * scale
    return same_layout(v, v.t * const(scale) + const(shift))


@module_op(nn.Linear)
def _linear_module(tr, mod, v, in_shape):
    y = tensorflow().matmul(v.t, const(mod.weight.detach().t()))
    return TFValue(y + const(mod.bias) if mod.bias is not None else y, False)


@module_op(nn.AdaptiveAvgPool2d)
def _global_avg_pool_module(tr, mod, v, in_shape):
    if mod.output_size not in (1, (1, 1)):
        return None
    return TFValue(tensorflow().reduce_mean(v.t, axis=[1, 2], keepdims=True), True)


@module_op(nn.MaxPool2d, nn.AvgPool2d)
def _pool_module(tr, mod, v, in_shape):
    return TFValue(pool2d(mod.kernel_size, mod.stride, mod.padding, v, isinstance(mod, nn.MaxPool2d)), True)
