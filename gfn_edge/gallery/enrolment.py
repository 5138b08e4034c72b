"""Enrolment policy: which face of which picture becomes a template.

One face per picture, the largest (nearest the camera): a smaller one may be a passer-by, and a
passer-by enrolled under someone's name would be granted as them. With ``require_quality`` a
face that failed the analyzer's quality gates is not enrolled either: a blurred template costs
recall for as long as it is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GalleryError
from .types import GalleryValueError

log = logging.getLogger("gfn_edge.gallery")


@dataclass
class Harvest:
    """The embeddings taken from enrolment pictures, and which pictures gave none (and why)."""

    embeddings: np.ndarray
    skipped: list[int] = field(default_factory=list)
    rejected: dict[int, list[str]] = field(default_factory=dict)


def face_area(face: Any) -> float:
    """A face's box area in pixels: ``Face.area`` when the SDK's type, else from ``.box``/``.bbox``."""
    area = getattr(face, "area", None)
    if isinstance(area, (int, float, np.floating, np.integer)):
        return float(area)
    box = getattr(face, "box", None)
    if box is None:
        box = getattr(face, "bbox", None)
    if box is None:
        return 0.0
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box).reshape(-1)[:4])
    return max(x2 - x1, 0.0) * max(y2 - y1, 0.0)


def harvest(
    identity: str,
    images: Sequence[Any],
    gallery_signature: str,
    location: str,
    embedder: Any = None,
    analyzer: Any = None,
    require_quality: bool = True,
) -> Harvest:
    """Embeddings for ``identity`` from ``images``: via an analyzer (largest face per picture) or
    an embedder of aligned crops. A recogniser of another model than the gallery's is refused."""
    images = list(images)
    if not images:
        raise GalleryValueError("enroll_images needs at least one image")
    if analyzer is None and embedder is not None and hasattr(embedder, "analyze"):
        analyzer, embedder = embedder, None
    source = analyzer if analyzer is not None else embedder
    if source is None:
        raise GalleryValueError("enroll_images needs an embedder (with embed(crops)) or an analyzer (with analyze(image))")
    other = getattr(source, "signature", None)
    if isinstance(other, str) and other != gallery_signature:
        raise GalleryError(
            f"gallery {location} was built with model {gallery_signature!r} but the recogniser given is {other!r}; enrol with the same model the gallery uses"
        )
    if analyzer is None:
        embeddings = np.asarray(embedder.embed(images))
        return Harvest(embeddings[None] if embeddings.ndim == 1 else embeddings)
    return _from_analyzer(identity, images, analyzer, require_quality)


def _from_analyzer(identity: str, images: list[Any], analyzer: Any, require_quality: bool) -> Harvest:
    vectors: list[np.ndarray] = []
    skipped: list[int] = []
    rejected: dict[int, list[str]] = {}
    for i, image in enumerate(images):
        faces = list(analyzer.analyze(image) or [])
        if not faces:
            skipped.append(i)
            continue
        if len(faces) > 1:
            log.warning("enrolment image %d of %r shows %d faces; using the largest", i, identity, len(faces))
        face = max(faces, key=face_area)  # never a smaller one: it may be a passer-by
        if require_quality and getattr(face, "passed", True) is False:
            rejected[i] = list(getattr(face, "rejected_reasons", None) or ["quality"])
            continue
        if getattr(face, "embedding", None) is None:
            raise GalleryValueError("the analyzer returned faces without embeddings; give it a recogniser")
        vectors.append(np.asarray(face.embedding).reshape(-1))
    if skipped or rejected:
        log.warning("enrolment of %r: no face in images %s; failed quality gates: %s", identity, skipped, rejected)
    if not vectors:
        raise GalleryValueError(
            f"no usable face in the {len(images)} images of {identity!r} (no face: {skipped}, failed quality gates: {rejected}); nothing was enrolled"
        )
    return Harvest(np.stack(vectors), skipped, rejected)
