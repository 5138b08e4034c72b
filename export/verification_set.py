"""The data an artifact is verified on, as one object, and the helpers every data builder shares.

:mod:`.verify_data` (detectors, recognisers) and :mod:`.liveness_data` (liveness models) both
build a :class:`VerificationSet`; the shared pieces live here so neither imports the other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gfn_edge.preprocess import Letterbox
from gfn_edge.registry import ModelSpec

log = logging.getLogger(__name__)

ENV_VERIFY = "GFN_EDGE_VERIFY_IMAGES"

VIEW_MARK = "@face"
"""Names of a detector's enlarged face views: ``<picture>@face<fraction>`` (:mod:`.detection_views`)."""


def is_view(name: str) -> bool:
    return VIEW_MARK in name


@dataclass
class VerificationSet:
    task: str
    inputs: np.ndarray  # (N, H, W, 3) float32, normalised as the registry says
    names: list[str]
    letterboxes: list[Letterbox] = field(default_factory=list)  # detectors
    pairs: list[tuple[int, int, bool]] = field(default_factory=list)  # recognisers: indices into inputs
    raw: np.ndarray | None = None  # uint8 BGR model-size pictures: crops, or letterboxed canvases for detectors
    judged: np.ndarray | None = None  # recognisers: faces that count (pass the device's quality gates)
    # liveness: the reference's logits on copies of the crops with one grey level of noise,
    # (draws, N, classes), set by the reference pass (:func:`.liveness_data.reference_noise_logits`)
    reference_noise: np.ndarray | None = None
    description: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.inputs)


def spread(items: list[Path], limit: int | None) -> list[Path]:
    """Up to ``limit`` items picked evenly across the sorted list (every sub-folder gets a share)."""
    if limit is None or len(items) <= limit:
        return items
    idx = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in sorted(set(idx))]


def synthetic_pictures(count: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    w, h = size
    pics = []
    for _ in range(count):
        base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        import cv2

        pics.append(cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC))
    return pics


def warn_synthetic(spec: ModelSpec) -> None:
    log.warning(
        "!!! NO VERIFICATION IMAGES: %s is verified on SYNTHETIC pictures only. Pass --verify-images DIR or set %s "
        "to a folder of real photos; numbers from this run say nothing about accuracy on faces. !!!",
        spec.name,
        ENV_VERIFY,
    )
