"""How the INT8 search compares attempts and ranks layer groups (export/int8/search.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="asset missing: torch (the training side: pip install 'gfn-edge[export]')")

from gfn_edge.export.int8.search import Attempt, Outcome, _score, _slacks, margin, rank
from gfn_edge.export.verify import DEFAULT_TOLERANCES, VerificationReport


def _outcome(name: str, cos_mean: float, cos_min: float, pair_delta: float) -> Outcome:
    report = VerificationReport(False, {"cos_mean": cos_mean, "cos_min": cos_min, "pair_acc_delta": pair_delta}, DEFAULT_TOLERANCES[("embed", "int8")])
    return Outcome(Attempt(name), False, margin(report), report.metrics, [], 1.0, Path("."), total_slack=sum(_slacks(report)))


def test_a_tie_on_the_pair_step_goes_to_the_attempt_closer_to_the_reference():
    # both flip the same two pairs (0.57 points: the worst slack of each); the tuned one is closer in cosine
    plain = _outcome("plain", 0.9772, 0.9423, 0.573066)
    tuned = _outcome("tuned", 0.9821, 0.9525, 0.573066)
    assert plain.margin == pytest.approx(tuned.margin)
    assert max([plain, tuned], key=rank) is tuned and max([tuned, plain], key=rank) is tuned
    # the smallest slack still decides first
    assert max([_outcome("a", 0.999, 0.999, 1.5), _outcome("b", 0.98, 0.95, 0.0)], key=rank).attempt.method == "b"


def test_the_group_ranking_score_weighs_the_worst_faces():
    ref = np.eye(8)
    mild = ref + 0.2  # every face somewhat off (cosine 0.915)
    one_bad = ref.copy()
    one_bad[0] = ref[0] + 2.0 * ref[1]  # one face far off (cosine 0.447), the rest exact
    embed = _score("embed")
    mean_cos = lambda out: float(((out / np.linalg.norm(out, axis=1, keepdims=True)) * ref).sum(1).mean())  # noqa: E731
    assert mean_cos(one_bad) > mean_cos(mild)  # by the mean, the one bad face would look harmless
    assert embed([one_bad], [ref]) < embed([mild], [ref])  # the score ranks it as the worse damage
