"""Five-point face alignment to a recogniser's template by a least-squares similarity transform.

The crop size and template come from the recogniser's manifest (``spec.alignment``) or, when no
recogniser is known, from the registry's recognisers: :class:`CropGeometry` is that pair.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .errors import ImageError, ManifestError
from .registry import ARCFACE_112_TEMPLATE, get_spec, list_models

ARCFACE_TEMPLATE = np.asarray(ARCFACE_112_TEMPLATE, dtype=np.float32)
ARCFACE_SIZE = 112  # the crop side ARCFACE_TEMPLATE's points are written for

SHRINK_FIRST_BELOW = 2 / 3
"""Alignments that shrink the face by more than this scale average the face's region down first.

A bilinear warp samples four source pixels per crop pixel whatever the scale, so a face several
times the crop's size is point-sampled: its crop aliases, and a landmark moved by a fraction of a
source pixel changes which pixels are sampled. Measured with GhostFaceNets w0.5 on the pairs
photos, landmarks jittered by 0.4 % of the face size: on 500-800 px faces (a 1-2 MP camera close
up) the embedding's cosine to the unjittered one averaged 0.988 (minimum 0.981) with the plain warp
and 0.996 (0.994) with the region shrunk by area averaging to about the crop's scale first; on LFW's
100 px faces (scale 0.75, left as they were) both 0.995. Landmarks from an INT8 detector differ
from FP32's by about that much, so this is what keeps big faces' decisions where FP32 puts them.
"""


@dataclass(frozen=True, eq=False)
class CropGeometry:
    """Where a recogniser wants the five landmarks: a ``size`` x ``size`` crop and the (5, 2) template in it."""

    size: int
    template: np.ndarray

    @classmethod
    def from_alignment(cls, alignment: dict[str, Any] | None, crop_size: int | None = None) -> CropGeometry:
        """From a spec's ``alignment`` entry ({"points", "size"}), scaled to ``crop_size`` when that differs.

        No points recorded: the ArcFace template. No size anywhere: the template's own size.
        """
        alignment = alignment or {}
        points = alignment.get("points")
        recorded = alignment.get("size")
        template = np.asarray(points, np.float32) if points else ARCFACE_TEMPLATE
        native = int(recorded[0]) if recorded else (ARCFACE_SIZE if not points else None)
        size = int(crop_size) if crop_size else native
        if size is None or size <= 0:
            raise ManifestError(f"alignment {alignment} records template points but no crop size")
        if template.shape != (5, 2):
            raise ManifestError(f"alignment template must be 5 (x, y) points, got shape {template.shape}")
        if native is not None and native != size:
            template = template * (size / float(native))
        return cls(size, template)

    def __repr__(self) -> str:
        return f"CropGeometry(size={self.size})"


@functools.lru_cache(maxsize=1)
def default_geometry() -> CropGeometry:
    """The crop the registry's recognisers share (used to judge faces when no recogniser is set)."""
    for name in list_models("embed"):
        spec = get_spec(name)
        if spec.alignment:
            return CropGeometry.from_alignment(spec.alignment, spec.preprocess.input_size[0] if spec.preprocess.input_size else None)
    return CropGeometry.from_alignment(None)


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


def estimate_norm(landmarks: np.ndarray, size: int = ARCFACE_SIZE, template: np.ndarray | None = None) -> np.ndarray:
    """Alignment matrix for one face's (5, 2) landmarks.

    ``template`` is in ``size`` crop pixels; without one, the ArcFace template scaled to ``size``.
    """
    tpl = ARCFACE_TEMPLATE * (size / float(ARCFACE_SIZE)) if template is None else np.asarray(template, dtype=np.float32)
    return similarity_transform(landmarks, tpl)


def align(image: np.ndarray, landmarks: np.ndarray, size: int = ARCFACE_SIZE, template: np.ndarray | None = None) -> np.ndarray:
    """Warp one face to the ``size`` x ``size`` crop of ``template`` (default ArcFace's); BGR uint8 in and out."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"align needs an HxWx3 image, got {getattr(image, 'shape', type(image))}")
    points = np.asarray(landmarks, dtype=np.float32).reshape(-1, 2)
    if points.shape != (5, 2) or not np.all(np.isfinite(points)):
        raise ValueError(f"align needs 5 finite (x, y) landmarks, got {np.asarray(landmarks).shape}")
    matrix = estimate_norm(points, size, template)
    source, matrix = _shrunk_region(image, matrix, size)
    return cv2.warpAffine(source, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def _shrunk_region(image: np.ndarray, matrix: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The picture region the crop samples, area-averaged to about the crop's scale, and the warp
    from it; the picture and ``matrix`` as they are where the warp barely shrinks (see
    :data:`SHRINK_FIRST_BELOW`)."""
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if not scale >= 0.0 or scale >= SHRINK_FIRST_BELOW:  # NaN-safe: a degenerate matrix warps as it is
        return image, matrix
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64)
    back = corners @ cv2.invertAffineTransform(matrix).T
    margin = 2.0 / scale  # the bilinear taps at the crop's edge, in source pixels
    height, width = image.shape[:2]
    x0, y0 = (max(int(np.floor(v - margin)), 0) for v in back.min(0))
    x1, y1 = min(int(np.ceil(back[:, 0].max() + margin)), width), min(int(np.ceil(back[:, 1].max() + margin)), height)
    if x1 - x0 < 2 or y1 - y0 < 2:  # the crop lies off the picture: nothing to average
        return image, matrix
    small_w, small_h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    small = cv2.resize(image[y0:y1, x0:x1], (small_w, small_h), interpolation=cv2.INTER_AREA)
    # the small picture's pixel (u, v) is centred at source (x0 + sx (u + 1/2) - 1/2, ...)
    sx, sy = (x1 - x0) / small_w, (y1 - y0) / small_h
    to_source = np.array([[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    return small, matrix @ to_source


def align_batch(image: np.ndarray, landmarks: np.ndarray, size: int = ARCFACE_SIZE, template: np.ndarray | None = None) -> np.ndarray:
    """(K, size, size, 3) crops for K faces' (K, 5, 2) landmarks."""
    landmarks = np.asarray(landmarks).reshape(-1, 5, 2)
    out = np.empty((len(landmarks), size, size, 3), dtype=np.uint8)
    for i, pts in enumerate(landmarks):
        out[i] = align(image, pts, size, template)
    return out


def align_faces(image: np.ndarray, landmarks: np.ndarray, geometry: CropGeometry) -> np.ndarray:
    """(K, S, S, 3) crops of K faces for a recogniser with ``geometry`` (S = ``geometry.size``)."""
    return align_batch(image, landmarks, geometry.size, geometry.template)
