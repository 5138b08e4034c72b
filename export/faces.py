"""Aligned face crops cut from real photos by the reference detector (PyTorch RetinaFace-mnet0.25).

Verification and calibration of recognisers both need faces as the device will see them: found
by RetinaFace, aligned to the ArcFace template. Finding them costs seconds per folder, so the
crops are cached in the user cache, keyed by the photos' bytes and the detector's weights.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gfn_edge.align import align
from gfn_edge.errors import ImageError
from gfn_edge.hub import cache_dir
from gfn_edge.image import read_image
from gfn_edge.preprocess import normalize
from gfn_edge.progress import progress
from gfn_edge.retinaface_decode import Detections, postprocess

log = logging.getLogger(__name__)

DETECTOR = "retinaface-mnet025"
_CACHE_VERSION = 3  # 3: EXIF orientation applied when reading pictures


@dataclass
class FaceCrop:
    image: str  # file name relative to the folder it came from
    index: int  # rank of the face in its picture (0 = highest score)
    score: float
    box: list[float]
    landmarks: list[list[float]]


class ReferenceFaceFinder:
    """Runs the reference RetinaFace (PyTorch) on whole pictures, downscaled to ``max_side``."""

    def __init__(self, mirror: str | os.PathLike[str] | None = None, max_side: int = 1024, score_threshold: float = 0.9):
        from .reference import load_reference

        self.ref = load_reference(DETECTOR, mirror=mirror)
        self.max_side = max_side
        self.score_threshold = score_threshold

    @property
    def signature(self) -> str:
        return f"{DETECTOR}:{self.ref.source['sha256']}:{self.max_side}:{self.score_threshold}"

    def detect(self, image: np.ndarray) -> Detections:
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else image
        x = normalize(small, self.ref.spec.preprocess)
        out = self.ref.run(x)
        return postprocess(
            out["loc"], out["conf"], out["landms"], self.ref.spec.anchors, (small.shape[1], small.shape[0]), scale, self.score_threshold
        )


def _files_key(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        st = p.stat()
        digest.update(f"{p.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return digest.hexdigest()


def find_faces(
    paths: list[Path],
    root: Path,
    min_size: float = 32.0,
    max_per_image: int | None = None,
    finder: ReferenceFaceFinder | None = None,
    mirror: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> tuple[np.ndarray, list[FaceCrop], list[tuple[str, str]]]:
    """Aligned 112x112 BGR crops of every face at least ``min_size`` px (shorter box side) in ``paths``.

    Returns (crops, their descriptions, skipped files with the reason).
    """
    finder = finder or ReferenceFaceFinder(mirror=mirror)
    key = hashlib.sha256(f"{_CACHE_VERSION}|{finder.signature}|{min_size}|{max_per_image}|{_files_key(paths)}".encode()).hexdigest()[:24]
    cache = cache_dir() / "faces" / f"{key}.npz"
    if use_cache and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                return data["crops"], [FaceCrop(**m) for m in meta["faces"]], [tuple(s) for s in meta["skipped"]]
        except (OSError, ValueError, KeyError):
            log.warning("face cache %s is unreadable; rebuilding it", cache)
    crops: list[np.ndarray] = []
    faces: list[FaceCrop] = []
    skipped: list[tuple[str, str]] = []
    for path in progress(paths, "finding faces"):
        rel = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
        try:
            image = read_image(path)
        except ImageError as exc:
            skipped.append((rel, f"unreadable: {exc}"))
            continue
        dets = finder.detect(image)
        sizes = np.minimum(dets.boxes[:, 2] - dets.boxes[:, 0], dets.boxes[:, 3] - dets.boxes[:, 1]) if len(dets) else np.zeros(0)
        keep = [i for i in range(len(dets)) if sizes[i] >= min_size]
        if max_per_image is not None:
            keep = keep[:max_per_image]
        if not keep:
            skipped.append((rel, "no face" if len(dets) == 0 else f"faces smaller than {min_size:g} px"))
            continue
        for rank, i in enumerate(keep):
            crops.append(align(image, dets.landmarks[i]))
            faces.append(FaceCrop(rel, rank, float(dets.scores[i]), dets.boxes[i].tolist(), dets.landmarks[i].tolist()))
    array = np.stack(crops) if crops else np.zeros((0, 112, 112, 3), np.uint8)
    if use_cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.stem + ".tmp.npz")
        meta = json.dumps({"faces": [f.__dict__ for f in faces], "skipped": skipped})
        np.savez(tmp, crops=array, meta=np.asarray(meta))
        os.replace(tmp, cache)
    return array, faces, skipped


def largest_face_index(faces: list[FaceCrop]) -> dict[str, int]:
    """Per picture, the index (into ``faces``) of its largest face: what a 1:1 comparison uses."""
    best: dict[str, tuple[float, int]] = {}
    for i, f in enumerate(faces):
        area = (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])
        if f.image not in best or area > best[f.image][0]:
            best[f.image] = (area, i)
    return {k: v[1] for k, v in best.items()}
