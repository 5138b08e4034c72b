"""The FP32 models an INT8 attempt quantises, each computed once per export run and shared by every
target: the prepared (equalised) model, its bias-corrected, learned-rounding and distillation-tuned
copies, and the layer groups' sensitivity ranking; with the time settings of the learned steps."""

from __future__ import annotations

import logging
import time

import numpy as np

from ..context import ExportContext
from .attempt import Attempt
from .prepare import Int8Preparation, prepare_for_int8, rank_groups

log = logging.getLogger(__name__)


def group_score(task: str):
    """Higher-is-better agreement of simulated outputs with float outputs (ranks layer groups)."""

    def embed(outs, refs):
        # the mean and the worst quarter alike: the verification judges the worst face too, and
        # the groups that hurt a few faces badly are not the ones that hurt all of them a little
        a, b = outs[0], refs[0]
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        cos = np.sort((a * b).sum(1))
        return float(0.5 * cos.mean() + 0.5 * cos[: max(1, len(cos) // 4)].mean())

    def generic(outs, refs):
        errs = [np.linalg.norm(o - r) / max(np.linalg.norm(r), 1e-12) for o, r in zip(outs, refs)]
        return float(1.0 - np.mean(errs))

    return embed if task == "embed" else generic


def preparation(ctx: ExportContext) -> Int8Preparation:
    """The equalised FP32 model and sensitivity ranking, computed once per export run."""
    key = "int8_preparation"
    if key not in ctx.shared:
        calib = ctx.calibration
        x = calib.inputs()
        log.info("INT8: preparing %s on %d calibration samples", ctx.spec.name, len(x))
        ctx.shared[key] = prepare_for_int8(ctx.ref.torch_model, x)
    return ctx.shared[key]


DEFAULT_DISTILL_SECONDS = 150.0


# learned rounding comes before the distillation on a model that the float groups do not rescue, so
# its time is paid on every such export: w0.5-e16's onnx-int8 took 289 s on an AMD EPYC with 60 s
# of rounding (no better, then the distillation passed), near the five minutes
DEFAULT_ROUNDING_SECONDS = 30.0


DEFAULT_SEARCH_SECONDS = 600.0


# a distillation shorter than this learns too little to be worth its verification
MIN_DISTILL_SECONDS = 30.0


# nor learned rounding shorter than this (its warm-up alone is a fifth of it)
MIN_ROUNDING_SECONDS = 15.0


def distill_seconds(ctx: ExportContext) -> float:
    value = ctx.options.get("distill_seconds")
    return DEFAULT_DISTILL_SECONDS if value is None else float(value)


def rounding_seconds(ctx: ExportContext) -> float:
    value = ctx.options.get("rounding_seconds")
    return DEFAULT_ROUNDING_SECONDS if value is None else float(value)


def search_seconds(ctx: ExportContext) -> float:
    """The search's time budget per target (``--int8-search-seconds``; 0: no limit)."""
    value = ctx.options.get("search_seconds")
    value = DEFAULT_SEARCH_SECONDS if value is None else float(value)
    return float("inf") if value == 0 else value


def _learning_seconds(ctx: ExportContext, step: str, wanted_s: float, budget_s: float | None, weight_qmax: int, float_groups: tuple[str, ...]) -> float:
    """A learned step's cap in seconds: its own option, at most what the search has left
    (``budget_s``); logged as the step starts."""
    seconds = wanted_s if budget_s is None else min(wanted_s, budget_s)
    log.info(
        "INT8: %s of %s (its planned steps within %.0f s, weights to %d levels a side, %d groups in float)",
        step,
        ctx.spec.name,
        seconds,
        weight_qmax,
        len(float_groups),
    )
    return seconds


def distillation(ctx: ExportContext, weight_qmax: int, float_groups: tuple[str, ...] = (), budget_s: float | None = None, from_corrected: bool = False):
    """The prepared model tuned for int8 on this backend's weight grid with ``float_groups`` kept in
    float, computed once per run, grid, groups and start (``budget_s``: at most this long, when the
    search has less time left than ``--int8-distill-seconds``). ``from_corrected``: tuning starts
    from the bias-corrected model of the same groups (where the search's remedies built on it), so
    the distillation keeps what bias correction gained: it returns its best state, at worst its start.
    Started from the plain model it returned that start on the detector and MiniFASNetV2 with many
    groups in float, worse than the bias-corrected attempt before it."""
    key = f"int8_distilled:{weight_qmax}:{int(from_corrected)}:{','.join(float_groups)}"
    if key not in ctx.shared:
        from .learned.augment import PIXEL_SCALE
        from .learned.distill import distill_for_int8

        seconds = _learning_seconds(ctx, "distillation QAT", distill_seconds(ctx), budget_s, weight_qmax, float_groups)
        start = bias_correction(ctx, weight_qmax, float_groups).model if from_corrected else preparation(ctx).model
        ctx.shared[key] = distill_for_int8(
            start, ctx.calibration.inputs(), ctx.spec.task, weight_qmax, budget_s=seconds, steps=ctx.options.get("distill_steps"), float_groups=float_groups
        )
        ctx.shared[key].report["started_from"] = "the bias-corrected model" if from_corrected else "the prepared model"
        # the jitter's brightness is given in grey levels of an input scaled by 1/128 (GhostFaceNets');
        # on inputs scaled otherwise it is that many units of the model's input: recorded as grey
        # levels (RetinaFace's x - mean and MiniFASNet's 0-255: 0.19, not 24). Jittering them by 24
        # grey levels instead moved the detector's distilled landmarks no closer (NME 0.0171 against
        # 0.0166, precision 0.9987 against 0.9950, 2026-12-05), so the jitter stays as validated.
        augmentation = ctx.shared[key].report.get("augmentation", {})
        if "brightness_8bit" in augmentation:
            augmentation["brightness_8bit"] = round(augmentation["brightness_8bit"] * PIXEL_SCALE * float(np.mean(ctx.spec.preprocess.std)), 3)
    return ctx.shared[key]


def learned_rounding(ctx: ExportContext, weight_qmax: int, float_groups: tuple[str, ...] = (), budget_s: float | None = None):
    """The prepared model with its int8 weights on learned roundings for this backend's grid,
    ``float_groups`` in float; computed once per run, grid and groups (``budget_s``: at most this
    long, when the search has less time left than ``--int8-rounding-seconds``)."""
    key = f"int8_rounded:{weight_qmax}:{','.join(float_groups)}"
    if key not in ctx.shared:
        from .learned.rounding import round_for_int8

        seconds = _learning_seconds(ctx, "learned rounding", rounding_seconds(ctx), budget_s, weight_qmax, float_groups)
        ctx.shared[key] = round_for_int8(
            preparation(ctx).model,
            ctx.calibration.inputs(),
            ctx.spec.task,
            weight_qmax,
            budget_s=seconds,
            steps=ctx.options.get("rounding_steps"),
            float_groups=float_groups,
        )
    return ctx.shared[key]


def bias_correction(ctx: ExportContext, weight_qmax: int, float_groups: tuple[str, ...] = ()):
    """The prepared model with biases corrected for int8 on this grid, the given groups left in
    float; computed once per run, grid and groups."""
    key = f"int8_bias:{weight_qmax}:{','.join(float_groups)}"
    if key not in ctx.shared:
        from .bias_correction import correct_biases

        ctx.shared[key] = correct_biases(preparation(ctx).model, ctx.calibration.inputs(), weight_qmax, float_groups, ctx.spec.task)
    return ctx.shared[key]


def bias_correction_wanted(ctx: ExportContext, backend_default: bool) -> bool:
    """``--no-int8-bias-correction`` turns it off; otherwise on where the backend does not correct itself."""
    value = ctx.options.get("bias_correction")
    return backend_default if value is None else bool(value) and backend_default


def int8_model(ctx: ExportContext, attempt: Attempt, weight_qmax: int = 127):
    """The FP32 model an attempt quantises: the prepared one, its bias-corrected copy, its copy with
    learned roundings or its distillation-tuned copy."""
    if attempt.distilled:
        return distillation(ctx, weight_qmax, attempt.float_groups, from_corrected=attempt.bias_corrected).model
    if attempt.rounded:
        return learned_rounding(ctx, weight_qmax, attempt.float_groups).model
    if attempt.bias_corrected:
        return bias_correction(ctx, weight_qmax, attempt.float_groups).model
    return preparation(ctx).model


def sensitivity(ctx: ExportContext) -> list[tuple[str, float]]:
    """Layer groups ranked by simulated int8 damage; computed on first need, once per run."""
    prep = preparation(ctx)
    if not prep.sensitivity:
        start = time.perf_counter()
        samples = 64 if ctx.spec.task != "detect" else 8
        prep.sensitivity, prep.simulated = rank_groups(prep.model, ctx.calibration.inputs(), group_score(ctx.spec.task), samples=samples)
        prep.seconds += time.perf_counter() - start
    return prep.sensitivity
