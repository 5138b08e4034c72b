"""A winner's smaller storage: the weights of the ops it keeps in float stored as int8 or float16,
shipped only where that verifies, keeps most of the winner's slack and is not slower."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable

from gfn_edge.benchmark import paired

from .attempt import Outcome
from .half_weights import MIN_WEIGHTS as MIN_HALF_WEIGHTS
from .ranking import STEPPED, slack_by_key

log = logging.getLogger(__name__)


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
VARIANTS = {
    "int8": ("int8_weights", "int8_weights_of_float_groups", "int8 weights", "weights_stored_int8"),
    "fp16": ("half_weights", "fp16_weights_of_float_ops", "fp16 weights", "weights_stored_fp16"),
}


def slimmer(
    winner: Outcome, attempt: Callable[..., Outcome], target: str, variant: str = "int8", on_platforms: Callable[[Outcome], Outcome] = lambda out: out
) -> Outcome:
    """The winner with the weights of its float ops stored smaller, where that verifies, keeps
    :data:`SLIMMER_KEEPS` of the winner's slack and is not slower; else the winner.

    ``"int8"``: the float groups' weights as int8 (QDQ graphs only). Why measured, not assumed:
    while they were stored behind a DequantizeLinear, onnxruntime ran it on every inference
    (w0.5-e16: 3.4 -> 4.7 ms at one thread); behind a Cast and a Mul (since 2026-12-05) it folds
    them when it loads the model, as OpenVINO does when it compiles (w0.5-e16 2.02 against 2.03 ms,
    1.67 -> 1.00 MB), and the timing guards against a runtime that does not. ``"fp16"``: every float op's
    weights (the groups and the output layers) as float16, or on an int8 variant that shipped the
    small ones it left FP32 (a tenth of its float weights' bytes), turned into FP32 when the model loads
    on all three runtimes: half those bytes, the same kernels. With ``--verify-on`` the variant is
    verified on the named CPUs last, once it would ship (``on_platforms``): w0.5-e16's float16
    openvino-int8 passed here and flipped a pair more on an emulated Cortex-A76 (pair Δ 0.57)."""
    field_name, note, called, stored = VARIANTS[variant]
    before = _stored_so(winner)
    slim = attempt(replace(winner.attempt, **{field_name: True}), paid=True, platforms=False)  # one build: not held to the budget
    if not slim.passed:
        winner.artifact.notes[note] = "tried, failed verification: " + "; ".join(slim.failures)
        return winner
    if not slim.artifact.notes.get(stored, True):  # a build that says how many it stored stored none
        winner.artifact.notes[note] = f"none to store: no float op has FP32 weights of {MIN_HALF_WEIGHTS} values or more"
        return winner
    given_back = slack_given_back(winner, slim)
    if given_back:
        log.info("%s: the float ops keep %s: %s verified, but %s", target, before, called, given_back)
        winner.artifact.notes[note] = "tried, verified, less faithful: " + given_back
        return winner
    try:
        # one thread: the export's own process may still have the distillation's threads spinning
        # (w0.5-e16 onnx-int8 timed 3.5 ms there, 2.0-2.3 ms alone)
        fat_ms, slim_ms = paired.paired_latency_ms([winner.folder, slim.folder], rounds=SLIMMER_ROUNDS, threads=1)
    except Exception as exc:  # a timing failure must not fail the export; unmeasured, the winner stays
        log.warning("could not time %s's %s variant: %s", target, called, exc)
        return winner
    timing = f"median {slim_ms:.2f} ms with {called}, {fat_ms:.2f} ms with {before}"
    if slim_ms > SLIMMER_SLOWDOWN * fat_ms:
        log.info("%s: the float ops keep %s: %s verified, but %s", target, before, called, timing)
        winner.artifact.notes[note] = "tried, verified, slower: " + timing
        return winner
    if not on_platforms(slim).passed:
        winner.artifact.notes[note] = f"tried, verified here, {timing}, but fails " + "; ".join(slim.failures)
        return winner
    slim.artifact.notes[note] = "shipped: " + timing
    for _, earlier, _, _ in VARIANTS.values():  # what the variants tried before this one found
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


def _stored_so(winner: Outcome) -> str:
    """How the winner stores its float ops' weights, as the notes say it."""
    return "int8 weights, the rest FP32" if winner.attempt.int8_weights else "FP32 weights"


def slack_given_back(winner: Outcome, slim: Outcome) -> str:
    """Which continuous metrics the slimmer variant moves past :data:`SLIMMER_KEEPS` of the
    winner's slack (empty: none), e.g. ``landmark_nme 0.00873 (FP32 weights 0.00436)``."""
    kept, slimmed = slack_by_key(winner.tolerances, winner.metrics), slack_by_key(winner.tolerances, slim.metrics)
    worse = [
        f"{key} {slim.metrics[key]:.6g} ({_stored_so(winner)} {winner.metrics[key]:.6g})"
        for key, slack in kept.items()
        if key not in STEPPED and key in slimmed and slack > 0 and slimmed[key] < SLIMMER_KEEPS * slack
    ]
    return ", ".join(worse)
