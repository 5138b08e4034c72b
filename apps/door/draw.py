"""Boxes, landmarks, names and FPS drawn on frames, for the window, recordings, snapshots and annotate.py.

Sizes scale with the picture so labels stay readable on a 4K photo and do not cover a 320x240
frame. Drawing is in place on BGR uint8 pictures.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

GREEN = (60, 200, 60)
RED = (40, 40, 230)
AMBER = (0, 170, 255)
GREY = (170, 170, 170)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
COLORS = {"grant": GREEN, "deny": RED, "unknown": RED, "cooldown": GREEN, "pending": AMBER}
LANDMARK_COLORS = [(255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 0, 255), (0, 255, 255)]  # eyes, nose, mouth


def _scale(image: np.ndarray) -> float:
    return max(0.4, min(image.shape[:2]) / 720.0)


def label(image: np.ndarray, text: str, org: tuple[int, int], color: Sequence[int], above: bool = True) -> None:
    """Text on a filled box, kept inside the picture."""
    if not text:
        return
    s = _scale(image)
    font_scale, thickness = 0.6 * s, max(1, round(1.5 * s))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
    h, w = image.shape[:2]
    x = int(min(max(org[0], 0), max(w - tw - 4, 0)))
    y = int(org[1] - 4 if above else org[1] + th + 4)
    y = min(max(y, th + 4), h - base - 2)
    cv2.rectangle(image, (x, y - th - 4), (x + tw + 4, y + base), tuple(int(c) for c in color), -1)
    text_color = BLACK if sum(color) > 380 else WHITE
    cv2.putText(image, text, (x + 2, y - 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, text_color, thickness, cv2.LINE_AA)


def face_box(image: np.ndarray, box: Sequence[float], color: Sequence[int], text: str = "", landmarks: np.ndarray | None = None) -> None:
    x1, y1, x2, y2 = (int(round(float(v))) for v in np.asarray(box).reshape(-1)[:4])
    thickness = max(2, round(2 * _scale(image)))
    cv2.rectangle(image, (x1, y1), (x2, y2), tuple(int(c) for c in color), thickness)
    if landmarks is not None:
        r = max(2, round(2.5 * _scale(image)))
        for (px, py), c in zip(np.asarray(landmarks).reshape(-1, 2), LANDMARK_COLORS):
            cv2.circle(image, (int(round(px)), int(round(py))), r, c, -1, cv2.LINE_AA)
    label(image, text, (x1, y1), color, above=y1 > 30)


def status(image: np.ndarray, text: str) -> None:
    """A line of status (FPS, counts) in the top-left corner."""
    label(image, text, (4, 4), (40, 40, 40), above=False)
