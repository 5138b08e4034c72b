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
    """Detector + recogniser + quality gates, without liveness (the pipeline runs it on matches only).

    ``[models] threads`` sizes the runtimes' pools and OpenCV's alike (:func:`gfn_edge.apply_threads`).
    """
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
        threads=m.threads,  # OpenCV's pool too: the configuration gfn-bench measures
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


def gallery_location(cfg: Config) -> Path | str:
    """Where admin commands read and write the gallery: the central server of a fleet, else the file."""
    return cfg.gallery.url if cfg.gallery.url is not None else cfg.gallery.path


def open_gallery(path: Path | str, embedder: Optional[Embedder], create: bool, readonly: bool = False) -> Gallery:
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
    """The match threshold: calibrated on this recogniser (stored by ``calibrate --save``), or refused.

    Why so strict: a threshold is only meaningful for the model it was measured on, and the
    bundle's generic default (0.30 for the small GhostFaceNets, whose calibrated 1% FAR threshold
    is ~0.75) grants strangers. ``[recognition] threshold`` may tighten the calibrated value, never
    loosen it. ``--uncalibrated-threshold X`` runs on X anyway, with a loud warning.
    """
    rec = cfg.recognition
    if rec.uncalibrated_threshold is not None:
        log.warning(
            "UNCALIBRATED THRESHOLD: matching at %.4f, a value never calibrated for a false-accept rate on %s; "
            "strangers may be granted. Run door_access.py calibrate --pairs PAIRS.csv --save, then drop --uncalibrated-threshold",
            rec.uncalibrated_threshold,
            embedder.signature,
        )
        return float(rec.uncalibrated_threshold)
    try:
        calibration = gallery.calibration
        bare = gallery.threshold
    except GalleryError:
        calibration, bare = None, None
    signature = embedder.signature
    if calibration is None or calibration["signature"] != signature:
        if calibration is not None:
            why = f"the stored one was measured on another recogniser ({calibration['signature']})"
        elif bare is not None:
            why = f"the stored threshold {bare:.4f} has no record of its false-accept rate or recogniser"
        else:
            why = "none is stored"
        tighten = f"; [recognition] threshold = {rec.threshold:g} can only tighten a calibrated threshold" if rec.threshold is not None else ""
        raise SetupError(
            f"no match threshold calibrated on recogniser {signature} in {gallery.path} ({why}){tighten}: run "
            f"door_access.py calibrate --pairs PAIRS.csv --save (stores the threshold for a target false-accept rate), "
            f"or pass --uncalibrated-threshold X to run on X anyway (strangers may be granted)"
        )
    calibrated, far = float(calibration["threshold"]), float(calibration["target_far"])
    if not 0.0 < calibrated <= 1.0:  # a calibration on data that does not separate anyone
        raise SetupError(
            f"the threshold {calibrated:.4f} calibrated in {gallery.path} would accept almost anyone; recalibrate "
            f"(door_access.py calibrate --save) with photos this recogniser can tell apart"
        )
    if rec.threshold is not None:
        if rec.threshold < calibrated:
            raise SetupError(
                f"[recognition] threshold {rec.threshold:g} is looser than the threshold {calibrated:.4f} calibrated for a "
                f"false-accept rate of {far:g} on this recogniser: more strangers would be granted. Raise it, "
                f"recalibrate (door_access.py calibrate --save), or pass --uncalibrated-threshold X"
            )
        log.info("match threshold %.4f (from the configuration; calibrated %.4f for FAR %g)", rec.threshold, calibrated, far)
        return float(rec.threshold)
    log.info("match threshold %.4f (calibrated for a false-accept rate of %g on this recogniser, stored in the gallery)", calibrated, far)
    return calibrated
