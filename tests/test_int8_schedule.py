"""Learned INT8 steps run a planned number of steps, their seconds a cap (export/int8/learned/schedule.py).

The same model, pictures and options must give the same weights on every run (a schedule drawn over
elapsed time did not: w0.5-e16's onnx-int8 shipped 1.02 MB one run and 1.20 MB the next), and a
plan the machine cannot finish in time is shortened once, so its schedule still ends.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="asset missing: torch (the training side: pip install 'gfn-edge[export]')")
from int8_tiny import Tiny  # noqa: E402

from gfn_edge.export.int8.learned.distill import distill_for_int8  # noqa: E402
from gfn_edge.export.int8.learned.rounding import round_for_int8  # noqa: E402
from gfn_edge.export.int8.learned.schedule import StepPlan  # noqa: E402


def _run(plan: StepPlan, step_s: float) -> StepPlan:
    plan.start()
    while plan.more():
        time.sleep(step_s)
        plan.stepped()
    return plan


def test_a_plan_that_fits_runs_every_step_and_says_so():
    plan = _run(StepPlan(30, cap_s=30.0, time_after=5), 0.001)
    assert (plan.done, plan.planned) == (30, 30)
    assert plan.report() == {"steps": 30, "steps_planned": 30, "schedule": "as planned (the same weights every run)"}


def test_a_plan_too_long_for_its_seconds_is_shortened_once_to_what_fits():
    plan = _run(StepPlan(1000, cap_s=0.6, time_after=10), 0.02)
    assert plan.shortened_to_fit and 11 <= plan.planned < 40, plan
    assert plan.done <= plan.planned and plan.fraction > 0.8, "the shortened schedule should (nearly) end"
    assert plan.report()["steps_planned"] == 1000 and "depends on the machine" in plan.report()["schedule"]


def test_the_cap_stops_a_plan_whose_steps_slow_down():
    plan = StepPlan(50, cap_s=0.3, time_after=5).start()
    while plan.more():
        time.sleep(0.001 if plan.done < 5 else 0.05)  # fast while timed, then slow: the cap must still hold
        plan.stepped()
    assert plan.stopped_by_time and plan.done < 50 and "stopped by its seconds" in plan.report()["schedule"]


@pytest.mark.parametrize("steps", [0, -3])
def test_no_steps_is_refused(steps):
    with pytest.raises(ValueError, match="at least one step"):
        StepPlan(steps, cap_s=1.0)


def _tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    model = Tiny()
    with torch.no_grad():
        model.bn1.weight[0] *= 100.0  # an outlier channel: something for the learned steps to fix
        model.bn1.bias[0] *= 100.0
        model.conv2.weight[:, 0] /= 100.0
    return model.eval()


def _calibration() -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (24, 16, 16, 3)).astype(np.float32)


@pytest.mark.parametrize("learn", [distill_for_int8, round_for_int8], ids=["distillation", "learned rounding"])
def test_the_same_steps_give_the_same_weights(learn):
    runs = [learn(_tiny(), _calibration(), "embed", steps=25, budget_s=120.0, batch=8) for _ in range(2)]
    for run in runs:
        assert run.report["steps"] == 25 and run.report["schedule"].startswith("as planned"), run.report
    first, second = (dict(r.model.state_dict()) for r in runs)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first), "two runs of one plan gave different weights"
    reports = [{k: v for k, v in r.report.items() if k != "seconds"} for r in runs]
    assert reports[0] == reports[1]
    losses = reports[0]["calibration_loss"]
    moved = losses["after"] < losses["before"] if "after" in losses else reports[0]["weights_rounded_the_other_way"] > 0
    assert moved, f"nothing was learned, so nothing was shown to repeat: {reports[0]}"
