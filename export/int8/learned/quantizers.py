"""The two learnable quantisers: AdaRound weights and LSQ-style activation ranges.

Both quantise exactly as the backends do, so what is learned here is what an INT8 runtime computes:
weights per output channel, symmetric, levels -127..127, scale max|w|/127 (ONNX Runtime's and
OpenVINO's per-channel rule, so the backend re-derives the same scale from the rounded weights);
activations per tensor, asymmetric uint8, scale (hi - lo)/255 and zero point round(-lo/scale)
with the range widened to contain 0 (ONNX Runtime's rule for a (lo, hi) calibration range).
"""

from __future__ import annotations

import torch
from torch import nn

WEIGHT_QMAX = 127
ACT_LEVELS = 255
# AdaRound's rectified sigmoid stretch (Nagel et al. 2020): h(v) reaches exactly 0 and 1
_ZETA, _GAMMA = 1.1, -0.1


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return (torch.round(x) - x).detach() + x


def per_channel_scale(w: torch.Tensor, qmax: int = WEIGHT_QMAX) -> torch.Tensor:
    dims = tuple(range(1, w.dim()))
    return w.detach().abs().amax(dim=dims, keepdim=True).clamp(min=1e-12) / qmax


class AdaRoundWeight(nn.Module):
    """Per-channel symmetric int8 weight whose up/down rounding of each element is learned.

    ``v`` parameterises a soft rounding offset h(v) in [0, 1]; a regulariser annealed from a
    steep to a flat exponent pushes every h to 0 or 1, and :meth:`harden` then fixes the choice.
    """

    def __init__(self, weight: torch.Tensor, qmax: int = WEIGHT_QMAX):
        super().__init__()
        w = weight.detach().float()
        self.qmax = qmax  # levels a side: 127 for int8, 64 on a 7-bit grid (:mod:`..weight_grid`)
        self.register_buffer("scale", per_channel_scale(w, qmax))
        scaled = w / self.scale
        self.register_buffer("floor", torch.floor(scaled))
        # each channel's largest weight keeps its level (+-127): the backend derives the channel's
        # scale from it, so moving it would move every other weight of the channel to another grid
        self.register_buffer("pinned", scaled.abs() >= qmax - 1e-3)
        self.register_buffer("pinned_offset", torch.round(scaled) - self.floor)
        rest = (scaled - self.floor).clamp(0.01, 0.99)  # start at the float value itself
        self.v = nn.Parameter(-torch.log((_ZETA - _GAMMA) / (rest - _GAMMA) - 1))
        self.hard = False

    def offset(self) -> torch.Tensor:
        if self.hard:
            h = (self.v >= 0).to(self.v.dtype)
        else:
            h = (torch.sigmoid(self.v) * (_ZETA - _GAMMA) + _GAMMA).clamp(0, 1)
        return torch.where(self.pinned, self.pinned_offset, h)

    def integers(self) -> torch.Tensor:
        return (self.floor + self.offset()).clamp(-self.qmax, self.qmax)

    def forward(self) -> torch.Tensor:
        return self.integers() * self.scale

    def regulariser(self, beta: float) -> torch.Tensor:
        """0 when every offset is exactly 0 or 1; larger the closer offsets sit to 1/2."""
        h = self.offset()
        return (1 - (2 * h - 1).abs().pow(beta)).mean()

    def harden(self) -> None:
        self.hard = True


class LearnedRange(nn.Module):
    """Per-tensor uint8 fake quantiser with a learnable (lo, hi) range (LSQ-style gradients).

    The range is stored as multipliers of its initial value, so one learning rate suits tensors
    whose ranges differ by orders of magnitude; rounding passes gradients straight through.
    """

    def __init__(self, lo: float, hi: float):
        super().__init__()
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if hi - lo < 1e-8:
            hi = lo + 1e-8
        self.register_buffer("lo0", torch.tensor(lo))
        self.register_buffer("hi0", torch.tensor(hi))
        self.g_lo = nn.Parameter(torch.tensor(1.0))
        self.g_hi = nn.Parameter(torch.tensor(1.0))

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo = torch.clamp(self.lo0 * self.g_lo, max=0.0)
        hi = torch.clamp(self.hi0 * self.g_hi, min=0.0)
        return lo, torch.maximum(hi, lo + 1e-8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.bounds()
        scale = (hi - lo) / ACT_LEVELS
        zero = round_ste(-lo / scale).clamp(0, ACT_LEVELS)
        q = torch.clamp(round_ste(x / scale) + zero, 0, ACT_LEVELS)
        return (q - zero) * scale

    def range(self) -> tuple[float, float]:
        """The (lo, hi) of the grid this quantiser rounds to: -zero * scale and (255 - zero) * scale.

        Written to a backend, it gives the same scale and an integral zero point, so no backend
        breaks a tie otherwise than :meth:`forward` (a symmetric range puts -lo/scale on 127.5,
        which torch rounds to 128 and TFLite's quantiser to 127)."""
        with torch.no_grad():
            lo, hi = self.bounds()
            scale = (hi - lo) / ACT_LEVELS
            zero = torch.round(-lo / scale).clamp(0, ACT_LEVELS)
            return float(-zero * scale), float((ACT_LEVELS - zero) * scale)


def on_grid(scale: float, zero: int, lo: float, hi: float) -> bool:
    """Whether a backend's uint8 quantiser (``scale``, ``zero``) is the grid (lo, hi) that
    :meth:`LearnedRange.range` reports (an int8 backend's zero point plus 128)."""
    want = (hi - lo) / ACT_LEVELS
    return abs(scale - want) <= 1e-5 * want and zero == round(-lo / want)
