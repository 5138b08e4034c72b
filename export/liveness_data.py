"""Verification data for liveness models: the patches a board will cut, around real faces.

Faces are found by the reference detector (PyTorch RetinaFace-mnet0.25, :mod:`.faces`) and each
is cut with :func:`gfn_edge.liveness.liveness_crop`, the function the device class uses, at the
model's own crop scale. Every photo in a ``liveness`` sub-folder is used (live and spoof
examples, the cases the decision matters for), plus an even spread of the folder's other photos.

Photos are read upright (EXIF orientation applied), as OpenCV's ``imread`` and therefore
Silent-Face-Anti-Spoofing read them: its sample photos are stored sideways with an orientation
tag, and a liveness model shown a sideways face is answering a different question.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gfn_edge.errors import ImageError
from gfn_edge.image import list_images, read_image
from gfn_edge.liveness import liveness_crop
from gfn_edge.preprocess import normalize
from gfn_edge.registry import ModelSpec

# face boxes live in .faces, beside the reference detector they come from (no circle between the two)
from .faces import MAX_FACES_PER_IMAGE, MIN_FACE_PX, FaceBox, find_face_boxes
from .verification_set import VerificationSet
from .verification_set import spread as _spread
from .verification_set import synthetic_pictures as _synthetic_pictures
from .verification_set import warn_synthetic as _warn_synthetic

if TYPE_CHECKING:  # the reference module loads the frameworks; only its type is needed here
    from .reference import Reference

log = logging.getLogger(__name__)

LIVENESS_FOLDER = "liveness"


def is_liveness_photo(relative: str) -> bool:
    return LIVENESS_FOLDER in Path(relative).parts[:-1]


def select_photos(folder: Path, exclude: set[str] | None = None, max_images: int | None = 48) -> list[Path]:
    """All liveness photos, then up to ``max_images`` minus that many others, spread evenly."""
    files = [p for p in list_images(folder) if not exclude or (p.name not in exclude and str(p.relative_to(folder)) not in exclude)]
    live = [p for p in files if is_liveness_photo(str(p.relative_to(folder))) or folder.name == LIVENESS_FOLDER]
    rest = [p for p in files if p not in live]
    budget = None if max_images is None else max(0, max_images - len(live))
    return live + _spread(rest, budget)


def liveness_set(
    spec: ModelSpec,
    folder: Path | None,
    mirror: str | os.PathLike[str] | None = None,
    exclude: set[str] | None = None,
    max_images: int | None = 48,
) -> VerificationSet:
    """Patches for ``spec`` (its crop scale, size, colour order and mean/std) around every face found."""
    pre = spec.preprocess
    if pre.resize != "face-crop" or not pre.crop_scale or pre.input_size is None:
        raise ValueError(f"{spec.name} is not a face-crop liveness model (preprocess {pre})")
    if folder is None:
        _warn_synthetic(spec)
        crops = np.stack(_synthetic_pictures(16, pre.input_size))
        names = [f"synthetic-{i}" for i in range(len(crops))]
        return VerificationSet("liveness", normalize(crops, pre), names, raw=crops, description={"folder": None, "faces": len(crops), "synthetic": True})
    folder = Path(folder)
    paths = select_photos(folder, exclude, max_images)
    faces, skipped = find_face_boxes(paths, folder, mirror=mirror)
    crops, names = [], []
    by_image: dict[str, list[FaceBox]] = {}
    for f in faces:
        by_image.setdefault(f.image, []).append(f)
    for rel, group in by_image.items():
        image = read_image(folder / rel)
        for f in group:
            crops.append(liveness_crop(image, f.box, pre))
            names.append(f"{f.image}#{f.index}")
    if not paths and exclude and list_images(folder):
        # the calibration used the pictures: an empty set, which the INT8 verification floor names
        # (:mod:`.verification_floor`), rather than "no face found" in a folder full of faces
        empty = np.zeros((0, *pre.input_size[::-1], 3), np.uint8)
        desc = {"folder": str(folder), "images": len(paths), "faces": 0, "skipped": skipped[:20], "synthetic": False}
        return VerificationSet("liveness", normalize(empty, pre), [], raw=empty, description=desc)
    if not crops:
        raise ImageError(f"no face of at least {MIN_FACE_PX:g} px found in {len(paths)} photos under {folder}; cannot verify {spec.name}")
    array = np.stack(crops)
    desc = {
        "folder": str(folder),
        "images": len(paths),
        "liveness_images": sum(is_liveness_photo(str(p.relative_to(folder))) or folder.name == LIVENESS_FOLDER for p in paths),
        "faces": len(names),
        "skipped": skipped[:20],
        "synthetic": False,
        "detector": f"retinaface-mnet025 (PyTorch reference), score >= 0.9, faces >= {MIN_FACE_PX:g} px, <= {MAX_FACES_PER_IMAGE} per photo",
        "crop": f"face box x{pre.crop_scale:g}, kept inside the picture, resized to {pre.input_size[0]}x{pre.input_size[1]} (gfn_edge.liveness.crop_box)",
    }
    log.info("liveness verification set for %s: %d patches from %d photos", spec.name, len(names), len(paths))
    return VerificationSet("liveness", normalize(array, pre), names, raw=array, description=desc)


NOISE_DRAWS = 3
"""Copies of each crop with one grey level of noise the reference is run on."""


def grey_level_noise(raw: np.ndarray, draws: int = NOISE_DRAWS, seed: int = 0) -> list[np.ndarray]:
    """``draws`` copies of the uint8 crops, each pixel moved by -1, 0 or +1 grey level (uniform,
    seeded): below a camera sensor's own noise, so a change of the verdict under it is a change
    the model makes on inputs no one can tell apart."""
    rng = np.random.default_rng(seed)
    return [np.clip(raw.astype(np.int16) + rng.integers(-1, 2, raw.shape, dtype=np.int16), 0, 255).astype(np.uint8) for _ in range(draws)]


def reference_noise_logits(ref: Reference, vset: VerificationSet) -> np.ndarray | None:
    """The reference's logits on :func:`grey_level_noise` copies of the liveness crops, (draws, N,
    classes); None for other tasks and without the uint8 crops.

    Why: MiniFASNet's real-face probability is steep in the input. Measured on the 61 crops of
    ../shared/faces, the FP32 reference itself moves up to 0.17 (MiniFASNetV2; mean 0.017) and 0.08
    (V1SE) under one grey level of noise, 0.29 / 0.23 under two, 0.62 / 0.49 when the crop is
    re-encoded as JPEG at quality 95. An INT8 error is read against that floor
    (:func:`gfn_edge.export.verify.liveness_metrics`)."""
    if vset.raw is None or ref.spec.task != "liveness":
        return None
    return np.stack([ref.run(normalize(noisy, ref.spec.preprocess))["logits"] for noisy in grey_level_noise(vset.raw)])
