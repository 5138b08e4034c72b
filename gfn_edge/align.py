"""Five-point face alignment to the ArcFace 112x112 template by a least-squares similarity transform."""
from __future__ import annotations

import cv2
import numpy as np

from .errors import ImageError
from .registry import ARCFACE_112_TEMPLATE

ARCFACE_TEMPLATE = np.asarray(ARCFACE_112_TEMPLATE, dtype=np.float32)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the rotation + uniform scale + translation taking ``src`` points closest to ``dst``.

    Umeyama's closed form (the same estimate skimage's SimilarityTransform makes), with the
    reflection case handled, so no RANSAC randomness enters alignment.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need matching point sets of at least 2 points, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[-1] = -1
    rotation = u @ np.diag(d) @ vt
    var_src = (src_c**2).sum() / len(src)
    scale = (s * d).sum() / var_src if var_src > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def estimate_norm(landmarks: np.ndarray, size: int = 112, template: np.ndarray | None = None) -> np.ndarray:
    """Alignment matrix for one face's (5, 2) landmarks; the template scales with ``size``."""
    tpl = ARCFACE_TEMPLATE if template is None else np.asarray(template, dtype=np.float32)
    return similarity_transform(landmarks, tpl * (size / 112.0))


def align(image: np.ndarray, landmarks: np.ndarray, size: int = 112, template: np.ndarray | None = None) -> np.ndarray:
    """Warp one face to the ``size`` x ``size`` ArcFace crop (BGR uint8 in, BGR uint8 out)."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"align needs an HxWx3 image, got {getattr(image, 'shape', type(image))}")
    points = np.asarray(landmarks, dtype=np.float32).reshape(-1, 2)
    if points.shape != (5, 2) or not np.all(np.isfinite(points)):
        raise ValueError(f"align needs 5 finite (x, y) landmarks, got {np.asarray(landmarks).shape}")
    matrix = estimate_norm(points, size, template)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def align_batch(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """(K, size, size, 3) crops for K faces' (K, 5, 2) landmarks."""
    landmarks = np.asarray(landmarks).reshape(-1, 5, 2)
    out = np.empty((len(landmarks), size, size, 3), dtype=np.uint8)
    for i, pts in enumerate(landmarks):
        out[i] = align(image, pts, size)
    return out
