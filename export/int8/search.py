"""The INT8 remedy search every backend shares: quantise, verify, and on failure try the remedies.

Order of attempts (each one verified on the real verification data with the device runtime):

1. every calibration method the backend offers (``--calib-method`` pins one);
2. on backends whose quantiser leaves biases alone (ONNX Runtime, TFLite; NNCF corrects its own),
   the best method on the prepared model with its biases corrected for int8
   (:mod:`.bias_correction`, seconds; ``--no-int8-bias-correction`` skips it);
3. with the best method and model so far (by fidelity: the continuous metrics, since a pair flip
   is a coarse step), the module groups the int8 simulation ranked most sensitive kept in float,
   1, 2, 3, 4, 6, 8 ... groups, up to ``max_float_groups`` (default: half the model); bias
   correction, when it ranked better, recomputed for each set of groups;
4. learned rounding (:mod:`.learned.rounding`, AdaRound; ``--int8-rounding-seconds``, 0 skips it)
   of the prepared model's int8 weights with the last set of step 3's groups in float: each
   weight's up-or-down choice fitted to the FP32 model's outputs and block outputs, verified only
   where it fits held-out calibration inputs better than nearest rounding, the weights written on
   their levels so the backend's quantiser rounds them as learned;
5. label-free distillation QAT (:mod:`.learned.distill`; ``--int8-distill-seconds``, 0 skips it)
   of the prepared model with the last set of step 3's groups simulated in float (none when there
   were no groups to try), quantised by the same backend with those groups in float.

Why bias correction is a step and not a default: on the GhostFaceNets w0.5 student it lifted
onnx-int8 min/max from cosine 0.972 / 0.927 to 0.981 / 0.953 (7 s), but on RetinaFace-MobileNet-0.25
calibrated on portraits it moved landmarks further (NME 0.0234 -> 0.0276): it matches each
channel's mean over all anchors, mostly background. The search measures which.

The first attempt within tolerance wins; otherwise the one closest to its tolerances is returned
marked failed. Every attempt is recorded in the manifest (method, float groups, metrics).

The search has a time budget (``--int8-search-seconds``, default 10 minutes per target): once it
is spent no further attempt starts, and the learned steps get at most what is left. A checkpoint
that no remedy rescues (random weights, a model INT8 cannot carry) then gets its verdict in
bounded time, with the attempts not made named in the manifest, instead of a search of an hour.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from gfn_edge.benchmark.paired import paired_latency_ms
from gfn_edge.errors import OptionError

from ..context import ExportContext
from ..manifest_writer import write_manifest
from ..target_info import TARGETS, Artifact, TargetInfo
from ..verify_on import platform_failures
from .closer import closer, next_group_sets
from .half_weights import MIN_WEIGHTS as MIN_HALF_WEIGHTS
from .prepare import Int8Preparation, groups_in_order, prepare_for_int8, pyramid_groups, rank_groups

log = logging.getLogger(__name__)


class _BudgetSpent(Exception):
    """The search's time budget ran out before its next attempt."""


@dataclass(frozen=True)
class Attempt:
    method: str
    float_groups: tuple[str, ...] = ()
    distilled: bool = False  # the model tuned by distillation QAT instead of the prepared one
    rounded: bool = False  # the model's int8 weights on learned roundings (:mod:`.learned.rounding`)
    bias_corrected: bool = False  # the prepared model's biases corrected for int8 (:mod:`.bias_correction`)
    # which quantiser: "" the backend's own; "qdq" onnxruntime's QDQ graph, compiled by the backend
    route: str = ""
    # the float groups' weights stored as int8 (weight-only, computed in float: :mod:`.onnx_weight_only`),
    # tried on a QDQ graph's winner (:func:`run_search`)
    int8_weights: bool = False
    # the weights of every op left in float stored as float16, computed in FP32 (:mod:`.onnx_half_weights`,
    # :mod:`.openvino_half_weights`, :mod:`.tflite_float_weights`), tried on a winner (:func:`run_search`)
    half_weights: bool = False

    def label(self) -> str:
        return (
            self.method
            + (" + bias correction" if self.bias_corrected else "")
            + (" + distillation QAT" if self.distilled else "")
            + (" + learned rounding" if self.rounded else "")
            + (f" + float {', '.join(self.float_groups)}" if self.float_groups else "")
            + ((" (their weights int8)" if self.float_groups else " (float weights int8)") if self.int8_weights else "")
            + (" (float weights fp16)" if self.half_weights else "")
            + (" (onnxruntime QDQ)" if self.route == "qdq" else "")
        )

    def model_key(self, weight_qmax: int) -> str:
        """A file-name-safe name of the FP32 model this attempt quantises (for per-model caches)."""
        groups = hashlib.sha1(",".join(self.float_groups).encode()).hexdigest()[:8] if self.float_groups else "all"
        if self.distilled:
            return f"int8-distilled{weight_qmax}{'-bc' if self.bias_corrected else ''}-{groups}"
        if self.rounded:
            return f"int8-rounded{weight_qmax}-{groups}"
        if self.bias_corrected:
            return f"int8-biascorrected{weight_qmax}-{groups}"
        return "int8-prepared"


@dataclass
class Outcome:
    attempt: Attempt
    passed: bool
    margin: float
    metrics: dict[str, Any]
    failures: list[str]
    seconds: float
    folder: Path
    artifact: Artifact | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    total_slack: float = 0.0  # sum of the relative slacks (see rank)
    fidelity: float = float("-inf")  # smallest relative slack of the continuous metrics (see fidelity)
    source: str = ""  # where the attempt came from when not from this search's own steps (another target's winner)
    tolerances: dict[str, tuple[str, float]] = field(default_factory=dict)  # what it was judged against
    platforms: list[dict[str, Any]] = field(default_factory=list)  # --verify-on: its verification on each emulated CPU

    def record(self) -> dict[str, Any]:
        keys = (
            "cos_mean",
            "cos_min",
            "pair_acc_delta",
            "pair_decisions_agree",
            "pair_decisions_expected_agree",
            "recall",
            "precision",
            "landmark_nme",
            "landmark_nme_large",
            "output_rel_err",
            "prob_err",
            "prob_err_mean",
            "decision_agree",
            "decision_flips_robust",
        )
        return {
            "method": self.attempt.method,
            "distilled": self.attempt.distilled,
            **({"learned_rounding": True} if self.attempt.rounded else {}),
            "bias_corrected": self.attempt.bias_corrected,
            **({"route": self.attempt.route} if self.attempt.route else {}),
            "float_groups": list(self.attempt.float_groups),
            **({"int8_weights": True} if self.attempt.int8_weights else {}),
            **({"half_weights": True} if self.attempt.half_weights else {}),
            "passed": self.passed,
            "metrics": {k: self.metrics[k] for k in keys if k in self.metrics},
            "failures": self.failures,
            "seconds": round(self.seconds, 1),
            **({"source": self.source} if self.source else {}),
            **({"platforms": {p["platform"]: bool(p.get("passed")) for p in self.platforms}} if self.platforms else {}),
        }


def _score(task: str):
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

        seconds = distill_seconds(ctx) if budget_s is None else min(distill_seconds(ctx), budget_s)
        log.info(
            "INT8: distillation QAT of %s (its planned steps within %.0f s, weights to %d levels a side, %d groups in float)",
            ctx.spec.name,
            seconds,
            weight_qmax,
            len(float_groups),
        )
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

        seconds = rounding_seconds(ctx) if budget_s is None else min(rounding_seconds(ctx), budget_s)
        log.info(
            "INT8: learned rounding of %s (its planned steps within %.0f s, weights to %d levels a side, %d groups in float)",
            ctx.spec.name,
            seconds,
            weight_qmax,
            len(float_groups),
        )
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


def chosen_attempt(ctx: ExportContext, target: str) -> Attempt:
    """The attempt whose artifact ``target``'s search put in the bundle (plain min/max before one ran)."""
    return ctx.shared.get(f"int8-chosen:{target}", Attempt("minmax"))


def sensitivity(ctx: ExportContext) -> list[tuple[str, float]]:
    """Layer groups ranked by simulated int8 damage; computed on first need, once per run."""
    prep = preparation(ctx)
    if not prep.sensitivity:
        start = time.perf_counter()
        samples = 64 if ctx.spec.task != "detect" else 8
        prep.sensitivity, prep.simulated = rank_groups(prep.model, ctx.calibration.inputs(), _score(ctx.spec.task), samples=samples)
        prep.seconds += time.perf_counter() - start
    return prep.sensitivity


def _slack_by_key(tolerances, metrics: dict[str, Any]) -> dict[str, float]:
    """Relative slack of each judged tolerance that ``metrics`` has (negative where it fails)."""
    slacks = {}
    for key, (op, limit) in tolerances.items():
        value = metrics.get(key)
        if value is None:
            continue
        scale = max(abs(limit), 1e-6)
        slacks[key] = (value - limit) / scale if op == ">=" else (limit - value) / scale
    return slacks


def _slacks(report) -> list[float]:
    """Relative slack of each judged tolerance (negative where it fails)."""
    return list(_slack_by_key(report.tolerances, report.metrics).values())


def margin(report) -> float:
    """Smallest relative slack over the judged tolerances (negative when one fails)."""
    slacks = _slacks(report)
    return min(slacks) if slacks else 0.0


# Metrics that move in coarse steps: the pair-accuracy change moves by one pair of 349 (0.29
# points, a relative slack of 0.57 against its 0.5-point tolerance), so one flipped pair outweighs
# any cosine difference in the margin; the share of unchanged pair decisions (one pair: 0.0029)
# and a verdict of a liveness crop, likewise.
_STEPPED = ("pair_acc_delta", "pair_decisions_agree", "decision_flips_robust")


def misses_only_stepped(outcome: Outcome) -> bool:
    """Whether ``outcome`` fails only tolerances that move a pair (or a crop's verdict) at a time."""
    missed = [key for key, slack in _slack_by_key(outcome.tolerances, outcome.metrics).items() if slack < 0]
    return bool(missed) and all(key in _STEPPED for key in missed)


def other_ranges(last: Attempt, outcomes: list[Outcome], methods: list[str]) -> list[Attempt]:
    """``last`` (the float groups' final attempt) on each other calibration method's ranges, the
    method closest to the reference in its plain attempts first; none already made.

    Why: where the groups' final attempt passes every cosine and misses only the pair criteria by a
    pair, the next steps (NNCF's plain attempts, the learned ones) start far from it. Another
    method's ranges at the same groups are as faithful and round other pairs: w0.5-e16 openvino-int8
    exported alone with the test suite's calibration (a fresh test run, 2026-12-06), percentile +
    bias correction + 10 groups 0.9977 / 0.9938 with two pairs the wrong way (pair Δ 0.57), then
    distillation 0.9970 / 0.9911 with 4 of 349 pair decisions changed, FAIL; entropy at the same
    groups passed (0.9978 / 0.9931, pair Δ 0, 3 changed). Each is verified like any attempt."""
    closest = [o.attempt.method for o in sorted(_plain(outcomes, last.route), key=_by_fidelity, reverse=True)]
    made = {o.attempt for o in outcomes}
    order = sorted((m for m in methods if m != last.method), key=lambda m: closest.index(m) if m in closest else len(closest))
    return [a for a in (replace(last, method=m) for m in order) if a not in made]


def fidelity(report) -> float:
    """Smallest relative slack over the judged continuous metrics: which attempt's model is closest
    to the reference, the base to keep layer groups in float on."""
    keep = {k: v for k, v in report.tolerances.items() if k not in _STEPPED}
    slacks = _slacks(type(report)(report.passed, report.metrics, keep)) if keep else []
    return min(slacks) if slacks else margin(report)


def _by_fidelity(outcome: Outcome) -> tuple[float, float]:
    return (outcome.fidelity, outcome.total_slack)


def rank(outcome: Outcome) -> tuple[float, float]:
    """How attempts compare: the smallest slack, then the sum of them. The pair-accuracy change moves
    in steps of one pair (0.29 points on 349 pairs), so two attempts often tie on it while one is
    clearly closer to the reference; the sum breaks that tie."""
    return (outcome.margin, outcome.total_slack)


CORRECTED_FOR = "minmax"
"""The ranges bias correction simulates (:mod:`.bias_correction`: per-tensor min/max)."""


def corrected_attempts(best_method: str, route: str) -> list[Attempt]:
    """The bias-corrected attempts, in order: on the min/max ranges the correction is computed for,
    then on the best plain method's ranges where that is another one. Why both: the correction takes
    off the mean error of min/max ranges; on clipping ranges (entropy, percentile) the clipped
    channels move the means differently, and the correction can add error instead. Measured on
    MiniFASNetV1SE onnx-int8 (2026-12-04): entropy alone 2 changed robust verdicts, entropy +
    correction 5 (probability error 0.67), min/max + correction 2 (error within 0.3); openvino-int8
    passed with min/max + correction on the QDQ route. On w0.5-e16 percentile + correction stays
    the closer one (0.9815 / 0.9550 against min/max's 0.9785 / 0.9471), so both are tried."""
    first = Attempt(CORRECTED_FOR, bias_corrected=True, route=route)
    return [first] if best_method == CORRECTED_FOR else [first, Attempt(best_method, bias_corrected=True, route=route)]


def _remedy_base(outcomes: list[Outcome], route: str) -> Attempt:
    """The attempt the remedies build on: the one of their quantiser closest to the reference (by
    fidelity), else plain min/max ranges on it (onnxruntime's histogram calibrations take minutes
    per model, and the remedies themselves are what moves the result)."""
    own = _plain(outcomes, route)
    return max(own, key=_by_fidelity).attempt if own else Attempt("minmax", route=route)


def _plain(outcomes: list[Outcome], route: str) -> list[Outcome]:
    """The route's attempts on calibration ranges alone (bias-corrected or not): no groups in float,
    nothing learned."""
    return [o for o in outcomes if o.attempt.route == route and not o.attempt.float_groups and not o.attempt.distilled and not o.attempt.rounded]


# the target whose quantiser a remedy route is: its passing attempt of this run comes first there
_ROUTE_OWNER = {"qdq": "onnx-int8"}


def _carried(ctx: ExportContext, route: str) -> Attempt | None:
    """The attempt the route's own target shipped earlier in this run, when it passed: the same
    quantisation recipe (method, float groups, remedies; one quantiser and the same ranges) on this
    backend, on this backend's weight grid (since 2026-12-06 openvino-int8's is onnx-int8's full 8
    bits, so their bias correction and distillation are computed once). Exporting onnx-int8 and openvino-int8
    together then often ends OpenVINO's search at its first attempt, verified on its own runtime."""
    owner = _ROUTE_OWNER.get(route)
    if owner is None or not ctx.shared.get(f"int8-passed:{owner}"):
        return None
    shipped = ctx.shared[f"int8-chosen:{owner}"]
    return Attempt(
        shipped.method,
        shipped.float_groups,
        distilled=shipped.distilled,
        rounded=shipped.rounded,
        bias_corrected=shipped.bias_corrected,
        route=route,
        int8_weights=shipped.int8_weights,
        half_weights=shipped.half_weights,
    )


def is_module_group(model: Any, group: str) -> bool:
    """Whether ``group`` names a module of ``model``: only those reach the exported graphs by name.
    The ranking also sees operations outside any module (RetinaFace's top-level ``torch.cat`` of
    its heads, ranked as ``cat_5``), which no backend's node names carry."""
    try:
        model.get_submodule(group)
    except (AttributeError, TypeError):
        return False
    return True


def module_ranking(ctx: ExportContext, model: Any) -> list[tuple[str, float]]:
    """The sensitivity ranking's (group, damage), most damaging first, of the groups that are
    modules of ``model`` (:func:`is_module_group`): what the float-group steps choose from."""
    return [(g, damage) for g, damage in sensitivity(ctx) if is_module_group(model, g)]


def plan(ctx: ExportContext, methods: list[str], groups: list[str], model_groups: int | None = None) -> tuple[list[Attempt], list[list[str]]]:
    """The plain attempts, and the float-group sets to try from ``groups`` (most damaging first).

    The default cap is half of ``model_groups``, all the model's groups the simulation ranked
    (``groups`` by default), not half of those that showed a damage above zero: that count moves
    with the calibration pictures (aligned anew, w0.5-e16's went from 20 or more to 19, and the
    search lost the ten-group step that had passed), the model's size does not."""
    pinned = ctx.options.get("calib_method")
    method_list = [pinned] if pinned else methods
    cap = ctx.options.get("max_float_groups")
    half = (len(groups) if model_groups is None else model_groups) // 2
    cap = min(half, len(groups)) if cap is None else min(int(cap), len(groups))
    steps = [k for k in (1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24) if k <= cap]
    return [Attempt(m) for m in method_list], [groups[:k] for k in steps]


OUTPUT_SIDE_SHARE = 1 / 3
"""The share of a liveness model's layer groups, counted from its output, that
:func:`output_side_groups` adds in float."""


def _example(ctx: ExportContext) -> torch.Tensor:
    """Two calibration inputs, NCHW, for tracing the model's graph."""
    return torch.from_numpy(np.ascontiguousarray(ctx.calibration.inputs(limit=2).transpose(0, 3, 1, 2), dtype=np.float32))


def output_side_groups(ctx: ExportContext, model: Any) -> list[str]:
    """The module groups nearest a liveness model's output (the last third, in running order).

    Why: the ranking sees the calibration faces, which are live, and on them the first layers do
    the most int8 damage; where the model tells a print or a replay from a face, its last stage,
    only the attacks show the damage. MiniFASNetV1SE calibrated on the portraits kept the ten
    ranked groups in float and still turned a spoof crop live (0.29 -> 0.61); those ten plus its
    last six groups (``conv_5.model.0`` to ``prob``) keep every verdict. Other tasks' calibration shows
    what verification judges, so they are not given this step."""
    order = groups_in_order(model, _example(ctx))
    tail = order[len(order) - max(1, round(len(order) * OUTPUT_SIDE_SHARE)) :]
    return [g for g in tail if is_module_group(model, g)]


def recognition_levels_groups(ctx: ExportContext, model: Any) -> list[str]:
    """A pyramid detector's groups every coarser level depends on (:func:`.prepare.pyramid_groups`),
    less any group whose name also covers a part of the finest level's own branch: the backends
    find a group's layers by its name's prefix, so ``fpn`` would keep the whole pyramid in float.

    Why: recognition reads a detector through the landmarks of faces large enough to recognise,
    which the coarser levels find, and their landmark error is recogniser error. RetinaFace-
    MobileNet-0.25 onnx-int8 with its ranked first stage in float passed (landmark NME 0.0087 on the
    scenes) and, beside an FP32 recogniser, changed 3 of the 349 pairs decisions (pair scores moved
    0.0127 on average; the INT8 pipeline changed 4-5, more than the issue's 1 %). With these groups
    in float: NME 0.0089 (the small faces, int8), 0.0007 on the faces of 96 px or more, no decision
    changed (pair scores 0.0016), the INT8 pipeline 1. The finest level's own branch, half the
    compute at 640x480, stays int8. Tried first among a detector's float-group steps; when it fails,
    the ranked groups are added to it."""
    coarse, finest_branch = pyramid_groups(model, _example(ctx))
    return [g for g in coarse if is_module_group(model, g) and not any(other.startswith(g + ".") for other in finest_branch)]


def check_user_groups(ctx: ExportContext, model: Any) -> None:
    """Refuse ``--int8-float`` names that are no layer group of this model, listing the groups: a
    misspelt group used to be dropped by every backend's node matching, so the user's first attempt
    quietly kept nothing in float."""
    wanted = ctx.options.get("float_groups") or ()
    if not wanted:
        return
    known = [g for g in groups_in_order(model, _example(ctx)) if is_module_group(model, g)]
    unknown = [g for g in wanted if g not in known]
    if unknown:
        raise OptionError(f"--int8-float {', '.join(unknown)}: no such layer group in {ctx.spec.name}; its groups, input first: {', '.join(known)}")


def _recipe(ctx: ExportContext, info: TargetInfo, methods: list[str]) -> Attempt | None:
    """The first attempt to make when one is known: the user's ``float_groups`` option, else the
    registry's recipe for this target (a fact about the registry weights, so only for them and
    only when the user pinned nothing)."""
    if ctx.options.get("float_groups"):
        method = ctx.options.get("calib_method") or methods[0]
        return Attempt(method, tuple(ctx.options["float_groups"]))
    raw = ctx.spec.int8_recipes.get(info.name)
    if not raw or ctx.options.get("calib_method") or ctx.options.get("max_float_groups") is not None:
        return None
    if ctx.metadata.get("source", {}).get("sha256") != (ctx.spec.weights.sha256 if ctx.spec.weights else None):
        return None
    return Attempt(raw["method"], tuple(raw.get("float_groups", ())))


def run_search(
    ctx: ExportContext,
    info: TargetInfo,
    build: Callable[[Attempt, Path], Artifact],
    methods: list[str],
    build_fp32: Callable[[Path], Artifact],
    weight_qmax: int = 127,
    corrects_biases: bool = False,
    remedy_route: str = "",
    int8_float_group_weights: bool = False,
    int8_output_layer_weights: bool = False,
    half_float_weights: bool = False,
    plain_routes: tuple[str, ...] = ("",),
    fallback_routes: tuple[str, ...] = (),
) -> Artifact:
    """Try attempts until one verifies; copy the winner (or the best failure) into the bundle.

    ``build(attempt, folder)`` writes one INT8 candidate (of :func:`int8_model`'s model for the
    attempt); ``build_fp32(folder)`` writes the FP32 model of the same backend, timed beside the
    winner for the manifest's comparison. ``weight_qmax``: the backend's weight grid, which the
    distillation trains for. ``corrects_biases``: whether this backend's quantiser leaves biases as
    they are (ONNX Runtime, TFLite), so the search hands it bias-corrected models
    (:mod:`.bias_correction`; NNCF corrects on its own). ``remedy_route``: the quantiser of the
    remedies (bias correction, float groups, distillation) where it is not the backend's own:
    OpenVINO's remedies go through onnxruntime's QDQ graph ("qdq"), which leaves biases alone, so
    bias correction is tried there too. ``int8_float_group_weights``: whether the quantiser can store
    the float groups' weights as int8 (the QDQ graph, :mod:`.onnx_weight_only`); a winner with
    groups in float is then tried that way and shipped where it passes and is not slower.
    ``int8_output_layer_weights``: whether that storage also reaches the output layers, which this
    backend computes in float (TFLite's denylist), so a winner without groups is tried too.
    ``half_float_weights``: whether the build stores the float ops' weights as float16 for an
    attempt with ``half_weights`` (all three targets can); a winner that did not ship int8 weights is
    then tried that way, under the same rule. ``plain_routes``: the quantisers whose plain attempts
    (each calibration method) run, in order, before any remedy; ``fallback_routes``: those whose plain
    attempts run only when the float groups did not pass, before the learned steps (OpenVINO: the
    QDQ graph first, NNCF as the fallback).
    """
    # the clock starts after the INT8 preparation: it is done once per run for every target (137 s
    # of the detector's 600 s went to it before the search's first attempt)
    prep = preparation(ctx)
    check_user_groups(ctx, prep.model)
    started = time.perf_counter()
    budget = search_seconds(ctx)
    corrected = bias_correction_wanted(ctx, corrects_biases or remedy_route == "qdq")
    plain, _ = plan(ctx, methods, [])
    first = [replace(a, route=route) for route in plain_routes for a in plain]
    fallback = [replace(a, route=route) for route in fallback_routes for a in plain]
    root = ctx.work_dir / f"{info.name}-attempts"
    root.mkdir(exist_ok=True)
    outcomes: list[Outcome] = []
    not_made: list[str] = []
    not_verified: list[str] = []  # learned steps that fitted the calibration inputs no better than their start

    def time_left() -> float:
        return budget - (time.perf_counter() - started)

    def out_of_time(label: str) -> bool:
        """Whether the budget is spent (recording the attempt not made); the first attempt always runs."""
        if outcomes and time_left() <= 0:
            not_made.append(label)
            return True
        return False

    def on_platforms(out: Outcome) -> Outcome:
        """A candidate that passed here verified again on the CPUs the user named (``--verify-on``):
        failing there fails it, so the search goes on to the next remedy instead of shipping an
        artifact the board would reject."""
        if out.passed and ctx.verify_on is not None:
            out.platforms = ctx.verify_on(out.folder, out.tolerances)
            lost = platform_failures(out.platforms)
            if lost:
                log.info("%s attempt %s: fails on the named CPUs (%s)", info.name, out.attempt.label(), "; ".join(lost))
                out.passed, out.failures = False, lost
        return out

    def attempt(a: Attempt, paid: bool = False, source: str = "", platforms: bool = True) -> Outcome:
        # paid: its costly part (the distillation) is done, so it is verified whatever the clock says;
        # platforms=False: the caller verifies on the named CPUs itself, once it would ship it
        if not paid and out_of_time(a.label()):
            raise _BudgetSpent
        folder = root / f"attempt{len(outcomes)}"
        folder.mkdir()
        start = time.perf_counter()
        try:
            artifact = build(a, folder)
        except Exception as exc:  # one setting crashing a quantiser (an NNCF histogram once) is one failed attempt
            log.warning("%s attempt %s: the quantiser failed: %s: %s", info.name, a.label(), type(exc).__name__, exc)
            out = Outcome(a, False, float("-inf"), {}, [f"quantiser error: {type(exc).__name__}: {exc}"], time.perf_counter() - start, folder, source=source)
            outcomes.append(out)
            return out
        write_manifest(ctx.metadata, info, folder, artifact)
        report = ctx.verify(folder, info.precision)
        out = Outcome(
            a,
            report.passed,
            margin(report),
            report.metrics,
            report.failures,
            time.perf_counter() - start,
            folder,
            artifact,
            total_slack=sum(_slacks(report)),
            fidelity=fidelity(report),
            source=source,
            tolerances=dict(report.tolerances),
        )
        log.info("%s attempt %s: %s (%s)", info.name, a.label(), "PASS" if out.passed else "fail", "; ".join(out.failures) or "within tolerance")
        outcomes.append(out)
        return on_platforms(out) if platforms else out

    winner = None
    recipe = _recipe(ctx, info, methods)
    carried = _carried(ctx, remedy_route)
    made = {recipe, carried} - {None}  # tried first: the search does not repeat them
    if carried is not None:
        # the route's own target made its plain attempts in this run and shipped a later one: where
        # that one fails here the remedies go on from the route's min/max ranges, as they always did
        first = [a for a in first if a.route != carried.route]
    tried_groups: tuple[str, ...] = ()
    try:
        if recipe is not None:
            log.info("%s: trying the known recipe for %s first (%s)", info.name, ctx.spec.name, recipe.label())
            if attempt(recipe).passed:
                winner = outcomes[-1]
        if winner is None and carried is not None and carried != recipe:
            owner = _ROUTE_OWNER[remedy_route]
            log.info("%s: trying the quantisation %s shipped in this run first (%s)", info.name, owner, carried.label())
            if attempt(carried, source=owner).passed:
                winner = outcomes[-1]
        if winner is None:
            for a in first:
                if a not in made and attempt(a).passed:
                    winner = outcomes[-1]
                    break
        if winner is None and corrected:
            for corrected_attempt in corrected_attempts(_remedy_base(outcomes, remedy_route).method, remedy_route):
                if corrected_attempt not in made and attempt(corrected_attempt).passed:
                    winner = outcomes[-1]
                    break
        base = _remedy_base(outcomes, remedy_route)
        cap = ctx.options.get("max_float_groups")

        def within_cap(groups: tuple[str, ...]) -> bool:
            """Whether ``groups`` keeps to the user's --max-float-groups (the steps beyond the ranked
            ones are not held to the default cap, half the groups)."""
            return cap is None or len(groups) <= int(cap)

        levels: tuple[str, ...] = ()
        if winner is None:
            if out_of_time(f"{base.label()} + layer groups in float (not ranked)"):
                raise _BudgetSpent  # the ranking itself takes minutes on the wider networks
            levels = tuple(recognition_levels_groups(ctx, prep.model)) if ctx.spec.task == "detect" else ()
            levels = levels if within_cap(levels) else ()
            if levels:
                candidate = Attempt(base.method, levels, bias_corrected=base.bias_corrected, route=remedy_route)
                tried_groups = levels
                if candidate not in made and attempt(candidate).passed:
                    winner = outcomes[-1]
        if winner is None:
            if out_of_time(f"{base.label()} + layer groups in float (not ranked)"):
                raise _BudgetSpent
            # a detector's coarser levels stay in float: the ranked groups are added to them
            ranked = module_ranking(ctx, prep.model)
            groups = [g for g, damage in ranked if damage > 0 and g not in levels]
            _, fallbacks = plan(ctx, methods, groups, model_groups=len(ranked))
            for fl in fallbacks:
                candidate = Attempt(base.method, levels + tuple(fl), bias_corrected=base.bias_corrected, route=remedy_route)
                if not within_cap(candidate.float_groups):
                    break
                tried_groups = candidate.float_groups
                if candidate in made:
                    continue
                if attempt(candidate).passed:
                    winner = outcomes[-1]
                    break
            if winner is None and ctx.spec.task == "liveness":
                tail = tuple(g for g in output_side_groups(ctx, prep.model) if g not in tried_groups)
                candidate = Attempt(base.method, tried_groups + tail, bias_corrected=base.bias_corrected, route=remedy_route)
                if tail and within_cap(candidate.float_groups) and candidate not in made and attempt(candidate).passed:
                    winner = outcomes[-1]
            if winner is None and outcomes and outcomes[-1].attempt.float_groups and misses_only_stepped(outcomes[-1]):
                for candidate in other_ranges(outcomes[-1].attempt, outcomes, methods):
                    if attempt(candidate).passed:
                        winner = outcomes[-1]
                        break
        if winner is None:
            for a in fallback:
                if a not in made and attempt(a).passed:
                    winner = outcomes[-1]
                    break

        def learn_budget(label: str, wanted_s: float, minimum_s: float) -> float:
            """Seconds a learned step gets: its own budget, less the verification after it (about
            as long as an attempt), at most what the search has left; too little ends the search."""
            verify_s = statistics.median(o.seconds for o in outcomes) if outcomes else 0.0
            learn_s = min(wanted_s, time_left() - verify_s)
            if learn_s < min(minimum_s, wanted_s):
                not_made.append(label)
                raise _BudgetSpent
            return learn_s

        # from the prepared model, whatever the base: the roundings take off the error bias
        # correction would, and its biases (fitted to nearest rounding) led them astray (w0.5-e16,
        # two groups in float: from the corrected model 0.9882 / 0.9751 -> 0.9845 / 0.9695, from
        # the plain one 0.9873 / 0.9655 -> 0.9878 / 0.9677; no groups 0.9784 / 0.9216 -> 0.9820 / 0.9289)
        rounded_attempt = Attempt(base.method, tried_groups, rounded=True, route=remedy_route)
        if winner is None and rounding_seconds(ctx) > 0 and rounded_attempt not in made:
            learn_s = learn_budget(rounded_attempt.label(), rounding_seconds(ctx), MIN_ROUNDING_SECONDS)
            start = time.perf_counter()
            fitted = learned_rounding(ctx, weight_qmax, tried_groups, budget_s=learn_s)
            learned_s = time.perf_counter() - start
            if fitted.improved:
                rounded_out = attempt(rounded_attempt, paid=True)
                rounded_out.seconds += learned_s
                if rounded_out.passed:
                    winner = rounded_out
            else:  # its model is the prepared one with these groups, no better
                kept = fitted.report.get("kept", "nearest rounding (the learned roundings fitted the calibration inputs no better)")
                not_verified.append(f"{rounded_attempt.label()}: kept {kept}, {learned_s:.0f} s")
        # from the base's model: bias-corrected where the groups were tried on the corrected one
        tuned_attempt = Attempt(base.method, tried_groups, distilled=True, bias_corrected=base.bias_corrected, route=remedy_route)
        if winner is None and distill_seconds(ctx) > 0 and tuned_attempt not in made:
            # trained with the same groups in float that the backend then keeps in float, so the
            # tuned weights make up for int8 only where int8 is
            learn_s = learn_budget(tuned_attempt.label(), distill_seconds(ctx), MIN_DISTILL_SECONDS)
            start = time.perf_counter()
            distillation(ctx, weight_qmax, tried_groups, budget_s=learn_s, from_corrected=tuned_attempt.bias_corrected)
            learned_s = time.perf_counter() - start
            tuned = attempt(tuned_attempt, paid=True)
            tuned.seconds += learned_s  # the distillation's time belongs to its attempt (counted once)
            if tuned.passed:
                winner = tuned
    except _BudgetSpent:
        log.warning(
            "%s: the INT8 search's time budget (%.0f s, --int8-search-seconds) is spent after %d attempts; not tried: %s",
            info.name,
            budget,
            len(outcomes),
            not_made[0],
        )
    if (
        winner is not None
        and int8_float_group_weights
        and (winner.attempt.float_groups or int8_output_layer_weights)
        and not winner.attempt.int8_weights
        and winner.attempt.route == remedy_route
    ):
        winner = _slimmer(winner, attempt, info.name, on_platforms=on_platforms)
    if winner is not None and half_float_weights and not (winner.attempt.int8_weights or winner.attempt.half_weights):
        winner = _slimmer(winner, attempt, info.name, "fp16", on_platforms=on_platforms)
    if winner is not None and _closer_wanted(ctx, winner, recipe) and time_left() > 0:
        ranking = module_ranking(ctx, prep.model)
        ranked = [g for g, damage in ranking if damage > 0]
        _, steps = plan(ctx, methods, ranked, model_groups=len(ranking))
        if int8_float_group_weights and winner.attempt.route == remedy_route:
            storage = {"int8_weights": True, "half_weights": False}
        else:
            storage = {"int8_weights": False, "half_weights": half_float_weights}
        winner = closer(
            winner,
            attempt,
            next_group_sets(winner.attempt.float_groups, ranked, [len(s) for s in steps]),
            storage,
            lambda shipped, step: tuple(paired_latency_ms([shipped, step], rounds=SLIMMER_ROUNDS, threads=1)),
            on_platforms,
            info.name,
            _BudgetSpent,
        )
    built = [o for o in outcomes if o.artifact is not None]
    if not built:
        raise RuntimeError(f"{info.name}: every quantisation attempt failed: " + "; ".join(o.failures[0] for o in outcomes))
    chosen = winner or max(built, key=rank)
    ctx.shared[f"int8-chosen:{info.name}"] = chosen.attempt
    if chosen.platforms:  # the bundle's verification on the named CPUs reuses them (the same model files)
        ctx.shared[f"int8-platforms:{info.name}"] = chosen.platforms
    ctx.shared[f"int8-passed:{info.name}"] = winner is not None
    for name in chosen.artifact.files.values():
        shutil.copyfile(chosen.folder / name, ctx.bundle_dir / name)
    notes = dict(chosen.artifact.notes)
    notes.update(
        {
            "calibration": _calibration_note(ctx, chosen.attempt.method),
            "preparation": prep.report(),
            "float_groups": list(chosen.attempt.float_groups),
            "per_channel_weights": True,
            **(
                {"distillation": distillation(ctx, weight_qmax, chosen.attempt.float_groups, from_corrected=chosen.attempt.bias_corrected).report}
                if chosen.attempt.distilled
                else {}
            ),
            **({"learned_rounding": learned_rounding(ctx, weight_qmax, chosen.attempt.float_groups).report} if chosen.attempt.rounded else {}),
            **({"bias_correction": bias_correction(ctx, weight_qmax, chosen.attempt.float_groups).report} if chosen.attempt.bias_corrected else {}),
            "attempts": [o.record() for o in outcomes],
            "search": {
                "budget_s": None if budget == float("inf") else budget,
                "seconds": round(time.perf_counter() - started, 1),
                "stopped_by_budget": bool(not_made),
                **({"not_tried": not_made[0]} if not_made else {}),
                **({"not_verified": not_verified} if not_verified else {}),
            },
            "remedies": _remedies(chosen, outcomes, recipe),
            **({"same_quantisation_as": chosen.source} if chosen.source else {}),
        }
    )
    notes.update(_compare_with_fp32(ctx, info, chosen, build_fp32))
    chosen.artifact.notes = notes
    return chosen.artifact


SLIMMER_SLOWDOWN = 1.25
"""A winner's slimmer variant ships when its median latency is at most this factor of the winner's.

The timing guards against a runtime that converts the stored weights on every inference
(onnxruntime behind a DequantizeLinear: 1.38x, w0.5-e16 3.4 -> 4.7 ms); where the runtime converts
them when it loads the model both files run the same kernels, and the ratio is timing noise, which
must not decide what ships. At 1.05 it did: the registry RetinaFace's tflite-int8 kept FP32 weights
(82 % of FP32's size) on 2026-12-06 because its float16 variant timed 23.31 against 20.70 ms (1.13)
in a busy test run, where the same two files timed 0.98-1.01 of each other in six paired runs
(13.0-14.0 ms, one thread, 2026-12-06)."""
SLIMMER_ROUNDS = 4
"""Timing rounds of the winner and its variant, alternated (each the median of 30 runs)."""

# variant -> (the attempt's field, the manifest note, what the weights are called in it, the
# build's note of how many it stored)
_VARIANTS = {
    "int8": ("int8_weights", "int8_weights_of_float_groups", "int8 weights", "weights_stored_int8"),
    "fp16": ("half_weights", "fp16_weights_of_float_ops", "fp16 weights", "weights_stored_fp16"),
}


def _slimmer(
    winner: Outcome, attempt: Callable[..., Outcome], target: str, variant: str = "int8", on_platforms: Callable[[Outcome], Outcome] = lambda out: out
) -> Outcome:
    """The winner with the weights of its float ops stored smaller, where that verifies, keeps
    :data:`SLIMMER_KEEPS` of the winner's slack and is not slower; else the winner.

    ``"int8"``: the float groups' weights as int8 (QDQ graphs only). Why measured, not assumed:
    while they were stored behind a DequantizeLinear, onnxruntime ran it on every inference
    (w0.5-e16: 3.4 -> 4.7 ms at one thread); behind a Cast and a Mul (since 2026-12-05) it folds
    them when it loads the model, as OpenVINO does when it compiles (w0.5-e16 2.02 against 2.03 ms,
    1.67 -> 1.00 MB), and the timing guards against a runtime that does not. ``"fp16"``: every float op's
    weights (the groups and the output layers) as float16, turned into FP32 when the model loads
    on all three runtimes: half those bytes, the same kernels. With ``--verify-on`` the variant is
    verified on the named CPUs last, once it would ship (``on_platforms``): w0.5-e16's float16
    openvino-int8 passed here and flipped a pair more on an emulated Cortex-A76 (pair Δ 0.57)."""
    field_name, note, called, stored = _VARIANTS[variant]
    slim = attempt(replace(winner.attempt, **{field_name: True}), paid=True, platforms=False)  # one build: not held to the budget
    if not slim.passed:
        winner.artifact.notes[note] = "tried, failed verification: " + "; ".join(slim.failures)
        return winner
    if not slim.artifact.notes.get(stored, True):  # a build that says how many it stored stored none
        winner.artifact.notes[note] = f"none to store: no float op has FP32 weights of {MIN_HALF_WEIGHTS} values or more"
        return winner
    given_back = _slack_given_back(winner, slim)
    if given_back:
        log.info("%s: the float ops keep FP32 weights: %s verified, but %s", target, called, given_back)
        winner.artifact.notes[note] = "tried, verified, less faithful: " + given_back
        return winner
    try:
        # one thread: the export's own process may still have the distillation's threads spinning
        # (w0.5-e16 onnx-int8 timed 3.5 ms there, 2.0-2.3 ms alone)
        fat_ms, slim_ms = paired_latency_ms([winner.folder, slim.folder], rounds=SLIMMER_ROUNDS, threads=1)
    except Exception as exc:  # a timing failure must not fail the export; unmeasured, the winner stays
        log.warning("could not time %s's %s variant: %s", target, called, exc)
        return winner
    timing = f"median {slim_ms:.2f} ms with {called}, {fat_ms:.2f} ms with FP32 weights"
    if slim_ms > SLIMMER_SLOWDOWN * fat_ms:
        log.info("%s: the float ops keep FP32 weights: %s verified, but %s", target, called, timing)
        winner.artifact.notes[note] = "tried, verified, slower: " + timing
        return winner
    if not on_platforms(slim).passed:
        winner.artifact.notes[note] = f"tried, verified here, {timing}, but fails " + "; ".join(slim.failures)
        return winner
    slim.artifact.notes[note] = "shipped: " + timing
    for _, earlier, _, _ in _VARIANTS.values():  # what the variants tried before this one found
        if earlier in winner.artifact.notes:
            slim.artifact.notes.setdefault(earlier, winner.artifact.notes[earlier])
    return slim


SLIMMER_KEEPS = 0.75
"""The int8-weight variant ships only where it keeps this share of the winner's slack on every
continuous metric: the groups are in float for accuracy, and their storage may give little of it
back. Measured on RetinaFace-mnet025 openvino-int8 (24 groups): FP32 weights NME 0.00436, int8
weights 0.00873 against the 0.01 tolerance; the second changed 7 of 349 pipeline decisions on pairs.
Half (0.5 until 2026-12-05) still let w0.5-e16 openvino-int8 ship int8 weights at cos_mean 0.99530
against 0.99556 (54 % of the slack kept): the INT8 pipeline then changed 4 of the 349 decisions at
the reference's threshold instead of 3 (FP32 detector with either recogniser: 4 against 2)."""


def _slack_given_back(winner: Outcome, slim: Outcome) -> str:
    """Which continuous metrics the slimmer variant moves past :data:`SLIMMER_KEEPS` of the
    winner's slack (empty: none), e.g. ``landmark_nme 0.00873 (FP32 weights 0.00436)``."""
    kept, slimmed = _slack_by_key(winner.tolerances, winner.metrics), _slack_by_key(winner.tolerances, slim.metrics)
    worse = [
        f"{key} {slim.metrics[key]:.6g} (FP32 weights {winner.metrics[key]:.6g})"
        for key, slack in kept.items()
        if key not in _STEPPED and key in slimmed and slack > 0 and slimmed[key] < SLIMMER_KEEPS * slack
    ]
    return ", ".join(worse)


def _closer_wanted(ctx: ExportContext, winner: Outcome, recipe: Attempt | None) -> bool:
    """Whether the search tries more float groups after ``winner`` (:mod:`.closer`): for recognisers,
    on a plain or bias-corrected quantisation (the learned steps' models are fitted to their own
    groups), not where the user's ``--int8-float`` or the registry's recipe said what ships."""
    a = winner.attempt
    return ctx.spec.task == "embed" and not (a.distilled or a.rounded) and (recipe is None or replace(a, int8_weights=False, half_weights=False) != recipe)


def _calibration_note(ctx: ExportContext, method: str) -> dict[str, Any]:
    calib = ctx.calibration
    return {
        "method": method,
        "samples": len(calib),
        "model": calib.manifest.get("model"),
        "source_images": len(calib.source_images),
        # a large folder is drawn from (gfn_edge.calib.build.draw_pictures): how much of it was read
        **(
            {"pictures_drawn": calib.manifest["pictures_drawn"], "pictures_found": calib.manifest.get("pictures_found")}
            if calib.manifest.get("pictures_drawn")
            else {}
        ),
        **calib.augmentation,
        "seed": calib.manifest.get("seed"),
    }


def _remedies(chosen: Outcome, outcomes: list[Outcome], recipe: Attempt | None = None) -> list[str]:
    done = ["cross-layer channel equalisation (exact FP32 re-parameterisation)", "per-channel weight quantisation"]
    if len({o.attempt.method for o in outcomes}) > 1:
        done.append(f"calibration methods tried: {', '.join(dict.fromkeys(o.attempt.method for o in outcomes))}")
    if recipe is not None and chosen.attempt == recipe:
        done.append(f"known INT8 recipe (the user's float groups, or the registry's from an earlier sensitivity search on these weights): {recipe.label()}")
    if chosen.source:
        done.append(f"the quantisation {chosen.source} shipped in the same run (the same QDQ graph), verified again on this backend")
    if chosen.attempt.route == "qdq":
        done.append("quantised by onnxruntime (QDQ graph, the onnx-int8 quantiser), compiled by this backend")
    if chosen.attempt.bias_corrected:
        done.append("empirical bias correction of the FP32 model for int8 (sequential, per-channel output means on the calibration inputs)")
    if chosen.attempt.rounded:
        done.append("learned rounding (AdaRound) of the int8 weights against the FP32 model (int8 simulation of this backend), written on their levels")
    if chosen.attempt.distilled:
        done.append("label-free distillation QAT of the FP32 weights against the FP32 model (int8 simulation of this backend)")
    if chosen.attempt.float_groups and not (recipe is not None and chosen.attempt == recipe):
        done.append(f"kept in float (most sensitive first): {', '.join(chosen.attempt.float_groups)}")
        if chosen.attempt.int8_weights:
            done.append("the float groups' weights stored as int8 (weight-only, computed in float; verified, no slower)")
    if chosen.attempt.half_weights:
        done.append("the float ops' weights stored as float16 (computed in FP32; verified, no slower)")
    return done


def _fp32_sibling(ctx: ExportContext, info: TargetInfo, build_fp32: Callable[[Path], Artifact]) -> dict[str, Any]:
    """The FP32 bundle on the INT8 target's backend, written once per export run."""
    key = f"fp32-sibling:{info.backend}"
    if key not in ctx.shared:
        fp32_info = TARGETS[info.name.removesuffix("-int8")]
        folder = ctx.work_dir / f"fp32-sibling-{fp32_info.name}"
        folder.mkdir(exist_ok=True)
        artifact = build_fp32(folder)
        write_manifest(ctx.metadata, fp32_info, folder, artifact)
        ctx.shared[key] = {"folder": folder, "size_bytes": artifact.size_bytes(folder)}
    return ctx.shared[key]


def _compare_with_fp32(ctx: ExportContext, info: TargetInfo, chosen: Outcome, build_fp32: Callable[[Path], Artifact]) -> dict[str, Any]:
    """Size and latency of the INT8 artifact beside the FP32 one on the same backend."""
    fp32 = _fp32_sibling(ctx, info, build_fp32)
    out: dict[str, Any] = {"size_bytes": chosen.artifact.size_bytes(chosen.folder)}
    try:
        # both opened once and timed in alternating rounds: timed one after the other inside the
        # export, w0.5-e6 onnx-int8 once read 6.30 ms against FP32's 1.35 (2026-12-04: 1.85 against 1.22)
        int8_ms, fp32_ms = paired_latency_ms([chosen.folder, fp32["folder"]], rounds=3, threads=None)
        out["latency_ms"] = round(int8_ms, 3)
        out["fp32_size_bytes"] = fp32["size_bytes"]
        out["fp32_latency_ms"] = round(fp32_ms, 3)
    except Exception as exc:  # a timing failure must not fail the export
        log.warning("could not time %s: %s", info.name, exc)
        return out
    out["speedup_vs_fp32"] = round(out["fp32_latency_ms"] / max(out["latency_ms"], 1e-9), 2)
    if out["speedup_vs_fp32"] <= 1.0:
        # a search that ends with many groups in float can pass on accuracy and still be no gain
        log.warning(
            "%s: the INT8 artifact (%d layer groups in float) runs in %.2f ms against FP32's %.2f ms on this CPU: "
            "no faster than the FP32 bundle, %.0f %% of its size",
            info.name,
            len(chosen.attempt.float_groups),
            out["latency_ms"],
            out["fp32_latency_ms"],
            100 * out["size_bytes"] / max(fp32["size_bytes"], 1),
        )
    return out
