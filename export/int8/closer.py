"""After a recogniser's INT8 search passes: more of its ranked layer groups in float, where that is
closer to the reference at no cost in size or speed.

Why: the search stops at the first attempt within tolerance, and for a recogniser that can be an
INT8 model whose pair scores move as much as the whole pipeline's 1 % of changed decisions
allows, before the INT8 detector's sub-pixel landmarks move them again. Measured on w0.5-e6 from its
file (calibrated on the portraits, verified on the pairs, 2026-12-07), the INT8 pipeline (INT8
RetinaFace beside it) against the FP32 one, decisions changed of 349 at the reference's threshold,
its own detector's landmarks and the mean over them and 11 Gaussian draws of the same size:

=============================  ==============  ===============  ==============
onnx-int8 (this VNNI Xeon)     cos_mean        pipeline / mean  size, latency
=============================  ==============  ===============  ==============
percentile, nothing in float   0.99826         5 / 3.67         191 KB, 1.72 ms
4 ranked groups in float       0.99912         1 / 2.58         182 KB, 1.13 ms
=============================  ==============  ===============  ==============

openvino-int8 4 / 4.00 -> 3 / 3.25 (485 -> 325 KB, 0.75 -> 0.69 ms); tflite-int8 the same groups
0.99795 -> 0.99909 (185 -> 195 KB, 1.22 -> 0.65 ms). The early layers kept in float are small
(their weights stored int8 or float16 where the backend can) and run faster in float than in the
runtimes' int8 kernels at 56x56 with few channels, so the closer model is often the smaller and
faster one too. What is judged, not assumed: each step is verified like any attempt, and ships
only where it takes :data:`CLOSER_GAIN` of the cosine error off, is expected to change no more
pair decisions (the count is a draw: :func:`gfn_edge.metrics.expected_decision_agreement`), and
stays within :data:`CLOSER_GROWTH` of the size and :data:`CLOSER_SLOWDOWN` of the latency of the
model it would replace.

Recognisers only: their pair decisions are what the pipeline criterion counts, and their
verification takes seconds; a detector's float groups are chosen by their own step (the coarser
levels' path) and its attempts take minutes.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

CLOSER_GAIN = 0.2
"""A step ships where it takes at least this share off the shipped model's cosine error (1 - cos_mean)."""
CLOSER_GROWTH = 1.10
"""... and its files are at most this factor of the shipped model's bytes (w0.5-e6 tflite-int8: the four
groups' float16 weights add 5 %, the model runs in half the time)."""
CLOSER_SLOWDOWN = 1.05
"""... and its median latency (paired, one thread) at most this factor of the shipped model's."""


def next_group_sets(shipped: tuple[str, ...], ranked: list[str], sizes: list[int]) -> list[tuple[str, ...]]:
    """The float-group sets to try after ``shipped``: it plus the next ranked groups not in it, up to
    each of the search's step ``sizes`` larger than it, in order."""
    rest = [g for g in ranked if g not in shipped]
    sets = []
    for k in sizes:
        extra = k - len(shipped)
        if 0 < extra <= len(rest):
            sets.append(shipped + tuple(rest[:extra]))
    return sets


def refusal(shipped: Any, step: Any, shipped_bytes: int, step_bytes: int, latency_ms: Callable[[], tuple[float, float]]) -> str:
    """Why ``step`` (an Outcome) does not replace ``shipped``; empty where it does. ``latency_ms``
    times both (shipped, step) and is only called once every other condition holds."""
    if not step.passed:
        return "failed verification" + (": " + "; ".join(step.failures) if step.failures else "")
    error, step_error = 1.0 - shipped.metrics["cos_mean"], 1.0 - step.metrics["cos_mean"]
    if step_error > (1.0 - CLOSER_GAIN) * error:
        return f"not closer: cos_mean {step.metrics['cos_mean']:.6f} against {shipped.metrics['cos_mean']:.6f}"
    # the decisions a step is expected to keep, not the count it kept: which pairs a model flips is
    # a draw (gfn_edge.metrics.expected_decision_agreement), and a step that was closer but drew
    # worse was refused by the count (w0.5-e16 openvino-int8's ten groups, cos_mean 0.9974
    # against 0.9959: 2 pairs changed against 1)
    key = "pair_decisions_expected_agree" if "pair_decisions_expected_agree" in shipped.metrics else "pair_decisions_agree"
    agree, step_agree = shipped.metrics.get(key), step.metrics.get(key)
    if agree is not None and step_agree is not None and step_agree < agree:
        return f"more pair decisions changed: {key} {step_agree:.5f} against {agree:.5f}"
    if step_bytes > CLOSER_GROWTH * shipped_bytes:
        return f"larger: {step_bytes} bytes against {shipped_bytes}"
    ms, step_ms = latency_ms()
    if step_ms > CLOSER_SLOWDOWN * ms:
        return f"slower: median {step_ms:.3f} ms against {ms:.3f}"
    return ""


def closer(
    shipped: Any,
    attempt: Callable[..., Any],
    group_sets: list[tuple[str, ...]],
    storage: dict[str, bool],
    latency_ms: Callable[[Path, Path], tuple[float, float]],
    on_platforms: Callable[[Any], Any],
    target: str,
    stop: type[Exception],
) -> Any:
    """``shipped`` or the last of its steps to ``group_sets`` (each with the float groups' weights
    stored as ``storage`` says) that :func:`refusal` let through against the one kept before it.
    Every step is tried, whatever the one before it did (w0.5-e6 onnx-int8's one-group step turned
    two pairs the wrong way, its four-group step none), until ``attempt`` raises ``stop`` (the
    search's budget). With ``--verify-on`` only the step that would ship is verified on the named
    CPUs (minutes each under emulation); where it fails there, ``shipped`` stays. Each step's
    verdict is noted in the returned artifact's ``closer_float_groups``."""
    notes: list[str] = []
    kept = shipped
    for groups in group_sets:
        candidate = replace(shipped.attempt, float_groups=groups, **storage)
        try:
            step = attempt(candidate, platforms=False)
        except stop:
            notes.append(f"{len(groups)} groups: not tried, the search's time budget is spent")
            break
        step_bytes = step.artifact.size_bytes(step.folder) if step.artifact else 0
        try:
            why = refusal(kept, step, kept.artifact.size_bytes(kept.folder), step_bytes, partial(latency_ms, kept.folder, step.folder))
        except Exception as exc:  # a timing failure must not fail the export: unmeasured, the model kept stays
            why = f"could not be timed: {type(exc).__name__}: {exc}"
        if why:
            notes.append(f"{len(groups)} groups: {why}")
            log.info("%s: %s not kept: %s", target, candidate.label(), why)
            continue
        notes.append(
            f"{len(groups)} groups: closer at no cost (cos_mean {step.metrics['cos_mean']:.6f} against {kept.metrics['cos_mean']:.6f}, {step_bytes} bytes)"
        )
        log.info("%s: %s kept, %s", target, candidate.label(), notes[-1].split(": ", 1)[1])
        kept = step
    if kept is not shipped and not on_platforms(kept).passed:
        notes.append(f"shipped: the model before the steps ({len(kept.attempt.float_groups)} groups fail on the named CPUs: {'; '.join(kept.failures)})")
        kept = shipped
    elif kept is not shipped:
        notes.append(f"shipped: {len(kept.attempt.float_groups)} groups")
        for key, flag in (("int8_weights_of_float_groups", "int8_weights"), ("fp16_weights_of_float_ops", "half_weights")):
            if getattr(kept.attempt, flag):
                kept.artifact.notes[key] = "shipped: stored so in the closer step, verified, no bigger or slower than the model before it"
            elif key in shipped.artifact.notes:  # what the winner's own variants found, said as such
                kept.artifact.notes[key] = "before the closer steps: " + shipped.artifact.notes[key]
    if notes:
        kept.artifact.notes["closer_float_groups"] = notes
    return kept
