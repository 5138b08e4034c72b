"""Opening what the configuration names: detector + recogniser, liveness, the gallery; and the threshold.

This is the one place the app touches bundles, so the start-up messages about them (which
backend, liveness on or off, an empty gallery, where the threshold came from) are all here.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from gfn_edge import Detector, Embedder, FaceAnalyzer, Gallery, GalleryError, Liveness, QualityGates

from .config import Config, LivenessConfig, ModelsConfig, QualityConfig

log = logging.getLogger(__name__)


class SetupError(Exception):
    """Something missing or wrong before the first frame; the message says what to do."""


def quality_gates(q: QualityConfig) -> QualityGates:
    """gfn_edge.QualityGates from the config (a 0 turns its gate off)."""
    return QualityGates(
        min_face_size=q.min_face_size or None,
        min_blur=q.min_blur or None,
        max_yaw=q.max_yaw or None,
        max_pitch=q.max_pitch or None,
        max_roll=q.max_roll or None,
    )


def _bundle(path: Optional[Path], what: str, key: str, flag: str) -> Path:
    if path is None:
        raise SetupError(f"no {what} bundle: set [models] {key} in the config file or pass {flag}")
    if not Path(path).exists():
        raise SetupError(f"{what} bundle {path} does not exist (a folder written by gfn-export, e.g. from a release)")
    return Path(path)


def open_analyzer(cfg: Config, recognizer: bool = True) -> FaceAnalyzer:
    """Detector + recogniser + quality gates, without liveness (the pipeline runs it on matches only)."""
    m: ModelsConfig = cfg.models
    det_path = _bundle(m.detector, "detector", "detector", "--detector")
    detector = Detector(det_path, backend=m.backend, threads=m.threads, score_threshold=cfg.detection.score_threshold)
    embedder = None
    if recognizer:
        rec_path = _bundle(m.recognizer, "recogniser", "recognizer", "--recognizer")
        embedder = Embedder(rec_path, backend=m.backend, threads=m.threads, flip=m.flip)
    analyzer = FaceAnalyzer(
        detector,
        embedder,
        max_faces=cfg.detection.max_faces,
        min_face_size=cfg.detection.min_face_size,
        gates=quality_gates(cfg.quality),
    )
    log.info("detector: %r", detector)
    if embedder is not None:
        log.info("recogniser: %r", embedder)
    return analyzer


def open_liveness(models: ModelsConfig, live: LivenessConfig) -> Optional[Liveness]:
    """The liveness check, or None with a loud warning: without it a printed photo opens the door."""
    if not models.liveness:
        log.warning(
            "LIVENESS CHECK OFF: no liveness bundles configured ([models] liveness = [the two MiniFASNet bundles]); "
            "a printed photo or a phone screen showing an enrolled person WILL be granted"
        )
        return None
    if not live.enabled:
        log.warning(
            "LIVENESS CHECK OFF: disabled in the config ([liveness] enabled = false or --no-liveness); "
            "a printed photo or a phone screen showing an enrolled person WILL be granted"
        )
        return None
    for path in models.liveness:
        _bundle(Path(path), "liveness", "liveness", "--liveness")
    checker = Liveness(list(models.liveness), threshold=live.threshold, backend=models.backend, threads=models.threads)
    log.info("liveness: %r (runs before every grant)", checker)
    return checker


def gallery_location(cfg: Config) -> "Path | str":
    """Where admin commands read and write the gallery: the central server of a fleet, else the file."""
    return cfg.gallery.url if cfg.gallery.url is not None else cfg.gallery.path


def open_gallery(path: "Path | str", embedder: Optional[Embedder], create: bool, readonly: bool = False) -> Gallery:
    """The gallery for ``embedder``'s model (any model when None: admin commands, never creating it).

    ``path`` may be a fleet's ``postgresql://`` URL (gfn_edge.Gallery opens the server store).
    """
    if isinstance(path, str) and "://" in path:
        if embedder is None:
            return Gallery(path, create=False, readonly=readonly)
        return Gallery(path, signature=embedder.signature, dim=embedder.dim, create=create)
    path = Path(path)
    if create and not path.parent.is_dir():
        raise SetupError(f"gallery folder {path.parent} does not exist; create it (e.g. sudo install -d -o gfn-door {path.parent})")
    if embedder is None:
        if not path.exists():
            raise SetupError(f"gallery {path} does not exist; nobody has been enrolled with this configuration yet")
        return Gallery(path, create=False, readonly=readonly)
    return Gallery(path, signature=embedder.signature, dim=embedder.dim, create=create)


def warn_if_empty(gallery: Gallery) -> int:
    n = gallery.count()
    if n == 0:
        log.warning(
            "gallery %s has no enrolled identities: NOBODY can be granted. Enrol with: "
            "door_access.py enroll --name NAME photo.jpg ... (the running door picks enrolments up without a restart)",
            gallery.path,
        )
    else:
        log.info("gallery %s: %d identities, %d templates", gallery.path, n, gallery.num_templates)
    return n


def resolve_threshold(cfg: Config, gallery: Gallery, embedder: Embedder) -> float:
    """The match threshold: config/flag, else the gallery's calibrated one, else the model's default (warned)."""
    if cfg.recognition.threshold is not None:
        log.info("match threshold %.4f (from the configuration)", cfg.recognition.threshold)
        return float(cfg.recognition.threshold)
    try:
        stored = gallery.threshold
    except GalleryError:
        stored = None
    if stored is not None:
        log.info("match threshold %.4f (calibrated, stored in the gallery)", stored)
        return float(stored)
    default = embedder.default_threshold
    if default is None:
        raise SetupError("no match threshold: set [recognition] threshold, or run door_access.py calibrate --save")
    log.warning(
        "match threshold %.4f is the model's generic default, not calibrated for this unit: run "
        "door_access.py calibrate on labelled photos and set [recognition] threshold (or calibrate --save)", default
    )
    return float(default)
