"""Does each benchmarked model actually work? Quick checks on real photos before its speed counts.

A latency table comparing a broken peer (wrong colour order, wrong anchors) with a working model
is worthless, so every detector is run on a group photo with a known face count and on single-
person portraits, and every recogniser on labelled same/different pairs. These are sanity
checks, not accuracy evaluations (gfn-eval does those).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gfn_edge.align import CropGeometry, align_faces
from gfn_edge.image import list_images, read_image
from gfn_edge.metrics import best_threshold
from gfn_edge.pairs import read_pairs as read_pairs_csv
from gfn_edge.retinaface_decode import Detections

log = logging.getLogger(__name__)

SCENE_FACES = {"insightface_t1.jpg": 6}  # photos whose face count is documented in shared/README.md


def detector_sanity(detect: Callable[[np.ndarray], Detections], scene: Path | None, portraits: Path | None, max_portraits: int = 8) -> dict[str, Any]:
    """Faces found on the group photo, and portraits with exactly one face found."""
    out: dict[str, Any] = {}
    if scene is not None and scene.is_file():
        found = len(detect(read_image(scene)))
        out.update(scene=scene.name, scene_expected=SCENE_FACES.get(scene.name), scene_found=found)
    if portraits is not None and portraits.is_dir():
        files = list_images(portraits)[:max_portraits]
        single = sum(1 for f in files if len(detect(read_image(f))) == 1)
        out.update(portraits=len(files), portraits_one_face=single)
    return out


def read_pairs(folder: Path) -> list[tuple[str, str, bool]]:
    """(image_a, image_b, same) rows of ``folder/pairs.csv``, read by the shared :func:`gfn_edge.pairs.read_pairs`."""
    return [(r.image_a, r.image_b, r.same) for r in read_pairs_csv(folder / "pairs.csv")]


def recogniser_sanity(
    embed: Callable[[np.ndarray], np.ndarray],
    landmarks: Callable[[np.ndarray], np.ndarray | None],
    pairs_dir: Path | None,
    geometry: CropGeometry | None = None,
    max_pairs: int | None = None,
) -> dict[str, Any]:
    """Mean cosine of same-person pairs vs different-person pairs (same should be clearly higher).

    ``landmarks(image)`` gives the five points of the largest face (or None); faces are aligned
    to ``geometry`` (the recogniser's crop size and template; default the ArcFace 112x112 crop).
    """
    geometry = geometry or CropGeometry.from_alignment(None)
    if pairs_dir is None or not (pairs_dir / "pairs.csv").is_file():
        return {}
    pairs = read_pairs(pairs_dir)[:max_pairs]
    cache: dict[str, np.ndarray | None] = {}

    def vector(name: str) -> np.ndarray | None:
        if name not in cache:
            image = read_image(pairs_dir / name)
            pts = landmarks(image)
            cache[name] = None if pts is None else embed(align_faces(image, pts[None], geometry))[0]
        return cache[name]

    same, diff = [], []
    for a, b, is_same in pairs:
        va, vb = vector(a), vector(b)
        if va is None or vb is None:
            continue
        (same if is_same else diff).append(float(np.dot(va, vb) / max(np.linalg.norm(va) * np.linalg.norm(vb), 1e-12)))
    if not same or not diff:
        return {"pairs": 0}
    # the threshold rule gfn-eval, export verification and the door use (optimistic: tuned on these pairs)
    accuracy, threshold = best_threshold(np.r_[same, diff], np.r_[np.ones(len(same), bool), np.zeros(len(diff), bool)])
    return {
        "pairs_same": len(same),
        "pairs_different": len(diff),
        "mean_cos_same": round(float(np.mean(same)), 4),
        "mean_cos_different": round(float(np.mean(diff)), 4),
        "separates": bool(np.mean(same) > np.mean(diff)),
        "best_accuracy": round(accuracy, 4),
        "best_threshold": round(threshold, 4),
    }


def largest_face_landmarks(detector: Any) -> Callable[[np.ndarray], np.ndarray | None]:
    """Five landmarks of the largest face a gfn-edge Detector finds (for aligning pair photos)."""

    def points(image: np.ndarray) -> np.ndarray | None:
        dets = detector.detect(image, max_faces=1)
        return dets.landmarks[0] if len(dets) else None

    return points
