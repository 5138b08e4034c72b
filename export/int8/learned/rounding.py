"""Learned rounding (AdaRound) on the backend's own int8 grid, fitted to the FP32 model, label-free.

Plain post-training quantisation rounds every weight to its nearest level of its channel's grid.
Here each weight's up-or-down choice is learned instead, so the roundings make up for each other
and for the int8 activations around them: the int8 simulation of the backend (the one distillation
trains, :mod:`.distill`: per-tensor min/max activation ranges from the calibration pictures, the
attempt's float groups unquantised) runs with soft roundings, the loss is the distance of its
outputs and of each module group's output to the FP32 model's on augmented calibration inputs (no
labels, never the verification pictures), and a regulariser annealed over the steps pushes each
soft rounding to a definite 0 or 1 (Nagel et al. 2020, "Up or Down? Adaptive Rounding for
Post-Training Quantization").

Why this carries exactly to every backend: the result is an FP32 model whose weights lie on the
grid already (level x step), each channel's largest weight kept at its level, so a backend's
quantiser re-derives the same step (max|w| / qmax) and rounds each weight to the learned level.
Unlike distillation, nothing but the roundings moves: biases, ranges and float layers stay as
they were, and on the calibration inputs held out of the fit the result is at worst the nearest
rounding it started from (on other pictures it can be worse: the search verifies it like any attempt).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from ...int8_options import DEFAULT_ROUNDING_STEPS as DEFAULT_STEPS
from ..graph import trace_folded
from ..prepare import _write_back, nodes_of_groups
from ..simulate import ActivationRange, calibrate_ranges, quantised_outputs
from ..weight_grid import layer_qmax
from .augment import PIXEL_SCALE, augment_batch, describe
from .distill import _agreement, _evaluation_inputs, _Int8Simulation, _loss, _outputs, _Tuned, held_out_split, relative_error
from .quantizers import AdaRoundWeight
from .schedule import StepPlan
from .tensors import nchw, torch_threads
from .twin import node_group

log = logging.getLogger(__name__)

DEFAULT_BUDGET_S = 30.0
# Adam's step on the rounding variables (a sigmoid's argument, about +-6 from one choice to the other)
LEARNING_RATE = 0.05
# the regulariser's weight, in units of the starting loss: at 1 it is as large as the loss it starts
# from when every rounding sits half-way, so by the end it wins over the fit only where the fit
# does not care which way a weight rounds
REGULARISER_WEIGHT = 1.0
# the block terms' weight beside the output's: each block's relative error, averaged over blocks.
# The output loss alone (1 - cosine of a 512-d embedding per face) let w0.5-e16's roundings fit
# its 182 fitting faces (loss 0.0105 -> 0.0092) while the verification faces lost cosine
# (0.9882 -> 0.9815): 690,022 binary choices and one number per face
BLOCK_WEIGHT = 1.0
# the least share of the budget left to learn after the setup (the FP32 and nearest-rounding passes
# and range measurements: 39 s of RetinaFace-mnet025's 30 s on 150 calibration pictures, which then
# learned one step); with less, nothing is learned and nearest rounding is kept at once
MIN_LEARNING_SHARE = 0.25
WARM_UP = 0.2  # share of the steps the roundings move freely before the regulariser starts
BETA_START, BETA_END = 20.0, 2.0  # the regulariser's exponent, annealed from flat-bottomed to steep


class _Recording:
    """Keeps the values of the nodes named in ``record`` as an fx interpreter runs its graph."""

    record: frozenset[str] = frozenset()
    seen: dict[str, Any]

    def run_node(self, n: fx.Node):
        out = super().run_node(n)  # type: ignore[misc]
        if n.name in self.record:
            self.seen[n.name] = out
        return out


class _Recorder(_Recording, fx.Interpreter):
    """The FP32 graph's run: the block terms' targets."""

    def __init__(self, gm: fx.GraphModule, record: frozenset[str]):
        super().__init__(gm)
        self.record, self.seen = record, {}


class _RecordingSimulation(_Recording, _Int8Simulation):
    """The int8 simulation's run: the block terms' quantised values."""

    def __init__(self, *args, record: frozenset[str] = frozenset(), **kwargs):
        super().__init__(*args, **kwargs)
        self.record, self.seen = record, {}


def block_outputs(gm: fx.GraphModule, quantised: set[fx.Node]) -> frozenset[str]:
    """The quantised values a later module group (or the model output) reads: where the block
    terms of the loss compare int8 with FP32."""
    groups = {n: node_group(n) for n in gm.graph.nodes}
    return frozenset(n.name for n in gm.graph.nodes if n in quantised and any(u.op == "output" or groups[u] != groups[n] for u in n.users))


def _why_nearest(starved: bool, setup_s: float, budget_s: float) -> str:
    if starved:
        return f"nearest rounding (the setup took {setup_s:.0f} s of the {budget_s:.0f} s budget: too little left to learn)"
    return "nearest rounding (the learned roundings fitted the calibration inputs no better)"


@dataclass
class Rounded:
    """The model with its int8 layers' weights on the learned levels, and what the fit did."""

    model: nn.Module
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def improved(self) -> bool:
        """Whether the learned roundings fitted the calibration inputs better than nearest rounding
        (otherwise :attr:`model` is the model it started from)."""
        return bool(self.report.get("improved"))


class _RoundedLayer(nn.Module):
    """A convolution's or linear layer's weight on its int8 grid with learned roundings; its bias fixed."""

    def __init__(self, module: nn.Module, qmax: int):
        super().__init__()
        self.qmax = layer_qmax(module, qmax)
        self.rounding = AdaRoundWeight(module.weight.detach(), self.qmax)
        self.register_buffer("b0", module.bias.detach().clone() if module.bias is not None else None)

    def weight(self) -> torch.Tensor:
        return self.rounding()

    def bias(self) -> torch.Tensor | None:
        return self.b0

    def quantised(self) -> torch.Tensor:
        return self.rounding()  # on the grid already (soft while learning)


def round_for_int8(
    model: nn.Module,
    calibration: np.ndarray,
    task: str,
    weight_qmax: int = 127,
    budget_s: float = DEFAULT_BUDGET_S,
    float_groups: tuple[str, ...] = (),
    steps: int | None = None,
    batch: int = 16,
    lr: float = LEARNING_RATE,
    reg_weight: float = REGULARISER_WEIGHT,
    block_weight: float = BLOCK_WEIGHT,
    range_every: int = 20,
    pixel_scale: float = PIXEL_SCALE,
    seed: int = 0,
    threads: int | None = 1,
) -> Rounded:
    """Learn the roundings of ``model``'s (the INT8-prepared FP32 model's) int8 layers from NHWC
    calibration inputs, on the backend's grid (``weight_qmax``, :mod:`..weight_grid`) with
    ``float_groups`` kept in float, in ``steps`` steps (None: :data:`DEFAULT_STEPS` of the task)
    within ``budget_s`` seconds (:class:`.schedule.StepPlan`). ``threads``: torch threads while
    learning (one: see :func:`.distill.distill_for_int8`)."""
    steps = DEFAULT_STEPS.get(task, DEFAULT_STEPS["embed"]) if steps is None else steps
    with torch_threads(threads):
        return _round(model, calibration, task, weight_qmax, budget_s, float_groups, steps, batch, lr, reg_weight, block_weight, range_every, pixel_scale, seed)


def _round(
    model, calibration, task, weight_qmax, budget_s, float_groups, steps, batch, lr, reg_weight, block_weight, range_every, pixel_scale, seed
) -> Rounded:
    start = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_all = nchw(calibration)
    fit_x, check_x, held = held_out_split(x_all, gen)
    teacher = copy.deepcopy(model).float().eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    gm = trace_folded(copy.deepcopy(teacher), x_all[:2])
    reference = trace_folded(copy.deepcopy(teacher), x_all[:2])  # FP32 throughout: the block terms' targets
    for graph in (gm, reference):
        graph.train(False)
        for p in graph.parameters():
            p.requires_grad_(False)
    float_nodes = nodes_of_groups(gm, float_groups)
    in_float = frozenset(str(n.target) for n in float_nodes if n.op == "call_module")
    layers = {name: mod for name, mod in gm.named_modules() if isinstance(mod, (nn.Conv2d, nn.Linear)) and name not in in_float}
    rounded = {name: _RoundedLayer(mod, weight_qmax) for name, mod in layers.items()}
    nearest = {name: _Tuned(mod, weight_qmax) for name, mod in layers.items()}  # the plain rounding, for comparison
    originals = {name: mod.weight.detach().clone() for name, mod in layers.items()}
    opt = torch.optim.Adam([t.rounding.v for t in rounded.values()], lr=lr)

    range_x = x_all[::4] if task == "detect" else x_all
    chunks = [range_x[i : i + 64] for i in range(0, len(range_x), 64)]
    wanted = set(quantised_outputs(gm)) - float_nodes
    blocks = block_outputs(gm, wanted)
    input_range = ActivationRange(float(x_all.min()), float(x_all.max()))

    def sync(weights: dict[str, torch.Tensor] | None = None) -> None:
        with torch.no_grad():
            for name, mod in layers.items():
                mod.weight.copy_(rounded[name].weight() if weights is None else weights[name])

    def ranges_now() -> dict[fx.Node, ActivationRange]:
        """The ranges a backend measures on the model as it now is."""
        sync()
        return {n: r for n, r in calibrate_ranges(gm, chunks).items() if n in wanted}

    def simulate(x: torch.Tensor, ranges, layers_now) -> list[torch.Tensor]:
        return _outputs(_Int8Simulation(gm, layers_now, ranges, input_range, in_float).run(x))

    eval_sets = _evaluation_inputs(task, check_x, seed)
    with torch.no_grad():
        refs = [_outputs(teacher(x)) for x in eval_sets]
        ranges0 = {n: r for n, r in calibrate_ranges(gm, chunks).items() if n in wanted}

        def eval_loss(ranges, layers_now) -> float:
            return float(np.mean([float(_loss(task, simulate(x, ranges, layers_now), r)) for x, r in zip(eval_sets, refs)]))

        nearest_loss = eval_loss(ranges0, nearest)
        before = _agreement(task, simulate(eval_sets[0], ranges0, nearest), refs[0])
    ranges = ranges0  # the soft roundings start at the FP32 weights themselves
    setup_s = time.perf_counter() - start
    learn_s = budget_s - setup_s
    starved = learn_s < MIN_LEARNING_SHARE * budget_s
    plan = StepPlan(steps, max(learn_s, 1.0), time_after=range_every + 1).start()
    loss_value, last_log, first_fit = float("nan"), 0.0, 0.0
    while not starved and plan.more():
        frac = plan.fraction
        if plan.done and plan.done % range_every == 0:
            ranges = ranges_now()
        idx = torch.randint(0, len(fit_x), (min(batch, len(fit_x)),), generator=gen)
        x = augment_batch(fit_x[idx], gen, pixel_scale=pixel_scale)
        with torch.no_grad():
            recorder = _Recorder(reference, blocks)
            want = _outputs(recorder.run(x))
        sim = _RecordingSimulation(gm, rounded, ranges, input_range, in_float, record=blocks)
        fit = _loss(task, _outputs(sim.run(x)), want)
        if blocks and block_weight:
            fit = fit + block_weight * torch.stack([relative_error(sim.seen[k], recorder.seen[k]) for k in blocks]).mean()
        loss = fit
        if frac > WARM_UP:
            beta = BETA_START - (BETA_START - BETA_END) * (frac - WARM_UP) / (1 - WARM_UP)
            spread = torch.stack([t.rounding.regulariser(beta) for t in rounded.values()]).mean()
            loss = loss + reg_weight * first_fit * spread
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        plan.stepped()
        loss_value = float(fit.detach())
        if plan.done == 1:
            first_fit = loss_value
        if plan.fraction - last_log >= 0.1:
            last_log = plan.fraction
            log.info("INT8 learned rounding: step %d of %d, loss %.4g (%.0f s)", plan.done, plan.planned, loss_value, plan.elapsed_s)
    for t in rounded.values():
        t.rounding.harden()
    with torch.no_grad():
        total = sum(t.rounding.v.numel() for t in rounded.values())
        if starved:
            learned_loss, improved, changed = nearest_loss, False, 0
        else:
            ranges = ranges_now()
            learned_loss = eval_loss(ranges, rounded)
            improved = learned_loss < nearest_loss
            changed = sum(int((t.rounding.integers() != torch.round(originals[n] / t.rounding.scale)).sum()) for n, t in rounded.items())
        after = _agreement(task, simulate(eval_sets[0], ranges, rounded), refs[0]) if improved else before
        if not improved:
            sync(originals)
    result = copy.deepcopy(teacher)
    _write_back(result, gm)
    result.eval()
    report = {
        "method": "learned rounding (AdaRound) of the int8 weights against the FP32 model's outputs and block outputs (int8 simulation of this backend)",
        "budget_s": budget_s,
        "seconds": round(time.perf_counter() - start, 1),
        **plan.report(),
        "batch": batch,
        "weight_qmax": weight_qmax,
        "float_groups": list(float_groups),
        "samples": len(x_all),
        "held_out": held,
        "block_terms": len(blocks),
        "augmentation": describe(),
        "weights_rounded_the_other_way": changed,
        "weights_learned": total,
        "final_loss": round(loss_value, 6),
        # on the held-out calibration inputs: the rounding is kept only where it fits them better
        "calibration_loss": {"nearest_rounding": round(nearest_loss, 6), "learned": round(learned_loss, 6)},
        "improved": improved,
        "simulated_on_calibration": {"nearest_rounding": before, "learned": after},
        **({} if improved else {"kept": _why_nearest(starved, setup_s, budget_s)}),
    }
    log.info(
        "INT8 learned rounding: %d steps in %.0f s, %d of %d weights rounded the other way; calibration loss %.5g -> %.5g%s",
        plan.done,
        report["seconds"],
        changed,
        total,
        nearest_loss,
        learned_loss,
        "" if improved else f"; kept {report['kept']}",
    )
    return Rounded(result, report)
