"""Label-free distillation QAT: fine-tune the INT8-prepared FP32 model so that its int8 simulation
matches the FP32 model, then hand the tuned FP32 weights to each backend's own quantiser.

Why this carries to every backend: the simulation quantises exactly where and how the backends'
post-training quantisers do (per-output-channel symmetric weights with scale max|w|/qmax, per-tensor
uint8 activations with min/max ranges measured on the same calibration pictures, an activation
fused into the convolution before it), with rounding passed straight through in the backward
pass. Training moves the weights to values whose rounding hurts the output least and shrinks the
outliers that stretch a tensor's range. The backend then re-derives the same scales from the tuned
weights and the same ranges from the same pictures, so what it computes is what was trained for;
each artifact is still verified on its own runtime against the original model.

The only targets are the original FP32 model's outputs on (augmented) calibration inputs: no
labels, and never the verification pictures. Convolution and linear weights and biases are
trained; everything else (PReLU slopes, normalisation left unfolded) stays as it is.
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

from ...int8_options import DEFAULT_DISTILL_STEPS as DEFAULT_STEPS
from ..graph import trace_folded
from ..prepare import _write_back, nodes_of_groups
from ..simulate import ActivationRange, calibrate_ranges, quantised_outputs
from ..weight_grid import layer_qmax
from .augment import PIXEL_SCALE, augment_batch, describe
from .detector_views import VIEWS, detector_view
from .detector_views import describe as describe_views
from .quantizers import ACT_LEVELS, round_ste
from .schedule import StepPlan
from .tensors import nchw, torch_threads

log = logging.getLogger(__name__)

DEFAULT_BUDGET_S = 150.0
# Adam's step in weight quantisation steps. RetinaFace-MobileNet-0.25 at 0.05 never got below its
# starting calibration loss (every 20 steps checked); at 0.01 it halved in 40 steps.
LEARNING_RATES = {"embed": 0.05, "liveness": 0.05, "detect": 0.01}


@dataclass
class Distilled:
    """The tuned FP32 model (same module tree as the prepared one) and what the tuning did."""

    model: nn.Module
    report: dict[str, Any] = field(default_factory=dict)


def _fake_weight(w: torch.Tensor, qmax: int) -> torch.Tensor:
    dims = tuple(range(1, w.dim()))
    scale = w.detach().abs().amax(dim=dims, keepdim=True).clamp(min=1e-12) / qmax
    return torch.clamp(round_ste(w / scale), -qmax, qmax) * scale


def _fake_act(x: torch.Tensor, r: ActivationRange) -> torch.Tensor:
    lo, hi = min(r.lo, 0.0), max(r.hi, 0.0)
    scale = max(hi - lo, 1e-12) / ACT_LEVELS
    zero = round(-lo / scale)
    return (torch.clamp(round_ste(x / scale) + zero, 0, ACT_LEVELS) - zero) * scale


class _Tuned(nn.Module):
    """A convolution's or linear layer's weight and bias as FP32 value + learned offset.

    The weight offset is counted in quantisation steps of its output channel (the per-channel int8
    scale of the starting weights) and the bias offset in hundredths of the channel's bias, so one
    learning rate moves every channel alike, however equalisation scaled it.
    """

    def __init__(self, module: nn.Module, qmax: int):
        super().__init__()
        self.qmax = layer_qmax(module, qmax)  # this layer's grid: the full 8 bits for depthwise convolutions
        w = module.weight.detach()
        dims = tuple(range(1, w.dim()))
        self.register_buffer("w0", w.clone())
        self.register_buffer("w_step", w.abs().amax(dim=dims, keepdim=True).clamp(min=1e-12) / self.qmax)
        self.dw = nn.Parameter(torch.zeros_like(w))
        b = module.bias.detach() if module.bias is not None else None
        self.register_buffer("b0", b.clone() if b is not None else None)
        self.register_buffer("b_step", (b.abs() * 0.01).clamp(min=float(b.abs().mean()) * 1e-3 + 1e-8) if b is not None else None)
        self.db = nn.Parameter(torch.zeros_like(b)) if b is not None else None

    def weight(self) -> torch.Tensor:
        return self.w0 + self.w_step * self.dw

    def bias(self) -> torch.Tensor | None:
        return None if self.b0 is None else self.b0 + self.b_step * self.db

    def quantised(self) -> torch.Tensor:
        """The weight as the backend's int8 grid holds it (rounded to nearest, straight-through)."""
        return _fake_weight(self.weight(), self.qmax)


class _Int8Simulation(fx.Interpreter):
    """Runs ``gm`` with fake-quantised weights and activations, differentiably (straight-through)."""

    def __init__(
        self,
        gm: fx.GraphModule,
        tuned: dict[str, _Tuned],
        ranges: dict[fx.Node, ActivationRange],
        input_range: ActivationRange,
        in_float: frozenset[str] = frozenset(),
    ):
        super().__init__(gm)
        self.tuned = tuned
        self.ranges = ranges
        self.input_range = input_range
        self.in_float = in_float  # layers the backend keeps in float: tuned, but not quantised

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        if n.op == "placeholder":
            return _fake_act(out, self.input_range)
        r = self.ranges.get(n)
        if r is not None and isinstance(out, torch.Tensor):
            out = _fake_act(out, r)
        return out

    def call_module(self, target, args, kwargs):
        mod = self.module.get_submodule(target)
        t = self.tuned.get(target)
        if t is None:
            return super().call_module(target, args, kwargs)
        w = t.weight() if target in self.in_float else t.quantised()
        if isinstance(mod, nn.Conv2d):
            return mod._conv_forward(args[0], w, t.bias())
        if isinstance(mod, nn.Linear):
            return nn.functional.linear(args[0], w, t.bias())
        return super().call_module(target, args, kwargs)


def _offsets(layers: dict[str, _Tuned]) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v.detach().clone() for name, t in layers.items() for k, v in t.named_parameters()}


def _restore(layers: dict[str, _Tuned], state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, t in layers.items():
            for k, v in t.named_parameters():
                v.copy_(state[f"{name}.{k}"])


def _outputs(out) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def relative_error(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """Squared error relative to the target's own size (outputs and block outputs of any scale alike)."""
    return ((got - want) ** 2).mean() / ((want**2).mean() + 1e-8)


def _loss(task: str, got: list[torch.Tensor], want: list[torch.Tensor]) -> torch.Tensor:
    """Embeddings: 1 - cosine (what verification judges); detectors: see :func:`_detector_loss`;
    other outputs: error relative to the output's size."""
    if task == "embed":
        a, b = got[0].flatten(1), want[0].flatten(1)
        return (1 - nn.functional.cosine_similarity(a, b, dim=1)).mean()
    if task == "detect" and len(got) == 3:
        return _detector_loss(got, want)
    terms = [relative_error(g, w) for g, w in zip(got, want)]
    return torch.stack(terms).sum()


def _detector_loss(got: list[torch.Tensor], want: list[torch.Tensor]) -> torch.Tensor:
    """RetinaFace's (boxes, class probabilities, landmarks) per anchor, judged where faces are.

    A picture has thousands of anchors and a few faces; boxes and landmarks decoded at background
    anchors are thrown away, so an error averaged over all anchors trains mostly for background
    (RetinaFace-MobileNet-0.25 at 640x480: 12,600 anchors, a portrait's face on a few). Box and landmark
    offsets are weighted by the FP32 model's face probability at the anchor, each relative to the
    FP32 offsets' weighted size (landmark offsets are in units of the anchor, so this is close to
    the landmark NME the verification judges); the face probability counts at every anchor.
    """
    loc, conf, landms = got
    loc_t, conf_t, landms_t = want
    w = conf_t[..., 1]
    terms = [(w * ((g - t) ** 2).sum(-1)).sum() / ((w * (t**2).sum(-1)).sum() + 1e-8) for g, t in ((loc, loc_t), (landms, landms_t))]
    terms.append(((conf[..., 1] - w) ** 2).sum() / ((w**2).sum() + 1e-8))
    return torch.stack(terms).sum()


def _agreement(task: str, got: list[torch.Tensor], want: list[torch.Tensor]) -> dict[str, float]:
    if task == "embed":
        cos = nn.functional.cosine_similarity(got[0].flatten(1), want[0].flatten(1), dim=1)
        return {"cos_mean": round(float(cos.mean()), 5), "cos_min": round(float(cos.min()), 5)}
    return {"rel_err": round(float(_loss(task, got, want)), 6)}


HELD_OUT = 0.2
"""Share of the calibration inputs the learned steps keep out of the fit, to choose their result on.
Why: distillation chose its state on inputs it trained on, and on w0.5-e16 (two groups in float,
160 steps) that state fitted them better (simulated cosine 0.9897 / 0.9786 -> 0.9931 / 0.9877)
while the verification faces got worse (0.9881 / 0.9669 -> 0.9831 / 0.9651). Chosen on held-out
portraits it improved them too (0.9893 / 0.9831 -> 0.9927 / 0.9880) and the verification faces,
another collection, still moved the other way (0.9845 / 0.9694): the held-out inputs guard against
fitting the calibration pictures, not against pictures unlike them."""


def held_out_split(x_all: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(inputs to fit, inputs to judge the fit on, how many were held out); under ten inputs none
    are held out and the fit is judged on the inputs it learned from."""
    held = max(1, int(round(len(x_all) * HELD_OUT))) if len(x_all) >= 10 else 0
    if not held:
        return x_all, x_all, 0
    order = torch.randperm(len(x_all), generator=gen)
    return x_all[order[held:]], x_all[order[:held]], held


def _evaluation_inputs(task: str, x_all: torch.Tensor, seed: int) -> list[torch.Tensor]:
    """The fixed inputs whose loss picks the state kept: held-out calibration samples, and for
    detectors also the smaller-face views of them (:mod:`.detector_views`)."""
    if task != "detect":
        return [x_all[: min(len(x_all), 64)]]
    gen = torch.Generator().manual_seed(seed + 1)
    head = x_all[: min(len(x_all), 16)]
    return [head] + [detector_view(x_all[: min(len(x_all), 64)] if v == "mosaic" else head, v, gen) for v in VIEWS]


def distill_for_int8(
    model: nn.Module,
    calibration: np.ndarray,
    task: str,
    weight_qmax: int = 127,
    budget_s: float = DEFAULT_BUDGET_S,
    steps: int | None = None,
    batch: int = 16,
    lr: float | None = None,
    range_every: int = 20,
    pixel_scale: float = PIXEL_SCALE,
    seed: int = 0,
    threads: int | None = 1,
    float_groups: tuple[str, ...] = (),
) -> Distilled:
    """Tune ``model`` (the INT8-prepared FP32 model) for int8 from NHWC calibration inputs.

    ``weight_qmax``: the backend's weight grid (127 for int8, 64 for onnxruntime's 7-bit weights;
    depthwise convolutions keep 127 on every backend, :mod:`..weight_grid`).
    ``lr``: Adam's step in quantisation steps of each weight's channel (see :class:`_Tuned`);
    by default :data:`LEARNING_RATES` of the task.
    ``float_groups``: module groups the backend will keep in float (``blocks.3``): simulated
    unquantised, their weights still tuned (in float they can make up for the int8 around them).
    ``threads``: torch threads while tuning (None: torch's default). One, because the tensors are
    small: on this project's 2-core machine with another job running, two threads made a step ten
    times slower (5 steps in 60 s against 40).
    ``steps``: the schedule's length (None: :data:`DEFAULT_STEPS` of the task), ``budget_s`` its cap:
    a slower machine takes fewer steps rather than running late (:class:`.schedule.StepPlan`).
    """
    lr = LEARNING_RATES.get(task, 0.05) if lr is None else lr
    steps = DEFAULT_STEPS.get(task, DEFAULT_STEPS["embed"]) if steps is None else steps
    with torch_threads(threads):
        return _distill(model, calibration, task, weight_qmax, budget_s, steps, batch, lr, range_every, pixel_scale, seed, float_groups)


def _distill(model, calibration, task, weight_qmax, budget_s, steps, batch, lr, range_every, pixel_scale, seed, float_groups=()) -> Distilled:
    start = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_all = nchw(calibration)
    teacher = copy.deepcopy(model).float().eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    gm = trace_folded(copy.deepcopy(teacher), x_all[:2])
    gm.train(False)
    for p in gm.parameters():
        p.requires_grad_(False)
    tuned_layers = {name: _Tuned(mod, weight_qmax) for name, mod in gm.named_modules() if isinstance(mod, (nn.Conv2d, nn.Linear))}
    opt = torch.optim.Adam([p for t in tuned_layers.values() for p in t.parameters()], lr=lr)

    def sync() -> None:
        """The tuned values into the graph's own modules (for range calibration and the result)."""
        with torch.no_grad():
            for name, t in tuned_layers.items():
                mod = gm.get_submodule(name)
                mod.weight.copy_(t.weight())
                if mod.bias is not None:
                    mod.bias.copy_(t.bias())

    # detectors: the ranges re-measured while learning on every 4th picture (a whole-picture pass of
    # 150 calibration pictures took 20 s of every 20 steps); the backend then measures on them all
    range_x = x_all[::4] if task == "detect" else x_all
    chunks = [range_x[i : i + 64] for i in range(0, len(range_x), 64)]
    float_nodes = nodes_of_groups(gm, float_groups)
    in_float = frozenset(str(n.target) for n in float_nodes if n.op == "call_module")
    wanted = set(quantised_outputs(gm)) - float_nodes
    input_range = ActivationRange(float(x_all.min()), float(x_all.max()))

    def ranges_now() -> dict[fx.Node, ActivationRange]:
        sync()
        return {n: r for n, r in calibrate_ranges(gm, chunks).items() if n in wanted}

    def simulate(x: torch.Tensor, ranges) -> list[torch.Tensor]:
        return _outputs(_Int8Simulation(gm, tuned_layers, ranges, input_range, in_float).run(x))

    ranges = ranges_now()
    fit_x, check_x, held = held_out_split(x_all, gen)
    eval_sets = _evaluation_inputs(task, check_x, seed)
    with torch.no_grad():
        refs = [_outputs(teacher(x)) for x in eval_sets]

        def eval_loss() -> float:
            return float(np.mean([float(_loss(task, simulate(x, ranges), r)) for x, r in zip(eval_sets, refs)]))

        before = _agreement(task, simulate(eval_sets[0], ranges), refs[0])
        best_loss = eval_loss()
    best_state = _offsets(tuned_layers)
    first_loss, best_step = best_loss, 0
    setup_s = time.perf_counter() - start
    plan = StepPlan(steps, max(budget_s - setup_s, 1.0), time_after=range_every + 1).start()
    loss_value, last_log = float("nan"), 0.0
    while plan.more():
        frac = plan.fraction
        if plan.done and plan.done % range_every == 0:
            ranges = ranges_now()
            with torch.no_grad():
                now = eval_loss()
            log.debug("INT8 distillation: step %d, calibration loss %.5g (best %.5g)", plan.done, now, best_loss)
            if now < best_loss:
                best_loss, best_step, best_state = now, plan.done, _offsets(tuned_layers)
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + np.cos(np.pi * frac))
        view = VIEWS[plan.done % len(VIEWS)] if task == "detect" else ""
        idx = torch.randint(0, len(fit_x), (min(batch * (4 if view == "mosaic" else 1), len(fit_x)),), generator=gen)
        x = augment_batch(fit_x[idx], gen, pixel_scale=pixel_scale)
        if view:
            x = detector_view(x, view, gen)
        with torch.no_grad():
            want = _outputs(teacher(x))
        loss = _loss(task, simulate(x, ranges), want)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        plan.stepped()
        loss_value = float(loss.detach())
        if plan.fraction - last_log >= 0.1:
            last_log = plan.fraction
            log.info("INT8 distillation: step %d of %d, loss %.4g (%.0f s)", plan.done, plan.planned, loss_value, plan.elapsed_s)
    ranges = ranges_now()
    with torch.no_grad():
        if eval_loss() >= best_loss:
            _restore(tuned_layers, best_state)  # an earlier state fitted the calibration inputs better
            ranges = ranges_now()
        else:
            best_step = plan.done
        after = _agreement(task, simulate(eval_sets[0], ranges), refs[0])
        fp32_change = _agreement(task, _outputs(gm(eval_sets[0])), refs[0])
    tuned = copy.deepcopy(teacher)
    _write_back(tuned, gm)
    tuned.eval()
    report = {
        "method": "label-free distillation QAT (int8 simulation vs the FP32 model, straight-through rounding)",
        "budget_s": budget_s,
        "seconds": round(time.perf_counter() - start, 1),
        **plan.report(),
        "batch": batch,
        "lr_quantisation_steps": lr,
        "weight_qmax": weight_qmax,
        "float_groups": list(float_groups),
        "samples": len(x_all),
        "held_out": held,
        "augmentation": {**describe(), **(describe_views() if task == "detect" else {})},
        "final_loss": round(loss_value, 6),
        "kept_step": best_step,
        # on the held-out calibration inputs, which chose the state kept
        "calibration_loss": {"before": round(first_loss, 6), "after": round(min(best_loss, first_loss), 6)},
        "simulated_on_calibration": {"before": before, "after": after, "tuned_fp32_vs_original": fp32_change},
    }
    log.info("INT8 distillation: %d steps in %.0f s; simulated int8 on calibration %s -> %s", plan.done, report["seconds"], before, after)
    return Distilled(tuned, report)
