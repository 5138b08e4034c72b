"""Enrolment: templates from photos, or from K good frames of the door camera.

A template is used for every later decision, so only good faces become templates: the largest
face of each picture (never a passer-by), passing the quality gates (size, blur, pose), and from
the camera only frames with one person in view that pass liveness when it is configured (a photo
held up at enrolment would otherwise be enrolled as the person). Camera frames are taken at
least ``interval`` seconds apart, so the K templates show K slightly different poses rather
than one frame K times.

Nothing is written until every template is ready, then all in one gallery transaction: killing
the process at any moment leaves either the whole enrolment or none of it, and never touches
identities enrolled before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import numpy as np

from gfn_edge import FaceAnalyzer, Gallery, GfnEdgeError, read_image

from .sources import FrameSource

log = logging.getLogger(__name__)

Say = Callable[[str], None]


class EnrollError(Exception):
    """Nothing could be enrolled; the message says why."""


@dataclass
class EnrollResult:
    name: str
    added: int
    total: int
    used: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)  # photo -> reason


def largest(faces: Sequence[Any]) -> Any:
    return max(faces, key=lambda f: f.area) if faces else None


def _now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def enroll_photos(
    analyzer: FaceAnalyzer,
    gallery: Gallery,
    name: str,
    photos: Sequence[str | Path],
    replace: bool = False,
    allow_low_quality: bool = False,
    say: Say = lambda s: None,
) -> EnrollResult:
    """Enrol ``name`` from the largest face of each photo; raises EnrollError when none is usable."""
    vectors, used, skipped = [], [], {}
    for i, photo in enumerate(photos, 1):
        photo = Path(photo)
        try:
            faces = analyzer.analyze(read_image(photo))
        except GfnEdgeError as exc:
            skipped[str(photo)] = str(exc)
            say(f"photo {i}/{len(photos)} {photo.name}: skipped ({exc})")
            continue
        face = largest(faces)
        if face is None:
            skipped[str(photo)] = "no face found"
            say(f"photo {i}/{len(photos)} {photo.name}: skipped (no face found)")
            continue
        if not face.passed and not allow_low_quality:
            reasons = ", ".join(face.rejected_reasons)
            skipped[str(photo)] = f"quality gates failed: {reasons}"
            say(f"photo {i}/{len(photos)} {photo.name}: skipped (quality gates failed: {reasons}; --allow-low-quality to use it anyway)")
            continue
        note = f", {len(faces)} faces: using the largest" if len(faces) > 1 else ""
        say(f"photo {i}/{len(photos)} {photo.name}: ok (face {face.size:.0f} px, blur {face.quality.blur:.0f}{note})")
        vectors.append(face.embedding)
        used.append(str(photo))
    if not vectors:
        raise EnrollError(f"no usable face in the {len(photos)} photo(s) of {name!r}; nothing was enrolled")
    metadata = {"source": "photos", "photos": [Path(p).name for p in used], "enrolled": _now_iso()}
    total = gallery.enroll(name, np.stack(vectors), replace=replace, metadata=metadata)
    return EnrollResult(name, len(vectors), total, used, skipped)


class _Hints:
    """Says a hint when it changes, or again after 3 s: guidance without flooding the person."""

    def __init__(self, say: Say):
        self.say = say
        self.last, self.last_at = "", 0.0

    def __call__(self, text: str) -> None:
        now = time.monotonic()
        if text != self.last or now - self.last_at > 3.0:
            self.say(text)
            self.last, self.last_at = text, now


def _camera_face(analyzer: FaceAnalyzer, frame: Any, liveness: Any, too_soon: bool) -> tuple[Any, Optional[str]]:
    """(face, None) when the frame may become a template, else (None, the hint to give, or None for none).

    Only the person enrolling may be in view, the face must pass the quality gates and, when
    configured, liveness; frames closer than the capture interval are skipped without a hint.
    """
    faces = analyzer.analyze(frame.image)
    face = largest(faces)
    if face is None:
        return None, "no face in view"
    if any(f is not face and f.size > 0.5 * face.size for f in faces):
        return None, "several people in view: only the person enrolling, please"
    if not face.passed:
        advice = "come closer" if "face_size" in face.rejected_reasons else "face the camera, hold still"
        return None, f"adjust: {', '.join(face.rejected_reasons)} ({advice})"
    if too_soon:
        return None, None
    if liveness is not None:
        result = liveness.predict(frame.image, face.box)
        if not result.live:
            return None, f"not a live face (liveness {result.score:.2f}); photos and screens cannot be enrolled from the camera"
    return face, None


def enroll_camera(
    analyzer: FaceAnalyzer,
    gallery: Gallery,
    name: str,
    source: FrameSource,
    frames: int = 5,
    interval: float = 0.5,
    timeout: float = 60.0,
    liveness: Any = None,
    replace: bool = False,
    say: Say = lambda s: None,
) -> EnrollResult:
    """Enrol ``name`` from ``frames`` good camera frames; raises EnrollError if they do not come in ``timeout`` s."""
    if frames < 1:
        raise EnrollError("--frames must be at least 1")
    vectors: list[np.ndarray] = []
    last_time: Optional[float] = None
    hint = _Hints(say)
    deadline = time.monotonic() + timeout
    seen = 0
    say(f"look at the camera ({source.description}); capturing {frames} frames")
    try:
        for frame in source:
            seen += 1
            if time.monotonic() > deadline:
                break
            too_soon = last_time is not None and frame.time - last_time < interval
            face, problem = _camera_face(analyzer, frame, liveness, too_soon)
            if face is None:
                if problem:
                    hint(problem)
                continue
            vectors.append(face.embedding)
            last_time = frame.time
            say(f"captured {len(vectors)}/{frames} (face {face.size:.0f} px, blur {face.quality.blur:.0f}, yaw {face.quality.yaw:+.2f})")
            if len(vectors) >= frames:
                break
    finally:
        source.close()
    if len(vectors) < frames:
        why = "timed out" if time.monotonic() > deadline else "the source ended"
        raise EnrollError(f"{why} after {seen} frames with {len(vectors)} of {frames} good frames of {name!r}; nothing was enrolled")
    metadata = {"source": "camera", "camera": source.description, "frames": len(vectors), "enrolled": _now_iso()}
    total = gallery.enroll(name, np.stack(vectors), replace=replace, metadata=metadata)
    return EnrollResult(name, len(vectors), total, [source.description])
