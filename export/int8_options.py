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
_COUNTS = {"calib_samples": 1, "max_float_groups": 0}
_SECONDS = ("distill_seconds", "rounding_seconds", "search_seconds")
MAX_SECONDS = 86400.0


def check_int8_options(options: dict[str, Any]) -> None:
    """Raise an SDK error naming the option for a value no export could mean."""
    for key, minimum in _COUNTS.items():
        if options.get(key) is not None:
            check_count(options[key], key, minimum)
    for key in _SECONDS:
        if options.get(key) is not None:
            check_number(options[key], key, 0.0, MAX_SECONDS)
    method = options.get("calib_method")
    if method is not None and method not in CALIBRATION_METHODS:
        raise OptionError(f"calib_method {method!r}: no such calibration method; choose one of {', '.join(CALIBRATION_METHODS)}")
    groups = options.get("float_groups")
    if groups is not None and (not isinstance(groups, (list, tuple)) or not all(isinstance(g, str) and g.strip() for g in groups)):
        raise OptionError(f"float_groups must be a list of layer group names, got {groups!r}")
