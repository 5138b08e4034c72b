"""MiniFASNet (Silent-Face-Anti-Spoofing): the PyTorch reference of the liveness classifiers.

A MobileFaceNet-like trunk of inverted bottlenecks (1x1 expand, 3x3 depthwise, 1x1 linear
project, PReLU) pruned to uneven widths, a global depthwise "GDC" convolution and a 3-way
classifier. The pruned widths are facts of the released checkpoints, so they are tabulated per
variant below; module attribute names (``conv1``, ``conv_23``, ``conv_3.model.N.conv_dw``,
``se_module.fc1`` ...) are chosen so that the upstream ``.pth`` files load with ``strict=True``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

VARIANTS = ("MiniFASNetV1", "MiniFASNetV2", "MiniFASNetV1SE", "MiniFASNetV2SE")


@dataclass(frozen=True)
class _Widths:
    """Channel widths of one pruned trunk.

    ``down*`` are the expansion widths of the stride-2 bottlenecks, ``stage*`` the expansion
    width of every residual bottleneck in a stage (the stage's own width is ``64`` or ``128``).
    """

    stem: int
    down2: int
    stage3: tuple[int, ...]
    down3: int
    stage4: tuple[int, ...]
    down4: int
    stage5: tuple[int, ...]
    embedding: int = 512


# Upstream's "1.8M" (V1) and "1.8M_" (V2) pruning results.
_WIDTHS = {
    "V1": _Widths(32, 103, (13, 26, 13, 52), 231, (154, 52, 26, 52, 26, 26), 308, (26, 26)),
    "V2": _Widths(32, 103, (13, 13, 13, 13), 231, (231, 52, 26, 77, 26, 26), 308, (26, 26)),
}
_STAGE_CHANNELS = (64, 128, 128)  # width of stage 3, 4 and 5


def conv6_kernel(input_hw: tuple[int, int]) -> tuple[int, int]:
    """Kernel of the global depthwise conv: the trunk's output size after four stride-2 steps.

    The same rounding upstream uses (``(size + 15) // 16``), so an 80x80 model gets 5x5.
    """
    h, w = input_hw
    return ((h + 15) // 16, (w + 15) // 16)


class ConvBNPReLU(nn.Module):
    """conv (no bias) -> BatchNorm -> per-channel PReLU."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.prelu = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.bn(self.conv(x)))


class ConvBN(nn.Module):
    """conv (no bias) -> BatchNorm, no activation (projections and the GDC layer)."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int] = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, 1, 0, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class SqueezeExcite(nn.Module):
    """Channel attention with BatchNorm after both 1x1 convs (as the SE checkpoints were trained)."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = channels // reduction
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3), keepdim=True)
        w = torch.relu(self.bn1(self.fc1(w)))
        return x * torch.sigmoid(self.bn2(self.fc2(w)))


class Bottleneck(nn.Module):
    """1x1 expand -> 3x3 depthwise (stride 1 or 2) -> 1x1 linear project, optional SE and shortcut."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int, residual: bool, se: bool = False):
        super().__init__()
        self.conv = ConvBNPReLU(cin, mid)
        self.conv_dw = ConvBNPReLU(mid, mid, kernel=3, stride=stride, groups=mid)
        self.project = ConvBN(mid, cout)
        self.residual = residual
        if se:
            self.se_module = SqueezeExcite(cout)
        else:
            self.se_module = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.conv_dw(self.conv(x)))
        if not self.residual:
            return y
        if self.se_module is not None:
            y = self.se_module(y)
        return x + y


class Stage(nn.Module):
    """Residual bottlenecks at one width; with ``se`` only the last one has squeeze-excite."""

    def __init__(self, channels: int, mids: tuple[int, ...], se: bool):
        super().__init__()
        last = len(mids) - 1
        self.model = nn.Sequential(*(Bottleneck(channels, m, channels, 1, True, se and i == last) for i, m in enumerate(mids)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MiniFASNet(nn.Module):
    """Input: N x 3 x H x W BGR pixels 0..255 (no normalisation). Output: N x ``num_classes`` logits."""

    def __init__(self, widths: _Widths, se: bool, input_hw: tuple[int, int] = (80, 80), embedding_size: int = 128, num_classes: int = 3, drop_p: float = 0.0):
        super().__init__()
        c3, c4, c5 = _STAGE_CHANNELS
        w = widths
        self.conv1 = ConvBNPReLU(3, w.stem, kernel=3, stride=2)
        self.conv2_dw = ConvBNPReLU(w.stem, w.stem, kernel=3, groups=w.stem)
        self.conv_23 = Bottleneck(w.stem, w.down2, c3, stride=2, residual=False)
        self.conv_3 = Stage(c3, w.stage3, se)
        self.conv_34 = Bottleneck(c3, w.down3, c4, stride=2, residual=False)
        self.conv_4 = Stage(c4, w.stage4, se)
        self.conv_45 = Bottleneck(c4, w.down4, c5, stride=2, residual=False)
        self.conv_5 = Stage(c5, w.stage5, se)
        self.conv_6_sep = ConvBNPReLU(c5, w.embedding)
        self.conv_6_dw = ConvBN(w.embedding, w.embedding, kernel=conv6_kernel(input_hw), groups=w.embedding)
        # upstream always creates ``linear`` (it is in every checkpoint) but skips it at 512-d
        self.linear = nn.Linear(w.embedding, embedding_size, bias=False)
        self.use_linear = embedding_size != w.embedding
        self.bn = nn.BatchNorm1d(embedding_size)
        self.drop = nn.Dropout(drop_p)
        self.prob = nn.Linear(embedding_size, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in (
            self.conv1,
            self.conv2_dw,
            self.conv_23,
            self.conv_3,
            self.conv_34,
            self.conv_4,
            self.conv_45,
            self.conv_5,
            self.conv_6_sep,
            self.conv_6_dw,
        ):
            x = layer(x)
        x = torch.flatten(x, 1)
        if self.use_linear:
            x = self.linear(x)
        return self.prob(self.drop(self.bn(x)))


def build_minifasnet(variant: str, input_hw: tuple[int, int] = (80, 80), num_classes: int = 3) -> MiniFASNet:
    """A MiniFASNet of ``variant`` (one of :data:`VARIANTS`) for ``input_hw`` (height, width) crops.

    The global depthwise kernel follows the input size, so the released 80x80 checkpoints only
    load into an 80x80 model. Upstream's V2SE factory defaults to 4 classes; every released
    checkpoint has 3, which is the default here for all variants.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown MiniFASNet variant {variant!r}; choose from {', '.join(VARIANTS)}")
    h, w = (int(v) for v in input_hw)
    if h < 16 or w < 16:
        raise ValueError(f"MiniFASNet needs inputs of at least 16x16 (four stride-2 steps), got {w}x{h}")
    se = variant.endswith("SE")
    version = variant[len("MiniFASNet") :].removesuffix("SE")
    return MiniFASNet(_WIDTHS[version], se=se, input_hw=(h, w), num_classes=num_classes, drop_p=0.75 if se else 0.2)
