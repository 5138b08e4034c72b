"""The real data every artifact is verified on.

- detectors: pictures letterboxed to the artifact's input size exactly as the device does it;
- recognisers: faces found and aligned by the reference detector, plus labelled pairs when the
  folder has a ``pairs.csv`` (``image_a,image_b,same``);
- liveness models: face crops at the model's scale around faces the reference detector found.

Folder resolution: the argument, else ``GFN_EDGE_VERIFY_IMAGES``. With neither, a loud warning
is logged and synthetic pictures are used, so export never silently skips verification.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from gfn_edge.align import CropGeometry
from gfn_edge.image import list_images, read_image, relative_name
from gfn_edge.pairs import read_pairs
from gfn_edge.preprocess import crop_tensor, detector_canvas, normalize
from gfn_edge.quality import QualityGates, assess
from gfn_edge.registry import ModelSpec

# the set and its helpers live in verification_set (shared with liveness_data without a circle)
from .verification_set import ENV_VERIFY, VerificationSet
from .verification_set import spread as _spread
from .verification_set import synthetic_pictures as _synthetic_pictures
from .verification_set import warn_synthetic as _warn_synthetic

log = logging.getLogger(__name__)

__all__ = ["ENV_VERIFY", "VerificationSet", "build_verification_set", "detection_set", "face_set", "verification_folder"]


def verification_folder(folder: str | os.PathLike[str] | None) -> Path | None:
    chosen = folder or os.environ.get(ENV_VERIFY)
    if not chosen:
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"verification image folder {path} does not exist")
    return path


def detection_set(
    spec: ModelSpec,
    folder: Path | None,
    max_images: int | None = 48,
    exclude: set[str] | None = None,
    enlarge: bool = False,
    mirror: str | os.PathLike[str] | None = None,
) -> VerificationSet:
    """The pictures letterboxed as the device does it; with ``enlarge``, followed by enlarged views
    of their faces (:mod:`.detection_views`) so the coarse pyramid levels are judged too."""
    size = spec.preprocess.input_size
    if size is None:
        raise ValueError(f"{spec.name}: detector export needs a fixed input size")
    pictures: list[np.ndarray] = []
    names: list[str] = []
    views = 0
    if folder is not None:
        files = _spread([p for p in list_images(folder) if not exclude or p.name not in exclude], max_images)
        for path in files:
            pictures.append(read_image(path))
            names.append(str(path.relative_to(folder)))
        if enlarge and pictures:
            from .detection_views import face_views

            extra, extra_names = face_views(files, folder, pictures, (int(size[0]), int(size[1])), mirror=mirror)
            pictures += extra
            names += extra_names
            views = len(extra)
    if not pictures:
        _warn_synthetic(spec)
        pictures = _synthetic_pictures(8, size)
        names = [f"synthetic-{i}" for i in range(len(pictures))]
    canvases, boxes = [], []
    for pic in pictures:  # the device Detector's own builder, keeping the uint8 canvas
        canvas, box = detector_canvas(pic, spec.preprocess, size)
        canvases.append(canvas)
        boxes.append(box)
    raw = np.stack(canvases)
    return VerificationSet(
        task="detect",
        inputs=normalize(raw, spec.preprocess),
        names=names,
        letterboxes=boxes,
        raw=raw,
        description={
            "folder": str(folder) if folder else None,
            "images": len(names) - views,
            "enlarged_face_views": views,
            "synthetic": folder is None or names[0].startswith("synthetic"),
        },
    )


def read_pairs_csv(path: Path) -> list[tuple[str, str, bool]]:
    """(image_a, image_b, same) rows, read by the shared :func:`gfn_edge.pairs.read_pairs`."""
    return [(r.image_a, r.image_b, r.same) for r in read_pairs(path)]


def find_pairs_csv(folder: Path) -> Path | None:
    for candidate in (folder / "pairs.csv", folder / "pairs" / "pairs.csv"):
        if candidate.is_file():
            return candidate
    return None


MAX_FACE_PICTURES = 1000
"""The most pictures a recogniser's verification reads from a folder (its labelled pairs' first).

Why: every picture is face-searched once and every face is run by every INT8 attempt; a
``--verify-images`` folder of 10,000 photos meant minutes of face search and gigabytes of crops
before the first attempt, for statistics 1,000 pictures already give (detectors and liveness
models read at most 48 pictures)."""


def labelled_pairs(folder: Path) -> list[tuple[str, str, bool]]:
    """The folder's labelled pairs (``pairs.csv``, none without one), named as
    :func:`gfn_edge.image.relative_name` names their pictures under ``folder``."""
    pairs_file = find_pairs_csv(folder)
    if pairs_file is None:
        return []
    prefix = str(pairs_file.parent.relative_to(folder))
    return [(a, b, same) if prefix == "." else (f"{prefix}/{a}", f"{prefix}/{b}", same) for a, b, same in read_pairs_csv(pairs_file)]


def face_pictures(files: list[Path], folder: Path, pairs: list[tuple[str, str, bool]], limit: int = MAX_FACE_PICTURES, seed: int = 0) -> list[Path]:
    """``files`` where they are at most ``limit``; else ``limit`` of them in folder order: both
    pictures of as many of the labelled ``pairs`` (:func:`labelled_pairs`) as fit, drawn with
    ``seed``, then a draw of the rest."""
    if len(files) <= limit:
        return files
    rng = np.random.default_rng(seed)
    by_name = {relative_name(p, folder): p for p in files}
    chosen: set[str] = set()
    for i in rng.permutation(len(pairs)):
        keys = pairs[i][:2]
        new = {k for k in keys if k not in chosen}
        if all(k in by_name for k in keys) and len(chosen) + len(new) <= limit:
            chosen |= new
    rest = [name for name in by_name if name not in chosen]
    chosen.update(rest[i] for i in rng.permutation(len(rest))[: limit - len(chosen)])
    log.info("verification: %d of the %d pictures in %s drawn (labelled pairs first)", len(chosen), len(files), folder)
    return [p for name, p in by_name.items() if name in chosen]


def face_set(
    spec: ModelSpec,
    folder: Path | None,
    mirror: str | os.PathLike[str] | None = None,
    exclude: set[str] | None = None,
    min_size: float = 32.0,
) -> VerificationSet:
    """Aligned faces (and labelled pairs) for a recogniser, normalised as ``spec`` says."""
    from .faces import find_faces, largest_face_index

    size = spec.preprocess.input_size
    geometry = CropGeometry.from_alignment(spec.alignment, int(size[0]) if size else None)
    if folder is None:
        _warn_synthetic(spec)
        crops = np.stack(_synthetic_pictures(64, (geometry.size, geometry.size)))
        return VerificationSet(
            "embed",
            crop_tensor(crops, spec.preprocess),
            [f"synthetic-{i}" for i in range(len(crops))],
            raw=crops,
            description={"folder": None, "faces": len(crops), "synthetic": True},
        )
    found = [p for p in list_images(folder) if not exclude or p.name not in exclude]
    labelled = labelled_pairs(folder)
    files = face_pictures(found, folder, labelled, MAX_FACE_PICTURES)
    crops, faces, skipped = find_faces(files, folder, min_size=min_size, mirror=mirror, geometry=geometry)
    names = [f"{f.image}#{f.index}" for f in faces]
    # The device only embeds faces that pass its default quality gates (size, blur, pose); agreement is
    # judged on those, and reported over all faces as well.
    gates = QualityGates()
    judged = np.asarray([not gates.check(assess(np.asarray(f.box), np.asarray(f.landmarks), c)) for f, c in zip(faces, crops)], dtype=bool)
    pairs: list[tuple[int, int, bool]] = []
    missing_pairs = not_drawn = 0
    if labelled:
        largest = largest_face_index(faces)
        read = {relative_name(p, folder) for p in files} if len(files) < len(found) else None
        for ka, kb, same in labelled:
            if ka in largest and kb in largest:
                pairs.append((largest[ka], largest[kb], same))
            elif read is not None and not (ka in read and kb in read):
                not_drawn += 1
            else:
                missing_pairs += 1
    desc = {
        "folder": str(folder),
        "images": len(files),
        **({"pictures_found": len(found)} if len(files) < len(found) else {}),
        "faces": len(faces),
        "faces_judged": int(judged.sum()),
        "judged_by": "gfn_edge.quality.QualityGates() defaults (faces the device would embed)",
        "pairs": len(pairs),
        "pairs_without_face": missing_pairs,
        **({"pairs_not_drawn": not_drawn} if not_drawn else {}),
        "skipped": skipped[:20],
        "synthetic": False,
        "detector": "retinaface-mnet025 (PyTorch reference), score >= 0.9, faces >= %g px" % min_size,
    }
    return VerificationSet("embed", crop_tensor(crops, spec.preprocess), names, pairs=pairs, raw=crops, judged=judged, description=desc)


def build_verification_set(
    spec: ModelSpec,
    folder: str | os.PathLike[str] | None = None,
    mirror: str | os.PathLike[str] | None = None,
    exclude: set[str] | None = None,
    max_images: int | None = 48,
) -> VerificationSet:
    path = verification_folder(folder)
    if spec.task == "detect":
        return detection_set(spec, path, max_images=max_images, exclude=exclude, enlarge=True, mirror=mirror)
    if spec.task == "embed":
        return face_set(spec, path, mirror=mirror, exclude=exclude)
    if spec.task == "liveness":
        from .liveness_data import liveness_set

        return liveness_set(spec, path, mirror=mirror, exclude=exclude)
    raise ValueError(f"no verification data for task {spec.task!r}")
