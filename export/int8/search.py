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

import logging
import shutil
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from gfn_edge.benchmark import paired

from ..context import ExportContext
from ..manifest_writer import write_manifest
from ..target_info import Artifact, TargetInfo
from ..verify_on import platform_failures
from .attempt import Attempt, Outcome
from .bundle_notes import calibration_note, compare_with_fp32, remedies
from .candidates import (
    MIN_DISTILL_SECONDS,
    MIN_ROUNDING_SECONDS,
    bias_correction,
    bias_correction_wanted,
    distill_seconds,
    distillation,
    learned_rounding,
    preparation,
    rounding_seconds,
    search_seconds,
    sensitivity,
)
from .closer import closer, next_group_sets
from .groups import check_user_groups, module_groups, output_side_groups, plan, recognition_levels_groups
from .prepare import Int8Preparation
from .quantiser import Quantiser
from .ranking import by_fidelity, fidelity, margin, misses_only_stepped, rank, relative_slacks
from .slimmer import SLIMMER_ROUNDS, slimmer

log = logging.getLogger(__name__)


class _BudgetSpent(Exception):
    """The search's time budget ran out before its next attempt."""


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
    closest = [o.attempt.method for o in sorted(_plain(outcomes, last.route), key=by_fidelity, reverse=True)]
    made = {o.attempt for o in outcomes}
    order = sorted((m for m in methods if m != last.method), key=lambda m: closest.index(m) if m in closest else len(closest))
    return [a for a in (replace(last, method=m) for m in order) if a not in made]


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
    return max(own, key=by_fidelity).attempt if own else Attempt("minmax", route=route)


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


@dataclass
class _Run:
    """One target's search in progress: its attempts so far, its clock, and how one attempt is
    built, verified (here, then on the CPUs the user named) and recorded."""

    ctx: ExportContext
    info: TargetInfo
    build: Callable[[Attempt, Path], Artifact]
    root: Path
    budget: float
    started: float = field(default_factory=time.perf_counter)
    outcomes: list[Outcome] = field(default_factory=list)
    not_made: list[str] = field(default_factory=list)
    # learned steps that fitted the calibration inputs no better than their start
    not_verified: list[str] = field(default_factory=list)

    def time_left(self) -> float:
        return self.budget - (time.perf_counter() - self.started)

    def out_of_time(self, label: str) -> bool:
        """Whether the budget is spent (recording the attempt not made); the first attempt always runs."""
        if self.outcomes and self.time_left() <= 0:
            self.not_made.append(label)
            return True
        return False

    def on_platforms(self, out: Outcome) -> Outcome:
        """A candidate that passed here verified again on the CPUs the user named (``--verify-on``):
        failing there fails it, so the search goes on to the next remedy instead of shipping an
        artifact the board would reject."""
        if out.passed and self.ctx.verify_on is not None:
            out.platforms = self.ctx.verify_on(out.folder, out.tolerances)
            lost = platform_failures(out.platforms)
            if lost:
                log.info("%s attempt %s: fails on the named CPUs (%s)", self.info.name, out.attempt.label(), "; ".join(lost))
                out.passed, out.failures = False, lost
        return out

    def attempt(self, a: Attempt, paid: bool = False, source: str = "", platforms: bool = True) -> Outcome:
        """Build, verify and record ``a``. ``paid``: its costly part (the distillation) is done, so it
        is verified whatever the clock says; ``platforms=False``: the caller verifies on the named
        CPUs itself, once it would ship it."""
        if not paid and self.out_of_time(a.label()):
            raise _BudgetSpent
        folder = self.root / f"attempt{len(self.outcomes)}"
        folder.mkdir()
        start = time.perf_counter()
        try:
            artifact = self.build(a, folder)
        except Exception as exc:  # one setting crashing a quantiser (an NNCF histogram once) is one failed attempt
            log.warning("%s attempt %s: the quantiser failed: %s: %s", self.info.name, a.label(), type(exc).__name__, exc)
            out = Outcome(a, False, float("-inf"), {}, [f"quantiser error: {type(exc).__name__}: {exc}"], time.perf_counter() - start, folder, source=source)
            self.outcomes.append(out)
            return out
        write_manifest(self.ctx.metadata, self.info, folder, artifact)
        report = self.ctx.verify(folder, self.info.precision)
        out = Outcome(
            a,
            report.passed,
            margin(report),
            report.metrics,
            report.failures,
            time.perf_counter() - start,
            folder,
            artifact,
            total_slack=sum(relative_slacks(report)),
            fidelity=fidelity(report),
            source=source,
            tolerances=dict(report.tolerances),
        )
        log.info("%s attempt %s: %s (%s)", self.info.name, a.label(), "PASS" if out.passed else "fail", "; ".join(out.failures) or "within tolerance")
        self.outcomes.append(out)
        return self.on_platforms(out) if platforms else out

    def first_passing(self, attempts: list[Attempt], made: set[Attempt]) -> Outcome | None:
        """The first of ``attempts`` (those not ``made`` already) that passes, trying them in order."""
        for a in attempts:
            if a not in made and self.attempt(a).passed:
                return self.outcomes[-1]
        return None

    def learn_budget(self, label: str, wanted_s: float, minimum_s: float) -> float:
        """Seconds a learned step gets: its own budget, less the verification after it (about as long
        as an attempt), at most what the search has left; too little ends the search."""
        verify_s = statistics.median(o.seconds for o in self.outcomes) if self.outcomes else 0.0
        learn_s = min(wanted_s, self.time_left() - verify_s)
        if learn_s < min(minimum_s, wanted_s):
            self.not_made.append(label)
            raise _BudgetSpent
        return learn_s


def _known_first(run: _Run, recipe: Attempt | None, carried: Attempt | None, remedy_route: str) -> Outcome | None:
    """The user's or the registry's recipe, then the quantisation the route's own target shipped in
    this run: tried before the search's own steps."""
    if recipe is not None:
        log.info("%s: trying the known recipe for %s first (%s)", run.info.name, run.ctx.spec.name, recipe.label())
        if run.attempt(recipe).passed:
            return run.outcomes[-1]
    if carried is not None and carried != recipe:
        owner = _ROUTE_OWNER[remedy_route]
        log.info("%s: trying the quantisation %s shipped in this run first (%s)", run.info.name, owner, carried.label())
        if run.attempt(carried, source=owner).passed:
            return run.outcomes[-1]
    return None


def _float_group_steps(
    run: _Run, model: Any, base: Attempt, methods: list[str], remedy_route: str, made: set[Attempt]
) -> tuple[Outcome | None, tuple[str, ...]]:
    """Layer groups kept in float on ``base``: a detector's recognition levels first, the ranked
    groups added step by step, a liveness model's output side, then the last step on the other
    methods' ranges where it missed only by a pair. Returns (the winner or None, the last groups tried)."""
    ctx = run.ctx
    cap = ctx.options.get("max_float_groups")

    def within_cap(groups: tuple[str, ...]) -> bool:
        """Whether ``groups`` keeps to the user's --max-float-groups (the steps beyond the ranked
        ones are not held to the default cap, half the groups)."""
        return cap is None or len(groups) <= int(cap)

    def on_base(groups: tuple[str, ...]) -> Attempt:
        return Attempt(base.method, groups, bias_corrected=base.bias_corrected, route=remedy_route)

    tried: tuple[str, ...] = ()
    if run.out_of_time(f"{base.label()} + layer groups in float (not ranked)"):
        raise _BudgetSpent  # the ranking itself takes minutes on the wider networks
    levels = tuple(recognition_levels_groups(ctx, model)) if ctx.spec.task == "detect" else ()
    levels = levels if within_cap(levels) else ()
    if levels:
        tried = levels
        if on_base(levels) not in made and run.attempt(on_base(levels)).passed:
            return run.outcomes[-1], tried
    if run.out_of_time(f"{base.label()} + layer groups in float (not ranked)"):
        raise _BudgetSpent
    # a detector's coarser levels stay in float: the ranked groups are added to them
    ranked = module_groups(model, sensitivity(ctx))
    groups = [g for g, damage in ranked if damage > 0 and g not in levels]
    _, steps = plan(ctx, methods, groups, model_groups=len(ranked))
    for step in steps:
        candidate = on_base(levels + tuple(step))
        if not within_cap(candidate.float_groups):
            break
        tried = candidate.float_groups
        if candidate in made:
            continue
        if run.attempt(candidate).passed:
            return run.outcomes[-1], tried
    if ctx.spec.task == "liveness":
        tail = tuple(g for g in output_side_groups(ctx, model) if g not in tried)
        candidate = on_base(tried + tail)
        if tail and within_cap(candidate.float_groups) and candidate not in made and run.attempt(candidate).passed:
            return run.outcomes[-1], tried
    last = run.outcomes[-1] if run.outcomes else None
    if last is not None and last.attempt.float_groups and misses_only_stepped(last):
        for candidate in other_ranges(last.attempt, run.outcomes, methods):
            if run.attempt(candidate).passed:
                return run.outcomes[-1], tried
    return None, tried


def _learned_steps(run: _Run, base: Attempt, groups: tuple[str, ...], weight_qmax: int, remedy_route: str, made: set[Attempt]) -> Outcome | None:
    """Learned rounding, then distillation QAT, each with ``groups`` in float, within the budget."""
    ctx = run.ctx
    # from the prepared model, whatever the base: the roundings take off the error bias
    # correction would, and its biases (fitted to nearest rounding) led them astray (w0.5-e16,
    # two groups in float: from the corrected model 0.9882 / 0.9751 -> 0.9845 / 0.9695, from
    # the plain one 0.9873 / 0.9655 -> 0.9878 / 0.9677; no groups 0.9784 / 0.9216 -> 0.9820 / 0.9289)
    rounded_attempt = Attempt(base.method, groups, rounded=True, route=remedy_route)
    if rounding_seconds(ctx) > 0 and rounded_attempt not in made:
        learn_s = run.learn_budget(rounded_attempt.label(), rounding_seconds(ctx), MIN_ROUNDING_SECONDS)
        start = time.perf_counter()
        fitted = learned_rounding(ctx, weight_qmax, groups, budget_s=learn_s)
        learned_s = time.perf_counter() - start
        if fitted.improved:
            rounded_out = run.attempt(rounded_attempt, paid=True)
            rounded_out.seconds += learned_s
            if rounded_out.passed:
                return rounded_out
        else:  # its model is the prepared one with these groups, no better
            kept = fitted.report.get("kept", "nearest rounding (the learned roundings fitted the calibration inputs no better)")
            run.not_verified.append(f"{rounded_attempt.label()}: kept {kept}, {learned_s:.0f} s")
    # from the base's model: bias-corrected where the groups were tried on the corrected one
    tuned_attempt = Attempt(base.method, groups, distilled=True, bias_corrected=base.bias_corrected, route=remedy_route)
    if distill_seconds(ctx) > 0 and tuned_attempt not in made:
        # trained with the same groups in float that the backend then keeps in float, so the
        # tuned weights make up for int8 only where int8 is
        learn_s = run.learn_budget(tuned_attempt.label(), distill_seconds(ctx), MIN_DISTILL_SECONDS)
        start = time.perf_counter()
        distillation(ctx, weight_qmax, groups, budget_s=learn_s, from_corrected=tuned_attempt.bias_corrected)
        learned_s = time.perf_counter() - start
        tuned = run.attempt(tuned_attempt, paid=True)
        tuned.seconds += learned_s  # the distillation's time belongs to its attempt (counted once)
        if tuned.passed:
            return tuned
    return None


def run_search(ctx: ExportContext, info: TargetInfo, quantiser: Quantiser) -> Artifact:
    """Try attempts until one verifies; copy the winner (or the best failure) into the bundle.

    ``quantiser`` says how the target builds an attempt and what its quantiser can store
    (:class:`.quantiser.Quantiser`)."""
    q = quantiser
    methods, remedy_route = list(q.methods), q.remedy_route
    # the clock starts after the INT8 preparation: it is done once per run for every target (137 s
    # of the detector's 600 s went to it before the search's first attempt)
    prep = preparation(ctx)
    check_user_groups(ctx, prep.model)
    root = ctx.work_dir / f"{info.name}-attempts"
    root.mkdir(exist_ok=True)
    run = _Run(ctx, info, q.build, root, search_seconds(ctx))
    corrected = bias_correction_wanted(ctx, q.corrects_biases or remedy_route == "qdq")
    plain, _ = plan(ctx, methods, [])
    first = [replace(a, route=route) for route in q.plain_routes for a in plain]
    fallback = [replace(a, route=route) for route in q.fallback_routes for a in plain]
    recipe = _recipe(ctx, info, methods)
    carried = _carried(ctx, remedy_route)
    made = {recipe, carried} - {None}  # tried first: the search does not repeat them
    if carried is not None:
        # the route's own target made its plain attempts in this run and shipped a later one: where
        # that one fails here the remedies go on from the route's min/max ranges, as they always did
        first = [a for a in first if a.route != carried.route]
    winner = None
    try:
        winner = _known_first(run, recipe, carried, remedy_route) or run.first_passing(first, made)
        if winner is None and corrected:
            winner = run.first_passing(corrected_attempts(_remedy_base(run.outcomes, remedy_route).method, remedy_route), made)
        base = _remedy_base(run.outcomes, remedy_route)
        groups: tuple[str, ...] = ()
        if winner is None:
            winner, groups = _float_group_steps(run, prep.model, base, methods, remedy_route, made)
        if winner is None:
            winner = run.first_passing(fallback, made)
        if winner is None:
            winner = _learned_steps(run, base, groups, q.weight_qmax, remedy_route, made)
    except _BudgetSpent:
        log.warning(
            "%s: the INT8 search's time budget (%.0f s, --int8-search-seconds) is spent after %d attempts; not tried: %s",
            info.name,
            run.budget,
            len(run.outcomes),
            run.not_made[0],
        )
    if (
        winner is not None
        and q.int8_float_group_weights
        and (winner.attempt.float_groups or q.int8_output_layer_weights)
        and not winner.attempt.int8_weights
        and winner.attempt.route == remedy_route
    ):
        winner = slimmer(winner, run.attempt, info.name, on_platforms=run.on_platforms)
    if winner is not None and q.half_float_weights and not winner.attempt.half_weights:
        # after int8 storage too: the small weights it leaves FP32 (w0.5-e16 onnx-int8: 106 KB of 1,019)
        winner = slimmer(winner, run.attempt, info.name, "fp16", on_platforms=run.on_platforms)
    if winner is not None and _closer_wanted(ctx, winner, recipe) and run.time_left() > 0:
        ranking = module_groups(prep.model, sensitivity(ctx))
        ranked = [g for g, damage in ranking if damage > 0]
        _, steps = plan(ctx, methods, ranked, model_groups=len(ranking))
        if q.int8_float_group_weights and winner.attempt.route == remedy_route:
            storage = {"int8_weights": True, "half_weights": q.half_float_weights}
        else:
            storage = {"int8_weights": False, "half_weights": q.half_float_weights}
        winner = closer(
            winner,
            run.attempt,
            next_group_sets(winner.attempt.float_groups, ranked, [len(s) for s in steps]),
            storage,
            lambda shipped, step: tuple(paired.paired_latency_ms([shipped, step], rounds=SLIMMER_ROUNDS, threads=1)),
            run.on_platforms,
            info.name,
            _BudgetSpent,
        )
    return _ship(run, winner, prep, recipe, q.weight_qmax, q.build_fp32)


def _ship(
    run: _Run, winner: Outcome | None, prep: Int8Preparation, recipe: Attempt | None, weight_qmax: int, build_fp32: Callable[[Path], Artifact]
) -> Artifact:
    """Copy the winner (or the attempt closest to passing) into the bundle, with the search's record."""
    ctx, info, outcomes = run.ctx, run.info, run.outcomes
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
            "calibration": calibration_note(ctx, chosen.attempt.method),
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
                "budget_s": None if run.budget == float("inf") else run.budget,
                "seconds": round(time.perf_counter() - run.started, 1),
                "stopped_by_budget": bool(run.not_made),
                **({"not_tried": run.not_made[0]} if run.not_made else {}),
                **({"not_verified": run.not_verified} if run.not_verified else {}),
            },
            "remedies": remedies(chosen, outcomes, recipe),
            **({"same_quantisation_as": chosen.source} if chosen.source else {}),
        }
    )
    notes.update(compare_with_fp32(ctx, info, chosen, build_fp32))
    chosen.artifact.notes = notes
    return chosen.artifact


def _closer_wanted(ctx: ExportContext, winner: Outcome, recipe: Attempt | None) -> bool:
    """Whether the search tries more float groups after ``winner`` (:mod:`.closer`): for recognisers,
    on a plain or bias-corrected quantisation (the learned steps' models are fitted to their own
    groups), not where the user's ``--int8-float`` or the registry's recipe said what ships."""
    a = winner.attempt
    return ctx.spec.task == "embed" and not (a.distilled or a.rounded) and (recipe is None or replace(a, int8_weights=False, half_weights=False) != recipe)
