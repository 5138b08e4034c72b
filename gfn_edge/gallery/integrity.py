"""Template integrity: which stored templates may be searched, and the check behind
``gfn-edge gallery check``.

A template is searched only if its checksum matches (``codec.template_checksum`` over the
identity's name and the vector bytes), it has the right size, its identity reference leads to an
identity, and its vector is finite and of unit length. Anything else is quarantined: left out of
the matrix, logged at ERROR level naming the identity to re-enrol, kept in storage untouched.
Every store calls ``verify_rows`` so the rule is the same for all of them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GalleryError
from .codec import DTYPE, decode, invalid_rows, template_checksum
from .store import DamagedTemplate, open_store

log = logging.getLogger("gfn_edge.gallery")

#: (template id, identity name or None when the reference is broken, vector bytes, stored checksum)
Row = tuple[int, "str | None", Any, Any]


def verify_rows(
    rows: list[Row], dim: int, location: str, checksums: bool = True, names: Sequence[str] = ()
) -> tuple[list[int], np.ndarray, list[DamagedTemplate]]:
    """Split stored rows into the intact ones and the damaged ones.

    Returns (positions in ``rows`` of the intact templates, their (n, dim) float32 vectors,
    the damaged templates). ``checksums=False`` is for galleries written before checksums
    existed (schema 1 opened read-only): only size, reference and the vector itself are checked.
    ``names``: the enrolled identities, to name the owner of a template whose reference broke
    (the one whose name makes its checksum match).
    """
    width = dim * DTYPE.itemsize
    damaged: list[DamagedTemplate] = []
    keep: list[int] = []
    for i, (tid, name, blob, crc) in enumerate(rows):
        reason = ""
        if name is None:
            reason = "identity reference broken"
            if checksums and isinstance(blob, bytes):
                name = next((n for n in names if template_checksum(n, blob) == crc), None)
        elif not isinstance(blob, bytes) or len(blob) != width:
            reason = "wrong size"
        elif checksums and crc is None:
            reason = "no checksum (damaged before schema 2)"
        elif checksums and crc != template_checksum(name, blob):
            reason = "checksum mismatch"
        if reason:
            damaged.append(DamagedTemplate(name, int(tid), reason))
        else:
            keep.append(i)
    vectors = decode([rows[i][2] for i in keep], dim)
    bad = invalid_rows(vectors)
    if len(bad):
        damaged += [DamagedTemplate(rows[keep[j]][1], int(rows[keep[j]][0]), "not a finite unit vector") for j in bad]
        ok = np.ones(len(keep), bool)
        ok[bad] = False
        keep, vectors = [k for k, good in zip(keep, ok) if good], vectors[ok]
    for d in damaged:
        log.error("%s; it is quarantined (never searched)", d.line(location))
    return keep, vectors, damaged


@dataclass
class IntegrityReport:
    """What ``check_gallery`` found: ``refused`` is the reason the gallery could not be opened at
    all (damaged header or structure); ``damaged`` the quarantined templates."""

    location: str
    signature: str | None = None
    dim: int | None = None
    identities: int = 0
    templates: int = 0
    damaged: list[DamagedTemplate] = field(default_factory=list)
    refused: str | None = None

    @property
    def ok(self) -> bool:
        return self.refused is None and not self.damaged

    def lines(self) -> list[str]:
        """One line per problem (a damaged template names the identity to re-enrol), or a summary."""
        if self.refused is not None:
            return [self.refused]
        if self.damaged:
            return [d.line(self.location) for d in self.damaged]
        return [f"{self.location}: ok ({self.identities} identities, {self.templates} templates, model {self.signature}, dim {self.dim})"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "ok": self.ok,
            "signature": self.signature,
            "dim": self.dim,
            "identities": self.identities,
            "templates": self.templates,
            "refused": self.refused,
            "damaged": [{"identity": d.identity, "template_id": d.template_id, "reason": d.reason} for d in self.damaged],
        }


def check_gallery(location: str | os.PathLike[str], thorough: bool = True) -> IntegrityReport:
    """Open ``location`` read-only (never creating or changing it) and verify every template.

    ``thorough`` runs the store's full structural check (SQLite ``integrity_check``) as well.
    """
    report = IntegrityReport(str(location))
    try:
        store = open_store(location, create=False, readonly=True, check="full" if thorough else "quick")
    except GalleryError as exc:
        report.refused = str(exc)
        return report
    report.location = store.location  # a server URL without its password
    try:
        info = store.info()
        report.signature, report.dim = info.signature, info.dim
        report.identities, report.templates = store.count_identities(), store.count_templates()
        report.damaged = store.load().damaged
    except GalleryError as exc:
        report.refused = str(exc)
    finally:
        store.close()
    return report
