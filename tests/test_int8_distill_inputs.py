"""What the distillation's record says about its picture jitter (candidates.distillation -> learned/augment.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="asset missing: torch (the training side: pip install 'gfn-edge[export]')")


def test_the_recorded_brightness_is_in_grey_levels_of_each_models_input(monkeypatch):
    """The jitter moves brightness by up to 24/128 of the model's input unit: 24 grey levels for
    GhostFaceNets' (x - 127.5) / 128, 0.19 for RetinaFace's x - mean and MiniFASNet's raw 0-255. The
    manifest said 24 for all of them; it now says what was done."""
    import gfn_edge.export.int8.learned.distill as distill
    from gfn_edge.export.int8 import candidates
    from gfn_edge.export.int8.learned.augment import augment_batch, describe

    monkeypatch.setattr(distill, "distill_for_int8", lambda *a, **k: SimpleNamespace(report={"augmentation": describe()}))
    monkeypatch.setattr(candidates, "preparation", lambda ctx: SimpleNamespace(model=None))
    recorded = []
    for std in ((128.0, 128.0, 128.0), (1.0, 1.0, 1.0)):
        spec = SimpleNamespace(name="m", task="liveness", preprocess=SimpleNamespace(std=std))
        ctx = SimpleNamespace(shared={}, options={}, spec=spec, calibration=SimpleNamespace(inputs=lambda: np.zeros((1, 8, 8, 3), np.float32)))
        recorded.append(candidates.distillation(ctx, 127).report["augmentation"]["brightness_8bit"])
    assert recorded == [24.0, pytest.approx(0.188, abs=1e-3)]
    # what the jitter does to a raw 0-255 picture with the scale the search passes (the default)
    flat = torch.full((64, 3, 8, 8), 128.0)
    moved = (augment_batch(flat, torch.Generator().manual_seed(0), max_shift=0) - flat).abs().amax(dim=(1, 2, 3))
    assert 0.09 < float(moved.max()) <= recorded[1] + 1e-4
