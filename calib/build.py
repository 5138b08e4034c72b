"""Build calibration sets from ordinary photos, as the device will see them.

- detectors: each photo letterboxed to the model's input size (same resize and padding as the
  runtime's Detector);
- recognisers: faces found by the caller's face finder (gfn-export and gfn-calib use the reference
  RetinaFace), aligned to the model's crop and template, kept only when they pass the device's
  default quality gates (the runtime never embeds the others);
- liveness models: the face patch at the model's crop scale around each face the finder reports.

Exact duplicate photos and duplicate samples are dropped; every skipped photo is reported with
its reason. Calibration never imports the export side: faces come in through
:class:`~gfn_edge.calib.faces.CalibrationFaces`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gfn_edge.align import CropGeometry
from gfn_edge.checks import check_count
from gfn_edge.errors import CalibrationError, ImageError
from gfn_edge.image import list_images, read_image, relative_name
from gfn_edge.liveness import liveness_crop
from gfn_edge.preprocess import detector_canvas
from gfn_edge.progress import progress
from gfn_edge.quality import QualityGates, assess
from gfn_edge.registry import ModelSpec

from .dataset import RECOMMENDED_MINIMUM, CalibrationSet
from .faces import CalibrationFaces

log = logging.getLogger(__name__)


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _collect_files(images: str | os.PathLike[str] | list, exclude: set[str] | None) -> tuple[list[Path], Path]:
    if isinstance(images, (list, tuple)):
        files = [Path(p) for p in images]
        root = Path(os.path.commonpath([str(p.parent) for p in files])) if files else Path(".")
    else:
        root = Path(images)
        if not root.exists():
            raise CalibrationError(f"calibration image folder {root} does not exist")
        files = list_images(root)
    if exclude:
        files = [p for p in files if p.name not in exclude]
    if not files:
        raise CalibrationError(f"no pictures found in {images} (looked for .jpg/.png/... files recursively)")
    return files, root


ENV_CALIB = "GFN_EDGE_CALIB_IMAGES"
"""The calibration photos' folder (or saved set) when ``--calib`` is not given."""

AUTO_AUGMENT_TARGET = 200
"""Samples a small folder is augmented up to when the caller leaves ``augment`` unset. Ranges of
tensors with one value per face (squeeze-excitation, the embedding) are maxima over as many values
as there are samples: from 38 faces a new face exceeds them in ~1 value of 39 (clipped), so a
small folder needs more, varied samples, not a warning."""

MAX_COPIES = 8

PICTURES_PER_SAMPLE = 2
"""A folder larger than this many pictures per sample of the cap is drawn from, not read whole.

Why: a user's "plain folder of photos" may hold thousands. Every picture used to be read (and
hashed) before the cap chose its samples: 1,600 photos held 1.7 GB of detector canvases in
memory for the 100 it keeps (20,000 would not fit), and a recogniser's set searched every
picture for faces (34 s for 780 pictures) to keep 300. Pictures are read in draws of twice the
cap, the next draw only while the samples are still fewer than the cap (a camera roll where
most photos hold no usable face takes more draws)."""

DRAW_STREAM = 1
"""The draws' random stream beside the seed (``default_rng([seed, DRAW_STREAM])``), so the samples'
own stream (augmentation, mosaics, the cap's choice) is the one an undrawn folder gets."""


def draw_pictures(files: list[Path], cap: int, seed: int) -> list[list[Path]]:
    """``files`` in draws of at most :data:`PICTURES_PER_SAMPLE` x ``cap`` pictures, drawn with
    ``seed``, each in folder order; one draw of all of them where they are no more (small folders:
    read as before)."""
    limit = PICTURES_PER_SAMPLE * cap
    if len(files) <= limit:
        return [files]
    order = np.random.default_rng([seed, DRAW_STREAM]).permutation(len(files))
    return [[files[i] for i in np.sort(order[start : start + limit])] for start in range(0, len(files), limit)]


def _occlude(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A hand, a cup or a scarf in front of the face: a blurred, brighter or darker block of the
    picture copied over another part (never a no-op, even on a letterbox's flat border)."""
    h, w = image.shape[:2]
    bh, bw = int(h * rng.uniform(0.2, 0.4)), int(w * rng.uniform(0.2, 0.4))
    y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
    sy, sx = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
    patch = cv2.GaussianBlur(image[sy : sy + bh, sx : sx + bw], (0, 0), 3.0).astype(np.int16) + int(rng.choice([-1, 1]) * rng.integers(20, 50))
    out = image.copy()
    out[y : y + bh, x : x + bw] = np.clip(patch, 0, 255).astype(np.uint8)
    return out


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` after a JPEG round trip at ``quality`` (as a camera stream or a re-capture
    compresses it); unchanged where OpenCV cannot encode it."""
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR) if ok else image


def _low_resolution(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A face far from the camera: fewer pixels, then JPEG-compressed as a camera stream is."""
    h, w = image.shape[:2]
    f = rng.uniform(0.35, 0.7)
    small = cv2.resize(image, (max(8, int(w * f)), max(8, int(h * f))), interpolation=cv2.INTER_AREA)
    small = _jpeg(small, int(rng.integers(35, 75)))
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _augment(sample: np.ndarray, rng: np.random.Generator, copies: int = 2) -> list[np.ndarray]:
    """``copies`` variations a door camera sees, in this order: mirrored, exposure (brightness and
    contrast) jittered, partly occluded, low resolution and compressed, defocused, sensor noise,
    gamma, mirrored and jittered; then jittered again."""
    out = []
    for k in range(copies):
        kind = k if k < 8 else 1
        image = np.ascontiguousarray(sample[:, ::-1]) if kind in (0, 7) else sample
        if kind in (1, 7):
            image = cv2.convertScaleAbs(image, alpha=rng.uniform(0.75, 1.25), beta=rng.uniform(-25, 25))
        elif kind == 2:
            image = _occlude(image, rng)
        elif kind == 3:
            image = _low_resolution(image, rng)
        elif kind == 4:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.6, 1.2))
        elif kind == 5:
            image = np.clip(image.astype(np.float32) + rng.normal(0.0, 4.0, image.shape), 0, 255).astype(np.uint8)
        elif kind == 6:
            lut = np.clip(255.0 * (np.arange(256) / 255.0) ** rng.uniform(0.7, 1.4), 0, 255).astype(np.uint8)
            image = cv2.LUT(image, lut)
        out.append(np.ascontiguousarray(image))
    return out


MOSAIC_GRIDS = (2, 3)
"""Detector calibration adds pictures made of k x k shrunken calibration pictures, for each k here
(a quarter as many of each as there are pictures, at most 25 each)."""


def _recapture(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The face as a printed photo or a phone screen held to the camera shows it: fewer pixels,
    washed-out contrast, shifted brightness and white point, JPEG-compressed."""
    h, w = image.shape[:2]
    k = int(rng.integers(2, 5))
    small = cv2.resize(image, (max(8, w // k), max(8, h // k)), interpolation=cv2.INTER_AREA).astype(np.float32)
    flat = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    mean = float(flat.mean())
    flat = (flat - mean) * rng.uniform(0.5, 0.9) + mean + rng.uniform(-40.0, 40.0)
    flat *= rng.uniform(0.8, 1.2, size=3).astype(np.float32)
    out = np.clip(flat, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(_jpeg(out, int(rng.integers(15, 50))))


def _recaptures(samples: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Liveness calibration adds one re-captured copy (:func:`_recapture`) of each sample.

    Why: a liveness model calibrated on live faces gets activation ranges from live faces only,
    and the last layers, where it tells a print or a replay from a face, are then clipped on the
    attacks it exists to refuse. Measured in the int8 simulation of MiniFASNetV1SE calibrated on
    the portraits and run on the liveness photos and face crops (min/max ranges, ten groups in
    float): largest live-probability change 0.345 with the faces alone, 0.079 with these copies
    added (a spoof crop's verdict flipped before, not after)."""
    return [_recapture(s, rng) for s in samples]


def _mosaics(canvases: list[np.ndarray], rng: np.random.Generator, grids: tuple[int, ...] = MOSAIC_GRIDS) -> list[np.ndarray]:
    """Crowd-scene pictures for detector calibration: each a k x k grid of calibration pictures
    shrunk k times, so faces appear at the small sizes a door or hall camera sees.

    Why: a detector calibrated on portraits (one big face a picture) gets activation ranges from
    big faces only, and the stride-8 features that find small faces are then quantised on ranges
    they never showed. Measured in the int8 simulation of RetinaFace-MobileNet-0.25 calibrated on
    the pairs photos and run on the crowd scenes: landmark error at the faces' anchors 0.134 with
    the pictures alone, 0.103 with 2x2 and 3x3 mosaics added, 0.099 calibrated on the scenes
    themselves."""
    if not canvases:
        return []
    h, w = canvases[0].shape[:2]
    count = min(25, max(1, len(canvases) // 4))
    out = []
    for k in grids:
        th, tw = h // k, w // k
        for _ in range(count):
            tile_of = rng.choice(len(canvases), size=k * k, replace=len(canvases) < k * k)
            canvas = np.zeros_like(canvases[0])
            for i, j in enumerate(tile_of):
                r, c = divmod(i, k)
                canvas[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = cv2.resize(canvases[j], (tw, th), interpolation=cv2.INTER_AREA)
            out.append(canvas)
    return out


def augment_copies(augment: bool | None, found: int, cap: int | None = None) -> int:
    """Copies per sample: 2 when asked for, none when refused; left to this function (None), enough
    to reach :data:`AUTO_AUGMENT_TARGET` (or the cap on samples) when the folder gives fewer than
    :data:`RECOMMENDED_MINIMUM` samples and the cap leaves room for more."""
    if augment is None:
        target = AUTO_AUGMENT_TARGET if cap is None else min(AUTO_AUGMENT_TARGET, cap)
        if found >= min(RECOMMENDED_MINIMUM, target):
            return 0
        return int(min(MAX_COPIES, max(2, -(-target // max(found, 1)) - 1)))
    return 2 if augment else 0


def _detector_samples(spec: ModelSpec, files: list[Path], root: Path, digests: dict[Path, str]) -> tuple[list[np.ndarray], list[dict], list[tuple[str, str]]]:
    size = spec.preprocess.input_size
    if size is None:
        raise CalibrationError(f"{spec.name} has no fixed input size; pass the export input size")
    samples, sources, skipped = [], [], []
    for path in progress(files, "calibration pictures"):
        rel = relative_name(path, root)
        try:
            image = read_image(path)
        except ImageError as exc:
            skipped.append((rel, f"unreadable: {exc}"))
            continue
        canvas, _ = detector_canvas(image, spec.preprocess, size)  # the device Detector's own builder
        samples.append(canvas)
        sources.append({"image": path.name, "path": rel, "sha256": digests[path], "samples": 1})
    return samples, sources, skipped


def _samples(
    spec: ModelSpec, files: list[Path], root: Path, digests: dict[Path, str], faces: CalibrationFaces | None, min_face_size: float, gates: QualityGates | None
):
    """(samples, sources, skipped) of ``files`` by the task's recipe; ``digests``: each file's
    SHA-256, taken once when duplicates were sorted out and recorded in the sources."""
    if spec.task == "detect":
        return _detector_samples(spec, files, root, digests)
    if spec.task == "embed":
        return _face_samples(spec, files, root, digests, faces, min_face_size, gates)
    if spec.task == "liveness":
        return _liveness_samples(spec, files, root, digests, faces, min_face_size)
    raise CalibrationError(f"no calibration recipe for task {spec.task!r}")


def _crop_geometry(spec: ModelSpec) -> CropGeometry:
    size = spec.preprocess.input_size
    return CropGeometry.from_alignment(spec.alignment, int(size[0]) if size else None)


def _face_samples(
    spec: ModelSpec, files: list[Path], root: Path, digests: dict[Path, str], finder: CalibrationFaces, min_face_size: float, gates: QualityGates | None
) -> tuple[list[np.ndarray], list[dict], list[tuple[str, str]]]:
    crops, faces, skipped = finder.aligned_faces(files, root, min_face_size, _crop_geometry(spec))
    skipped = list(skipped)
    by_image: dict[str, list[int]] = {}
    rejected: dict[str, int] = {}
    for i, face in enumerate(faces):
        if gates is not None:
            failed = gates.check(assess(np.asarray(face.box), np.asarray(face.landmarks), crops[i]))
            if failed:
                for f in failed:
                    rejected[f] = rejected.get(f, 0) + 1
                continue
        by_image.setdefault(face.image, []).append(i)
    samples, sources = [], []
    for path in files:
        rel = relative_name(path, root)
        idx = by_image.get(rel, [])
        if not idx:
            if rel not in {s[0] for s in skipped}:
                skipped.append((rel, "no face passed the quality gates"))
            continue
        samples.extend(crops[i] for i in idx)
        sources.append({"image": path.name, "path": rel, "sha256": digests[path], "samples": len(idx)})
    if rejected:
        log.info("calibration faces rejected by quality gates: %s", rejected)
    return samples, sources, skipped


def _liveness_samples(spec: ModelSpec, files: list[Path], root: Path, digests: dict[Path, str], finder: CalibrationFaces, min_face_size: float):
    boxes, skipped = finder.face_boxes(files, root, min_face_size)
    by_image: dict[str, list] = {}
    for b in boxes:
        by_image.setdefault(b.image, []).append(b)
    samples, sources = [], []
    for path in files:
        rel = relative_name(path, root)
        found = by_image.get(rel, [])
        if not found:
            continue
        image = read_image(path)
        for b in found:
            samples.append(liveness_crop(image, b.box, spec.preprocess))
        sources.append({"image": path.name, "path": rel, "sha256": digests[path], "samples": len(found)})
    return samples, sources, list(skipped)


def build_calibration_set(
    spec: ModelSpec,
    images: str | os.PathLike[str] | list,
    num_samples: int | None = None,
    seed: int = 0,
    augment: bool | None = None,
    faces: CalibrationFaces | None = None,
    exclude: set[str] | None = None,
    min_face_size: float = 40.0,
    quality_gates: bool = True,
) -> CalibrationSet:
    """A calibration set for ``spec`` from a folder (or list) of photos.

    ``num_samples`` caps the pictures and their copies (default: 100 for detectors, whose samples
    are whole pictures, else 300); detector sets then get :func:`_mosaics` of them on top, liveness sets :func:`_recaptures` (unless
    ``augment`` is False); ``augment``: True adds two varied copies of each sample, False none, None (the
    default) as many as a small folder needs to reach :data:`AUTO_AUGMENT_TARGET` (recorded; the
    pictures themselves are kept first when the cap bites); a folder of more than
    :data:`PICTURES_PER_SAMPLE` pictures per sample of the cap is drawn from (:func:`draw_pictures`,
    recorded as ``pictures_drawn`` of ``pictures_found``) until the cap is reached; ``exclude`` names pictures to leave
    out (those used for verification); ``faces``
    finds the faces recogniser and liveness samples are cut around (e.g.
    ``gfn_edge.export.faces.ReferenceFaces(mirror)``); detectors need none.
    """
    if num_samples is not None:
        check_count(num_samples, "num_samples (the calibration sample cap)")
    if spec.task in ("embed", "liveness") and faces is None:
        raise CalibrationError(
            f"a calibration set for the {spec.task} model {spec.name} is cut around faces: pass faces=... "
            "(e.g. gfn_edge.export.faces.ReferenceFaces(mirror)); the gfn-calib and gfn-export commands do"
        )
    files, root = _collect_files(images, exclude)
    cap = num_samples if num_samples is not None else (100 if spec.task == "detect" else 300)
    gates = QualityGates() if quality_gates else None
    found, drawn = len(files), 0
    digests: dict[Path, str] = {}  # each drawn file hashed once: duplicates, then the sources' sha256
    unique: set[str] = set()
    duplicates = 0
    samples, sources, skipped = [], [], []
    for draw in draw_pictures(files, cap, seed):
        if len(samples) >= cap:
            break
        drawn += len(draw)
        fresh = []
        for p in draw:
            key = _file_sha(p)
            if key in unique:
                duplicates += 1
                continue
            unique.add(key)
            digests[p] = key
            fresh.append(p)
        if fresh:
            more, more_sources, more_skipped = _samples(spec, fresh, root, digests, faces, min_face_size, gates)
            samples, sources, skipped = samples + more, sources + more_sources, skipped + more_skipped
    if drawn < found:
        log.info("calibration: %d of the %d pictures in %s drawn (seed %d) for at most %d samples", drawn, found, images, seed, cap)
    if not samples:
        what = "pictures" if spec.task == "detect" else "faces"
        raise CalibrationError(f"no usable {what} in {images}: {len(skipped)} skipped ({skipped[:3]}...)")
    rng = np.random.default_rng(seed)
    copies = augment_copies(augment, len(samples), cap)
    originals = len(samples)
    if copies:
        if augment is None:
            log.info("calibration: %d samples from a small folder; adding %d varied copies of each (see calib.build._augment)", originals, copies)
        samples = samples + [a for s in samples for a in _augment(s, rng, copies)]
    seen: set[bytes] = set()
    deduped = []
    kept_originals = 0
    for i, s in enumerate(samples):
        key = hashlib.sha1(s.tobytes()).digest()
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        deduped.append(s)
        kept_originals += int(i < originals)
    if copies and len(deduped) > cap:  # the pictures themselves first, copies fill what the cap leaves
        first = rng.permutation(kept_originals)[:cap]
        order = np.concatenate([first, kept_originals + rng.permutation(len(deduped) - kept_originals)[: cap - len(first)]])
    else:
        order = rng.permutation(len(deduped))[:cap]
    chosen_list = [deduped[i] for i in sorted(order)]
    mosaics = _mosaics(chosen_list, rng) if spec.task == "detect" and augment is not False else []
    recaptures = _recaptures(chosen_list, rng) if spec.task == "liveness" and augment is not False else []
    chosen = np.stack(chosen_list + mosaics + recaptures)
    if len(chosen) < RECOMMENDED_MINIMUM:
        log.warning(
            "calibration set for %s has only %d samples (fewer than %d recommended); INT8 ranges may not cover what the device sees. Add pictures.",
            spec.name,
            len(chosen),
            RECOMMENDED_MINIMUM,
        )
    manifest: dict[str, Any] = {
        "model": spec.name,
        "task": spec.task,
        "preprocess": spec.to_dict()["preprocess"],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "images": str(images) if not isinstance(images, (list, tuple)) else f"{found} listed files",
        "seed": seed,
        "augment": bool(copies),
        "augment_copies": copies,
        "augment_auto": augment is None,
        "mosaics": {"grids": list(MOSAIC_GRIDS), "samples": len(mosaics)} if mosaics else None,
        "recaptures": {"samples": len(recaptures)} if recaptures else None,
        "quality_gates": quality_gates if spec.task == "embed" else None,
        "min_face_size": min_face_size if spec.task != "detect" else None,
        "pictures_found": found,
        "pictures_drawn": drawn if drawn < found else None,
        "candidates": len(deduped),
        "duplicates_dropped": duplicates,
        "sources": sources,
        "skipped": [list(s) for s in skipped],
    }
    log.info(
        "calibration set for %s: %d samples from %d pictures (%d skipped, %d duplicates dropped)",
        spec.name,
        len(chosen),
        len(sources),
        len(skipped),
        duplicates,
    )
    if skipped:
        log.info("calibration pictures skipped: %s", skipped_summary(skipped))
    return CalibrationSet(chosen, manifest)


SKIPPED_NAMED = 5
"""How many skipped pictures the log names; the manifest's ``skipped`` lists them all."""


def skipped_summary(skipped: list[tuple[str, str]]) -> str:
    """The first skipped pictures with their reasons, for the log: a user whose folder holds a
    damaged photo or one without a usable face sees which, not just how many."""
    named = "; ".join(f"{rel} ({why})" for rel, why in skipped[:SKIPPED_NAMED])
    more = len(skipped) - SKIPPED_NAMED
    return named + (f"; and {more} more (all in the calibration manifest's 'skipped')" if more > 0 else "")


def _capped(cset: CalibrationSet, num_samples: int | None) -> CalibrationSet:
    """A saved set cut to its first ``num_samples`` samples (its pictures come before their
    varied copies), recorded in its manifest; the cap used to be ignored for saved sets."""
    if num_samples is None or num_samples >= len(cset):
        return cset
    log.info("calibration: using the first %d of the saved set's %d samples", num_samples, len(cset))
    return CalibrationSet(cset.samples[:num_samples], dict(cset.manifest, capped_from=len(cset), num_samples=num_samples))


def resolve_calibration(
    calib: Any,
    spec: ModelSpec,
    faces: CalibrationFaces | None = None,
    exclude: set[str] | None = None,
    num_samples: int | None = None,
    augment: bool | None = None,
    seed: int = 0,
) -> CalibrationSet:
    """A CalibrationSet from a set object, a saved ``.npz``, a folder of photos, or GFN_EDGE_CALIB_IMAGES.

    ``faces`` is what :func:`build_calibration_set` cuts recogniser and liveness samples around.
    """
    if calib is None:
        calib = os.environ.get(ENV_CALIB)
        if not calib:
            raise CalibrationError(
                "INT8 targets need calibration data: pass --calib DIR (photos) or --calib SET.npz (from gfn-calib build), or set GFN_EDGE_CALIB_IMAGES"
            )
    if num_samples is not None:
        check_count(num_samples, "num_samples (the calibration sample cap)")
    if isinstance(calib, CalibrationSet):
        cset = _capped(calib, num_samples)
    else:
        path = Path(calib)
        if path.is_file():
            cset = _capped(CalibrationSet.load(path), num_samples)
        elif path.is_dir():
            cset = build_calibration_set(spec, path, num_samples=num_samples, seed=seed, augment=augment, faces=faces, exclude=exclude)
        else:
            raise CalibrationError(f"calibration source {path} is neither a saved set nor a folder of photos")
    cset.check_compatible(spec)
    return cset
