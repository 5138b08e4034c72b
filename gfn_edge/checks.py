"""Validation of the numbers a user hands the SDK: thresholds, probabilities, thread counts, vectors.

Why one module: a threshold of NaN or -0.5, or a thread count of 1000, must be refused (or
clamped) the same way whether it came from the Python API, a TOML file or a command-line flag,
with one message naming the setting. Each check returns the cleaned value or raises an error
from :mod:`gfn_edge.errors`.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from typing import Any

import numpy as np

from .errors import InvalidArgumentError, InvalidTypeError, NonFiniteError

log = logging.getLogger(__name__)


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask: a container or taskset may allow fewer than the machine has)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def clamp_threads(threads: Any, name: str = "threads") -> int | None:
    """``threads`` as an int no larger than the usable cores (warned when clamped); None stays None.

    More inference threads than cores never speeds a model up, and a thousand of them make
    onnxruntime and OpenVINO spin for minutes before the first answer.
    """
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral):
        if isinstance(threads, float) and threads.is_integer():
            threads = int(threads)
        else:
            raise InvalidTypeError(f"{name} must be a whole number of threads, got {threads!r}")
    threads = int(threads)
    if threads < 1:
        raise InvalidArgumentError(f"{name} must be at least 1, got {threads}")
    cores = usable_cores()
    if threads > cores:
        log.warning("%s=%d is more than the %d usable CPU core(s); using %d", name, threads, cores, cores)
        return cores
    return threads


def check_number(
    value: Any,
    name: str,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """``value`` as a finite float within [lo, hi] (``lo_open``/``hi_open`` exclude the end)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidTypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise NonFiniteError(f"{name} must be a finite number, got {value}")
    low_bad = lo is not None and (value <= lo if lo_open else value < lo)
    high_bad = hi is not None and (value >= hi if hi_open else value > hi)
    if low_bad or high_bad:
        left = "" if lo is None else ("(" if lo_open else "[") + f"{lo:g}"
        right = "" if hi is None else f"{hi:g}" + (")" if hi_open else "]")
        if lo is None:
            bounds = f"{'<' if hi_open else '<='} {hi:g}"
        elif hi is None:
            bounds = f"{'>' if lo_open else '>='} {lo:g}"
        else:
            bounds = f"in {left}, {right}"
        raise InvalidArgumentError(f"{name} must be {bounds}, got {value:g}")
    return value


def check_count(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as a whole number of at least ``minimum`` (a sample cap of 0 or -5, a float group
    count of -3: refused, not sliced from the end or silently ignored)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidTypeError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise InvalidArgumentError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


MIN_INPUT_SIDE = 32
"""A detector input side below RetinaFace's largest stride leaves its coarsest level no cell."""
MAX_INPUT_SIDE = 4096
"""A 4K frame's side: 99999x99999 asked OpenCV for a 30 GB canvas and ended in a crash report."""


def check_input_size(size: Any, name: str = "input size") -> tuple[int, int]:
    """A detector input (width, height): two whole numbers within
    [:data:`MIN_INPUT_SIDE`, :data:`MAX_INPUT_SIDE`]. Any size in between works (feature maps and
    priors both round up: ceil(side / stride)); 320x240 and 640x480 are common."""
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise InvalidTypeError(f"{name} must be (width, height), got {size!r}")
    w, h = (check_count(v, name, MIN_INPUT_SIDE) for v in size)
    if max(w, h) > MAX_INPUT_SIDE:
        raise InvalidArgumentError(f"{name} {w}x{h} is too large: both sides must be at most {MAX_INPUT_SIDE}")
    return w, h


def check_threshold(value: Any, name: str = "threshold") -> float:
    """A cosine-similarity threshold: finite, in [-1, 1]."""
    return check_number(value, name, -1.0, 1.0)


def check_probability(value: Any, name: str) -> float:
    """A probability: finite, in [0, 1]."""
    return check_number(value, name, 0.0, 1.0)


def check_finite(array: Any, what: str) -> np.ndarray:
    """``array`` as float32, refused when any value is NaN or infinite (it would poison a decision)."""
    arr = np.asarray(array)
    if arr.dtype.kind not in "fiu":
        raise InvalidTypeError(f"{what} must be numbers, got an array of {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise NonFiniteError(f"{what} holds {bad} NaN or infinite value(s); the model or its input is broken")
    return arr
