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


def test_preparation_keeps_a_batchnorm_folded_into_a_bias_free_linear():
    """MiniFASNet ends in Linear(bias=False) -> BatchNorm1d; the fold gives the Linear a bias, which
    must reach the module tree the backends export (it was dropped: outputs off by 84 %, and every
    MiniFASNet INT8 export refused)."""
    import torch
    from torch import nn

    from gfn_edge.export.int8.prepare import prepare_for_int8

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.linear = nn.Linear(8 * 4 * 4, 16, bias=False)
            self.bn = nn.BatchNorm1d(16)
            self.prob = nn.Linear(16, 3, bias=False)

        def forward(self, x):
            return self.prob(self.bn(self.linear(torch.flatten(self.conv(x), 1))))

    torch.manual_seed(0)
    model = Head().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-2, 2)
        model.bn.bias.uniform_(-1, 1)
    x = np.random.default_rng(0).uniform(-1, 1, (8, 4, 4, 3)).astype(np.float32)
    prep = prepare_for_int8(model, x)  # raises when the prepared model's outputs moved
    assert isinstance(prep.model.bn, nn.Identity) and prep.model.linear.bias is not None
    assert prep.max_abs_change < 1e-4
