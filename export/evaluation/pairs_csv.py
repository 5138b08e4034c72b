"""Verification pairs of raw photos listed in a CSV (``image_a,image_b,same[,source]``).

Photos are not aligned, so faces are found and aligned first, once, and every model is then
given the same crops: only the recogniser differs between rows of the table. The detector is
the reference RetinaFace (PyTorch, the default) or a detection bundle the user names; either way
it is recorded in the results. Each photo contributes its largest face. The CSV is read by
:func:`gfn_edge.pairs.read_pairs`, the reader (and ``same`` rule) every tool shares.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gfn_edge.pairs import PairRow, read_pairs

__all__ = ["CsvPairs", "PairRow", "load_csv_pairs", "read_pairs"]

log = logging.getLogger(__name__)


@dataclass
class CsvPairs:
    """Aligned crops of the photos that have a face, and the pairs over them."""

    name: str
    crops: np.ndarray  # (M, 112, 112, 3) BGR uint8
    a: np.ndarray
    b: np.ndarray
    same: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # each pair's row in the CSV

    def __len__(self) -> int:
        return len(self.crops)

    def load(self, start: int, stop: int) -> np.ndarray:
        return self.crops[start:stop]


def load_csv_pairs(
    path: str | os.PathLike[str],
    detector: str = "reference",
    mirror: str | os.PathLike[str] | None = None,
    min_size: float = 32.0,
) -> CsvPairs:
    """Find and align the faces of every photo named in ``path`` (relative to the CSV's folder).

    ``detector``: "reference" (RetinaFace-mnet0.25 in PyTorch, score >= 0.9, photos downscaled
    to 1024 px) or the path of a detection bundle. Crops are cached (see
    :mod:`gfn_edge.export.faces`), so a second run costs nothing.
    """
    from gfn_edge.export.faces import (
        ReferenceFaceFinder,
        find_faces,
        largest_face_index,
    )

    path = Path(path)
    root = path.parent
    rows = read_pairs(path)
    # photos may live outside the CSV's folder: key them relative to the folder holding them all
    full = {n: Path(os.path.abspath(root / n)) for r in rows for n in (r.image_a, r.image_b)}
    base = Path(os.path.commonpath([str(p.parent) for p in full.values()]))
    key = {n: str(p.relative_to(base)) for n, p in full.items()}
    names = sorted(set(key.values()))
    present = [n for n in names if (base / n).is_file()]
    missing = set(names) - set(present)
    if detector == "reference":
        finder = ReferenceFaceFinder(mirror=mirror)
        detector_desc = f"reference {finder.signature.split(':')[0]} (PyTorch), score >= {finder.score_threshold}, photos <= {finder.max_side} px"
    else:
        from .runners import bundle_face_finder

        finder = bundle_face_finder(detector)
        detector_desc = f"bundle {finder.detector.name} ({finder.detector.runs_on}, {finder.detector.input_label}), score >= {finder.score_threshold}"
    crops, faces, skipped = find_faces([base / n for n in present], base, min_size=min_size, finder=finder, mirror=mirror)
    largest = largest_face_index(faces)
    reasons = dict.fromkeys(missing, "missing file")
    reasons.update({n: why for n, why in skipped})
    used: dict[int, int] = {}  # face index -> crop row in the compact array
    a, b, same, dropped, kept_rows = [], [], [], [], []
    for i, r in enumerate(rows):
        ka, kb = key[r.image_a], key[r.image_b]
        if ka in largest and kb in largest:
            a.append(used.setdefault(largest[ka], len(used)))
            b.append(used.setdefault(largest[kb], len(used)))
            same.append(r.same)
            kept_rows.append(i)
        else:
            why = "; ".join(f"{k}: {reasons.get(k, 'no face')}" for k in (ka, kb) if k not in largest)
            dropped.append({"image_a": r.image_a, "image_b": r.image_b, "reason": why})
    order = np.asarray(sorted(used, key=used.get), dtype=np.int64)
    if dropped:
        log.warning("%s: %d of %d pairs dropped (no face found or file missing), e.g. %s", path.name, len(dropped), len(rows), dropped[0]["reason"])
    info = {
        "format": "pairs csv",
        "file": str(path),
        "photos": len(names),
        "pairs_listed": len(rows),
        "pairs_dropped": len(dropped),
        "dropped": dropped[:50],
        "detector": detector_desc,
        "crops": "largest face per photo, aligned to the ArcFace 112x112 template; the same crops for every model",
    }
    return CsvPairs(
        path.stem,
        crops[order] if len(order) else crops[:0],
        np.asarray(a, np.int64),
        np.asarray(b, np.int64),
        np.asarray(same, bool),
        info,
        rows=np.asarray(kept_rows, np.int64),
    )
