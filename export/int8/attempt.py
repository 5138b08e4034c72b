"""One INT8 attempt (how a model is quantised) and its outcome (how it verified): what the search
tries, ranks, records in the manifest and hands to the next target of the same run."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..context import ExportContext
from ..target_info import Artifact


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
    # :mod:`.openvino_half_weights`, :mod:`.tflite_float_weights`), tried on a winner (:func:`run_search`);
    # with ``int8_weights``, those its int8 storage leaves FP32 (the small ones)
    half_weights: bool = False

    def label(self) -> str:
        return (
            self.method
            + (" + bias correction" if self.bias_corrected else "")
            + (" + distillation QAT" if self.distilled else "")
            + (" + learned rounding" if self.rounded else "")
            + (f" + float {', '.join(self.float_groups)}" if self.float_groups else "")
            + self._storage()
            + (" (onnxruntime QDQ)" if self.route == "qdq" else "")
        )

    def _storage(self) -> str:
        """How the weights of the ops left in float are stored, e.g. `` (their weights int8, the rest fp16)``."""
        kinds = []
        if self.int8_weights:
            kinds.append("their weights int8" if self.float_groups else "float weights int8")
        if self.half_weights:
            kinds.append("the rest fp16" if self.int8_weights else "float weights fp16")
        return f" ({', '.join(kinds)})" if kinds else ""

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


def chosen_attempt(ctx: ExportContext, target: str) -> Attempt:
    """The attempt whose artifact ``target``'s search put in the bundle (plain min/max before one ran)."""
    return ctx.shared.get(f"int8-chosen:{target}", Attempt("minmax"))
