"""Face-verification protocol maths (1:1 "same person?" scoring, not artifact verification): ROC, AUC, TAR@FAR, k-fold accuracy.

Everything is exact (no threshold grids) and pure numpy, so every number can be checked by hand;
tests/test_eval_metrics.py does. The threshold rules themselves (best accuracy, the FAR rule)
live in :mod:`gfn_edge.metrics`, shared with the door and the benchmark. Scores are
similarities: a pair is called "same person" when its score is >= the threshold. Rates are fractions in 0..1 here; tables print percentages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gfn_edge.metrics import (
    accuracy_at,
    allowed_false_accepts,
    best_threshold,
    cosine_rows,
)

__all__ = [
    "DEFAULT_FARS",
    "MIN_NEGATIVES_FACTOR",
    "KFoldAccuracy",
    "Roc",
    "TarAtFar",
    "auc",
    "best_threshold",
    "compact_roc",
    "fold_indices",
    "kfold_accuracy",
    "pair_scores",
    "roc_curve",
    "summarize",
    "tar_at_far",
]

DEFAULT_FARS: tuple[float, ...] = (1e-3, 1e-4)
# A FAR is only reported when at least this many times 1/FAR negative pairs exist: with fewer,
# the threshold rests on a handful of impostor scores and the TAR is noise.
MIN_NEGATIVES_FACTOR = 10.0


@dataclass(frozen=True)
class Roc:
    """Exact ROC: one point per distinct score, accepting pairs with score >= ``thresholds[i]``."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray  # descending; thresholds[0] = +inf accepts nothing
    false_positives: np.ndarray  # counts behind fpr (exact, for FAR limits)
    positives: int
    negatives: int


def _check(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    same = np.asarray(same, dtype=bool).ravel()
    if scores.shape != same.shape:
        raise ValueError(f"{len(scores)} scores but {len(same)} labels")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or Inf (a model produced non-finite embeddings)")
    if same.all() or not same.any():
        raise ValueError(f"verification needs both same and different pairs; got {int(same.sum())} same of {len(same)}")
    return scores, same


def pair_scores(emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows (embeddings need not be normalised)."""
    return cosine_rows(emb_a, emb_b)


def roc_curve(scores: np.ndarray, same: np.ndarray) -> Roc:
    scores, same = _check(scores, same)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # ties form one ROC point
    tp = np.cumsum(y)[last_of_run]
    fp = (last_of_run + 1) - tp
    pos, neg = int(same.sum()), int((~same).sum())
    tp = np.r_[0, tp]
    fp = np.r_[0, fp]
    return Roc(fp / neg, tp / pos, np.r_[np.inf, s[last_of_run]], fp, pos, neg)


def auc(roc: Roc) -> float:
    """Trapezoidal area under the exact ROC (= P(same scores above different), ties counted half)."""
    return float(np.sum(np.diff(roc.fpr) * (roc.tpr[1:] + roc.tpr[:-1]) / 2))


@dataclass
class TarAtFar:
    far: float
    tar: float | None  # None: not reported, see ``reason``
    threshold: float | None = None  # accept pairs with score >= threshold
    far_achieved: float | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def tar_at_far(roc: Roc, far: float, min_negatives_factor: float = MIN_NEGATIVES_FACTOR, always: bool = False) -> TarAtFar:
    """Highest TAR whose false-accept rate does not exceed ``far`` (never the nearest point above it).

    Needs at least ``min_negatives_factor / far`` negative pairs; with fewer, ``tar`` is None and
    ``reason`` says how many are needed, unless ``always``: then the TAR is given and ``reason``
    warns how few impostor scores it rests on.
    """
    allowed = allowed_false_accepts(far, roc.negatives)  # the one FAR rule, shared with the door's threshold
    ok = np.flatnonzero(roc.false_positives <= allowed)
    i = int(ok[-1])  # fpr is non-decreasing, so the last allowed point has the highest TAR
    threshold = float(roc.thresholds[i]) if np.isfinite(roc.thresholds[i]) else None
    result = TarAtFar(far, float(roc.tpr[i]), threshold, float(roc.fpr[i]))
    needed = math.ceil(min_negatives_factor / far) if far > 0 else math.inf
    if min_negatives_factor > 0 and roc.negatives < needed:
        need = "infinitely many" if math.isinf(needed) else f"at least {needed:,}"
        if not always:
            return TarAtFar(
                far, None, reason=f"FAR={far:.0e} needs {need} different-person pairs ({min_negatives_factor:g}/FAR); this set has {roc.negatives:,}"
            )
        result.reason = (
            f"FAR={far:.0e} on only {roc.negatives:,} different-person pairs: the threshold lets {allowed} impostor pair(s) through; "
            f"{need} pairs ({min_negatives_factor:g}/FAR) make it a reliable number"
        )
    return result


def fold_indices(n: int, folds: int = 10, assignment: str = "contiguous") -> list[np.ndarray]:
    """Test indices of each fold.

    ``contiguous`` splits in order like the insightface protocol (the LFW/CFP/AgeDB .bin files
    are laid out fold by fold); ``interleaved`` deals pair i to fold i % k, which balances folds
    of lists sorted by label (CSV pair lists often are).
    """
    if folds < 2 or n < folds:
        raise ValueError(f"{folds}-fold accuracy needs at least {max(folds, 2)} pairs, got {n}")
    idx = np.arange(n)
    if assignment == "contiguous":
        return [np.asarray(a) for a in np.array_split(idx, folds)]
    if assignment == "interleaved":
        return [idx[k::folds] for k in range(folds)]
    raise ValueError(f"fold assignment must be 'contiguous' or 'interleaved', got {assignment!r}")


@dataclass
class KFoldAccuracy:
    mean: float
    std: float  # population std over folds (np.std), as insightface reports it
    folds: list[float] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)


def kfold_accuracy(scores: np.ndarray, same: np.ndarray, folds: int = 10, assignment: str = "contiguous") -> KFoldAccuracy:
    """Accuracy on each fold at the best threshold of the other folds; mean and std over folds."""
    scores, same = _check(scores, same)
    accs, thrs = [], []
    for test in fold_indices(len(scores), folds, assignment):
        train = np.ones(len(scores), dtype=bool)
        train[test] = False
        _, thr = best_threshold(scores[train], same[train])
        accs.append(accuracy_at(scores[test], same[test], thr))
        thrs.append(thr)
    return KFoldAccuracy(float(np.mean(accs)), float(np.std(accs)), accs, thrs)


def compact_roc(roc: Roc, points: int = 400) -> dict[str, list[float]]:
    """At most ~``points`` ROC points (log- and linear-spaced FARs, highest TAR at each), for JSON."""
    targets = np.unique(np.r_[np.logspace(-7, 0, points // 2), np.linspace(0, 1, points // 2)])
    idx = np.unique(np.clip(np.searchsorted(roc.fpr, targets, side="right") - 1, 0, len(roc.fpr) - 1))
    idx = np.unique(np.r_[0, idx, len(roc.fpr) - 1])
    return {"fpr": [float(v) for v in roc.fpr[idx]], "tpr": [float(v) for v in roc.tpr[idx]]}


def summarize(
    scores: np.ndarray,
    same: np.ndarray,
    fars: Sequence[float] = DEFAULT_FARS,
    folds: int | None = 10,
    assignment: str = "contiguous",
    min_negatives_factor: float = MIN_NEGATIVES_FACTOR,
    always_report: Sequence[float] = (1e-3,),
) -> tuple[dict[str, Any], Roc]:
    """Every verification number of one model on one pair set, as a JSON-able dict (plus the ROC).

    FARs in ``always_report`` are reported (with a warning) even on too few negative pairs: the
    LFW-style sets have ~3,000, and their TAR@FAR=1e-3 is the customary headline number.
    """
    scores, same = _check(scores, same)
    roc = roc_curve(scores, same)
    best_acc, best_thr = best_threshold(scores, same)
    out: dict[str, Any] = {
        "pairs": len(same),
        "same": roc.positives,
        "different": roc.negatives,
        "auc": auc(roc),
        "best_accuracy": best_acc,  # optimistic: threshold tuned on the whole set
        "best_threshold": best_thr,
    }
    if folds:
        k = kfold_accuracy(scores, same, folds, assignment)
        out.update(
            {
                "accuracy": k.mean,
                "accuracy_std": k.std,
                "threshold": float(np.mean(k.thresholds)),
                "folds": {"k": folds, "assignment": assignment, "accuracy": k.folds, "threshold": k.thresholds},
            }
        )
    out["tar_at_far"] = {f"{far:.0e}": tar_at_far(roc, far, min_negatives_factor, any(math.isclose(far, a) for a in always_report)).to_dict() for far in fars}
    out["roc"] = compact_roc(roc)
    return out, roc
