"""GhostFaceNetV1/V2 in PyTorch, numerically twin to the Keras originals.

What parity with the Keras models needs, and where it lives here:

- TF "same" padding, which pads stride-2 convolutions asymmetrically (more at the bottom/right):
  :class:`SameConv` computes the pads for the known input size;
- Keras ``hard_sigmoid`` is ``clip(0.2x + 0.5, 0, 1)``, not PyTorch's ``relu6(x + 3) / 6``; both exist
  (GhostNetV2's SE uses the torch form), see :class:`Act`;
- BatchNorm epsilon and momentum are whatever the checkpoint says (set by the port);
- PReLU with one slope per channel (``shared_axes=[1, 2]``);
- the GDC head: a depthwise conv over the whole final map, BN, a 1x1 conv to 512, and a
  BatchNorm on the flattened embedding.

The architecture is described by :class:`GhostFaceNetConfig`; ``GhostFaceNetConfig.v1()`` /
``.v2()`` give the published layouts for any width and stem stride, and the Keras port builds
one from a checkpoint's graph (which is how truncated student models load).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import make_divisible


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TF 'SAME' along one axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Act(nn.Module):
    """The activations GhostFaceNets checkpoints use, by their Keras names."""

    KINDS = ("linear", "relu", "relu6", "prelu", "sigmoid", "hard_sigmoid", "hard_sigmoid_torch", "swish", "hard_swish")

    def __init__(self, kind: str, channels: int = 0):
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"unsupported activation {kind!r}; supported: {self.KINDS}")
        self.kind = kind
        if kind == "prelu":
            self.prelu = nn.PReLU(channels, init=0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kind
        if k == "linear":
            return x
        if k == "relu":
            return F.relu(x)
        if k == "relu6":
            return F.relu6(x)
        if k == "prelu":
            return self.prelu(x)
        if k == "sigmoid":
            return torch.sigmoid(x)
        if k == "hard_sigmoid":
            return torch.clamp(x * 0.2 + 0.5, 0.0, 1.0)
        if k == "hard_sigmoid_torch":
            return F.relu6(x + 3.0) / 6.0
        if k == "swish":
            return x * torch.sigmoid(x)
        return x * F.relu6(x + 3.0) / 6.0  # hard_swish

    def extra_repr(self) -> str:
        return self.kind


class SameConv(nn.Module):
    """Conv2d with TF 'same' (or 'valid') padding for a known input size, plus optional BN and activation."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int | tuple[int, int],
        stride: int,
        size: tuple[int, int],
        depthwise: bool = False,
        bias: bool = False,
        padding: str = "same",
        bn: bool = True,
        act: str | None = None,
    ):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        if padding == "same":
            top, bottom = same_pads(size[0], kh, stride)
            left, right = same_pads(size[1], kw, stride)
        else:
            top = bottom = left = right = 0
        symmetric = top == bottom and left == right
        self.pad = None if symmetric or not (top or bottom or left or right) else nn.ZeroPad2d((left, right, top, bottom))
        conv_padding = (top, left) if symmetric else (0, 0)
        groups = in_ch if depthwise else 1
        self.conv = nn.Conv2d(in_ch, out_ch, (kh, kw), stride, conv_padding, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_ch) if bn else None
        self.act = Act(act, out_ch) if act and act != "linear" else None
        if padding == "same":
            self.out_size = (math.ceil(size[0] / stride), math.ceil(size[1] / stride))
        else:
            self.out_size = ((size[0] - kh) // stride + 1, (size[1] - kw) // stride + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = self.pad(x)
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.act is not None:
            x = self.act(x)
        return x


# ----------------------------------------------------------------------------- configuration


@dataclass
class GhostModuleConfig:
    primary: int  # channels of the 1x1 primary conv (output is twice this)
    dw_kernel: int = 3
    act: str | None = None
    dfc: bool = False  # GhostNetV2 DFC attention multiplies the output
    dfc_kernel: int = 5
    dfc_gate: str = "sigmoid"


@dataclass
class BlockConfig:
    ghost1: GhostModuleConfig
    ghost2: GhostModuleConfig
    kernel: int = 3
    stride: int = 1
    se_reduced: int = 0  # 0: no squeeze-excite
    se_act: str = "relu"
    se_gate: str = "hard_sigmoid"
    shortcut: bool = True  # False: identity shortcut


@dataclass
class GhostFaceNetConfig:
    stem: int
    stem_stride: int
    stem_act: str
    blocks: list[BlockConfig]
    last: int  # channels of the 1x1 conv before the head
    last_act: str
    emb: int = 512
    pw_conv: int = 0  # optional pointwise conv before GDC (buildin_models add_pointwise_conv)
    pw_act: str = "relu"
    gdc_bias: bool = False
    emb_scale: bool = True  # pre_embedding BatchNorm with gamma (scale=True)
    input_size: int = 112
    version: int = 1
    bn_eps: float = 1e-5
    bn_momentum: float = 0.9
    extra: dict = field(default_factory=dict)

    @staticmethod
    def v1(width: float = 1.3, stride: int = 2, act: str = "prelu", se_act: str | None = None) -> GhostFaceNetConfig:
        """GhostFaceNetV1 as the GhostFaceNets code builds it (ReLUs replaced by PReLU)."""
        kernels = [3, 3, 3, 5, 5, 3, 3, 3, 3, 3, 3, 5, 5, 5, 5, 5]
        exps = [16, 48, 72, 72, 120, 240, 200, 184, 184, 480, 672, 672, 960, 960, 960, 512]
        outs = [16, 24, 24, 40, 40, 80, 80, 80, 80, 112, 112, 160, 160, 160, 160, 160]
        ses = [0, 0, 0, 0.25, 0.25, 0, 0, 0, 0, 0.25, 0.25, 0.25, 0, 0.25, 0, 0.25]
        strides = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
        stem = make_divisible(16 * width, 4)
        blocks, prev = [], stem
        for k, e, o, se, s in zip(kernels, exps, outs, ses, strides):
            out, exp = make_divisible(o * width, 4), make_divisible(e * width, 4)
            blocks.append(
                BlockConfig(
                    ghost1=GhostModuleConfig(exp // 2, act=act),
                    ghost2=GhostModuleConfig(out // 2, act=None),
                    kernel=k,
                    stride=s,
                    se_reduced=make_divisible(exp * se, 4) if se else 0,
                    se_act=se_act or act,
                    se_gate="hard_sigmoid",
                    shortcut=not (out == prev and s == 1),
                )
            )
            prev = out
        return GhostFaceNetConfig(stem=stem, stem_stride=stride, stem_act=act, blocks=blocks, last=make_divisible(exps[-1] * width, 4), last_act=act, version=1)

    @staticmethod
    def v2(width: float = 1.3, stride: int = 2, act: str = "prelu", v1_stacks: int = 2) -> GhostFaceNetConfig:
        """GhostFaceNetV2: GhostNetV2 (DFC attention on ghost_1 after the first ``v1_stacks`` blocks)."""
        kernels = [3, 3, 3, 5, 5, 3, 3, 3, 3, 3, 3, 5, 5, 5, 5, 5]
        firsts = [16, 48, 72, 72, 120, 240, 200, 184, 184, 480, 672, 672, 960, 960, 960, 960]
        outs = [16, 24, 24, 40, 40, 80, 80, 80, 80, 112, 112, 160, 160, 160, 160, 160]
        ses = [0, 0, 0, 0.25, 0.25, 0, 0, 0, 0, 0.25, 0.25, 0.25, 0, 0.25, 0, 0.25]
        strides = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
        stem = make_divisible(16 * width, 4)
        blocks, prev = [], stem
        for i, (k, f, o, se, s) in enumerate(zip(kernels, firsts, outs, ses, strides)):
            out, first = make_divisible(o * width, 4), make_divisible(f * width, 4)
            blocks.append(
                BlockConfig(
                    ghost1=GhostModuleConfig(math.ceil(first / 2), act=act, dfc=i >= v1_stacks),
                    ghost2=GhostModuleConfig(math.ceil(out / 2), act=None),
                    kernel=k,
                    stride=s,
                    se_reduced=make_divisible(first * se, 4) if se else 0,
                    se_act="relu",
                    se_gate="hard_sigmoid_torch",
                    shortcut=not (out == prev and s == 1),
                )
            )
            prev = out
        return GhostFaceNetConfig(
            stem=stem, stem_stride=stride, stem_act=act, blocks=blocks, last=make_divisible(firsts[-1] * width, 4), last_act=act, version=2
        )


# ----------------------------------------------------------------------------- modules


class GhostModule(nn.Module):
    def __init__(self, in_ch: int, cfg: GhostModuleConfig, size: tuple[int, int]):
        super().__init__()
        self.primary = SameConv(in_ch, cfg.primary, 1, 1, size, act=cfg.act)
        self.cheap = SameConv(cfg.primary, cfg.primary, cfg.dw_kernel, 1, size, depthwise=True, act=cfg.act)
        self.out_channels = 2 * cfg.primary
        self.dfc = None
        if cfg.dfc:
            half = (size[0] // 2, size[1] // 2)
            k = cfg.dfc_kernel
            self.dfc = nn.ModuleDict(
                {
                    "conv": SameConv(in_ch, self.out_channels, 1, 1, half),
                    "horizontal": SameConv(self.out_channels, self.out_channels, (1, k), 1, half, depthwise=True),
                    "vertical": SameConv(self.out_channels, self.out_channels, (k, 1), 1, half, depthwise=True),
                }
            )
            self.dfc_gate = Act(cfg.dfc_gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.primary(x)
        out = torch.cat([p, self.cheap(p)], dim=1)
        if self.dfc is not None:
            g = F.avg_pool2d(x, 2, 2)
            g = self.dfc["vertical"](self.dfc["horizontal"](self.dfc["conv"](g)))
            g = self.dfc_gate(g)
            g = F.interpolate(g, size=out.shape[-2:], mode="bilinear", align_corners=False)
            out = g * out
        return out


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int, act: str, gate: str):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = Act(act, reduced)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = Act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class GhostBottleneck(nn.Module):
    def __init__(self, in_ch: int, cfg: BlockConfig, size: tuple[int, int]):
        super().__init__()
        self.ghost1 = GhostModule(in_ch, cfg.ghost1, size)
        mid = self.ghost1.out_channels
        self.down = None
        out_size = size
        if cfg.stride > 1:
            self.down = SameConv(mid, mid, cfg.kernel, cfg.stride, size, depthwise=True)
            out_size = self.down.out_size
        self.se = SqueezeExcite(mid, cfg.se_reduced, cfg.se_act, cfg.se_gate) if cfg.se_reduced else None
        self.ghost2 = GhostModule(mid, cfg.ghost2, out_size)
        self.out_channels = self.ghost2.out_channels
        self.shortcut = None
        if cfg.shortcut:
            dw = SameConv(in_ch, in_ch, cfg.kernel, cfg.stride, size, depthwise=True)
            self.shortcut = nn.Sequential(dw, SameConv(in_ch, self.out_channels, 1, 1, dw.out_size, padding="valid"))
        elif in_ch != self.out_channels or cfg.stride != 1:
            raise ValueError(f"identity shortcut needs in == out and stride 1 (got {in_ch}->{self.out_channels}, stride {cfg.stride})")
        self.out_size = out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ghost1(x)
        if self.down is not None:
            y = self.down(y)
        if self.se is not None:
            y = self.se(y)
        y = self.ghost2(y)
        return y + (x if self.shortcut is None else self.shortcut(x))


class GhostFaceNet(nn.Module):
    """112x112x3 aligned face (NCHW, RGB, (x-127.5)/128) -> 512-d embedding (not normalised)."""

    def __init__(self, cfg: GhostFaceNetConfig):
        super().__init__()
        self.cfg = cfg
        size = (cfg.input_size, cfg.input_size)
        self.stem = SameConv(3, cfg.stem, 3, cfg.stem_stride, size, act=cfg.stem_act)
        size, ch = self.stem.out_size, cfg.stem
        blocks = []
        for b in cfg.blocks:
            block = GhostBottleneck(ch, b, size)
            blocks.append(block)
            size, ch = block.out_size, block.out_channels
        self.blocks = nn.Sequential(*blocks)
        self.last = SameConv(ch, cfg.last, 1, 1, size, padding="valid", act=cfg.last_act)
        ch = cfg.last
        self.pw = None
        if cfg.pw_conv:
            self.pw = SameConv(ch, cfg.pw_conv, 1, 1, size, padding="valid", act=cfg.pw_act)
            ch = cfg.pw_conv
        self.gdc = SameConv(ch, ch, size, 1, size, depthwise=True, padding="valid")
        self.gdc_conv = nn.Conv2d(ch, cfg.emb, 1, bias=cfg.gdc_bias)
        self.emb_bn = nn.BatchNorm1d(cfg.emb, affine=True)
        if not cfg.emb_scale:
            self.emb_bn.weight.requires_grad_(False)
        self.set_batchnorm(cfg.bn_eps, cfg.bn_momentum)

    def set_batchnorm(self, eps: float, keras_momentum: float) -> None:
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eps = eps
                m.momentum = 1.0 - keras_momentum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        x = self.last(x)
        if self.pw is not None:
            x = self.pw(x)
        x = self.gdc_conv(self.gdc(x))
        return self.emb_bn(torch.flatten(x, 1))


def build_ghostfacenet(version: int = 1, width: float = 1.3, stride: int = 2, **kwargs) -> GhostFaceNet:
    cfg = GhostFaceNetConfig.v1(width, stride) if version == 1 else GhostFaceNetConfig.v2(width, stride)
    return GhostFaceNet(replace(cfg, **kwargs) if kwargs else cfg)
