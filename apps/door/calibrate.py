"""Threshold calibration (choosing the door's similarity threshold; not INT8 calibration): FAR/FRR and a suggestion.

Input: a pairs CSV (``image_a,image_b,same`` with a header; paths relative to the CSV) or a
folder with one sub-folder per person (every same-person pair is genuine, every cross-person
pair an impostor). Faces are found, aligned and embedded as the door does it, and faces failing
the door's quality gates are left out, because the door never decides on them either.

The rule. A door's costly error is letting a stranger in, so the suggested threshold is the
one for a target false-accept rate (default 1%): the lowest threshold at which at most
``target_far`` of the impostor pairs score at or above it (placed half-way between the
impostor score that must be rejected and the next one down). The equal-error-rate threshold
(FAR = FRR) and the best-accuracy threshold are reported for comparison. All three rules, and the
pairs CSV reader, are gfn_edge's own (:mod:`gfn_edge.metrics`, :mod:`gfn_edge.pairs`), shared with
gfn-eval and the benchmark. Estimates need data: with n impostor pairs, a FAR below 1/n cannot be
measured (the "rule of three": zero false accepts in n only says FAR < 3/n with 95% confidence),
and the output says so. FAR is per comparison: with N people enrolled a stranger is compared
with all N, so the chance they match someone is up to N times higher.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from gfn_edge import IMAGE_SUFFIXES, FaceAnalyzer, GfnEdgeError, PairsFileError, read_image, read_pairs
from gfn_edge.metrics import accuracy_at, best_threshold, far_frr, threshold_at_far
from gfn_edge.metrics import equal_error_rate as equal_error

log = logging.getLogger(__name__)

MAX_IMPOSTOR_PAIRS = 200_000


class CalibrationInputError(Exception):
    """Labelled data that cannot be used."""


@dataclass
class Scores:
    genuine: np.ndarray
    impostor: np.ndarray
    excluded: dict = field(default_factory=dict)  # image -> why it was left out


@dataclass
class Calibration:
    genuine_pairs: int
    impostor_pairs: int
    target_far: float
    threshold: float  # the suggestion: threshold for target_far
    far: float  # measured at ``threshold``
    frr: float
    eer_threshold: float
    eer: float
    accuracy_threshold: float
    accuracy: float
    rule: str
    warnings: list = field(default_factory=list)
    table: list = field(default_factory=list)  # [threshold, far, frr] rows around the suggestion

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Embeddings:
    """Largest-face embedding per image, computed once; images without a usable face are recorded."""

    def __init__(self, analyzer: FaceAnalyzer, include_low_quality: bool = False, say: Callable[[str], None] = lambda s: None):
        self.analyzer = analyzer
        self.include_low_quality = include_low_quality
        self.say = say
        self.cache: dict[Path, Optional[np.ndarray]] = {}
        self.excluded: dict[str, str] = {}

    def __call__(self, path: Path) -> Optional[np.ndarray]:
        if path in self.cache:
            return self.cache[path]
        vec = None
        try:
            faces = self.analyzer.analyze(read_image(path))
            face = max(faces, key=lambda f: f.area) if faces else None
            if face is None:
                self.excluded[str(path)] = "no face found"
            elif not face.passed and not self.include_low_quality:
                self.excluded[str(path)] = "quality gates failed: " + ", ".join(face.rejected_reasons)
            else:
                vec = face.embedding
        except GfnEdgeError as exc:
            self.excluded[str(path)] = str(exc)
        self.cache[path] = vec
        if len(self.cache) % 25 == 0:
            self.say(f"embedded {len(self.cache)} images")
        return vec


def scores_from_pairs(embed: Embeddings, csv_path: Path, root: Path | None = None) -> Scores:
    root = root or csv_path.parent
    try:
        rows = read_pairs(csv_path)
    except PairsFileError as exc:
        raise CalibrationInputError(str(exc)) from None
    genuine, impostor = [], []
    for row in rows:
        a, b = embed(root / row.image_a), embed(root / row.image_b)
        if a is None or b is None:
            continue
        (genuine if row.same else impostor).append(float(np.dot(a, b)))
    return Scores(np.asarray(genuine), np.asarray(impostor), dict(embed.excluded))


def scores_from_folders(embed: Embeddings, root: Path, seed: int = 0) -> Scores:
    people = {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) for d in sorted(root.iterdir()) if d.is_dir()}
    people = {k: v for k, v in people.items() if v}
    if len(people) < 2:
        raise CalibrationInputError(f"{root}: needs at least two sub-folders (one per person) with pictures")
    vecs: dict[str, np.ndarray] = {}
    for name, files in people.items():
        got = [v for v in (embed(p) for p in files) if v is not None]
        if got:
            vecs[name] = np.stack(got)
    genuine = [float(a @ b) for v in vecs.values() for a, b in itertools.combinations(v, 2)]
    names = list(vecs)
    impostor_blocks = [(vecs[a] @ vecs[b].T).ravel() for a, b in itertools.combinations(names, 2)]
    impostor = np.concatenate(impostor_blocks) if impostor_blocks else np.zeros(0)
    if len(impostor) > MAX_IMPOSTOR_PAIRS:  # a fixed random subset keeps memory and time bounded
        impostor = np.random.default_rng(seed).choice(impostor, MAX_IMPOSTOR_PAIRS, replace=False)
    return Scores(np.asarray(genuine), np.asarray(impostor, dtype=np.float64), dict(embed.excluded))


def calibrate(scores: Scores, target_far: float = 0.01) -> Calibration:
    g, imp = np.asarray(scores.genuine, np.float64), np.asarray(scores.impostor, np.float64)
    if len(g) == 0 or len(imp) == 0:
        raise CalibrationInputError(f"need both same-person and different-person pairs with usable faces (got {len(g)} and {len(imp)})")
    if not 0 < target_far < 1:
        raise CalibrationInputError(f"target FAR must be between 0 and 1, got {target_far}")
    t = threshold_at_far(imp, target_far)
    far, frr = far_frr(g, imp, t)
    eer_t, eer = equal_error(g, imp)
    all_scores = np.concatenate([g, imp])
    labels = np.concatenate([np.ones(len(g), bool), np.zeros(len(imp), bool)])
    acc, acc_t = best_threshold(all_scores, labels)
    warnings = []
    if target_far * len(imp) < 3:
        warnings.append(
            f"only {len(imp)} impostor pairs: a FAR of {target_far:g} cannot be measured reliably (zero false accepts in "
            f"{len(imp)} only bounds FAR below {min(1.0, 3 / len(imp)):.3g}); add different-person photos"
        )
    if len(g) < 30:
        warnings.append(f"only {len(g)} genuine pairs: the FRR estimate is rough")
    if frr > 0.5:
        warnings.append(f"at this threshold {frr:.0%} of genuine pairs are rejected: the recogniser separates these photos poorly")
    rule = (
        f"lowest threshold with at most {target_far:g} of the {len(imp)} impostor pairs at or above it "
        f"(FAR target {target_far:g}); EER and best-accuracy thresholds for comparison"
    )
    table = []
    for dt in (-0.1, -0.05, -0.02, 0.0, 0.02, 0.05, 0.1):
        fa, fr = far_frr(g, imp, t + dt)
        table.append([round(t + dt, 4), round(fa, 4), round(fr, 4)])
    return Calibration(
        genuine_pairs=int(len(g)),
        impostor_pairs=int(len(imp)),
        target_far=float(target_far),
        threshold=round(t, 6),
        far=far,
        frr=frr,
        eer_threshold=round(eer_t, 6),
        eer=eer,
        accuracy_threshold=round(acc_t, 6),
        accuracy=float(accuracy_at(all_scores, labels, acc_t)),
        rule=rule,
        warnings=warnings,
        table=table,
    )


def format_report(c: Calibration, excluded: dict, enrolled: int | None = None) -> str:
    lines = [
        f"pairs: {c.genuine_pairs} same-person, {c.impostor_pairs} different-person ({len(excluded)} images left out)",
        f"suggested threshold: {c.threshold:.4f}  (FAR {c.far:.4f}, FRR {c.frr:.4f})",
        f"  rule: {c.rule}",
        f"equal error rate: {c.eer:.4f} at threshold {c.eer_threshold:.4f}",
        f"best accuracy: {c.accuracy:.4f} at threshold {c.accuracy_threshold:.4f}",
        "  threshold     FAR     FRR",
    ]
    lines += [f"  {t:9.4f}  {fa:6.4f}  {fr:6.4f}" for t, fa, fr in c.table]
    if enrolled:
        per = c.far if c.far > 0 else 3 / c.impostor_pairs  # none accepted: the rule-of-three bound
        bound = " (rule-of-three bound: no impostor pair was accepted)" if c.far == 0 else ""
        lines.append(f"with {enrolled} people enrolled, a stranger may match someone with probability up to ~{min(1.0, enrolled * per):.3g}{bound}")
    lines += [f"warning: {w}" for w in c.warnings]
    for path, why in list(excluded.items())[:10]:
        lines.append(f"left out {path}: {why}")
    if len(excluded) > 10:
        lines.append(f"... and {len(excluded) - 10} more left out")
    return "\n".join(lines)
