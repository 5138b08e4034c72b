"""How attempts compare: the relative slack of each judged tolerance, and which metrics move in
coarse steps (a pair, a liveness verdict) and so must not decide which model is closest."""

from __future__ import annotations

from typing import Any

from .attempt import Outcome


def slack_by_key(tolerances, metrics: dict[str, Any]) -> dict[str, float]:
    """Relative slack of each judged tolerance that ``metrics`` has (negative where it fails)."""
    slacks = {}
    for key, (op, limit) in tolerances.items():
        value = metrics.get(key)
        if value is None:
            continue
        scale = max(abs(limit), 1e-6)
        slacks[key] = (value - limit) / scale if op == ">=" else (limit - value) / scale
    return slacks


def relative_slacks(report) -> list[float]:
    """Relative slack of each judged tolerance (negative where it fails)."""
    return list(slack_by_key(report.tolerances, report.metrics).values())


def margin(report) -> float:
    """Smallest relative slack over the judged tolerances (negative when one fails)."""
    slacks = relative_slacks(report)
    return min(slacks) if slacks else 0.0


# Metrics that move in coarse steps: the pair-accuracy change moves by one pair of 349 (0.29
# points, a relative slack of 0.57 against its 0.5-point tolerance), so one flipped pair outweighs
# any cosine difference in the margin; the share of unchanged pair decisions (one pair: 0.0029)
# and a verdict of a liveness crop, likewise.
STEPPED = ("pair_acc_delta", "pair_decisions_agree", "decision_flips_robust")


def misses_only_stepped(outcome: Outcome) -> bool:
    """Whether ``outcome`` fails only tolerances that move a pair (or a crop's verdict) at a time."""
    missed = [key for key, slack in slack_by_key(outcome.tolerances, outcome.metrics).items() if slack < 0]
    return bool(missed) and all(key in STEPPED for key in missed)


def fidelity(report) -> float:
    """Smallest relative slack over the judged continuous metrics: which attempt's model is closest
    to the reference, the base to keep layer groups in float on."""
    keep = {k: v for k, v in report.tolerances.items() if k not in STEPPED}
    slacks = relative_slacks(type(report)(report.passed, report.metrics, keep)) if keep else []
    return min(slacks) if slacks else margin(report)


def by_fidelity(outcome: Outcome) -> tuple[float, float]:
    return (outcome.fidelity, outcome.total_slack)


def rank(outcome: Outcome) -> tuple[float, float]:
    """How attempts compare: the smallest slack, then the sum of them. The pair-accuracy change moves
    in steps of one pair (0.29 points on 349 pairs), so two attempts often tie on it while one is
    clearly closer to the reference; the sum breaks that tie."""
    return (outcome.margin, outcome.total_slack)
