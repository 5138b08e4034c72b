"""Aligned face crops cut from real photos by the reference detector (PyTorch RetinaFace-mnet0.25).

Verification and calibration of recognisers both need faces as the device will see them: found
by RetinaFace, aligned to the recogniser's crop and template (the registry's, by default) with
the device's own :func:`gfn_edge.align.align_faces`. Finding them costs a fraction of a second per
picture plus loading PyTorch and the detector, so the result of every picture is cached on its
own in the user cache, keyed by the picture's bytes, the detector's signature (its weights'
sha256 and settings) and the crop settings. Any subset or superset of a folder reuses what
earlier runs found, and the detector is only loaded when some picture is not in the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from gfn_edge.align import CropGeometry, align_faces, default_geometry
from gfn_edge.errors import ImageError
from gfn_edge.export.hub import cache_dir, resolve_weights, sha256_file
from gfn_edge.image import read_image, relative_name
from gfn_edge.preprocess import detector_tensor
from gfn_edge.progress import progress
from gfn_edge.retinaface_decode import Detections, postprocess

log = logging.getLogger(__name__)

DETECTOR = "retinaface-mnet025"
MAX_SIDE = 1024
SCORE_THRESHOLD = 0.9
# 5: big faces averaged down before the warp (gfn_edge.align); 4: one cache entry per picture;
# 3: EXIF orientation applied when reading pictures
_CACHE_VERSION = 5


@dataclass
class FaceCrop:
    image: str  # file name relative to the folder it came from
    index: int  # rank of the face in its picture (0 = highest score)
    score: float
    box: list[float]
    landmarks: list[list[float]]


def _signature(weights_sha256: str, max_side: int, score_threshold: float) -> str:
    return f"{DETECTOR}:{weights_sha256}:{max_side}:{score_threshold}"


def reference_signature(mirror: str | os.PathLike[str] | None = None, max_side: int = MAX_SIDE, score_threshold: float = SCORE_THRESHOLD) -> str:
    """The signature of a :class:`ReferenceFaceFinder` with these settings, without loading it.

    Only the checkpoint file is hashed, so a fully cached run never imports PyTorch.
    """
    return _signature(sha256_file(resolve_weights(DETECTOR, mirror=mirror)), max_side, score_threshold)


class ReferenceFaceFinder:
    """Runs the reference RetinaFace (PyTorch) on whole pictures, downscaled to ``max_side``."""

    def __init__(self, mirror: str | os.PathLike[str] | None = None, max_side: int = MAX_SIDE, score_threshold: float = SCORE_THRESHOLD):
        from .reference import load_reference

        self.ref = load_reference(DETECTOR, mirror=mirror)
        self.max_side = max_side
        self.score_threshold = score_threshold

    @property
    def signature(self) -> str:
        return _signature(self.ref.source["sha256"], self.max_side, self.score_threshold)

    def detect(self, image: np.ndarray) -> Detections:
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else image
        # the shared builder, at the picture's own size: the cached faces were found unpadded
        x, _ = detector_tensor(small, self.ref.spec.preprocess, (small.shape[1], small.shape[0]))
        out = self.ref.run(x)
        return postprocess(out["loc"], out["conf"], out["landms"], self.ref.spec.anchors, (small.shape[1], small.shape[0]), scale, self.score_threshold)


def _files_key(paths: list[Path]) -> str:
    """One key for a list of files by name, size and mtime (the liveness box cache still uses it)."""
    digest = hashlib.sha256()
    for p in paths:
        st = p.stat()
        digest.update(f"{p.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return digest.hexdigest()


# (absolute path, size, mtime_ns) -> sha256 of the bytes: each picture is hashed once per process
_CONTENT_HASHES: dict[tuple[str, int, int], str] = {}


def _content_hash(path: Path) -> str:
    """sha256 of a picture's bytes: a copied or re-cloned folder still hits the cache."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _CONTENT_HASHES:
        _CONTENT_HASHES[key] = sha256_file(path)
    return _CONTENT_HASHES[key]


@dataclass
class _PictureFaces:
    """What one picture yields: its kept faces' crops and descriptions, or why none was kept."""

    crops: np.ndarray  # (K, S, S, 3) uint8 BGR, S the crop geometry's size
    faces: list[dict]  # per kept face: score, box, landmarks (rank = position)
    reason: str | None = None  # set when no face was kept


def _detect_picture(image: np.ndarray, finder, min_size: float, max_per_image: int | None, geometry: CropGeometry) -> _PictureFaces:
    dets = finder.detect(image)
    sizes = np.minimum(dets.boxes[:, 2] - dets.boxes[:, 0], dets.boxes[:, 3] - dets.boxes[:, 1]) if len(dets) else np.zeros(0)
    keep = [i for i in range(len(dets)) if sizes[i] >= min_size]
    if max_per_image is not None:
        keep = keep[:max_per_image]
    if not keep:
        reason = "no face" if len(dets) == 0 else f"faces smaller than {min_size:g} px"
        return _PictureFaces(np.zeros((0, geometry.size, geometry.size, 3), np.uint8), [], reason)
    crops = align_faces(image, dets.landmarks[keep], geometry)
    faces = [{"score": float(dets.scores[i]), "box": dets.boxes[i].tolist(), "landmarks": dets.landmarks[i].tolist()} for i in keep]
    return _PictureFaces(crops, faces)


def _load_entry(file: Path) -> _PictureFaces | None:
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return _PictureFaces(np.array(data["crops"]), list(meta["faces"]), meta["reason"])
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("face cache entry %s is unreadable; finding its faces again", file)
        return None


def _save_entry(file: Path, result: _PictureFaces) -> None:
    """Written to a temporary name and renamed, so parallel runs never read half an entry."""
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=file.stem + ".", suffix=".tmp.npz", dir=file.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, crops=result.crops, meta=np.asarray(json.dumps({"faces": result.faces, "reason": result.reason})))
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def find_faces(
    paths: list[Path],
    root: Path,
    min_size: float = 32.0,
    max_per_image: int | None = None,
    finder: ReferenceFaceFinder | None = None,
    mirror: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    geometry: CropGeometry | None = None,
) -> tuple[np.ndarray, list[FaceCrop], list[tuple[str, str]]]:
    """Aligned BGR crops of every face at least ``min_size`` px (shorter box side) in ``paths``.

    ``geometry`` is the recogniser's crop size and template (default: the registry's). Returns
    (crops, their descriptions, skipped files with the reason). Without ``finder`` the reference
    detector is loaded only if a picture is missing from the cache.
    """
    geometry = geometry or default_geometry()
    signature = finder.signature if finder is not None else reference_signature(mirror)
    settings = f"{_CACHE_VERSION}|{signature}|{min_size}|{max_per_image}{_geometry_key(geometry)}"
    entries = cache_dir() / "faces" / f"v{_CACHE_VERSION}"
    crops: list[np.ndarray] = []
    faces: list[FaceCrop] = []
    skipped: list[tuple[str, str]] = []
    found = 0
    for path in progress(paths, "finding faces"):
        rel = relative_name(path, root)
        try:
            entry = entries / (hashlib.sha256(f"{settings}|{_content_hash(path)}".encode()).hexdigest()[:32] + ".npz")
        except OSError as exc:
            skipped.append((rel, f"unreadable: {exc}"))
            continue
        result = _load_entry(entry) if use_cache else None
        if result is None:
            try:
                image = read_image(path)
            except ImageError as exc:
                skipped.append((rel, f"unreadable: {exc}"))
                continue
            if finder is None:
                finder = ReferenceFaceFinder(mirror=mirror)
            result = _detect_picture(image, finder, min_size, max_per_image, geometry)
            found += 1
            if use_cache:
                _save_entry(entry, result)
        if result.reason is not None:
            skipped.append((rel, result.reason))
            continue
        crops.append(result.crops)
        faces.extend(FaceCrop(rel, rank, f["score"], f["box"], f["landmarks"]) for rank, f in enumerate(result.faces))
    log.info("faces of %d pictures: %d looked up in the cache, %d run through the detector", len(paths), len(paths) - found, found)
    array = np.concatenate(crops) if crops else np.zeros((0, geometry.size, geometry.size, 3), np.uint8)
    return array, faces, skipped


def _geometry_key(geometry: CropGeometry) -> str:
    """Cache-key part for the crop geometry; empty for the registry's, so earlier caches stay valid."""
    default = default_geometry()
    if geometry.size == default.size and np.allclose(geometry.template, default.template):
        return ""
    return f"|{geometry.size}|{hashlib.sha256(np.asarray(geometry.template, np.float32).tobytes()).hexdigest()[:12]}"


class ReferenceFaces:
    """Faces for calibration sets, found by the reference RetinaFace (cached per picture).

    Implements :class:`gfn_edge.calib.faces.CalibrationFaces`: gfn-export and gfn-calib hand it to
    :func:`gfn_edge.calib.build_calibration_set`. Nothing is loaded until a picture misses the cache.
    """

    def __init__(self, mirror: str | os.PathLike[str] | None = None):
        self.mirror = mirror

    def aligned_faces(self, files: list[Path], root: Path, min_size: float, geometry: CropGeometry) -> tuple[np.ndarray, list[FaceCrop], list[tuple[str, str]]]:
        return find_faces(files, root, min_size=min_size, mirror=self.mirror, geometry=geometry)

    def face_boxes(self, files: list[Path], root: Path, min_size: float):
        return find_face_boxes(files, root, mirror=self.mirror, min_size=min_size)

    def __repr__(self) -> str:
        return f"<ReferenceFaces {DETECTOR} mirror={self.mirror}>"


def largest_face_index(faces: list[FaceCrop]) -> dict[str, int]:
    """Per picture, the index (into ``faces``) of its largest face: what a 1:1 comparison uses."""
    best: dict[str, tuple[float, int]] = {}
    for i, f in enumerate(faces):
        area = (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])
        if f.image not in best or area > best[f.image][0]:
            best[f.image] = (area, i)
    return {k: v[1] for k, v in best.items()}


# --- face boxes (liveness verification and calibration cut their patches around these) -------------
MIN_FACE_PX = 32.0  # shorter box side; smaller faces give patches of mostly background
MAX_FACES_PER_IMAGE = 4  # crowd photos would otherwise swamp the set with near-identical cases
_BOX_CACHE_VERSION = 2  # the liveness box cache's own version


@dataclass
class FaceBox:
    image: str  # path relative to the folder
    index: int  # rank in its picture (0 = highest detector score)
    score: float
    box: list[float]  # x1, y1, x2, y2 in upright picture pixels


def find_face_boxes(
    paths: list[Path],
    root: Path,
    finder=None,
    mirror: str | os.PathLike[str] | None = None,
    min_size: float = MIN_FACE_PX,
    max_per_image: int | None = MAX_FACES_PER_IMAGE,
    use_cache: bool = True,
) -> tuple[list[FaceBox], list[tuple[str, str]]]:
    """Face boxes the reference detector finds in upright ``paths`` (cached), and skipped files with why."""
    finder = finder or ReferenceFaceFinder(mirror=mirror)
    key = hashlib.sha256(f"{_BOX_CACHE_VERSION}|{finder.signature}|{min_size}|{max_per_image}|{_files_key(paths)}".encode()).hexdigest()[:24]
    cache = cache_dir() / "liveness" / f"{key}.json"
    if use_cache and cache.is_file():
        try:
            meta = json.loads(cache.read_text())
            return [FaceBox(**f) for f in meta["faces"]], [tuple(s) for s in meta["skipped"]]
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("liveness face cache %s is unreadable; rebuilding it", cache)
    faces: list[FaceBox] = []
    skipped: list[tuple[str, str]] = []
    for path in progress(paths, "finding faces"):
        rel = relative_name(path, root)
        try:
            image = read_image(path)
        except ImageError as exc:
            skipped.append((rel, f"unreadable: {exc}"))
            continue
        dets = finder.detect(image)
        keep = [i for i in range(len(dets)) if min(dets.boxes[i, 2] - dets.boxes[i, 0], dets.boxes[i, 3] - dets.boxes[i, 1]) >= min_size]
        keep = keep[:max_per_image] if max_per_image is not None else keep
        if not keep:
            skipped.append((rel, "no face" if len(dets) == 0 else f"faces smaller than {min_size:g} px"))
        for rank, i in enumerate(keep):
            faces.append(FaceBox(rel, rank, float(dets.scores[i]), [float(v) for v in dets.boxes[i]]))
    if use_cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.stem + ".tmp.json")
        tmp.write_text(json.dumps({"faces": [asdict(f) for f in faces], "skipped": skipped}))
        os.replace(tmp, cache)
    return faces, skipped
