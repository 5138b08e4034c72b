"""GhostFaceNetV1/V2 built in tf-keras, laid out as the GhostFaceNets training code saves them.

GhostFaceNets are Keras models, so Keras is their original framework: registry entries whose
release weights are not at hand are created here (seeded random weights), saved as ``.h5``, and
then go through the same port and verification as a downloaded checkpoint. The layer graph
mirrors the published code: GhostNet V1 (``backbones/ghost_model.py``) with its ReLUs turned into
PReLU, GhostNetV2 with DFC attention (keras_cv_attention_models style names and
``tf.image.resize``), and the ``buildin_models`` GDC head with BatchNorm on the embedding.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..keras_reference import CUSTOM_OBJECTS, import_tf_keras
from .backbones import make_divisible

_KERNELS = [3, 3, 3, 5, 5, 3, 3, 3, 3, 3, 3, 5, 5, 5, 5, 5]
_OUTS = [16, 24, 24, 40, 40, 80, 80, 80, 80, 112, 112, 160, 160, 160, 160, 160]
_SES = [0, 0, 0, 0.25, 0.25, 0, 0, 0, 0, 0.25, 0.25, 0.25, 0, 0.25, 0, 0.25]
_STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
_EXPS_V1 = [16, 48, 72, 72, 120, 240, 200, 184, 184, 480, 672, 672, 960, 960, 960, 512]
_FIRSTS_V2 = [16, 48, 72, 72, 120, 240, 200, 184, 184, 480, 672, 672, 960, 960, 960, 960]


def _layers(bn_eps: float, bn_momentum: float):
    keras = import_tf_keras()
    L = keras.layers

    def bn(x, name=None):
        return L.BatchNormalization(axis=-1, momentum=bn_momentum, epsilon=bn_eps, name=name)(x)

    def prelu(x, name=None):
        return L.PReLU(shared_axes=[1, 2], alpha_initializer=keras.initializers.Constant(0.25), name=name)(x)

    return keras, L, bn, prelu


def build_keras_ghostfacenet(
    version: int = 1,
    width: float = 1.3,
    stride: int = 2,
    input_size: int = 112,
    emb: int = 512,
    bn_eps: float = 1e-5,
    bn_momentum: float = 0.9,
    seed: int = 0,
    v2_plain_stacks: int = 2,
):
    """A freshly initialised GhostFaceNet in tf-keras (float32), random BN statistics included."""
    keras, L, bn, prelu = _layers(bn_eps, bn_momentum)
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    inputs = L.Input((input_size, input_size, 3))
    stem = make_divisible(16 * width, 4)
    prefix = "" if version == 1 else "stem_"
    x = L.Conv2D(stem, 3, strides=stride, padding="same", use_bias=False, name=prefix + "conv" if version == 2 else None)(inputs)
    x = bn(x, name=prefix + "bn" if version == 2 else None)
    x = prelu(x, name=prefix + "prelu" if version == 2 else None)

    def ghost(x, out, act: bool, name: str, dfc: bool = False):
        primary = out // 2 if version == 1 else math.ceil(out / 2)
        n = (lambda s: None) if version == 1 else (lambda s: name + s)
        p = L.Conv2D(primary, 1, padding="same" if version == 1 else "valid", use_bias=False, name=n("prim_conv"))(x)
        p = bn(p, name=n("prim_bn"))
        if act:
            p = prelu(p, name=n("prim_prelu"))
        c = L.DepthwiseConv2D(3, 1, padding="same", use_bias=False, name=n("cheap_conv"))(p)
        c = bn(c, name=n("cheap_bn"))
        if act:
            c = prelu(c, name=n("cheap_prelu"))
        y = L.Concatenate(name=n("concat"))([p, c])
        if not dfc:
            return y
        g = L.AveragePooling2D(pool_size=2, strides=2, name=n("short_pool"))(x)
        g = L.Conv2D(2 * primary, 1, use_bias=False, name=n("short_1_conv"))(g)
        g = bn(g, name=n("short_1_bn"))
        g = L.DepthwiseConv2D((1, 5), padding="same", use_bias=False, name=n("short_2_conv"))(g)
        g = bn(g, name=n("short_2_bn"))
        g = L.DepthwiseConv2D((5, 1), padding="same", use_bias=False, name=n("short_3_conv"))(g)
        g = bn(g, name=n("short_3_bn"))
        g = L.Activation("sigmoid", name=n("short_sigmoid"))(g)
        g = tf.image.resize(g, tf.shape(x)[1:-1], method="bilinear", antialias=False)
        return L.Multiply(name=n("multiply"))([g, y])

    def se(x, ratio: float, name: str):
        filters = x.shape[-1]
        reduced = make_divisible(filters * ratio, 4)
        n = (lambda s: None) if version == 1 else (lambda s: name + s)
        s = L.GlobalAveragePooling2D(name=n("gap"))(x)
        s = L.Reshape((1, 1, filters), name=n("reshape"))(s)
        s = L.Conv2D(reduced, 1, use_bias=True, name=n("1_conv"))(s)
        s = prelu(s, name=n("prelu")) if version == 1 else L.Activation("relu", name=n("relu"))(s)
        s = L.Conv2D(filters, 1, use_bias=True, name=n("2_conv"))(s)
        gate = "hard_sigmoid" if version == 1 else CUSTOM_OBJECTS["hard_sigmoid_torch"]
        s = L.Activation(gate, name=n("gate"))(s)
        return L.Multiply(name=n("out"))([x, s])

    exps = _EXPS_V1 if version == 1 else _FIRSTS_V2
    prev = stem
    for i, (k, e, o, ratio, s) in enumerate(zip(_KERNELS, exps, _OUTS, _SES, _STRIDES)):
        out, exp = make_divisible(o * width, 4), make_divisible(e * width, 4)
        name = f"stack{i + 1}_"
        nm = (lambda t: None) if version == 1 else (lambda t: name + t)
        shortcut = not (out == prev and s == 1)
        y = ghost(x, exp, True, name + "ghost_1_", dfc=version == 2 and i >= v2_plain_stacks)
        if s > 1:
            y = L.DepthwiseConv2D(k, s, padding="same", use_bias=False, name=nm("down_conv"))(y)
            y = bn(y, name=nm("down_bn"))
        if ratio > 0:
            y = se(y, ratio, name + "se_")
        y = ghost(y, out, False, name + "ghost_2_")
        if shortcut:
            sc = L.DepthwiseConv2D(k, s, padding="same", use_bias=False, name=nm("short_1_conv"))(x)
            sc = bn(sc, name=nm("short_1_bn"))
            sc = L.Conv2D(out, 1, padding="valid", use_bias=False, name=nm("short_2_conv"))(sc)
            sc = bn(sc, name=nm("short_2_bn"))
        else:
            sc = x
        x = L.Add(name=nm("output"))([sc, y])
        prev = out
    last = make_divisible(exps[-1] * width, 4)
    x = L.Conv2D(last, 1, padding="valid", use_bias=False, name=None if version == 1 else "pre_conv")(x)
    x = bn(x, name=None if version == 1 else "pre_bn")
    x = prelu(x, name=None if version == 1 else "pre_prelu")
    # buildin_models' GDC head
    x = L.DepthwiseConv2D(int(x.shape[1]), use_bias=False, name="GDC_dw")(x)
    x = bn(x, name="GDC_batchnorm")
    x = L.Dropout(0.2)(x)
    x = L.Conv2D(emb, 1, use_bias=False, kernel_initializer="glorot_normal", name="GDC_conv")(x)
    x = L.Flatten(name="GDC_flatten")(x)
    x = bn(x, name="pre_embedding")
    out = L.Activation("linear", dtype="float32", name="embedding")(x)
    model = keras.models.Model(inputs, out, name=f"GhostFaceNetV{version}")
    _randomise_statistics(model, seed)
    _estimate_statistics(model, seed)
    return model


def _randomise_statistics(model, seed: int) -> None:
    """Give BN statistics and PReLU slopes non-trivial values, so the port is tested on every weight."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        cls = layer.__class__.__name__
        if cls == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights() if layer.scale and layer.center else (None,) * 4
            if gamma is None:
                continue
            n = gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n).astype(np.float32),
                    rng.normal(0, 0.1, n).astype(np.float32),
                    rng.normal(0, 0.1, n).astype(np.float32),
                    rng.uniform(0.5, 1.5, n).astype(np.float32),
                ]
            )
        elif cls == "PReLU":
            (alpha,) = layer.get_weights()
            layer.set_weights([rng.uniform(0.05, 0.4, alpha.shape).astype(np.float32)])


def _estimate_statistics(model, seed: int, count: int = 32) -> None:
    """Set BatchNorm moving statistics to those of seeded synthetic pictures, in one training-mode pass.

    Random statistics alone leave sixteen blocks of activations badly scaled: every face then gets
    nearly the same embedding, and a parity or export check on such outputs cannot fail. Statistics
    measured on smooth noise keep activations well scaled without needing data, and are still
    arbitrary values, so the port is tested on every weight.
    """
    import cv2

    keras = import_tf_keras()
    rng = np.random.default_rng(seed + 1)
    size = int(model.input_shape[1])
    coarse = rng.uniform(0, 255, (count, size // 8, size // 8, 3)).astype(np.float32)
    x = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_CUBIC) for c in coarse])
    x = (x - 127.5) / 128.0
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    drops = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    saved = [(layer, layer.momentum) for layer in bns], [(layer, layer.rate) for layer in drops]
    for layer in bns:
        layer.momentum = 0.0  # moving statistics := this batch's
    for layer in drops:
        layer.rate = 0.0  # dropout would skew the statistics of the layers after it
    try:
        model(x, training=True)
    finally:
        for layer, momentum in saved[0]:
            layer.momentum = momentum
        for layer, rate in saved[1]:
            layer.rate = rate


def save_keras_ghostfacenet(path: str | os.PathLike[str], **kwargs) -> Path:
    """Build with :func:`build_keras_ghostfacenet` and save a full-model ``.h5`` (config + weights)."""
    model = build_keras_ghostfacenet(**kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(path), include_optimizer=False, save_format="h5")
    return path
