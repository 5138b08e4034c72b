"""Follow faces across frames by box overlap, so an app recognises a track once, not every frame.

Recognition (align + embed + search) costs far more than detection on a Raspberry Pi; a face in
front of a door stays for dozens of frames. ``IoUTracker`` links each frame's detections to the
previous ones by IoU (greedy, best overlap first: faces rarely overlap, so Hungarian matching
buys nothing), predicts each track's centre with a constant velocity so a face keeps its track
through a frame or two of missed detection or occlusion, and keeps the recognition results on
the track, where ``needs_recognition`` decides when to run the recogniser again.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .retinaface_decode import iou_matrix

log = logging.getLogger(__name__)


class Observation(NamedTuple):
    """One recognition result on a track: ``identity`` None means "not anyone enrolled"."""

    frame: int
    identity: str | None
    score: float


@dataclass(eq=False)
class Track:
    """One face followed over frames, with what the recogniser said about it."""

    id: int
    box: np.ndarray  # last detected box, x1 y1 x2 y2, picture pixels
    score: float  # that detection's score
    hits: int = 1  # frames with a detection
    missed: int = 0  # consecutive frames without one
    age: int = 1  # frames since the track began
    confirmed: bool = False  # seen in min_hits frames; tentative tracks are dropped on a miss
    index: int | None = None  # this track's detection in the latest update(); None while missed
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))  # centre px/frame
    identity: str | None = None  # the current verdict, voted over ``observations``
    identity_score: float | None = None  # mean score of the observations behind that verdict
    observations: deque = field(default_factory=lambda: deque(maxlen=8))  # recent Observation s
    last_recognized_frame: int | None = None

    @property
    def center(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2], np.float32)

    def predicted_box(self, frames: int = 1) -> np.ndarray:
        """Where the box should be ``frames`` after its last detection (centre moves, size stays)."""
        shift = self.velocity * frames
        return self.box + np.array([shift[0], shift[1], shift[0], shift[1]], np.float32)

    def observe(self, identity: str | None, score: float, frame: int) -> None:
        """Record a recognition result and re-vote the identity over the recent ones.

        The verdict is the most frequent label in ``observations`` (None = unknown counts as a
        label too), ties going to the most recent, so one bad frame (blur, a turned head) does
        not flip a settled identity.
        """
        self.observations.append(Observation(int(frame), identity, float(score)))
        self.last_recognized_frame = int(frame)
        votes = Counter(o.identity for o in self.observations)
        top = max(votes.values())
        for obs in reversed(self.observations):  # most recent among the tied leaders
            if votes[obs.identity] == top:
                self.identity = obs.identity
                break
        scores = [o.score for o in self.observations if o.identity == self.identity]
        self.identity_score = float(np.mean(scores)) if self.identity is not None else None

    def settled(self, n: int = 3) -> bool:
        """True once the last ``n`` recognitions agree (on a name, or on "unknown")."""
        if len(self.observations) < n:
            return False
        recent = list(self.observations)[-n:]
        return all(o.identity == recent[0].identity for o in recent)


class IoUTracker:
    """Links detections frame to frame by IoU; track ids only ever grow.

    ``iou_threshold``: least overlap (with the predicted box) to continue a track.
    ``max_missed``: frames a track survives without a detection before it ends.
    ``min_hits``: detections needed before a track is confirmed; tentative tracks end on their
    first miss, so a one-frame false detection never reaches the recogniser.
    ``predict``: move boxes by their recent velocity when matching (helps crossing faces).
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 10, min_hits: int = 1, predict: bool = True, history: int = 8):
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_missed < 0 or min_hits < 1 or history < 1:
            raise ValueError("max_missed must be >= 0, min_hits >= 1 and history >= 1")
        self.iou_threshold = float(iou_threshold)
        self.max_missed = int(max_missed)
        self.min_hits = int(min_hits)
        self.predict = bool(predict)
        self.history = int(history)
        self.frame = 0  # frames seen by update()
        self._next_id = 1
        self._tracks: list[Track] = []

    @property
    def tracks(self) -> list[Track]:
        """Every live track, including tentative ones and those currently missed."""
        return list(self._tracks)

    def reset(self) -> None:
        """Forget all tracks (ids keep growing, so old ids are never reused)."""
        self._tracks = []

    def update(self, boxes: Any, scores: Any = None) -> list[Track]:
        """Advance one frame; returns the track of each detection, in the detections' order.

        ``boxes``: (N, 4) x1 y1 x2 y2, or a ``Detections`` (its scores are used). A detection
        that continues no track starts a new one (check ``track.confirmed`` when min_hits > 1).
        """
        if hasattr(boxes, "boxes"):
            scores = boxes.scores if scores is None else scores
            boxes = boxes.boxes
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if not np.isfinite(boxes).all():
            raise ValueError("boxes contain NaN or Inf")
        scores = np.ones(len(boxes), np.float32) if scores is None else np.asarray(scores, np.float32).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
        self.frame += 1

        pairs = self._match(boxes)
        owner: dict[int, Track] = {}
        matched: set[int] = set()
        for ti, di in pairs:
            track = self._tracks[ti]
            self._continue(track, boxes[di], float(scores[di]), di)
            owner[di] = track
            matched.add(ti)

        survivors = []
        for ti, track in enumerate(self._tracks):
            if ti not in matched:
                track.missed += 1
                track.index = None
                if not track.confirmed or track.missed > self.max_missed:
                    log.debug("track %d ended after %d frames (%d hits)", track.id, track.age, track.hits)
                    continue
            track.age += 1
            survivors.append(track)
        self._tracks = survivors

        for di in range(len(boxes)):
            if di not in owner:
                track = Track(
                    id=self._next_id,
                    box=boxes[di].copy(),
                    score=float(scores[di]),
                    confirmed=self.min_hits <= 1,
                    index=di,
                    observations=deque(maxlen=self.history),
                )
                self._next_id += 1
                self._tracks.append(track)
                owner[di] = track
        return [owner[di] for di in range(len(boxes))]

    def _match(self, boxes: np.ndarray) -> list[tuple[int, int]]:
        """Greedy one-to-one pairs (track, detection), highest IoU first."""
        if not self._tracks or len(boxes) == 0:
            return []
        if self.predict:
            expected = np.stack([t.predicted_box(t.missed + 1) for t in self._tracks])
        else:
            expected = np.stack([t.box for t in self._tracks])
        iou = iou_matrix(expected, boxes)
        ti, di = np.nonzero(iou >= self.iou_threshold)
        order = np.lexsort((di, ti, -iou[ti, di]))  # best first; ties by track, then detection
        pairs, used_t, used_d = [], set(), set()
        for k in order:
            t, d = int(ti[k]), int(di[k])
            if t not in used_t and d not in used_d:
                used_t.add(t)
                used_d.add(d)
                pairs.append((t, d))
        return pairs

    def _continue(self, track: Track, box: np.ndarray, score: float, index: int) -> None:
        gap = track.missed + 1
        step = (np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float32) - track.center) / gap
        track.velocity = step if track.hits == 1 else (0.5 * track.velocity + 0.5 * step).astype(np.float32)
        track.box = box.copy()
        track.score = score
        track.hits += 1
        track.missed = 0
        track.index = index
        if track.hits >= self.min_hits:
            track.confirmed = True

    def record(self, track: Track, identity: Any, score: float | None = None) -> None:
        """Store a recognition result for ``track`` at the current frame.

        ``identity`` is a name, None (nobody enrolled matched), or a ``gallery.Match`` (its
        identity and score are used), so ``tracker.record(track, gallery.best(emb))`` works.
        """
        if identity is not None and not isinstance(identity, str) and hasattr(identity, "identity"):
            score = float(identity.score) if score is None else score
            identity = identity.identity
        track.observe(identity, 0.0 if score is None else float(score), self.frame)

    def needs_recognition(self, track: Track, every: int = 30, settle: int = 3) -> bool:
        """Should the app run the recogniser on this track's face in the current frame?

        Yes for a confirmed, visible track that was never recognised or whose last ``settle``
        results disagree; then every ``every`` frames, to catch a track that jumped to another
        face. No while the track is missed (there is no face to crop) or tentative.
        """
        if not track.confirmed or track.missed > 0:
            return False
        if track.last_recognized_frame is None or not track.settled(settle):
            return True
        return self.frame - track.last_recognized_frame >= every
