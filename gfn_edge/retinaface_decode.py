"""RetinaFace post-processing: priors, box/landmark decoding and NMS, in vectorised numpy.

This is the one implementation of decode + NMS in the project: the runtime's Detector, export
verification and evaluation all call it, so a difference between two models can never be a
difference between two decoders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .registry import Anchors


@lru_cache(maxsize=16)
def _priors_cached(min_sizes: tuple[tuple[int, ...], ...], steps: tuple[int, ...], clip: bool, width: int, height: int) -> np.ndarray:
    levels = []
    for sizes, step in zip(min_sizes, steps):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        cy = (np.arange(fh, dtype=np.float32) + 0.5) * step / height
        cx = (np.arange(fw, dtype=np.float32) + 0.5) * step / width
        grid = np.empty((fh, fw, len(sizes), 4), dtype=np.float32)
        grid[..., 0] = cx[None, :, None]
        grid[..., 1] = cy[:, None, None]
        grid[..., 2] = np.asarray(sizes, dtype=np.float32) / width
        grid[..., 3] = np.asarray(sizes, dtype=np.float32) / height
        levels.append(grid.reshape(-1, 4))
    priors = np.concatenate(levels, axis=0)
    if clip:
        np.clip(priors, 0.0, 1.0, out=priors)
    priors.setflags(write=False)
    return priors


def prior_boxes(anchors: Anchors, width: int, height: int) -> np.ndarray:
    """(A, 4) priors as normalised (cx, cy, w, h), in the order the heads emit them; cached per size."""
    return _priors_cached(anchors.min_sizes, anchors.steps, anchors.clip, int(width), int(height))


def decode_boxes(loc: np.ndarray, priors: np.ndarray, variance: tuple[float, float]) -> np.ndarray:
    """(A, 4) offsets -> (A, 4) normalised corner boxes (x1, y1, x2, y2)."""
    centre = priors[:, :2] + loc[:, :2] * variance[0] * priors[:, 2:]
    size = priors[:, 2:] * np.exp(loc[:, 2:] * variance[1])
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)


def decode_landmarks(landms: np.ndarray, priors: np.ndarray, variance: tuple[float, float]) -> np.ndarray:
    """(A, 10) offsets -> (A, 5, 2) normalised points."""
    offsets = landms.reshape(-1, 5, 2)
    return priors[:, None, :2] + offsets * variance[0] * priors[:, None, 2:]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of corner boxes a (N,4) and b (M,4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first.

    Ties are broken by index (stable sort) so two backends that agree on scores agree on boxes.
    """
    order = np.argsort(-scores, kind="stable")
    if len(order) <= 1:
        return order
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


@dataclass
class Detections:
    """Faces found in one picture, in picture pixels, best score first."""

    boxes: np.ndarray  # (K, 4) x1, y1, x2, y2
    scores: np.ndarray  # (K,)
    landmarks: np.ndarray  # (K, 5, 2)

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))

    def select(self, index: np.ndarray) -> Detections:
        return Detections(self.boxes[index], self.scores[index], self.landmarks[index])


def postprocess(
    loc: np.ndarray,
    conf: np.ndarray,
    landms: np.ndarray,
    anchors: Anchors,
    input_size: tuple[int, int],
    scale: float = 1.0,
    score_threshold: float = 0.5,
    nms_threshold: float = 0.4,
    top_k: int = 5000,
    keep_top_k: int = 750,
) -> Detections:
    """Raw head outputs of one picture (batch dim optional) -> detections in picture pixels.

    ``input_size`` is the network input (w, h); ``scale`` is the letterbox factor
    (network pixels per picture pixel), undone here.
    """
    loc, conf, landms = (np.asarray(t, dtype=np.float32) for t in (loc, conf, landms))
    if loc.ndim == 3:
        loc, conf, landms = loc[0], conf[0], landms[0]
    width, height = input_size
    priors = prior_boxes(anchors, width, height)
    if len(priors) != len(loc):
        raise ValueError(
            f"model produced {len(loc)} anchors but a {width}x{height} input has {len(priors)}: the input size or anchor config does not match the model"
        )
    scores = conf[:, 1]
    candidates = np.flatnonzero(scores > score_threshold)
    if candidates.size == 0:
        return Detections.empty()
    if candidates.size > top_k:
        candidates = candidates[np.argsort(-scores[candidates], kind="stable")[:top_k]]
    pri = priors[candidates]
    boxes = decode_boxes(loc[candidates], pri, anchors.variance)
    points = decode_landmarks(landms[candidates], pri, anchors.variance)
    to_pixels = np.asarray([width, height], dtype=np.float32) / scale
    boxes = boxes * np.tile(to_pixels, 2)
    points = points * to_pixels
    sc = scores[candidates]
    keep = nms(boxes, sc, nms_threshold)[:keep_top_k]
    return Detections(boxes[keep].astype(np.float32), sc[keep].astype(np.float32), points[keep].astype(np.float32))
