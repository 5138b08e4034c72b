"""Where an INT8 model's error comes from, on the verification set's own metrics: weights or activations.

The per-tensor table (:mod:`.debugger`) says *where* in the network the error grows; this says
*which half of the quantisation* causes it and what the layers kept in float cost, which decides
the remedy. The attempt's FP32 model is simulated (:class:`..int8.simulate.FakeQuant`, per-channel
weights on the backend's grid, per-tensor min/max activation ranges from the calibration set) four
ways: with its float groups in float as shipped, with only the weights int8, with only the
activations int8, and with every layer int8 (the last three again with nothing in float, when the
attempt keeps groups in float), each judged as the verification judges (cosine and pair accuracy,
landmark NME and recall, liveness decisions).

Why it matters, measured on RetinaFace-MobileNet-0.25 (calibrated on the pairs photos, judged on
the scenes, 2026-12-05): nothing in float, int8 everywhere gives landmark NME 0.018, int8 weights
alone 0.0066, int8 activations alone 0.017 (with the shipped float groups: 0.0091, 0.0028, 0.0084).
Activation resolution is the limit, so learned weight rounding cannot fix it; layers kept in float
can, but the cheapest float set the simulation found within NME 0.01 holds 34 % of the
multiply-accumulates (the whole backbone; the shipped coarser levels 49 %), which is why that
detector's INT8 is not twice as fast as FP32. The share of the compute in float is reported for the
same reason.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from gfn_edge.registry import ModelSpec

from ..int8.graph import trace_folded
from ..int8.learned.tensors import nchw
from ..int8.prepare import nodes_of_groups
from ..int8.simulate import FakeQuant, calibrate_ranges, quantisable_nodes
from ..verification_set import VerificationSet
from ..verify import compare, default_tolerances

log = logging.getLogger(__name__)

DOMINANCE = 2.0
"""One half of the quantisation is named the cause when its error is at least this many times the other's."""

_CASES = (
    # name, weights int8, activations int8, float groups kept
    ("FP32 (the attempt's model)", False, False, True),
    ("int8, float groups as shipped", True, True, True),
    ("int8 weights only", True, False, True),
    ("int8 activations only", False, True, True),
    ("int8 everywhere", True, True, False),
    ("int8 weights only, everywhere", True, False, False),
    ("int8 activations only, everywhere", False, True, False),
)


def _chunks(x: np.ndarray, task: str) -> list[np.ndarray]:
    """Detectors one picture at a time (their graphs may hold the batch in a constant), others in 32s."""
    size = 1 if task == "detect" else 32
    return [x[i : i + size] for i in range(0, len(x), size)]


def multiply_accumulates(gm: fx.GraphModule) -> dict[fx.Node, int]:
    """Multiply-accumulates of every convolution and linear layer of a shape-propagated graph."""
    macs: dict[fx.Node, int] = {}
    for n in gm.graph.nodes:
        if n.op != "call_module":
            continue
        mod = gm.get_submodule(str(n.target))
        shape = getattr(n.meta.get("tensor_meta"), "shape", None)
        if shape is None:
            continue
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            macs[n] = int(np.prod(shape[1:])) * mod.in_channels // mod.groups * kh * kw
        elif isinstance(mod, nn.Linear):
            macs[n] = int(np.prod(shape[1:])) * mod.in_features
    return macs


def boundary_nodes(gm: fx.GraphModule, float_nodes: set[fx.Node]) -> set[fx.Node]:
    """Float layers whose results an int8 layer reads (a backend quantises them there)."""
    quantised = set(quantisable_nodes(gm)) - float_nodes
    return {n for n in float_nodes if any(u in quantised for u in n.users)}


def primary_error(task: str, metrics: dict[str, Any]) -> float:
    """The one number the verdict compares: 1 - cosine for recognisers, landmark NME for detectors,
    the mean live-probability change for liveness models."""
    if task == "embed":
        return 1.0 - float(metrics["cos_mean"])
    if task == "detect":
        return float(metrics["landmark_nme"])
    return float(metrics.get("prob_err_mean", metrics.get("prob_err", 0.0)))


def verdict(task: str, weights_only: dict[str, Any], activations_only: dict[str, Any]) -> str:
    """Which half causes the error, and so which remedy can help."""
    w, a = primary_error(task, weights_only), primary_error(task, activations_only)
    if a >= DOMINANCE * max(w, 1e-12):
        return "activations: their per-tensor int8 resolution is the limit; layers kept in float or distillation QAT help, learned weight rounding cannot"
    if w >= DOMINANCE * max(a, 1e-12):
        return "weights: their rounding is the limit; learned rounding or distillation QAT help most, float activations would not"
    return "both: weights and activations each cost about as much"


def error_sources(
    model: nn.Module,
    calibration: np.ndarray,
    vset: VerificationSet,
    ref_out: dict[str, np.ndarray],
    spec: ModelSpec,
    float_groups: tuple[str, ...] | list[str] = (),
    weight_qmax: int = 127,
) -> dict[str, Any]:
    """The simulated error of ``model`` (the FP32 model an INT8 attempt quantised) on ``vset``
    against the reference outputs ``ref_out``, for each case of :data:`_CASES`; ``calibration``:
    the NHWC inputs its activation ranges come from (the export's calibration set)."""
    model = model.eval()
    x_cal = _chunks(calibration, spec.task)
    gm = trace_folded(model, nchw(vset.inputs[:1]))
    ranges = calibrate_ranges(gm, (nchw(c) for c in x_cal))  # one chunk at a time: a detector's set is 0.5 GB
    in_float = nodes_of_groups(gm, list(float_groups)) if float_groups else set()
    boundary = boundary_nodes(gm, in_float)
    macs = multiply_accumulates(gm)
    total = sum(macs.values()) or 1
    keys = list(default_tolerances(spec.task, "int8"))
    rows = []
    for name, weights, activations, keep in _CASES:
        if not keep and not in_float:
            continue  # nothing in float: the cases "everywhere" are the ones above
        skip, edge = (in_float, boundary) if keep else (set(), set())
        outs: list[list[np.ndarray]] = []
        with torch.no_grad():
            for chunk in _chunks(vset.inputs, spec.task):
                out = FakeQuant(gm, ranges, skip=skip, weights=weights, activations=activations, weight_qmax=weight_qmax, boundary=edge).run(nchw(chunk))
                outs.append([o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))])
        art = {k: np.concatenate([o[j] for o in outs]) for j, k in enumerate(ref_out)}
        metrics = compare(ref_out, art, vset, spec)
        rows.append(
            {
                "case": name,
                "weights": "int8" if weights else "float",
                "activations": "int8" if activations else "float",
                "float_groups": len(float_groups) if keep else 0,
                **{k: metrics[k] for k in keys + ["landmark_nme_large"] if k in metrics},
            }
        )
    by_case = {r["case"]: r for r in rows}
    report = {
        "method": (
            "simulated int8 of the attempt's FP32 model (per-channel weights on the backend's grid; per-tensor activation ranges: "
            "min/max over the calibration set, whatever range method the backend used), judged as the verification judges"
        ),
        "float_groups": list(float_groups),
        "float_macs_share": round(sum(macs.get(n, 0) for n in in_float) / total, 4),
        "macs": int(total),
        "cases": rows,
        "cause": verdict(spec.task, by_case["int8 weights only"], by_case["int8 activations only"]),
    }
    if in_float:  # what stands in the way of quantising the float groups too
        report["cause_everywhere"] = verdict(spec.task, by_case["int8 weights only, everywhere"], by_case["int8 activations only, everywhere"])
    log.info("INT8 error sources of %s: %s (%.0f %% of the compute in float)", spec.name, report["cause"].split(":")[0], 100 * report["float_macs_share"])
    return report


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown section (the debugger's int8-debug.md ends with it)."""
    rows = report["cases"]
    metric_keys = [k for k in rows[0] if k not in ("case", "weights", "activations", "float_groups")]
    lines = [
        "## Where the error comes from (simulated on the verification set)",
        "",
        f"- cause: {report['cause']}",
        *([f"- cause with every layer int8: {report['cause_everywhere']}"] if report.get("cause_everywhere") else []),
        f"- layer groups in float: {len(report['float_groups'])}, {100 * report['float_macs_share']:.0f} % of the {report['macs']:,} multiply-accumulates",
        f"- {report['method']}",
        "",
        "| case | weights | activations | groups in float | " + " | ".join(metric_keys) + " |",
        "|" + "---|" * (4 + len(metric_keys)),
    ]
    for r in rows:
        cells = [f"{r[k]:.5g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in metric_keys]
        lines.append(f"| {r['case']} | {r['weights']} | {r['activations']} | {r['float_groups']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["boundary_nodes", "error_sources", "markdown", "multiply_accumulates", "primary_error", "verdict"]
