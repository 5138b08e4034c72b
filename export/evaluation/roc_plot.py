"""ROC and PR curves drawn with OpenCV (matplotlib is not a dependency of gfn-edge).

Plain but readable: axes with ticks and grid, one coloured curve per model, a legend with each
model's AUC or AP. The ROC's FAR axis is logarithmic (as in the insightface/GhostFaceNets plots),
starting at the decade of 1/negatives, the smallest FAR a set can measure.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# tab10 in BGR
PALETTE = [
    (180, 119, 31),
    (14, 127, 255),
    (44, 160, 44),
    (40, 39, 214),
    (189, 103, 148),
    (75, 86, 140),
    (194, 119, 227),
    (127, 127, 127),
    (34, 189, 188),
    (207, 190, 23),
]
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass
class Curve:
    label: str
    x: np.ndarray
    y: np.ndarray


@dataclass
class _Axes:
    left: int
    top: int
    width: int
    height: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    x_log: bool

    def _fx(self, x: np.ndarray) -> np.ndarray:
        lo, hi = self.x_range
        if self.x_log:
            x = np.log10(np.clip(x, lo, hi))
            lo, hi = math.log10(lo), math.log10(hi)
        return (np.clip(x, lo, hi) - lo) / (hi - lo)

    def to_pixels(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        lo, hi = self.y_range
        px = self.left + self._fx(np.asarray(x, np.float64)) * self.width
        py = self.top + (1 - (np.clip(np.asarray(y, np.float64), lo, hi) - lo) / (hi - lo)) * self.height
        return np.stack([px, py], axis=1)


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45, color=(0, 0, 0), center: bool = False) -> None:
    (w, h), _ = cv2.getTextSize(text, _FONT, scale, 1)
    x, y = org
    if center:
        x -= w // 2
    cv2.putText(img, text, (int(x), int(y)), _FONT, scale, color, 1, cv2.LINE_AA)


def _ticks(lo: float, hi: float, log: bool) -> list[tuple[float, str]]:
    if log:
        return [
            (10.0**e, f"1e{e}" if e < 0 else "1") for e in range(int(math.floor(math.log10(lo))), int(math.ceil(math.log10(hi))) + 1) if lo <= 10.0**e <= hi
        ]
    return [(v, f"{v:.1f}") for v in np.linspace(lo, hi, 11)]


def plot_curves(
    path: str | os.PathLike[str],
    curves: Sequence[Curve],
    title: str,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float],
    y_range: tuple[float, float] = (0.0, 1.0),
    x_log: bool = False,
    size: tuple[int, int] = (900, 640),
) -> Path:
    """Draw ``curves`` and write a PNG; returns the path."""
    width, height = size
    img = np.full((height, width, 3), 255, np.uint8)
    ax = _Axes(left=70, top=45, width=width - 100, height=height - 110, x_range=x_range, y_range=y_range, x_log=x_log)
    grid = (225, 225, 225)
    for v, label in _ticks(*x_range, x_log):
        px = int(round(ax.to_pixels(np.array([v]), np.array([y_range[0]]))[0, 0]))
        cv2.line(img, (px, ax.top), (px, ax.top + ax.height), grid, 1)
        _text(img, label, (px, ax.top + ax.height + 18), center=True)
    for v, label in _ticks(*y_range, False):
        py = int(round(ax.to_pixels(np.array([x_range[0]]), np.array([v]))[0, 1]))
        cv2.line(img, (ax.left, py), (ax.left + ax.width, py), grid, 1)
        _text(img, label, (ax.left - 35, py + 4))
    cv2.rectangle(img, (ax.left, ax.top), (ax.left + ax.width, ax.top + ax.height), (0, 0, 0), 1)
    _text(img, title, (width // 2, 28), 0.6, center=True)
    _text(img, x_label, (ax.left + ax.width // 2, height - 25), 0.5, center=True)
    _text(img, y_label, (8, ax.top - 12), 0.5)
    n = len(curves)
    for i, c in enumerate(curves):  # earlier curves drawn thicker, so identical curves stay visible
        pts = ax.to_pixels(c.x, c.y)
        pts = np.round(pts * 4).astype(np.int32)  # 2 bits of sub-pixel precision
        keep = np.r_[True, np.any(np.diff(pts, axis=0) != 0, axis=1)]
        thickness = 2 + 2 * (n - 1 - i)
        cv2.polylines(img, [pts[keep].reshape(-1, 1, 2)], False, PALETTE[i % len(PALETTE)], thickness, cv2.LINE_AA, shift=2)
    labels = [c.label[:60] for c in curves]
    if labels:  # legend, bottom right, on white
        text_w = max(cv2.getTextSize(t, _FONT, 0.45, 1)[0][0] for t in labels)
        x0 = ax.left + ax.width - text_w - 55
        y0 = ax.top + ax.height - 12 - 20 * n
        cv2.rectangle(img, (x0 - 6, y0 - 4), (ax.left + ax.width - 6, ax.top + ax.height - 6), (255, 255, 255), -1)
        cv2.rectangle(img, (x0 - 6, y0 - 4), (ax.left + ax.width - 6, ax.top + ax.height - 6), (160, 160, 160), 1)
        for i, t in enumerate(labels):
            y = y0 + 16 + 20 * i
            cv2.line(img, (x0, y - 4), (x0 + 25, y - 4), PALETTE[i % len(PALETTE)], 3)
            _text(img, t, (x0 + 32, y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write {path}")
    return path


def roc_x_range(negatives: int) -> tuple[float, float]:
    """FAR axis from the decade of 1/negatives (at least 1e-6) to 1."""
    lo = 10.0 ** math.floor(math.log10(1.0 / max(negatives, 1)))
    return (min(max(lo, 1e-6), 1e-1), 1.0)


def plot_roc(path: str | os.PathLike[str], curves: Sequence[Curve], negatives: int, title: str) -> Path:
    """ROC on a log FAR axis (points at FAR 0 are drawn on the axis' left edge)."""
    return plot_curves(path, curves, title, "false accept rate (FAR)", "true accept rate (TAR)", roc_x_range(negatives), x_log=True)


def plot_pr(path: str | os.PathLike[str], curves: Sequence[Curve], title: str) -> Path:
    return plot_curves(path, curves, title, "recall", "precision", (0.0, 1.0))
