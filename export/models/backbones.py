"""RetinaFace backbones with the parameter names of the checkpoints they must load.

- MobileNet-0.25: Pytorch_Retinaface ``models/net.py`` (``stage1..3``).
- GhostNet: Retinaface_Ghost ``models/ghostnet.py`` (``blocks1..3``), SE ratio configurable.
- MobileNetV3: Retinaface_Ghost ``models/mobilenetv3.py`` (``bneck1..3``).
- ResNet-50: torchvision's ``resnet50`` names (``layer1..4``); torchvision is not a dependency.

Each backbone stops at its last returned stage, like torchvision's IntermediateLayerGetter
does, so the state_dict holds exactly the keys the original ``body`` had.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .retinaface_parts import conv_bn, conv_dw


class MobileNetV1(nn.Module):
    """MobileNet-0.25 trunk; returns the outputs of stage1, stage2 and stage3."""

    out_channels = (64, 128, 256)

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_bn(3, 8, 2, leaky=0.1),
            conv_dw(8, 16, 1),
            conv_dw(16, 32, 2),
            conv_dw(32, 32, 1),
            conv_dw(32, 64, 2),
            conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(
            conv_dw(64, 128, 2),
            *[conv_dw(128, 128, 1) for _ in range(5)],
        )
        self.stage3 = nn.Sequential(conv_dw(128, 256, 2), conv_dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        c3 = self.stage3(c2)
        return [c1, c2, c3]


# ----------------------------------------------------------------------------- GhostNet


def make_divisible(v: float, divisor: int = 4, min_value: int | None = None) -> int:
    """Round channels the way the TF-slim MobileNet code does (never more than 10% down)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _hard_sigmoid_torch(x: torch.Tensor) -> torch.Tensor:
    return F.relu6(x + 3.0) / 6.0


class SqueezeExcite(nn.Module):
    def __init__(self, in_chs: int, se_ratio: float = 0.25, divisor: int = 4):
        super().__init__()
        reduced = make_divisible(in_chs * se_ratio, divisor)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_reduce = nn.Conv2d(in_chs, reduced, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced, in_chs, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        se = self.conv_expand(self.act1(self.conv_reduce(self.avg_pool(x))))
        return x * _hard_sigmoid_torch(se)


class GhostModule(nn.Module):
    def __init__(self, inp: int, oup: int, kernel_size: int = 1, ratio: int = 2, dw_size: int = 3, relu: bool = True):
        super().__init__()
        self.oup = oup
        init_channels = math.ceil(oup / ratio)
        new_channels = init_channels * (ratio - 1)
        self.trim = init_channels + new_channels != oup  # static, so the graph traces without a branch
        self.primary_conv = nn.Sequential(
            nn.Conv2d(inp, init_channels, kernel_size, 1, kernel_size // 2, bias=False),
            nn.BatchNorm2d(init_channels),
            nn.ReLU(inplace=True) if relu else nn.Sequential(),
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_channels, new_channels, dw_size, 1, dw_size // 2, groups=init_channels, bias=False),
            nn.BatchNorm2d(new_channels),
            nn.ReLU(inplace=True) if relu else nn.Sequential(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        out = torch.cat([x1, x2], dim=1)
        return out[:, : self.oup] if self.trim else out


class GhostBottleneck(nn.Module):
    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, dw_kernel_size: int = 3, stride: int = 1, se_ratio: float = 0.0):
        super().__init__()
        self.stride = stride
        self.ghost1 = GhostModule(in_chs, mid_chs, relu=True)
        if stride > 1:
            self.conv_dw = nn.Conv2d(mid_chs, mid_chs, dw_kernel_size, stride=stride, padding=(dw_kernel_size - 1) // 2, groups=mid_chs, bias=False)
            self.bn_dw = nn.BatchNorm2d(mid_chs)
        self.se = SqueezeExcite(mid_chs, se_ratio=se_ratio) if se_ratio and se_ratio > 0 else None
        self.ghost2 = GhostModule(mid_chs, out_chs, relu=False)
        if in_chs == out_chs and stride == 1:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, in_chs, dw_kernel_size, stride=stride, padding=(dw_kernel_size - 1) // 2, groups=in_chs, bias=False),
                nn.BatchNorm2d(in_chs),
                nn.Conv2d(in_chs, out_chs, 1, stride=1, padding=0, bias=False),
                nn.BatchNorm2d(out_chs),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        x = self.ghost1(x)
        if self.stride > 1:
            x = self.bn_dw(self.conv_dw(x))
        if self.se is not None:
            x = self.se(x)
        x = self.ghost2(x)
        return x + self.shortcut(residual)


# kernel, expansion, out channels, SE ratio, stride — per stage, as Retinaface_Ghost defines them.
_GHOSTNET_STAGES = [
    [[3, 16, 16, 0, 1]],
    [[3, 48, 24, 0, 2]],
    [[3, 72, 32, 0, 1]],
    [[5, 72, 32, 0.25, 2]],
    [[5, 120, 64, 0.25, 1]],
    [[3, 240, 64, 0, 2]],
    [[3, 200, 64, 0, 1], [3, 184, 128, 0, 1], [3, 184, 128, 0, 1], [3, 480, 128, 0.25, 1], [3, 672, 128, 0.25, 1]],
    [[5, 672, 128, 0.25, 2]],
    [[5, 960, 256, 0, 1], [5, 960, 256, 0.25, 1], [5, 960, 256, 0, 1], [5, 960, 256, 0.25, 1]],
]


class GhostNet(nn.Module):
    """GhostNet trunk of Retinaface_Ghost; ``se_ratio=0`` is the shipped "6M" model."""

    out_channels = (64, 128, 256)

    def __init__(self, se_ratio: float = 0.25, width: float = 1.0):
        super().__init__()
        stem = make_divisible(16 * width, 4)
        self.conv_stem = nn.Conv2d(3, stem, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.act1 = nn.ReLU(inplace=True)
        stages = []
        in_ch = stem
        for cfg in _GHOSTNET_STAGES:
            layers = []
            for k, exp, c, se, s in cfg:
                out_ch = make_divisible(c * width, 4)
                hidden = make_divisible(exp * width, 4)
                layers.append(GhostBottleneck(in_ch, hidden, out_ch, k, s, se_ratio=se_ratio if se else 0.0))
                in_ch = out_ch
            stages.append(nn.Sequential(*layers))
        self.blocks1 = nn.Sequential(*stages[0:5])
        self.blocks2 = nn.Sequential(*stages[5:7])
        self.blocks3 = nn.Sequential(*stages[7:9])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.act1(self.bn1(self.conv_stem(x)))
        c1 = self.blocks1(x)
        c2 = self.blocks2(c1)
        c3 = self.blocks3(c2)
        return [c1, c2, c3]


# ----------------------------------------------------------------------------- MobileNetV3


class HSwish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * F.relu6(x + 3.0) / 6.0


class HSigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


class SeModule(nn.Module):
    def __init__(self, in_size: int, reduction: int = 4):
        super().__init__()
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_size, in_size // reduction, kernel_size=1, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(in_size // reduction),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_size // reduction, in_size, kernel_size=1, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(in_size),
            HSigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.se(x)


class MobileV3Block(nn.Module):
    """Expand, depthwise, project; SE after the projection as Retinaface_Ghost does."""

    def __init__(self, kernel_size: int, in_size: int, expand_size: int, out_size: int, act: str, se: bool, stride: int):
        super().__init__()
        self.stride = stride
        self.se = SeModule(out_size) if se else None
        make_act = (lambda: nn.ReLU(inplace=True)) if act == "relu" else HSwish
        self.conv1 = nn.Conv2d(in_size, expand_size, 1, 1, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(expand_size)
        self.nolinear1 = make_act()
        self.conv2 = nn.Conv2d(expand_size, expand_size, kernel_size, stride, kernel_size // 2, groups=expand_size, bias=False)
        self.bn2 = nn.BatchNorm2d(expand_size)
        self.nolinear2 = make_act()
        self.conv3 = nn.Conv2d(expand_size, out_size, 1, 1, 0, bias=False)
        self.bn3 = nn.BatchNorm2d(out_size)
        self.shortcut = nn.Sequential()
        if stride == 1 and in_size != out_size:
            self.shortcut = nn.Sequential(nn.Conv2d(in_size, out_size, 1, 1, 0, bias=False), nn.BatchNorm2d(out_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.nolinear1(self.bn1(self.conv1(x)))
        out = self.nolinear2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        return out + self.shortcut(x) if self.stride == 1 else out


class MobileNetV3(nn.Module):
    """MobileNetV3 trunk of Retinaface_Ghost (bneck1..3 return 64/128/256 channels)."""

    out_channels = (64, 128, 256)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.hs1 = HSwish()
        B = MobileV3Block
        self.bneck1 = nn.Sequential(
            B(3, 16, 16, 16, "relu", False, 1),
            B(3, 16, 64, 32, "relu", False, 2),
            B(3, 32, 72, 32, "relu", False, 1),
            B(5, 32, 72, 64, "relu", True, 2),
            B(5, 64, 120, 64, "relu", True, 1),
            B(5, 64, 120, 64, "relu", True, 1),
        )
        self.bneck2 = nn.Sequential(
            B(3, 64, 240, 80, "hswish", False, 2),
            B(3, 80, 200, 80, "hswish", False, 1),
            B(3, 80, 184, 80, "hswish", False, 1),
            B(3, 80, 184, 128, "hswish", False, 1),
        )
        self.bneck3 = nn.Sequential(
            B(3, 128, 480, 128, "hswish", True, 1),
            B(3, 128, 672, 128, "hswish", True, 1),
            B(5, 128, 672, 256, "hswish", True, 1),
            B(5, 256, 672, 256, "hswish", True, 2),
            B(5, 256, 960, 256, "hswish", True, 1),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.hs1(self.bn1(self.conv1(x)))
        c1 = self.bneck1(x)
        c2 = self.bneck2(c1)
        c3 = self.bneck3(c2)
        return [c1, c2, c3]


# ----------------------------------------------------------------------------- ResNet-50


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """torchvision ``resnet50`` trunk up to layer4 (fc and avgpool dropped, as RetinaFace's body does)."""

    out_channels = (512, 1024, 2048)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._inplanes = 64
        self.layer1 = self._make_layer(64, 3)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)
        self.layer4 = self._make_layer(512, 3, stride=2)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self._inplanes, planes * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes * 4
        layers += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        c2 = self.layer2(x)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [c2, c3, c4]


BACKBONES = {
    "mobilenet0.25": MobileNetV1,
    "ghostnet": GhostNet,
    "mobilenetv3": MobileNetV3,
    "resnet50": ResNet50,
}
