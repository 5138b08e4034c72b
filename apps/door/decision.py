"""Grant, deny or ignore: the door's decision rule, as pure logic with no I/O.

Rule: a track's recognition results (observations) are grouped into runs of consecutive
observations that agree on a *verdict*: (identity, live) for a match above threshold, or
"unknown". When a run reaches ``consecutive`` observations, and the track has not already
decided that same verdict, one decision is taken:

- (X, live)      -> ``grant`` X, unless X was granted less than ``cooldown`` seconds ago
                    (then ``cooldown``: logged, no action);
- (X, not live)  -> ``deny`` (reason: liveness);
- unknown        -> ``unknown``.

Why runs and not votes: one frame can be wrong (motion blur, a turned head, a liveness model
fooled for one frame); a grant needs the same answer N times in a row, and any disagreement
starts the count again. Why once per verdict: a person standing at the door for a minute is
one event, not hundreds; a track that changes verdict (the spoof was lowered and the real face
shows, or another person stepped into the same box) gets a new decision.

Fail closed: :meth:`DecisionEngine.fail` records an error on a track as a ``deny`` and breaks
its run, so no grant can span a frame where something went wrong.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class Observation:
    """What recognition said about one track on one frame."""

    identity: Optional[str]  # the match above threshold, None: nobody enrolled matched
    score: Optional[float]  # best cosine similarity (even below threshold); None with an empty gallery
    time: float  # Frame.time (media seconds for files, monotonic for live sources)
    nearest: Optional[str] = None  # best identity whatever its score (for the unknown log line)
    live: Optional[bool] = None  # None: liveness off (or not run: unknown faces)
    liveness: Optional[float] = None  # real-face probability
    note: str = ""  # why identity is None although nearest scored above threshold (ambiguous)

    @property
    def verdict(self) -> tuple:
        if self.identity is None:
            return ("unknown",)
        return ("match", self.identity, self.live is not False)


@dataclass
class Decision:
    """One decision about one track."""

    decision: str  # grant, deny, unknown, cooldown
    track: int
    time: float  # Frame.time of the observation that completed the run
    identity: Optional[str] = None
    score: Optional[float] = None
    liveness: Optional[float] = None
    reason: str = ""
    wall: float = field(default_factory=time.time)  # wall-clock time the decision was taken


@dataclass
class _TrackState:
    run: list = field(default_factory=list)  # the current run of agreeing observations
    decided: Optional[tuple] = None  # verdict of the last decision taken on this track
    failing: bool = False  # an error was reported and no good observation came since


class DecisionEngine:
    """Turns observations into decisions; see the module docstring for the rule."""

    def __init__(self, consecutive: int = 3, cooldown: float = 10.0, threshold: float | None = None, liveness_threshold: float | None = None):
        if consecutive < 1:
            raise ValueError("consecutive must be >= 1")
        self.consecutive = int(consecutive)
        self.cooldown = float(cooldown)
        self.threshold = threshold  # only for reason texts
        self.liveness_threshold = liveness_threshold
        self._tracks: dict[int, _TrackState] = {}
        self._last_grant: dict[str, float] = {}

    def _state(self, track: int) -> _TrackState:
        return self._tracks.setdefault(track, _TrackState())

    def pending(self, track: int) -> bool:
        """True while a run is building towards a decision not yet taken (recognise every frame)."""
        st = self._tracks.get(track)
        return bool(st and st.run and st.run[-1].verdict != st.decided)

    def decided(self, track: int) -> Optional[tuple]:
        st = self._tracks.get(track)
        return st.decided if st else None

    def observe(self, track: int, obs: Observation) -> Optional[Decision]:
        st = self._state(track)
        st.failing = False
        if st.run and st.run[-1].verdict != obs.verdict:
            st.run = []
        st.run.append(obs)
        if len(st.run) > self.consecutive:
            st.run = st.run[-self.consecutive :]
        if len(st.run) < self.consecutive or obs.verdict == st.decided:
            return None
        st.decided = obs.verdict
        return self._decide(track, st.run)

    def fail(self, track: int, time: float, error: BaseException | str) -> Optional[Decision]:
        """An error in the decision path: deny, break the run; one decision per failing spell."""
        st = self._state(track)
        st.run = []
        if st.failing:
            return None
        st.failing = True
        st.decided = ("error",)
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        return Decision("deny", track, time, reason=f"error: {text}"[:500])

    def interrupt(self) -> None:
        """A frame could not be processed at all: every run starts again (no grant spans the gap)."""
        for st in self._tracks.values():
            st.run = []

    def restart(self, track: int) -> None:
        """Someone else now holds this track (the app saw a different face): decide afresh."""
        st = self._tracks.get(track)
        if st is not None:
            st.run, st.decided, st.failing = [], None, False

    def end(self, track: int) -> None:
        """The track is gone: forget its state (its grants still count for the cooldown)."""
        self._tracks.pop(track, None)

    def forget_tracks(self, alive: set[int]) -> None:
        for tid in [t for t in self._tracks if t not in alive]:
            del self._tracks[tid]

    # --- the rule -------------------------------------------------------------------------
    def _decide(self, track: int, run: list[Observation]) -> Decision:
        last = run[-1]
        scores = [o.score for o in run if o.score is not None]
        score = sum(scores) / len(scores) if scores else None
        lives = [o.liveness for o in run if o.liveness is not None]
        liveness = min(lives) if lives else None
        n = len(run)
        if last.identity is None:
            if last.note:  # matched someone, but not unambiguously
                why = f"; {last.note}"
            elif last.nearest is None or last.score is None:
                why = " (nobody is enrolled)"
            else:
                thr = f" < threshold {self.threshold:.3f}" if self.threshold is not None else ""
                why = f"; nearest {last.nearest} {last.score:.3f}{thr}"
            return Decision("unknown", track, last.time, None, score, liveness, f"no enrolled match in {n} observations{why}")
        ident = last.identity
        if last.live is False:
            thr = f" < {self.liveness_threshold:.2f}" if self.liveness_threshold is not None else ""
            return Decision(
                "deny",
                track,
                last.time,
                ident,
                score,
                liveness,
                f"liveness: not a live face ({liveness:.3f}{thr})" if liveness is not None else "liveness: not a live face",
            )
        previous = self._last_grant.get(ident)
        if previous is not None and 0 <= last.time - previous < self.cooldown:
            return Decision("cooldown", track, last.time, ident, score, liveness, f"granted {last.time - previous:.1f} s ago (cooldown {self.cooldown:g} s)")
        self._last_grant[ident] = last.time
        live_note = "" if liveness is None else f", live {liveness:.2f}"
        return Decision("grant", track, last.time, ident, score, liveness, f"matched in {n} consecutive observations{live_note}")
