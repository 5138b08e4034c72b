"""Channel equalisation before INT8 (export/int8/equalize.py): one boost per channel that serves
every tensor the channel passes through, chosen for the least int8 rounding noise."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="asset missing: torch (the training side: pip install 'gfn-edge[export]')")

from gfn_edge.export.int8.equalize import balance_boosts


def _spreads(tensors, boost):
    return [float((r * boost[v]).max() / (r * boost[v]).min()) for v, r in tensors]


def test_a_prelu_with_uneven_slopes_gets_a_compromise_between_its_input_and_output():
    # two channels, equal before a PReLU; one slope 16x the other after it
    var = np.array([1, 2])
    tensors = [(var, np.array([1.0, 1.0])), (var, np.array([1.0, 16.0]))]
    boost = balance_boosts(tensors, np.array([False, True, True]), 3, max_boost=256.0)
    assert _spreads(tensors, boost) == pytest.approx([4.0, 4.0], rel=1e-3)  # not 1 and 16


def test_weak_channels_are_boosted_within_the_limit_and_fixed_ones_stay():
    rng = np.random.default_rng(0)
    ranges = np.exp(rng.uniform(-8, 0, 32))  # channels spread over e^8 ~ 3000x
    var = np.arange(1, 33)
    free = np.ones(33, bool)
    free[0] = False
    free[5] = False  # channel 4 feeds a gate: its scale must stay 1
    boost = balance_boosts([(var, ranges)], free, 33, max_boost=64.0)
    assert boost[0] == 1.0 and boost[5] == 1.0
    assert np.all(boost <= 64.0 + 1e-9) and np.all(boost >= 1 / 64.0 - 1e-9)
    before, after = _spreads([(var, ranges)], np.ones(33))[0], _spreads([(var, ranges)], boost)[0]
    assert after < before / 30  # the limit, not the optimiser, bounds what is left
    dead = balance_boosts([(var, np.r_[ranges[:-1], 1e-12])], free, 33, max_boost=64.0)
    assert dead[32] == 1.0  # a dead channel is not chased
