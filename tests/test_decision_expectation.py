"""The expected share of pair decisions a model keeps (gfn_edge.metrics.expected_decision_agreement).

Why it exists: which pairs an INT8 model flips is a draw, so the verification and the INT8
search's closer step judge the decisions a model is expected to keep, beside the count."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gfn_edge.metrics import expected_decision_agreement

scores = st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=1, max_size=60)


def _by_definition(ref: np.ndarray, other: np.ndarray, threshold: float) -> float:
    """Oracle: every observed shift put on every pair, the decision compared (O(n^2))."""
    shifts = other - ref
    return float(((ref[:, None] + shifts[None, :] >= threshold) == (ref >= threshold)[:, None]).mean())


@settings(max_examples=200, deadline=None)
@given(scores, st.data(), st.floats(-1.0, 1.0))
def test_it_is_the_mean_over_pairs_and_observed_shifts(ref, data, threshold):
    ref = np.asarray(ref)
    noise = np.asarray(data.draw(st.lists(st.floats(-0.2, 0.2), min_size=len(ref), max_size=len(ref))))
    other = ref + noise
    # the oracle adds the shift back, which rounds; the estimator compares the shift with the
    # distance: they may differ only where a moved score lands within rounding of the threshold
    near = np.abs(ref[:, None] + (other - ref)[None, :] - threshold) < 1e-9
    assert abs(expected_decision_agreement(ref, other, threshold) - _by_definition(ref, other, threshold)) <= near.mean() + 1e-12


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-64, 64), min_size=1, max_size=60), st.integers(-20, 20), st.integers(-64, 64))
def test_one_shift_for_every_pair_gives_the_counted_agreement(steps, shift_steps, threshold_steps):
    """When every pair moves alike there is nothing to draw: expected and counted agree. (Scores
    on a grid of 1/64, which float sums keep exact, so every pair's shift is the same number.)"""
    ref = np.asarray(steps) / 64
    other, threshold = ref + shift_steps / 64, threshold_steps / 64
    counted = float(((ref >= threshold) == (other >= threshold)).mean())
    assert expected_decision_agreement(ref, other, threshold) == pytest.approx(counted, abs=1e-12)


def test_the_draw_does_not_move_it_where_the_count_moves():
    """The same shifts dealt to the pairs two ways: one deal flips a pair near the threshold, the
    other flips none; the count says 0.9 and 1.0, the expectation is one number for both."""
    ref = np.array([0.29, 0.31, 0.10, 0.12, 0.50, 0.55, 0.60, 0.05, 0.70, 0.02])
    shifts = np.array([-0.02, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    unlucky, lucky = ref + np.roll(shifts, 1), ref + shifts  # pair 1 (0.31) or pair 0 (0.29) gets -0.02
    counted = [float(((ref >= 0.3) == (o >= 0.3)).mean()) for o in (unlucky, lucky)]
    assert counted == [0.9, 1.0]
    expected = [expected_decision_agreement(ref, o, 0.3) for o in (unlucky, lucky)]
    assert expected[0] == expected[1] == pytest.approx(1 - 1 / 100)  # pair 1 flips under 1 of the 10 shifts


def test_untouched_scores_keep_every_decision_and_bad_input_is_refused():
    ref = np.linspace(-0.5, 0.9, 50)
    assert expected_decision_agreement(ref, ref.copy(), 0.3) == 1.0
    with pytest.raises(ValueError, match="one non-zero length"):
        expected_decision_agreement(ref, ref[:-1], 0.3)
    with pytest.raises(ValueError, match="one non-zero length"):
        expected_decision_agreement(np.array([]), np.array([]), 0.3)
    with pytest.raises(ValueError, match="finite"):
        expected_decision_agreement(ref, np.where(ref > 0.5, np.nan, ref), 0.3)
