"""Which ``--tolerance KEY=VALUE`` overrides exist, checked before an export starts.

A tolerance key that no verification measures used to be accepted and ignored, so an artifact
could ship believing a limit that was never applied. Keys are the metrics the task's verification
judges: those with a default tolerance (:data:`.verify.DEFAULT_TOLERANCES`) plus the other
measured agreement metrics listed here.
"""

from __future__ import annotations

import math

from gfn_edge.errors import OptionError

from .verify import DEFAULT_TOLERANCES

# measured by .verify for the task and judgeable, without a default tolerance at any precision
_MORE_MEASURED: dict[str, tuple[str, ...]] = {
    "embed": ("cos_mean_all", "cos_min_all", "pair_acc", "pair_acc_at_ref_threshold", "pair_decisions_agree"),
    "detect": ("landmark_nme_max", "score_err_max"),
    "liveness": (),
}


def tolerance_keys(task: str) -> list[str]:
    """Every key ``--tolerance`` accepts for a model of ``task``, sorted."""
    keys = {key for (t, _), tolerances in DEFAULT_TOLERANCES.items() if t == task for key in tolerances}
    return sorted(keys | set(_MORE_MEASURED.get(task, ())))


def check_tolerance_overrides(items: list[str] | None, task: str) -> None:
    """Refuse malformed items, unknown keys and non-finite values, naming the valid keys."""
    valid = tolerance_keys(task)
    for item in items or []:
        if not isinstance(item, str) or "=" not in item:
            raise OptionError(f"--tolerance expects KEY=VALUE, got {item!r}; keys for {task} models: {', '.join(valid)}")
        key, value = (part.strip() for part in item.split("=", 1))
        if key not in valid:
            raise OptionError(f"--tolerance {key}: no such tolerance for {task} models; valid keys: {', '.join(valid)}")
        try:
            number = float(value)
        except ValueError:
            raise OptionError(f"--tolerance {key}={value}: the value must be a number") from None
        if not math.isfinite(number):
            raise OptionError(f"--tolerance {key}={value}: the value must be a finite number")
