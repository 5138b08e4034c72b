"""Numbers used to judge models: embedding agreement, pair accuracy, detection agreement.

Pure numpy, shared by export verification, evaluation and the apps' threshold calibration.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .retinaface_decode import Detections, iou_matrix


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of a and b."""
    return np.sum(l2_normalize(a.astype(np.float64)) * l2_normalize(b.astype(np.float64)), axis=1)


def best_threshold_accuracy(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(accuracy, threshold) of the best single threshold on similarity ``scores`` for labels ``same``.

    Every midpoint between sorted distinct scores is tried, so the maximum is exact.
    """
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if len(scores) == 0:
        return float("nan"), float("nan")
    uniq = np.unique(scores)
    candidates = np.concatenate([[uniq[0] - 1e-6], (uniq[:-1] + uniq[1:]) / 2, [uniq[-1] + 1e-6]])
    pred = scores[None, :] >= candidates[:, None]
    acc = (pred == same[None, :]).mean(axis=1)
    best = int(np.argmax(acc))
    return float(acc[best]), float(candidates[best])


def accuracy_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(((np.asarray(scores) >= threshold) == np.asarray(same, dtype=bool)).mean()) if len(scores) else float("nan")


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

    def add(self, ref: Detections, other: Detections, threshold: float, margin: float, iou_threshold: float = 0.5) -> None:
        """Both sets decoded down to ``threshold - margin``; only those above ``threshold`` must be found.

        A face the reference scores 0.51 and the other model 0.49 is not a miss: agreement is
        asked of confident detections, against the other model's candidates within ``margin``.
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
            "score_err_max": self.score_err,
        }
