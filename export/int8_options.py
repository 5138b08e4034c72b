"""The INT8 options of :func:`.api.export_model`, checked before anything is loaded or built.

The command line refuses the same values in argparse; this is for the Python API, where a sample
cap of -5 used to slice the calibration set from its end and a float-group cap of -3 was taken as
"none", both without a word.
"""

from __future__ import annotations

from typing import Any

from gfn_edge.checks import check_count, check_number
from gfn_edge.errors import OptionError

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
_COUNTS = {"calib_samples": 1, "max_float_groups": 0, "distill_steps": 1, "rounding_steps": 1}
_SECONDS = ("distill_seconds", "rounding_seconds", "search_seconds")
MAX_SECONDS = 86400.0
_STEPS = ("distill_steps", "rounding_steps")
MAX_STEPS = 100_000
"""A learned step's schedule at most this long (a day's seconds cap it anyway; more is a typo)."""

# The distillation's steps per task (:mod:`.int8.learned.schedule`: the same weights every run; the
# seconds cap them), each about three quarters of the default 150 s on this project's 2-core machine. A step
# (batch 16, one thread, the ranges re-measured every 20 steps) measured on an Intel Xeon:
# GhostFaceNets w0.5 0.59-0.70 s, w1.3-e1 0.42 s, MiniFASNetV2 / V1SE 0.68 s, RetinaFace-mnet025
# about 2.9 s (its mosaic view is four pictures of 640x640) after a setup of 16 s; twice as fast
# on an AMD EPYC
DEFAULT_DISTILL_STEPS = {"embed": 160, "liveness": 160, "detect": 40}

# Steps of the schedule per task (learned rounding), each within the default 30 s on this project's
# 2-core machine. A step measured on an Intel Xeon: GhostFaceNets w0.5 0.56 s, w1.3-e1 0.35 s,
# MiniFASNets 0.6 s, RetinaFace-mnet025 about 10 s after a setup of 14 s, so the detector's two
# are a token at the default budget (at 150 s it fitted better and verified worse: docs/int8.md)
DEFAULT_ROUNDING_STEPS = {"embed": 40, "liveness": 40, "detect": 2}


def check_int8_options(options: dict[str, Any]) -> None:
    """Raise an SDK error naming the option for a value no export could mean."""
    for key, minimum in _COUNTS.items():
        if options.get(key) is not None:
            check_count(options[key], key, minimum)
    for key in _STEPS:
        if options.get(key) is not None and options[key] > MAX_STEPS:
            raise OptionError(f"{key} {options[key]}: more than {MAX_STEPS} steps; the seconds options bound a learned step's time")
    for key in _SECONDS:
        if options.get(key) is not None:
            check_number(options[key], key, 0.0, MAX_SECONDS)
    method = options.get("calib_method")
    if method is not None and method not in CALIBRATION_METHODS:
        raise OptionError(f"calib_method {method!r}: no such calibration method; choose one of {', '.join(CALIBRATION_METHODS)}")
    groups = options.get("float_groups")
    if groups is not None and (not isinstance(groups, (list, tuple)) or not all(isinstance(g, str) and g.strip() for g in groups)):
        raise OptionError(f"float_groups must be a list of layer group names, got {groups!r}")
