"""IJB-B / IJB-C 1:1 template verification, as the insightface and GhostFaceNets evaluations run it.

Layout of a release folder (``IJBB/`` or ``IJBC/``; prefix ``ijbb``/``ijbc``)::

    meta/ijbb_face_tid_mid.txt         crop name, template id, media id        ("1.jpg 1 69544")
    meta/ijbb_template_pair_label.txt  template 1, template 2, same (1/0)      ("1 11065 1")
    meta/ijbb_name_5pts_score.txt      crop name, 5 (x, y) points, face score ("1.jpg 46.1 62.0 ... 0.999")
    loose_crop/1.jpg ...

Each crop is aligned with :func:`gfn_edge.align.align` from its five points. A crop's feature
is its embedding (plus the mirrored crop's, with flip) times its face-detection score; a
template's feature is the sum over its medias of the mean feature within each media, then
L2-normalised; a pair's score is the cosine of its two templates.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gfn_edge.align import align
from gfn_edge.image import read_image
from gfn_edge.metrics import l2_normalize

log = logging.getLogger(__name__)

IJB_FARS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


@dataclass
class IjbMeta:
    subset: str  # "IJBB" or "IJBC"
    root: Path
    names: list[str]  # crop file names, in face_tid_mid order
    templates: np.ndarray  # (N,) int64, per crop
    medias: np.ndarray  # (N,) int64, per crop
    landmarks: np.ndarray  # (N, 5, 2) float32, in loose-crop pixels
    face_scores: np.ndarray  # (N,) float32
    p1: np.ndarray  # (P,) template ids
    p2: np.ndarray
    label: np.ndarray  # (P,) bool


def _meta_files(root: Path, subset: str | None) -> tuple[str, dict[str, Path]]:
    meta = root / "meta"
    if not meta.is_dir():
        raise FileNotFoundError(f"{root}: no meta/ folder (expected an IJB-B or IJB-C release folder such as IJB_release/IJBB)")
    prefixes = [subset.lower()] if subset else ["ijbb", "ijbc"]
    for prefix in prefixes:
        files = {
            "faces": meta / f"{prefix}_face_tid_mid.txt",
            "pairs": meta / f"{prefix}_template_pair_label.txt",
            "points": meta / f"{prefix}_name_5pts_score.txt",
        }
        if all(p.is_file() for p in files.values()):
            return prefix.upper(), files
    wanted = ", ".join(f"{p}_face_tid_mid.txt/{p}_template_pair_label.txt/{p}_name_5pts_score.txt" for p in prefixes)
    raise FileNotFoundError(f"{meta}: missing meta files ({wanted})")


def _int_columns(path: Path, columns: int) -> np.ndarray:
    data = np.loadtxt(path, dtype=np.int64, usecols=range(columns), ndmin=2)
    if data.shape[1] != columns:
        raise ValueError(f"{path}: expected {columns} integer columns")
    return data


def read_ijb(root: str | os.PathLike[str], subset: str | None = None) -> IjbMeta:
    """Parse the three meta files; crops are matched to landmarks by name, not by line order."""
    root = Path(root)
    subset, files = _meta_files(root, subset)
    names, tids, mids = [], [], []
    with open(files["faces"]) as fh:
        for n, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 3:
                raise ValueError(f"{files['faces']}:{n}: expected 'name template media', got {line.strip()!r}")
            names.append(parts[0])
            tids.append(int(parts[1]))
            mids.append(int(parts[2]))
    points: dict[str, tuple[np.ndarray, float]] = {}
    with open(files["points"]) as fh:
        for n, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 12:
                raise ValueError(f"{files['points']}:{n}: expected a name, 10 coordinates and a score, got {len(parts)} fields")
            values = np.asarray(parts[1:], dtype=np.float32)
            points[parts[0]] = (values[:10].reshape(5, 2), float(values[10]))
    absent = [nm for nm in names if nm not in points]
    if absent:
        raise ValueError(f"{files['points']}: no landmarks for {len(absent)} crops, e.g. {absent[:3]}")
    pairs = _int_columns(files["pairs"], 3)
    labels = pairs[:, 2]
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{files['pairs']}: labels must be 0 or 1")
    return IjbMeta(
        subset=subset,
        root=root,
        names=names,
        templates=np.asarray(tids, np.int64),
        medias=np.asarray(mids, np.int64),
        landmarks=np.stack([points[nm][0] for nm in names]).astype(np.float32) if names else np.zeros((0, 5, 2), np.float32),
        face_scores=np.asarray([points[nm][1] for nm in names], np.float32),
        p1=pairs[:, 0],
        p2=pairs[:, 1],
        label=labels.astype(bool),
    )


@dataclass
class IjbCrops:
    """Loose crops read and aligned on demand (the dataset is far too large to hold as pixels).

    Decoding and warping run on a few threads (OpenCV releases the GIL), so reading keeps up
    with the models.
    """

    meta: IjbMeta
    folder: str = "loose_crop"
    workers: int = min(4, os.cpu_count() or 1)
    failed: set[int] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.meta.names)

    def _one(self, i: int) -> np.ndarray | None:
        path = self.meta.root / self.folder / self.meta.names[i]
        try:
            return align(read_image(path), self.meta.landmarks[i])
        except (OSError, ValueError) as exc:
            if i not in self.failed:
                log.warning("IJB crop %s unusable (%s); it is left out of its template", path.name, exc)
            return None

    def load(self, start: int, stop: int) -> np.ndarray:
        out = np.zeros((stop - start, 112, 112, 3), np.uint8)
        with ThreadPoolExecutor(self.workers) as pool:
            for i, crop in zip(range(start, stop), pool.map(self._one, range(start, stop))):
                if crop is None:
                    self.failed.add(i)
                else:
                    out[i - start] = crop
        return out


def template_features(
    feats: np.ndarray, templates: np.ndarray, medias: np.ndarray, weights: np.ndarray | None = None, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(sorted template ids, L2-normalised template features).

    Per template: mean of the (weighted) crop features within each media, summed over medias.
    Medias are grouped within a template only (the same media id may appear in several).
    """
    feats = np.asarray(feats, dtype=np.float64)
    if weights is not None:
        feats = feats * np.asarray(weights, dtype=np.float64)[:, None]
    if valid is not None:
        feats, templates, medias = feats[valid], templates[valid], medias[valid]
    keys, inverse = np.unique(np.stack([templates, medias], axis=1), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    media_mean = _group_sum(feats, inverse) / np.bincount(inverse)[:, None]
    tids, t_inverse = np.unique(keys[:, 0], return_inverse=True)
    return tids, l2_normalize(_group_sum(media_mean, t_inverse.ravel()))


def _group_sum(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Row sums per group id 0..G-1 (every id present), by one sort and ``reduceat``."""
    order = np.argsort(groups, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(groups[order])) + 1]
    return np.add.reduceat(values[order], starts, axis=0)


def template_pair_scores(tids: np.ndarray, tfeats: np.ndarray, p1: np.ndarray, p2: np.ndarray, block_bytes: int = 256 << 20) -> np.ndarray:
    """Cosine scores of template pairs; a pair naming a template with no usable crop is an error.

    IJB lists millions of pairs over a few thousand distinct first templates, so scores come
    from blocks of ``first templates x all templates`` products rather than row gathers.
    """
    i1 = np.searchsorted(tids, p1)
    i2 = np.searchsorted(tids, p2)
    for ids, idx in ((p1, i1), (p2, i2)):
        bad = (idx >= len(tids)) | (tids[np.minimum(idx, len(tids) - 1)] != ids)
        if bad.any():
            raise ValueError(f"{int(bad.sum())} pairs name templates without any usable crop, e.g. template {int(ids[bad][0])}")
    out = np.empty(len(p1))
    order = np.argsort(i1, kind="stable")
    first, starts = np.unique(i1[order], return_index=True)
    starts = np.r_[starts, len(order)]
    rows_per_block = max(1, block_bytes // (8 * max(len(tids), 1)))
    for c in range(0, len(first), rows_per_block):
        rows = first[c : c + rows_per_block]
        sel = order[starts[c] : starts[min(c + rows_per_block, len(first))]]
        block = tfeats[rows] @ tfeats.T
        out[sel] = block[np.searchsorted(rows, i1[sel]), i2[sel]]
    return out


def ijb_scores(meta: IjbMeta, embeddings: np.ndarray, detector_score: bool = True, failed: set[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores of the usable pairs, mask of usable pairs) for one model's crop embeddings.

    Embeddings are flip-summed already when flip is on. A pair whose template lost every crop
    (unreadable files) cannot be scored: it is left out, and the mask says which.
    """
    valid = None
    if failed:
        valid = np.ones(len(meta.names), bool)
        valid[list(failed)] = False
    weights = meta.face_scores if detector_score else None
    tids, tfeats = template_features(embeddings, meta.templates, meta.medias, weights, valid)
    usable = np.isin(meta.p1, tids) & np.isin(meta.p2, tids)
    if not usable.all():
        log.warning("%s: %d pairs name templates without any readable crop; they are left out", meta.subset, int((~usable).sum()))
    return template_pair_scores(tids, tfeats, meta.p1[usable], meta.p2[usable]), usable


def describe(meta: IjbMeta) -> dict[str, Any]:
    return {
        "subset": meta.subset,
        "root": str(meta.root),
        "crops": len(meta.names),
        "templates": int(len(np.unique(meta.templates))),
        "pairs": int(len(meta.label)),
        "same": int(meta.label.sum()),
        "different": int((~meta.label).sum()),
    }
