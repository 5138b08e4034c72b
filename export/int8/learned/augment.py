"""Label-free augmentation of calibration inputs, for calibration folders too small to fit on.

The targets are the FP32 model's own outputs on the augmented pictures, so any photometric or
small geometric change that keeps a face a face is a valid extra sample: horizontal flips,
shifts of a few pixels (a small crop re-padded by reflection) and brightness/contrast changes.
Applied in the model's normalised NCHW space; ``pixel_scale`` is how much one 8-bit step is worth
there (1 / preprocessing std).
"""

from __future__ import annotations

import torch

SMALL_SET = 256  # fewer calibration samples than this: augment while learning


PIXEL_SCALE = 1 / 128
"""One grey level in the input units the jitter assumes by default: GhostFaceNets' (x - 127.5) / 128."""


def augment_batch(x: torch.Tensor, generator: torch.Generator, max_shift: int = 4, brightness: float = 24.0, pixel_scale: float = PIXEL_SCALE) -> torch.Tensor:
    """A randomly flipped, shifted and brightness/contrast-jittered copy of an NCHW batch."""
    n = x.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    out = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if max_shift > 0:
        dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=generator))
        pad = torch.nn.functional.pad(out, (max_shift,) * 4, mode="reflect")
        h, w = x.shape[-2:]
        out = pad[..., max_shift + dy : max_shift + dy + h, max_shift + dx : max_shift + dx + w]
    shift = (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * brightness * pixel_scale
    gain = 1 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * 0.15
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return (out - mean) * gain + mean + shift


def describe(max_shift: int = 4, brightness: float = 24.0) -> dict:
    return {"flip": "horizontal, p=0.5", "shift_px": max_shift, "brightness_8bit": brightness, "contrast": 0.15}
