"""Latency statistics: a fixed number of timed runs after a warm-up, summarised by median and p90.

Why medians: on a shared or thermally throttled board the mean is dragged by a few slow runs
(another process, a page fault), while the median tracks what the model costs. p90 is kept
beside it so jitter stays visible instead of being averaged away.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable


@dataclass(frozen=True)
class Timing:
    """Summary of one measurement, milliseconds."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    runs: int
    warmup: int
    others_busy: float | None = None  # share of all CPU time other processes used while this was measured
    attempts: int = 1  # measurements made (a noisy one is repeated when a QuietGate allows)

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def with_noise(self, others_busy: float | None, attempts: int) -> Timing:
        return replace(self, others_busy=others_busy, attempts=attempts)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), without needing numpy's import here."""
    if not values:
        raise ValueError("percentile of no values")
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summarize(samples_ms: Sequence[float], warmup: int = 0) -> Timing:
    """Median, p90, mean, min and max of per-run times in milliseconds."""
    if not samples_ms:
        raise ValueError("no timed runs")
    return Timing(
        median_ms=percentile(samples_ms, 50),
        p90_ms=percentile(samples_ms, 90),
        mean_ms=sum(samples_ms) / len(samples_ms),
        min_ms=min(samples_ms),
        max_ms=max(samples_ms),
        runs=len(samples_ms),
        warmup=warmup,
    )


def time_calls(fn: Callable[[], Any], runs: int, warmup: int) -> list[float]:
    """Per-call wall times (ms) of ``fn`` over ``runs`` calls, after ``warmup`` untimed calls.

    Warm-up absorbs one-off costs (lazy allocation, kernel selection, OpenVINO's first-run
    compilation of shape-specific kernels) that a long-running app pays once.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    for _ in range(max(0, warmup)):
        fn()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(runs):
        start = clock()
        fn()
        samples.append((clock() - start) / 1e6)
    return samples


def measure(fn: Callable[[], Any], runs: int = 50, warmup: int = 10, guard: Any = None) -> Timing:
    """Time ``fn`` and summarise: the one entry point the harness uses for every latency.

    ``guard`` (a :class:`~gfn_edge.benchmark.system.QuietGate`) measures how much CPU other
    processes took meanwhile and repeats a disturbed measurement while its budget allows.
    """
    if guard is not None:
        return guard.measure(lambda: summarize(time_calls(fn, runs, warmup), warmup))
    return summarize(time_calls(fn, runs, warmup), warmup)
