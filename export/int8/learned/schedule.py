"""A learned step's schedule: a number of steps, its seconds a cap.

Why steps and not seconds: a schedule drawn over elapsed time (the learning rate's decay, the
rounding regulariser's annealing) gives a different number of steps, so different weights, every
time the same command runs, and on a busy machine a different verdict. Planned in steps, the same
checkpoint, pictures and options give the same weights on the same software; the seconds still
bound the work. Where the plan would overrun them (a slower machine, a bigger model), it is
shortened once, after a first stretch of steps is timed, to what fits, so the schedule still ends
where it should; that plan then depends on the machine, and the report says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

FIT_SHARE = 0.9
"""A shortened plan is sized to this share of the seconds left by the timed rate: steps vary (a
range refresh every so many, the machine's other work), and a plan sized to the second ran out of
time a few steps before its end (MiniFASNetV2's learned rounding: 68 of about 70)."""


@dataclass
class StepPlan:
    """``planned`` steps within ``cap_s`` seconds, timed from :meth:`start`.

    ``time_after``: steps timed before the plan is checked against the cap (include a range
    refresh: learned steps re-measure their activation ranges every so many steps, and that
    work belongs to the rate)."""

    planned: int
    cap_s: float
    time_after: int = 21
    done: int = 0
    requested: int = field(init=False)
    shortened_to_fit: bool = False
    stopped_by_time: bool = False
    _t0: float = 0.0

    def __post_init__(self) -> None:
        if self.planned < 1:
            raise ValueError(f"a learned step needs at least one step, got {self.planned}")
        self.requested = self.planned

    def start(self) -> StepPlan:
        self._t0 = time.perf_counter()
        return self

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self._t0

    @property
    def fraction(self) -> float:
        """Share of the plan done: what the schedules (learning rate, annealing) follow."""
        return min(self.done / self.planned, 1.0)

    def more(self) -> bool:
        """Whether another step is to be taken."""
        if self.done >= self.planned:
            return False
        if self.elapsed_s >= self.cap_s:
            self.stopped_by_time = True
            return False
        return True

    def stepped(self) -> None:
        """Count a step; after the first ``time_after`` of them, shorten the plan once if the rate
        so far would overrun the cap."""
        self.done += 1
        if self.done != self.time_after or self.done >= self.planned:
            return
        elapsed = self.elapsed_s
        fits = int(FIT_SHARE * self.done * self.cap_s / max(elapsed, 1e-9))
        if fits < self.planned:
            self.planned = max(self.done + 1, fits)
            self.shortened_to_fit = True

    def report(self) -> dict[str, Any]:
        """For the manifest: the steps asked for, taken, and whether time changed the plan."""
        return {
            "steps": self.done,
            "steps_planned": self.requested,
            "schedule": (
                "stopped by its seconds before the plan ended (depends on the machine)"
                if self.stopped_by_time
                else f"shortened to {self.planned} steps to fit its seconds (depends on the machine)"
                if self.shortened_to_fit
                else "as planned (the same weights every run)"
            ),
        }
