"""The per-frame loop of the door: detect, track, recognise (only where needed), decide, act, log.

Detection runs on every frame; recognition (align, embed, 1:N search, and liveness for matches)
runs only on tracks that need it: new ones, ones whose run towards a decision is still building,
and decided ones every ``recheck_every`` frames (to notice a different person in the same box).
On a Raspberry Pi this is what keeps the frame rate up when someone stands at the door.

Everything that can fail on a frame is caught here: an error while recognising or checking
liveness becomes a ``deny`` for that track (fail closed) and the loop goes on with the next frame.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from gfn_edge import FaceAnalyzer, Gallery, IoUTracker

from . import draw
from .actions import ActionRunner
from .decision import Decision, DecisionEngine, Observation
from .events import Event, EventLog
from .snapshots import SnapshotWriter
from .sources import Frame

log = logging.getLogger(__name__)


@dataclass
class _Label:
    text: str
    color: tuple


class _RateLimitedLog:
    """Logs the first error of a kind with its traceback, then only a count every ``every`` times."""

    def __init__(self, every: int = 100):
        self.every = every
        self.counts: dict[str, int] = {}

    def __call__(self, what: str, exc: BaseException) -> None:
        key = f"{what}:{type(exc).__name__}"
        n = self.counts[key] = self.counts.get(key, 0) + 1
        if n == 1:
            log.error("%s failed: %s: %s", what, type(exc).__name__, exc, exc_info=exc)
        elif n % self.every == 0:
            log.error("%s failed %d times so far (last: %s: %s)", what, n, type(exc).__name__, exc)


class DoorLoop:
    """Processes frames one at a time; returns the decisions each frame produced."""

    def __init__(
        self,
        analyzer: FaceAnalyzer,
        gallery: Gallery,
        threshold: float,
        engine: DecisionEngine,
        tracker: IoUTracker,
        *,
        liveness: Any = None,
        margin: float = 0.0,
        recheck_every: int = 15,
        events: Optional[EventLog] = None,
        actions: Optional[ActionRunner] = None,
        snapshots: Optional[SnapshotWriter] = None,
        snapshot_on: Collection[str] = ("unknown", "deny"),
        source_name: str = "",
        annotate: bool = False,
    ):
        if analyzer.recognizer is None:
            raise ValueError("the door needs a recogniser in its FaceAnalyzer")
        self.analyzer = analyzer
        self.gallery = gallery
        self.threshold = float(threshold)
        self.engine = engine
        self.tracker = tracker
        self.liveness = liveness
        self.margin = float(margin)
        self.recheck_every = int(recheck_every)
        self.events = events
        self.actions = actions
        self.snapshots = snapshots
        self.snapshot_on = set(snapshot_on)
        self.source_name = source_name
        self.annotate = annotate
        self.frames = 0
        self.recognitions = 0
        self.decisions: dict[str, int] = {}
        self._labels: dict[int, _Label] = {}
        self._embeddings: dict[int, np.ndarray] = {}  # last recognised face of each track
        self._errors = _RateLimitedLog()
        self._fps = 0.0
        self._last = time.perf_counter()

    # --- one frame ------------------------------------------------------------------------
    def process(self, frame: Frame) -> tuple[list[Decision], Optional[np.ndarray]]:
        """Decisions taken on this frame, and the annotated picture when ``annotate`` is on."""
        self.frames += 1
        image = frame.image
        # a track coming back after missed frames may have been taken over by someone else: look again
        returning = {t.id for t in self.tracker.tracks if t.missed > 0}
        try:
            dets = self.analyzer.detect(image)
            tracks = self.tracker.update(dets)
        except Exception as exc:  # a bad frame or a failing model: no face is decided on this frame
            self._errors("detection", exc)
            self.engine.interrupt()
            return [], (self._draw(image, None, []) if self.annotate else None)
        alive = {t.id for t in self.tracker.tracks}
        self.engine.forget_tracks(alive)
        for tid in [t for t in self._labels if t not in alive]:
            del self._labels[tid]
        for tid in [t for t in self._embeddings if t not in alive]:
            del self._embeddings[tid]

        todo = [i for i, t in enumerate(tracks) if self._needs_recognition(t, t.id in returning)]
        decided: list[tuple[Decision, np.ndarray]] = []
        if todo:
            try:
                faces = self.analyzer.recognize(image, dets.select(np.asarray(todo)))
            except Exception as exc:
                self._errors("recognition", exc)
                faces = []
                for i in todo:
                    d = self.engine.fail(tracks[i].id, frame.time, exc)
                    if d is not None:
                        decided.append((d, dets.boxes[i]))
            for i, face in zip(todo, faces):
                track = tracks[i]
                try:
                    d = self._observe(track, face, image, frame)
                except Exception as exc:  # fail closed: deny, keep running
                    self._errors("the decision", exc)
                    d = self.engine.fail(track.id, frame.time, exc)
                    self._labels[track.id] = _Label("error", draw.RED)
                if d is not None:
                    decided.append((d, face.box))
        for d, box in decided:
            self._emit(d, frame, box)
        self._tick()
        return [d for d, _ in decided], (self._draw(image, dets, tracks) if self.annotate else None)

    def _needs_recognition(self, track: Any, returning: bool = False) -> bool:
        if not track.confirmed or track.missed > 0:
            return False
        if returning or self.engine.pending(track.id):
            return True
        return self.tracker.needs_recognition(track, every=self.recheck_every, settle=self.engine.consecutive)

    def _observe(self, track: Any, face: Any, image: np.ndarray, frame: Frame) -> Optional[Decision]:
        if not face.passed:  # not an observation: too small, blurred or turned to judge
            self._labels[track.id] = _Label("move closer" if "face_size" in face.rejected_reasons else "look at the camera", draw.GREY)
            return None
        self.recognitions += 1
        previous = self._embeddings.get(track.id)
        if previous is not None and float(np.dot(previous, face.embedding)) < self.threshold:
            # less like the track's last face than a match must be like a template: another person
            log.debug("track %d: a different face than before; deciding afresh", track.id)
            self.engine.restart(track.id)
        self._embeddings[track.id] = face.embedding
        matches = self.gallery.search(face.embedding, k=2)
        best = matches[0] if matches else None
        identity = best.identity if best is not None and best.score >= self.threshold else None
        note = ""
        if identity is not None and self.margin > 0 and len(matches) > 1 and best.score - matches[1].score < self.margin:
            note = f"ambiguous: {best.identity} {best.score:.3f} vs {matches[1].identity} {matches[1].score:.3f} (margin {self.margin:g})"
            identity = None
        live = liveness = None
        if identity is not None and self.liveness is not None:
            result = self.liveness.predict(image, face.box)
            live, liveness = bool(result.live), float(result.score)
        self.tracker.record(track, identity, best.score if best is not None else 0.0)
        obs = Observation(
            identity=identity,
            score=None if best is None else float(best.score),
            time=frame.time,
            nearest=None if best is None else best.identity,
            live=live,
            liveness=liveness,
            note=note,
        )
        decision = self.engine.observe(track.id, obs)
        self._labels[track.id] = self._label_for(obs)
        return decision

    def _label_for(self, obs: Observation) -> _Label:
        if obs.identity is None:
            return _Label("unknown" + (f" {obs.score:.2f}" if obs.score is not None else ""), draw.RED)
        text = f"{obs.identity} {obs.score:.2f}"
        if obs.live is False:
            return _Label(text + " NOT LIVE", draw.RED)
        return _Label(text, draw.GREEN)

    # --- after a decision -----------------------------------------------------------------
    def _emit(self, d: Decision, frame: Frame, box: np.ndarray) -> None:
        self.decisions[d.decision] = self.decisions.get(d.decision, 0) + 1
        snapshot = None
        if self.snapshots is not None and d.decision in self.snapshot_on:
            snapshot = self.snapshots.write(frame.image, box, d.decision, d.track, (d.identity or "unknown") + f" {d.decision}")
        if self.events is not None:
            try:
                self.events.add(
                    Event(
                        time=d.wall,
                        decision=d.decision,
                        track=d.track,
                        identity=d.identity,
                        score=d.score,
                        liveness=d.liveness,
                        reason=d.reason,
                        frame=frame.index,
                        source_time=frame.time,
                        snapshot=snapshot,
                        source=self.source_name,
                    )
                )
            except Exception as exc:  # a full disk must not stop the door; the log line below still says it
                self._errors("writing the event log", exc)
        if self.actions is not None:
            self.actions.submit(d, snapshot)

    # --- display --------------------------------------------------------------------------
    def _tick(self) -> None:
        now = time.perf_counter()
        dt = max(now - self._last, 1e-6)
        self._last = now
        self._fps = 1.0 / dt if self._fps == 0 else 0.9 * self._fps + 0.1 / dt

    @property
    def fps(self) -> float:
        return self._fps

    def _draw(self, image: np.ndarray, dets: Any, tracks: list) -> np.ndarray:
        out = image.copy()
        for i, track in enumerate(tracks):
            label = self._labels.get(track.id, _Label("checking", draw.AMBER))
            landmarks = dets.landmarks[i] if dets is not None else None
            draw.face_box(out, track.box, label.color, f"#{track.id} {label.text}", landmarks)
        draw.status(out, f"{self._fps:4.1f} fps  faces {len(tracks)}  granted {self.decisions.get('grant', 0)}")
        return out
