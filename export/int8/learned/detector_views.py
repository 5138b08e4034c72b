"""What a detector learns on while it is tuned for int8: its calibration pictures at three scales.

A folder of photos of people (the usual calibration folder, and this project's pairs photos) holds
large faces, which RetinaFace finds on its coarse pyramid levels; a door camera or a crowd picture
holds small ones, found on the fine levels, whose int8 error comes from the high-resolution
layers. Tuned on whole calibration pictures only, the detector halved its simulated error on them
and kept it on the crowd scenes (landmark NME 0.0249 -> 0.0239). So each step sees one view,
each a quarter of the picture's pixels so every step costs the same:

- a window of the picture at full resolution (the faces as large as they are),
- the whole picture at half its side (faces half as large),
- four pictures at a quarter of their side, tiled two by two (faces a quarter as large).

No labels are involved: the FP32 model's outputs on the same view are the targets.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

VIEWS = ("window", "half", "mosaic")


def _window(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    h, w = x.shape[-2:]
    wh, ww = h // 2, w // 2
    top = int(torch.randint(0, h - wh + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - ww + 1, (1,), generator=generator))
    return x[..., top : top + wh, left : left + ww]


def _half(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=(x.shape[-2] // 2, x.shape[-1] // 2), mode="area")


def _mosaic(x: torch.Tensor) -> torch.Tensor:
    """Groups of four pictures, each at a quarter of its side, tiled 2x2 (a batch a quarter as big)."""
    n = x.shape[0] // 4 * 4
    if n == 0:
        return _half(x)
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    small = F.interpolate(x[:n], size=(h // 2, w // 2), mode="area")
    small = small.reshape(n // 4, 2, 2, x.shape[1], h // 2, w // 2)
    return small.permute(0, 3, 1, 4, 2, 5).reshape(n // 4, x.shape[1], 2 * (h // 2), 2 * (w // 2))


def detector_view(x: torch.Tensor, view: str, generator: torch.Generator) -> torch.Tensor:
    """One view (see :data:`VIEWS`) of an NCHW batch of whole pictures; the mosaic takes four
    pictures per output picture."""
    if view == "window":
        return _window(x, generator)
    if view == "half":
        return _half(x)
    if view == "mosaic":
        return _mosaic(x)
    raise ValueError(f"unknown detector view {view!r}; expected one of {VIEWS}")


def describe() -> dict:
    return {"detector_views": "window at full resolution, whole picture at 1/2, 2x2 mosaic at 1/4; one per step, in turn"}
