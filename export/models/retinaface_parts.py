"""Building blocks shared by every RetinaFace variant: FPN, SSH and the three heads.

Module and attribute names follow Pytorch_Retinaface (``models/net.py``,
``models/retinaface.py``) exactly, because checkpoint keys are derived from them.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(inp: int, oup: int, stride: int = 1, leaky: float = 0.0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, 3, stride, 1, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def conv_bn_no_relu(inp: int, oup: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup))


def conv_bn1x1(inp: int, oup: int, stride: int, leaky: float = 0.0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, 1, stride, padding=0, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def conv_dw(inp: int, oup: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


class SSH(nn.Module):
    """Single Stage Headless context module (3x3, 5x5 and 7x7 receptive fields)."""

    def __init__(self, in_channel: int, out_channel: int):
        super().__init__()
        if out_channel % 4:
            raise ValueError(f"SSH out_channel must be divisible by 4, got {out_channel}")
        leaky = 0.1 if out_channel <= 64 else 0.0
        self.conv3X3 = conv_bn_no_relu(in_channel, out_channel // 2, stride=1)
        self.conv5X5_1 = conv_bn(in_channel, out_channel // 4, stride=1, leaky=leaky)
        self.conv5X5_2 = conv_bn_no_relu(out_channel // 4, out_channel // 4, stride=1)
        self.conv7X7_2 = conv_bn(out_channel // 4, out_channel // 4, stride=1, leaky=leaky)
        self.conv7x7_3 = conv_bn_no_relu(out_channel // 4, out_channel // 4, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv3x3 = self.conv3X3(x)
        conv5x5_1 = self.conv5X5_1(x)
        conv5x5 = self.conv5X5_2(conv5x5_1)
        conv7x7 = self.conv7x7_3(self.conv7X7_2(conv5x5_1))
        return F.relu(torch.cat([conv3x3, conv5x5, conv7x7], dim=1))


def nearest_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """PyTorch's ``interpolate(mode="nearest")``, written so every export target reproduces it.

    Exact 2x (or any integer) steps stay a Resize. A fractional step (a 320x240 input gives
    8 -> 15 rows between pyramid levels) becomes two Gathers with PyTorch's own source indices:
    converters lower a fractional nearest Resize with other rounding rules (the TFLite route
    moved 320x240 boxes by 10 px), a Gather leaves them nothing to reinterpret.
    """
    with warnings.catch_warnings():
        # sizes are fixed per export: the tracer is right to treat them (and the indices) as constants
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        out_h, out_w = int(size[0]), int(size[1])
        if out_h % h == 0 and out_w % w == 0:
            return F.interpolate(x, size=[out_h, out_w], mode="nearest")
        rows = _nearest_index(h, out_h, x.device)
        cols = _nearest_index(w, out_w, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


# a single node in torch.fx graphs (the INT8 preparation traces with fx; shapes are not ints there)
torch.fx.wrap("nearest_resize")


def _nearest_index(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    # ATen: src = min(floor(dst * (float)(in / out)), in - 1), in float32
    scale = torch.tensor(n_in / n_out, dtype=torch.float32)
    idx = torch.floor(torch.arange(n_out, dtype=torch.float32) * scale).to(torch.int64)
    return idx.clamp_(max=n_in - 1).to(device)


class FPN(nn.Module):
    """Three-level top-down feature pyramid with nearest upsampling."""

    def __init__(self, in_channels_list: list[int], out_channels: int):
        super().__init__()
        leaky = 0.1 if out_channels <= 64 else 0.0
        self.output1 = conv_bn1x1(in_channels_list[0], out_channels, stride=1, leaky=leaky)
        self.output2 = conv_bn1x1(in_channels_list[1], out_channels, stride=1, leaky=leaky)
        self.output3 = conv_bn1x1(in_channels_list[2], out_channels, stride=1, leaky=leaky)
        self.merge1 = conv_bn(out_channels, out_channels, leaky=leaky)
        self.merge2 = conv_bn(out_channels, out_channels, leaky=leaky)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        output1 = self.output1(features[0])
        output2 = self.output2(features[1])
        output3 = self.output3(features[2])
        up3 = nearest_resize(output3, (output2.size(2), output2.size(3)))
        output2 = self.merge2(output2 + up3)
        up2 = nearest_resize(output2, (output1.size(2), output1.size(3)))
        output1 = self.merge1(output1 + up2)
        return [output1, output2, output3]


class _Head(nn.Module):
    """A 1x1 conv per pyramid level, flattened to (N, anchors*H*W, values)."""

    values = 0

    def __init__(self, inchannels: int, num_anchors: int):
        super().__init__()
        self.conv1x1 = nn.Conv2d(inchannels, num_anchors * self.values, kernel_size=(1, 1), stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1).contiguous()
        return out.view(out.shape[0], -1, self.values)


class ClassHead(_Head):
    values = 2


class BboxHead(_Head):
    values = 4


class LandmarkHead(_Head):
    values = 10
