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


class _KerasGhostFaceNet:
    """Creates the layers of one GhostFaceNet, part by part, in the order the published code does.

    The order matters: unnamed layers (V1) get Keras' running names and the seeded initialisers
    draw in creation order, so the same arguments always give the same ``.h5``.
    """

    def __init__(self, version: int, bn_eps: float, bn_momentum: float):
        self.keras = import_tf_keras()
        self.L = self.keras.layers
        self.version = version
        self.bn_eps, self.bn_momentum = bn_eps, bn_momentum

    def names(self, prefix: str):
        """Layer names under ``prefix`` (V2, keras_cv_attention_models style); V1 leaves them to Keras."""
        return (lambda s: None) if self.version == 1 else (lambda s: prefix + s)

    def bn(self, x, name=None):
        return self.L.BatchNormalization(axis=-1, momentum=self.bn_momentum, epsilon=self.bn_eps, name=name)(x)

    def prelu(self, x, name=None):
        return self.L.PReLU(shared_axes=[1, 2], alpha_initializer=self.keras.initializers.Constant(0.25), name=name)(x)

    def stem(self, inputs, filters: int, stride: int):
        L, v2 = self.L, self.version == 2
        x = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name="stem_conv" if v2 else None)(inputs)
        x = self.bn(x, name="stem_bn" if v2 else None)
        return self.prelu(x, name="stem_prelu" if v2 else None)

    def ghost(self, x, out: int, act: bool, name: str, dfc: bool = False):
        """Ghost module: a primary 1x1 conv and a cheap depthwise conv, concatenated; V2 adds DFC attention."""
        L, n = self.L, self.names(name)
        primary = out // 2 if self.version == 1 else math.ceil(out / 2)
        p = L.Conv2D(primary, 1, padding="same" if self.version == 1 else "valid", use_bias=False, name=n("prim_conv"))(x)
        p = self.bn(p, name=n("prim_bn"))
        if act:
            p = self.prelu(p, name=n("prim_prelu"))
        c = L.DepthwiseConv2D(3, 1, padding="same", use_bias=False, name=n("cheap_conv"))(p)
        c = self.bn(c, name=n("cheap_bn"))
        if act:
            c = self.prelu(c, name=n("cheap_prelu"))
        y = L.Concatenate(name=n("concat"))([p, c])
        if not dfc:
            return y
        gate = self.dfc_gate(x, 2 * primary, n)
        return L.Multiply(name=n("multiply"))([gate, y])

    def dfc_gate(self, x, filters: int, n):
        """GhostNetV2's decoupled fully connected attention: pooled, 1x5 and 5x1 convs, sigmoid, resized back."""
        import tensorflow as tf

        L = self.L
        g = L.AveragePooling2D(pool_size=2, strides=2, name=n("short_pool"))(x)
        g = L.Conv2D(filters, 1, use_bias=False, name=n("short_1_conv"))(g)
        g = self.bn(g, name=n("short_1_bn"))
        g = L.DepthwiseConv2D((1, 5), padding="same", use_bias=False, name=n("short_2_conv"))(g)
        g = self.bn(g, name=n("short_2_bn"))
        g = L.DepthwiseConv2D((5, 1), padding="same", use_bias=False, name=n("short_3_conv"))(g)
        g = self.bn(g, name=n("short_3_bn"))
        g = L.Activation("sigmoid", name=n("short_sigmoid"))(g)
        return tf.image.resize(g, tf.shape(x)[1:-1], method="bilinear", antialias=False)

    def squeeze_excite(self, x, ratio: float, name: str):
        L, n = self.L, self.names(name)
        filters = x.shape[-1]
        reduced = make_divisible(filters * ratio, 4)
        s = L.GlobalAveragePooling2D(name=n("gap"))(x)
        s = L.Reshape((1, 1, filters), name=n("reshape"))(s)
        s = L.Conv2D(reduced, 1, use_bias=True, name=n("1_conv"))(s)
        s = self.prelu(s, name=n("prelu")) if self.version == 1 else L.Activation("relu", name=n("relu"))(s)
        s = L.Conv2D(filters, 1, use_bias=True, name=n("2_conv"))(s)
        gate = "hard_sigmoid" if self.version == 1 else CUSTOM_OBJECTS["hard_sigmoid_torch"]
        s = L.Activation(gate, name=n("gate"))(s)
        return L.Multiply(name=n("out"))([x, s])

    def bottleneck(self, x, name: str, kernel: int, exp: int, out: int, ratio: float, stride: int, shortcut: bool, dfc: bool):
        """Ghost bottleneck: ghost, [strided depthwise], [squeeze-excite], ghost, plus the (projected) input."""
        L, nm = self.L, self.names(name)
        y = self.ghost(x, exp, True, name + "ghost_1_", dfc=dfc)
        if stride > 1:
            y = L.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=nm("down_conv"))(y)
            y = self.bn(y, name=nm("down_bn"))
        if ratio > 0:
            y = self.squeeze_excite(y, ratio, name + "se_")
        y = self.ghost(y, out, False, name + "ghost_2_")
        if shortcut:
            sc = L.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=nm("short_1_conv"))(x)
            sc = self.bn(sc, name=nm("short_1_bn"))
            sc = L.Conv2D(out, 1, padding="valid", use_bias=False, name=nm("short_2_conv"))(sc)
            sc = self.bn(sc, name=nm("short_2_bn"))
        else:
            sc = x
        return L.Add(name=nm("output"))([sc, y])

    def head(self, x, last: int, emb: int):
        """The last 1x1 conv, then buildin_models' GDC head with BatchNorm on the embedding."""
        L, v1 = self.L, self.version == 1
        x = L.Conv2D(last, 1, padding="valid", use_bias=False, name=None if v1 else "pre_conv")(x)
        x = self.bn(x, name=None if v1 else "pre_bn")
        x = self.prelu(x, name=None if v1 else "pre_prelu")
        x = L.DepthwiseConv2D(int(x.shape[1]), use_bias=False, name="GDC_dw")(x)
        x = self.bn(x, name="GDC_batchnorm")
        x = L.Dropout(0.2)(x)
        x = L.Conv2D(emb, 1, use_bias=False, kernel_initializer="glorot_normal", name="GDC_conv")(x)
        x = L.Flatten(name="GDC_flatten")(x)
        x = self.bn(x, name="pre_embedding")
        return L.Activation("linear", dtype="float32", name="embedding")(x)


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
    net = _KerasGhostFaceNet(version, bn_eps, bn_momentum)
    keras = net.keras
    keras.utils.set_random_seed(seed)
    inputs = net.L.Input((input_size, input_size, 3))
    stem = make_divisible(16 * width, 4)
    x = net.stem(inputs, stem, stride)
    exps = _EXPS_V1 if version == 1 else _FIRSTS_V2
    prev = stem
    for i, (k, e, o, ratio, s) in enumerate(zip(_KERNELS, exps, _OUTS, _SES, _STRIDES)):
        out, exp = make_divisible(o * width, 4), make_divisible(e * width, 4)
        shortcut = not (out == prev and s == 1)
        x = net.bottleneck(x, f"stack{i + 1}_", k, exp, out, ratio, s, shortcut, dfc=version == 2 and i >= v2_plain_stacks)
        prev = out
    out = net.head(x, make_divisible(exps[-1] * width, 4), emb)
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
            gamma, _beta, _mean, _var = layer.get_weights() if layer.scale and layer.center else (None,) * 4
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
