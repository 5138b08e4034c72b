"""Numbers used to judge models: embedding agreement, pair accuracy, decision thresholds, detection agreement.

Pure numpy and the one home of the threshold rules (best-accuracy threshold, the FAR rule,
equal error rate), shared by export verification, gfn-eval, the door's threshold calibration
(choosing the similarity threshold; not INT8 calibration) and the benchmark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .retinaface_decode import Detections, iou_matrix


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of a and b."""
    return np.sum(l2_normalize(a.astype(np.float64)) * l2_normalize(b.astype(np.float64)), axis=1)


def _scores_and_labels(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    same = np.asarray(same, dtype=bool).ravel()
    if scores.shape != same.shape:
        raise ValueError(f"{len(scores)} scores but {len(same)} labels")
    return scores, same


def _midpoints(uniq: np.ndarray) -> np.ndarray:
    """Candidate thresholds: below the lowest score, between neighbours, above the highest."""
    return np.concatenate([[uniq[0] - 1e-6], (uniq[:-1] + uniq[1:]) / 2, [uniq[-1] + 1e-6]])


def best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(accuracy, threshold) of the best single threshold on similarity ``scores`` for labels ``same``.

    A pair is called "same" when its score is >= the threshold. Every midpoint between sorted
    distinct scores is a candidate (plus one below and one above all), so the maximum is exact;
    ties go to the lowest threshold. O(n log n) in time and O(n) in memory, so it takes the
    millions of pairs of IJB as well as a door's few hundred.
    """
    scores, same = _scores_and_labels(scores, same)
    if len(scores) == 0:
        return float("nan"), float("nan")
    uniq, inv = np.unique(scores, return_inverse=True)
    pos = np.bincount(inv, weights=same, minlength=len(uniq))
    neg = np.bincount(inv, weights=~same, minlength=len(uniq))
    # candidate j accepts scores >= uniq[j] (j = len(uniq): accepts nothing)
    pos_accepted = np.r_[np.cumsum(pos[::-1])[::-1], 0.0]
    neg_rejected = np.r_[0.0, np.cumsum(neg)]
    correct = pos_accepted + neg_rejected
    j = int(np.argmax(correct))
    return float(correct[j] / len(scores)), float(_midpoints(uniq)[j])


best_threshold_accuracy = best_threshold  # the older name (export verification calls it); one implementation


def accuracy_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(((np.asarray(scores) >= threshold) == np.asarray(same, dtype=bool)).mean()) if len(scores) else float("nan")


def expected_decision_agreement(reference: np.ndarray, other: np.ndarray, threshold: float) -> float:
    """The share of decisions at ``threshold`` that ``other``'s scores are expected to keep from
    ``reference``'s, were its score shifts (other - reference) to fall on the pairs at random: the
    mean, over every pair and every observed shift, of whether the pair's decision stays.

    Why: which decisions a quantised model changes is a draw. Two INT8 realisations of one
    recogniser, equally close to FP32 (w0.5-e16 openvino-int8 with its float ops' weights in FP32
    or in float16: cos_mean 0.99575 and 0.99582), changed 1 and 4 of the 349 pair decisions; this
    estimate gave both 3.1 (3.08 and 3.02). Counting the changes judges the draw, this judges the
    model. O(n log n): each pair's flips are the shifts beyond its own distance to the threshold.
    """
    ref, moved = np.asarray(reference, dtype=np.float64).ravel(), np.asarray(other, dtype=np.float64).ravel()
    if len(ref) == 0 or len(moved) != len(ref):
        raise ValueError(f"need two score lists of one non-zero length, got {len(ref)} and {len(moved)}")
    shifts = np.sort(moved - ref)
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(shifts)) and math.isfinite(threshold)):
        raise ValueError("scores and threshold must be finite")
    distance = threshold - ref  # an accepted pair is refused by a shift below it, a refused one accepted by a shift at or above it
    below = np.searchsorted(shifts, distance, side="left")
    flips = np.where(ref >= threshold, below, len(shifts) - below)
    return float(1.0 - flips.sum() / (len(ref) * len(shifts)))


def decisions_changed(reference: np.ndarray, scores: np.ndarray, same: np.ndarray, threshold: float) -> dict[str, Any]:
    """How many pairs ``scores`` decides otherwise than ``reference`` (another model's scores on the
    same pairs) at ``threshold``, and which way: an exported model judged by the decisions it would
    change, not by an accuracy in which a pair turned right and one turned wrong cancel out (the
    INT8 criterion of issue 12: at most 1 % of the reference's decisions). ``agree``: the share
    kept. ``expected`` / ``expected_agree``: how many it is expected to change and keep, its score
    shifts falling on the pairs at random (:func:`expected_decision_agreement`); None where a
    score is not finite (a NaN refuses its pair in the count, and says nothing of a shift).

    One function for export verification and ``gfn-eval``, so the two cannot count apart."""
    first, moved = np.asarray(reference, np.float64).ravel(), np.asarray(scores, np.float64).ravel()
    same = np.asarray(same, bool).ravel()
    if not (first.shape == moved.shape == same.shape):
        raise ValueError(f"{len(first)} first-model scores, {len(moved)} scores and {len(same)} labels")
    n = len(same)
    before, after = first >= threshold, moved >= threshold
    changed = before != after
    finite = bool(np.all(np.isfinite(first)) and np.all(np.isfinite(moved)) and math.isfinite(threshold))
    expected_agree = expected_decision_agreement(first, moved, threshold) if n and finite else None
    return {
        "threshold": float(threshold),
        "pairs": int(n),
        "changed": int(changed.sum()),
        "share": float(changed.mean()) if n else 0.0,
        "agree": float((~changed).mean()) if n else 1.0,
        "now_wrong": int((changed & (after != same)).sum()),
        "now_right": int((changed & (after == same)).sum()),
        "expected": (0.0 if not n else None if expected_agree is None else float(n * (1.0 - expected_agree))),
        "expected_agree": (1.0 if not n else expected_agree),
    }


def allowed_false_accepts(target_far: float, impostors: int) -> int:
    """How many of ``impostors`` different-person pairs may score at or above a threshold for ``target_far``.

    The one FAR rule: a threshold meets ``target_far`` when at most floor(target_far x n)
    impostor pairs pass it (never the nearest operating point above the target). The 1e-9 keeps
    0.1 x 10 from flooring to 0 through binary rounding.
    """
    if not 0.0 <= target_far <= 1.0:
        raise ValueError(f"FAR must be within 0..1, got {target_far}")
    return math.floor(target_far * impostors + 1e-9)


def threshold_at_far(impostor: np.ndarray, target_far: float) -> float:
    """The lowest threshold at which at most ``target_far`` of the impostor scores are >= it.

    Placed half-way between the highest impostor score that must be rejected and the next one
    up (a margin for scores the calibration set did not show); with tied scores, just above the
    tie, which rejects all of it. ROC reports use the same rule through :func:`allowed_false_accepts`
    and take the observed operating point instead.
    """
    imp = np.sort(np.asarray(impostor, np.float64).ravel())[::-1]  # highest first
    if len(imp) == 0:
        raise ValueError("no impostor pairs: cannot estimate a false-accept rate")
    allowed = allowed_false_accepts(target_far, len(imp))
    if allowed >= len(imp):
        return float(imp[-1])
    reject = imp[allowed]  # the highest impostor score that must be rejected
    above = imp[allowed - 1] if allowed > 0 else reject + 2e-3
    if above == reject:  # ties: every tied score is rejected together
        return float(np.nextafter(reject, np.inf))
    return float((reject + above) / 2)


def far_frr(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[float, float]:
    """(false-accept rate, false-reject rate) when a score >= threshold means "same person"."""
    far = float(np.mean(np.asarray(impostor) >= threshold)) if len(impostor) else math.nan
    frr = float(np.mean(np.asarray(genuine) < threshold)) if len(genuine) else math.nan
    return far, frr


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """(threshold, rate) where FAR and FRR are closest (the rate is their mean there).

    Candidates are the midpoints of :func:`best_threshold`; first (lowest) wins a tie. Counts come
    from sorted arrays, so large impostor sets cost O(n log n), not an n x n matrix.
    """
    g = np.sort(np.asarray(genuine, np.float64).ravel())
    imp = np.sort(np.asarray(impostor, np.float64).ravel())
    if len(g) == 0 or len(imp) == 0:
        raise ValueError(f"an equal error rate needs genuine and impostor scores (got {len(g)} and {len(imp)})")
    cand = _midpoints(np.unique(np.concatenate([g, imp])))
    far = (len(imp) - np.searchsorted(imp, cand, side="left")) / len(imp)
    frr = np.searchsorted(g, cand, side="left") / len(g)
    i = int(np.argmin(np.abs(far - frr)))
    return float(cand[i]), float((far[i] + frr[i]) / 2)


@dataclass
class MatchResult:
    ref_index: np.ndarray  # matched pairs: index into reference detections
    art_index: np.ndarray  # ... and into the other model's detections


def match_detections(ref: Detections, other: Detections, iou_threshold: float = 0.5) -> MatchResult:
    """Greedy one-to-one matching, best reference score first, each to its highest-IoU partner."""
    if len(ref) == 0 or len(other) == 0:
        return MatchResult(np.zeros(0, np.int64), np.zeros(0, np.int64))
    iou = iou_matrix(ref.boxes, other.boxes)
    taken = np.zeros(len(other), dtype=bool)
    ri, ai = [], []
    for i in np.argsort(-ref.scores, kind="stable"):
        cand = np.where(~taken, iou[i], -1.0)
        j = int(np.argmax(cand))
        if cand[j] >= iou_threshold:
            taken[j] = True
            ri.append(i)
            ai.append(j)
    return MatchResult(np.asarray(ri, np.int64), np.asarray(ai, np.int64))


# a face this big on the model input (geometric mean of the box's sides) is found by the coarse
# pyramid levels (RetinaFace's anchors of 128-512 px) and judged apart: see DetectionAgreement.add
LARGE_FACE_PX = 96.0


@dataclass
class DetectionAgreement:
    """Counts and errors accumulated over many pictures."""

    ref_confident: int = 0
    ref_found: int = 0
    other_confident: int = 0
    other_supported: int = 0
    box_err: float = 0.0
    landmark_err: float = 0.0
    score_err: float = 0.0
    nme_sum: float = 0.0
    nme_max: float = 0.0
    matched: int = 0
    nme_large_sum: float = 0.0
    matched_large: int = 0

    def add(self, ref: Detections, other: Detections, threshold: float, margin: float, iou_threshold: float = 0.5, input_scale: float = 1.0) -> None:
        """Both sets decoded down to ``threshold - margin``; only those above ``threshold`` must be found.

        A face the reference scores 0.51 and the other model 0.49 is not a miss: agreement is
        asked of confident detections, against the other model's candidates within ``margin``.
        ``input_scale`` maps the picture's pixels to the model input's, where a face of
        :data:`LARGE_FACE_PX` or more counts among the large faces (the coarse pyramid levels').
        """
        ref_conf = ref.scores >= threshold
        other_conf = other.scores >= threshold
        self.ref_confident += int(ref_conf.sum())
        self.other_confident += int(other_conf.sum())
        m = match_detections(ref, other, iou_threshold)
        self.ref_found += int(ref_conf[m.ref_index].sum())
        self.other_supported += int(other_conf[m.art_index].sum())
        both = ref_conf[m.ref_index] | other_conf[m.art_index]
        ri, ai = m.ref_index[both], m.art_index[both]
        if len(ri) == 0:
            return
        self.matched += len(ri)
        self.box_err = max(self.box_err, float(np.abs(ref.boxes[ri] - other.boxes[ai]).max()))
        dist = np.linalg.norm(ref.landmarks[ri] - other.landmarks[ai], axis=-1)  # (k, 5)
        self.landmark_err = max(self.landmark_err, float(dist.max()))
        self.score_err = max(self.score_err, float(np.abs(ref.scores[ri] - other.scores[ai]).max()))
        wh = ref.boxes[ri, 2:] - ref.boxes[ri, :2]
        nme = dist.mean(axis=1) / np.sqrt(np.maximum(wh[:, 0] * wh[:, 1], 1e-6))
        self.nme_sum += float(nme.sum())
        self.nme_max = max(self.nme_max, float(nme.max()))
        large = np.sqrt(np.maximum(wh[:, 0] * wh[:, 1], 0.0)) * input_scale >= LARGE_FACE_PX
        self.nme_large_sum += float(nme[large].sum())
        self.matched_large += int(large.sum())

    def metrics(self) -> dict[str, float]:
        return {
            "recall": self.ref_found / self.ref_confident if self.ref_confident else 1.0,
            "precision": self.other_supported / self.other_confident if self.other_confident else 1.0,
            "faces_reference": self.ref_confident,
            "faces_artifact": self.other_confident,
            "box_err_px": self.box_err,
            "landmark_err_px": self.landmark_err,
            "landmark_nme": self.nme_sum / self.matched if self.matched else 0.0,
            "landmark_nme_max": self.nme_max,
            "faces_large": self.matched_large,
            "landmark_nme_large": self.nme_large_sum / self.matched_large if self.matched_large else None,
            "score_err_max": self.score_err,
        }
