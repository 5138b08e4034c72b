"""Compare an artifact with its reference on real data, and judge the result against tolerances.

Default tolerances (printed in every report, overridable with ``--tolerance KEY=VALUE``):

============  ==========================================================================
FP32          recognisers: every face cos >= 0.9999; detectors: recall = precision = 1.0,
              box and landmark error <= 0.5 px
FP16          recognisers: cos_min >= 0.999; detectors: recall, precision >= 0.995
INT8          recognisers: cos_mean >= 0.995, cos_min >= 0.98, pair accuracy within 0.5
              points, at most 1 % of the pair decisions expected to change (over the
              model's score shifts; the count is reported); detectors: recall,
              precision >= 0.99, landmark NME <= 0.01 over all faces and over the large
              ones (>= 96 px on the input);
              liveness: every verdict the reference holds robustly kept, 95 % in all,
              real-face probability moved <= 0.05 on average and <= 0.3 at most
============  ==========================================================================

Detectors are also checked output by output and pyramid level by level (relative L2 error of
``loc``, ``conf``, ``landms``), which catches a garbled output even on pictures where that level
holds no face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gfn_edge.liveness import DEFAULT_THRESHOLD, softmax
from gfn_edge.metrics import DetectionAgreement, accuracy_at, best_threshold_accuracy, cosine_rows, decisions_changed
from gfn_edge.registry import ModelSpec, Preprocess
from gfn_edge.retinaface_decode import postprocess, prior_boxes

from .verification_set import is_view
from .verify_data import VerificationSet

# key -> (comparison, value)
Tolerances = dict[str, tuple[str, float]]

DEFAULT_TOLERANCES: dict[tuple[str, str], Tolerances] = {
    ("embed", "fp32"): {"cos_min": (">=", 0.9999)},
    ("embed", "fp16"): {"cos_min": (">=", 0.999)},
    # INT8 recognisers: at most 1 % of the labelled pairs' decisions may change at the reference's
    # threshold (issue 12's limit for the whole INT8 pipeline, which the recogniser alone must not
    # use up). Accuracy alone lets changes that cancel out pass: w0.5-e16 exports within 0.5 points
    # changed 4 of 349. From 2026-12-06 the count was judged (pair_decisions_agree, still measured
    # and a --tolerance key); since 2026-12-07 the share the model is expected to keep, its score
    # shifts falling on the pairs at random (gfn_edge.metrics.expected_decision_agreement): the
    # count is one draw, which passed a model by luck and failed a closer one by bad luck
    # (w0.5-e16 tflite-int8, ten groups in float: expected 0.9916, counted 0.9885; eight groups:
    # expected 0.9907, counted 0.9971, shipped).
    ("embed", "int8"): {
        "cos_mean": (">=", 0.995),
        "cos_min": (">=", 0.98),
        "pair_acc_delta": ("<=", 0.5),
        "pair_decisions_expected_agree": (">=", 0.99),
    },
    ("detect", "fp32"): {
        "recall": (">=", 1.0),
        "precision": (">=", 1.0),
        "box_err_px": ("<=", 0.5),
        "landmark_err_px": ("<=", 0.5),
        "output_rel_err": ("<=", 1e-3),
    },
    ("detect", "fp16"): {"recall": (">=", 0.995), "precision": (">=", 0.995), "output_rel_err": ("<=", 0.03)},
    # INT8 detectors, since 2026-12-04 (issue 12's tolerance; NME <= 0.02 and 0.98 until then):
    # landmarks feed alignment, so a detector's landmark error becomes the recogniser's error.
    # Since 2026-12-05 the faces of 96 px or more on the input are judged apart as well (a crowd
    # scene's mean hides the coarse levels; verification adds enlarged views of its faces)
    ("detect", "int8"): {
        "recall": (">=", 0.99),
        "precision": (">=", 0.99),
        "landmark_nme": ("<=", 0.01),
        "landmark_nme_large": ("<=", 0.01),
        "output_rel_err": ("<=", 0.5),
    },
    ("liveness", "fp32"): {"prob_err": ("<=", 1e-4), "decision_agree": (">=", 1.0)},
    ("liveness", "fp16"): {"prob_err": ("<=", 0.01), "decision_agree": (">=", 0.99)},
    # INT8 liveness, since 2026-12-04: every verdict the reference makes robustly is kept, the
    # real-face probability moves little on average, and nowhere further than two grey levels of
    # noise move the reference itself. Until then the largest move had to stay within 0.1, which
    # is what one grey level of noise already does to MiniFASNetV2 in FP32 (0.0996 on the 66
    # crops; two levels 0.29, JPEG at quality 95 0.62): no INT8 artifact could pass it, and its
    # 0.95 on decisions let three verdicts of 66 change. See liveness_metrics.
    ("liveness", "int8"): {"decision_flips_robust": ("<=", 0.0), "decision_agree": (">=", 0.95), "prob_err_mean": ("<=", 0.05), "prob_err": ("<=", 0.3)},
}

# Parameters of the comparison itself (recorded with the metrics, not judged).
DETECTION_SETTINGS = {"score_threshold": 0.5, "score_margin": 0.05, "nms_threshold": 0.4, "iou_match": 0.5}


def default_tolerances(task: str, precision: str) -> Tolerances:
    return dict(DEFAULT_TOLERANCES[(task, precision)])


def parse_tolerance_overrides(items: list[str] | None, base: Tolerances) -> Tolerances:
    """``["cos_min=0.998", "recall=0.99"]`` applied to ``base`` (keeping each key's comparison)."""
    out = dict(base)
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--tolerance expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        op = out[key][0] if key in out else _guess_op(key)
        out[key] = (op, float(value))
    return out


_PREPROCESS_FIELDS = ("input_size", "color", "mean", "std", "resize", "crop_scale")


def preprocess_mismatch(artifact: Preprocess, reference: Preprocess) -> list[str]:
    """Where a bundle's recorded preprocessing differs from the reference's, e.g. ``color RGB (reference BGR)``.

    A device prepares inputs from the manifest, so a wrong colour order or mean there is a broken
    bundle even when the model file itself is perfect.
    """
    return [
        f"{key} {getattr(artifact, key)} (reference {getattr(reference, key)})"
        for key in _PREPROCESS_FIELDS
        if getattr(artifact, key) != getattr(reference, key)
    ]


def _guess_op(key: str) -> str:
    return "<=" if any(s in key for s in ("err", "nme", "delta")) else ">="


@dataclass
class VerificationReport:
    passed: bool
    metrics: dict[str, Any]
    tolerances: Tolerances
    failures: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, reference: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reference": reference,
            "metrics": self.metrics,
            "tolerances": {k: f"{op} {v:g}" for k, (op, v) in self.tolerances.items()},
            "failures": self.failures,
            "settings": self.settings,
            "data": data,
        }


def judge(metrics: dict[str, Any], tolerances: Tolerances) -> list[str]:
    """One message per failed check, naming it and by how much it missed."""
    failures = []
    for key, (op, limit) in tolerances.items():
        if key not in metrics:
            continue
        value = metrics[key]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        ok = value >= limit if op == ">=" else value <= limit
        if not ok:
            failures.append(f"{key} = {value:.6g} {'<' if op == '>=' else '>'} {limit:g} (off by {abs(value - limit):.3g})")
    return failures


# ----------------------------------------------------------------------------- per task


def pair_scores(emb: np.ndarray, vset: VerificationSet) -> tuple[np.ndarray, np.ndarray]:
    """(cosine of each labelled pair's two embeddings, whether the pair is one person)."""
    a = np.asarray([p[0] for p in vset.pairs])
    b = np.asarray([p[1] for p in vset.pairs])
    return cosine_rows(emb[a], emb[b]), np.asarray([p[2] for p in vset.pairs])


def embedding_metrics(ref: np.ndarray, art: np.ndarray, vset: VerificationSet) -> dict[str, Any]:
    cos_all = cosine_rows(ref, art)
    judged = vset.judged if vset.judged is not None and vset.judged.any() else np.ones(len(cos_all), bool)
    cos = cos_all[judged]
    m: dict[str, Any] = {
        "faces": int(len(cos)),
        "cos_mean": float(cos.mean()),
        "cos_min": float(cos.min()),
        "cos_p01": float(np.percentile(cos, 1)),
        "faces_all": int(len(cos_all)),
        "cos_mean_all": float(cos_all.mean()),
        "cos_min_all": float(cos_all.min()),
        # which faces an artifact treats worst: a user whose export fails can look at them
        "worst_faces": [[vset.names[i], round(float(cos_all[i]), 6)] for i in np.flatnonzero(judged)[np.argsort(cos)[:3]]],
    }
    if vset.pairs:
        s_ref, same = pair_scores(ref, vset)
        s_art, _ = pair_scores(art, vset)
        acc_ref, thr_ref = best_threshold_accuracy(s_ref, same)
        acc_art, _ = best_threshold_accuracy(s_art, same)
        decisions = decisions_changed(s_ref, s_art, same, thr_ref)
        m.update(
            {
                "pairs": int(len(same)),
                "pair_acc_ref": 100 * acc_ref,
                "pair_acc": 100 * acc_art,
                "pair_acc_delta": 100 * abs(acc_art - acc_ref),
                "pair_threshold_ref": thr_ref,
                "pair_decisions_agree": decisions["agree"],
                "pair_decisions_expected_agree": decisions["expected_agree"],
                "pair_acc_at_ref_threshold": 100 * accuracy_at(s_art, same, thr_ref),
            }
        )
    return m


def _level_slices(spec: ModelSpec) -> list[slice]:
    w, h = spec.preprocess.input_size
    anchors = spec.anchors
    slices, start = [], 0
    for sizes, step in zip(anchors.min_sizes, anchors.steps):
        n = math.ceil(h / step) * math.ceil(w / step) * len(sizes)
        slices.append(slice(start, start + n))
        start += n
    assert start == len(prior_boxes(anchors, w, h))
    return slices


def _rel_err(a: np.ndarray, r: np.ndarray) -> float:
    return float(np.linalg.norm((a - r).ravel()) / max(np.linalg.norm(r.ravel()), 1e-12))


def detection_metrics(ref: dict[str, np.ndarray], art: dict[str, np.ndarray], vset: VerificationSet, spec: ModelSpec) -> dict[str, Any]:
    """Agreement over every input; the mean landmark NME over the pictures as given, the large-face
    NME over every face of :data:`~gfn_edge.metrics.LARGE_FACE_PX` or more, enlarged views
    included (a view's many big faces would otherwise dilute the pictures' mean)."""
    s = DETECTION_SETTINGS
    low = s["score_threshold"] - s["score_margin"]
    agree, pictures = DetectionAgreement(), DetectionAgreement()
    for i, box in enumerate(vset.letterboxes):  # each the mapping gfn_edge.preprocess.detector_canvas made
        size = (box.width, box.height)
        dr = postprocess(ref["loc"][i], ref["conf"][i], ref["landms"][i], spec.anchors, size, box.scale, low, s["nms_threshold"])
        da = postprocess(art["loc"][i], art["conf"][i], art["landms"][i], spec.anchors, size, box.scale, low, s["nms_threshold"])
        for a in (agree,) if is_view(vset.names[i]) else (agree, pictures):
            a.add(dr, da, s["score_threshold"], s["score_margin"], s["iou_match"], input_scale=box.scale)
    views = sum(is_view(n) for n in vset.names)
    m: dict[str, Any] = {"images": len(vset) - views, "enlarged_views": views}
    m.update(agree.metrics())
    m["landmark_nme"] = pictures.metrics()["landmark_nme"]
    per_output = {}
    for name in ("loc", "conf", "landms"):
        per_output[name] = [_rel_err(art[name][:, sl], ref[name][:, sl]) for sl in _level_slices(spec)]
    m["output_rel_err_by_level"] = per_output
    m["output_rel_err"] = max(max(v) for v in per_output.values())
    return m


def liveness_metrics(ref: np.ndarray, art: np.ndarray, real_class: int = 1, ref_noise: np.ndarray | None = None) -> dict[str, Any]:
    """What the device decides from: the real-face probability (``prob_err``, the largest change
    over the crops) and the live/spoof decision at the default threshold (``decision_agree``).

    Before 2026-12-03 both were taken over every class: MiniFASNet's two spoof classes (print,
    replay) trading probability on a printed photo (0.90 -> 0.53 on one class, the real-face
    probability 0.013 -> 0.027) counted as an error of 0.37 and as a changed decision, though
    the device's score and verdict had not moved. Those are kept, unjudged, as ``class_prob_err``
    and ``class_agree``. ``decision_flips`` lists each changed verdict as (reference, artifact)
    real-face probability: one from a crop the reference scores 0.498 (MiniFASNetV1SE INT8) is a
    coin toss either way, one from 0.29 is not.

    ``ref_noise``: the reference's logits on copies of the crops with one grey level of noise
    (draws, N, classes; :func:`.liveness_data.reference_noise_logits`). Unjudged, they say how far
    the reference itself moves on inputs no one can tell apart (``reference_noise.prob_err``, the
    largest move), which crops it cannot decide under that noise (``fragile_crops``: the move
    reaches the threshold), and how many changed verdicts fall on those (``decision_flips_fragile``).
    ``decision_flips_robust`` (judged for INT8) counts the changed verdicts on the other crops: all
    of them without the noise pass."""
    pr, pa = softmax(ref), softmax(art)
    live_r, live_a = pr[:, real_class], pa[:, real_class]
    same = (live_r >= DEFAULT_THRESHOLD) == (live_a >= DEFAULT_THRESHOLD)
    err = np.abs(live_r - live_a)
    metrics = {
        "crops": int(len(pr)),
        "prob_err": float(err.max()),
        "prob_err_mean": round(float(err.mean()), 4),
        "decision_agree": float(same.mean()),
        "decision_flips": [[round(float(live_r[i]), 4), round(float(live_a[i]), 4)] for i in np.flatnonzero(~same)],
        "decision_flips_robust": int((~same).sum()),
        "class_prob_err": float(np.abs(pr - pa).max()),
        "class_agree": float((pr.argmax(1) == pa.argmax(1)).mean()),
    }
    if ref_noise is not None and ref_noise.shape[1:] == ref.shape:
        moved = np.abs(np.stack([softmax(n)[:, real_class] for n in ref_noise]) - live_r).max(axis=0)
        fragile = moved >= np.abs(live_r - DEFAULT_THRESHOLD)
        metrics["reference_noise"] = {
            "noise": f"-1..+1 grey level per pixel, {len(ref_noise)} draws",
            "prob_err": round(float(moved.max()), 4),
            "prob_err_mean": round(float(moved.mean()), 4),
            "fragile_crops": int(fragile.sum()),
        }
        metrics["decision_flips_fragile"] = int((fragile & ~same).sum())
        metrics["decision_flips_robust"] = int((~fragile & ~same).sum())
    return metrics


def compare(ref: dict[str, np.ndarray], art: dict[str, np.ndarray], vset: VerificationSet, spec: ModelSpec) -> dict[str, Any]:
    if spec.task == "embed":
        return embedding_metrics(ref["embedding"], art["embedding"], vset)
    if spec.task == "detect":
        return detection_metrics(ref, art, vset, spec)
    if spec.task == "liveness":
        return liveness_metrics(ref["logits"], art["logits"], int((spec.liveness or {}).get("real_class", 1)), vset.reference_noise)
    raise ValueError(f"unknown task {spec.task!r}")


def verify_outputs(
    ref: dict[str, np.ndarray], art: dict[str, np.ndarray], vset: VerificationSet, spec: ModelSpec, tolerances: Tolerances
) -> VerificationReport:
    for name, r in ref.items():
        if name not in art:
            return VerificationReport(False, {}, tolerances, [f"artifact has no output {name!r}"])
        if art[name].shape != r.shape:
            return VerificationReport(False, {}, tolerances, [f"output {name} has shape {art[name].shape}, reference {r.shape}"])
        if not np.all(np.isfinite(art[name])):
            return VerificationReport(False, {}, tolerances, [f"output {name} contains NaN or Inf"])
    metrics = compare(ref, art, vset, spec)
    failures = judge(metrics, tolerances)
    settings = dict(DETECTION_SETTINGS) if spec.task == "detect" else {}
    return VerificationReport(not failures, metrics, tolerances, failures, settings)
