"""The threshold rules of gfn_edge.metrics: best accuracy, the FAR rule, the equal error rate.

One implementation each, used by gfn-eval (TAR@FAR, k-fold accuracy), the door's threshold
calibration and the benchmark; checked here on hand-computed cases and, with hypothesis, against
brute-force definitions on arbitrary score sets (ties included).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gfn_edge.export.evaluation.verification import roc_curve, tar_at_far
from gfn_edge.metrics import (
    allowed_false_accepts,
    best_threshold,
    equal_error_rate,
    far_frr,
    threshold_at_far,
)

# scores on a 0.05 grid make ties common, which is where threshold rules go wrong
scores_st = st.lists(st.integers(-20, 20).map(lambda v: v / 20), min_size=1, max_size=60)


def _brute_best(scores, same):
    """Accuracy at every candidate threshold (each distinct score and +inf), max of all."""
    scores, same = np.asarray(scores, float), np.asarray(same, bool)
    return max(float(((scores >= t) == same).mean()) for t in list(np.unique(scores)) + [np.inf])


def test_best_threshold_by_hand():
    # same: 0.8 0.6 ; different: 0.7 0.3. No threshold splits them; 3 of 4 right either at 0.45 (0.7 let in)
    # or at 0.75 (0.6 kept out): the lowest wins
    acc, t = best_threshold([0.8, 0.6, 0.7, 0.3], [True, True, False, False])
    assert acc == pytest.approx(0.75) and t == pytest.approx(0.45)  # lowest of the best: between 0.3 and 0.6
    assert best_threshold([0.2, 0.4, 0.6, 0.8], [False, False, True, True]) == (1.0, pytest.approx(0.5))
    assert best_threshold([0.5, 0.5], [True, False]) == (0.5, pytest.approx(0.5 - 1e-6))  # a tie cannot be split
    acc, t = best_threshold([0.9], [False])
    assert acc == 1.0 and t > 0.9  # reject everything
    assert all(math.isnan(v) for v in best_threshold([], []))
    with pytest.raises(ValueError, match="3 scores but 2 labels"):
        best_threshold([0.1, 0.2, 0.3], [True, False])


@settings(max_examples=150, deadline=None)
@given(data=st.data(), scores=scores_st)
def test_best_threshold_is_the_maximum_and_achieves_it(data, scores):
    same = data.draw(st.lists(st.booleans(), min_size=len(scores), max_size=len(scores)))
    acc, t = best_threshold(scores, same)
    assert acc == pytest.approx(_brute_best(scores, same))
    assert float(((np.asarray(scores) >= t) == np.asarray(same)).mean()) == pytest.approx(acc)


def test_far_rule_by_hand():
    assert allowed_false_accepts(0.1, 10) == 1  # not 0: 0.1 x 10 is 0.99999... in binary
    assert allowed_false_accepts(0.01, 250) == 2 and allowed_false_accepts(0.0, 10**6) == 0 and allowed_false_accepts(1.0, 7) == 7
    with pytest.raises(ValueError, match="within 0..1"):
        allowed_false_accepts(1.5, 10)
    impostor = np.array([0.10, 0.20, 0.30, 0.40, 0.50, 0.55, 0.60, 0.62, 0.70, 0.80])
    assert threshold_at_far(impostor, 0.1) == pytest.approx(0.75)  # 0.80 may pass, 0.70 must not
    assert threshold_at_far(impostor, 0.2) == pytest.approx(0.66)  # 0.80, 0.70 pass; 0.62 must not
    assert threshold_at_far(np.array([0.3, 0.5, 0.5, 0.5]), 0.5) == pytest.approx(np.nextafter(0.5, 1))  # a tie is rejected whole
    assert threshold_at_far(impostor, 1.0) == pytest.approx(0.10)
    with pytest.raises(ValueError, match="no impostor"):
        threshold_at_far(np.array([]), 0.1)


@settings(max_examples=150, deadline=None)
@given(impostor=scores_st, far=st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.9]))
def test_threshold_at_far_meets_the_target_and_is_the_lowest_that_does(impostor, far):
    imp = np.asarray(impostor)
    t = threshold_at_far(imp, far)
    passed = int((imp >= t).sum())
    assert passed <= allowed_false_accepts(far, len(imp))
    below = imp[imp < t]
    if len(below):  # any lower threshold that lets the next impostor through breaks the target
        assert int((imp >= below.max()).sum()) > allowed_false_accepts(far, len(imp))


@settings(max_examples=100, deadline=None)
@given(genuine=scores_st, impostor=scores_st, far=st.sampled_from([0.0, 0.1, 0.2, 0.5]))
def test_roc_tar_at_far_and_door_threshold_follow_the_same_rule(genuine, impostor, far):
    """gfn-eval's TAR@FAR and the door's threshold let the same impostors through (the ROC's point
    may sit lower in the gap, so it can accept more genuine pairs, never fewer)."""
    g, imp = np.asarray(genuine), np.asarray(impostor)
    roc = roc_curve(np.r_[g, imp], np.r_[np.ones(len(g), bool), np.zeros(len(imp), bool)])
    point = tar_at_far(roc, far, min_negatives_factor=0)
    door = threshold_at_far(imp, far)
    roc_far, roc_frr = far_frr(g, imp, point.threshold if point.threshold is not None else np.inf)
    door_far, door_frr = far_frr(g, imp, door)
    assert roc_far == pytest.approx(point.far_achieved) and 1 - roc_frr == pytest.approx(point.tar)
    assert roc_far == pytest.approx(door_far)
    assert roc_frr <= door_frr + 1e-12


def test_equal_error_rate_by_hand():
    genuine, impostor = np.array([0.6, 0.7, 0.8, 0.9]), np.array([0.1, 0.2, 0.3, 0.65])
    t, rate = equal_error_rate(genuine, impostor)
    # at 0.625: impostor 0.65 passes (FAR 1/4), genuine 0.6 fails (FRR 1/4)
    assert t == pytest.approx(0.625) and rate == pytest.approx(0.25)
    assert equal_error_rate(np.array([0.9]), np.array([0.1])) == (pytest.approx(0.5), 0.0)  # separable: no errors, half-way
    with pytest.raises(ValueError, match="genuine and impostor"):
        equal_error_rate(np.array([]), impostor)


@settings(max_examples=100, deadline=None)
@given(genuine=scores_st, impostor=scores_st)
def test_equal_error_rate_matches_the_dense_definition(genuine, impostor):
    g, imp = np.asarray(genuine), np.asarray(impostor)
    u = np.unique(np.r_[g, imp])
    cand = np.r_[u[0] - 1e-6, (u[:-1] + u[1:]) / 2, u[-1] + 1e-6]
    far = (imp[None, :] >= cand[:, None]).mean(axis=1)
    frr = (g[None, :] < cand[:, None]).mean(axis=1)
    i = int(np.argmin(np.abs(far - frr)))
    assert equal_error_rate(g, imp) == (pytest.approx(cand[i]), pytest.approx((far[i] + frr[i]) / 2))
