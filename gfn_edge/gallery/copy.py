"""``gfn-edge gallery copy SRC DST``: move a gallery between stores (SQLite file <-> PostgreSQL).

Every intact template goes across bit-exact, with each identity's metadata and the stored
threshold record, in one write transaction on the destination (all or nothing). The destination
must be empty (or new): merging two galleries silently is how a revoked identity comes back.
Templates that fail their checksum in the source are reported and not copied.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from ..errors import GalleryError
from . import codec
from .store import GalleryStore, NewTemplates, open_store

log = logging.getLogger(__name__)


def _batch(store: GalleryStore) -> tuple[list[NewTemplates], int]:
    loaded = store.load()
    order = np.argsort(loaded.owners, kind="stable")
    bounds = np.searchsorted(loaded.owners[order], np.arange(len(loaded.names) + 1))
    batch = []
    for i, name in enumerate(loaded.names):
        if bounds[i + 1] == bounds[i]:
            log.error("%s: %r has no intact template; not copied (re-enrol it)", store.location, name)
            continue
        meta = store.metadata(name)
        vectors = np.ascontiguousarray(loaded.vectors[order[bounds[i] : bounds[i + 1]]], codec.DTYPE)
        batch.append(NewTemplates(name, vectors, codec.dump_metadata(meta) if meta else None))
    return batch, len(loaded.damaged)


def copy_gallery(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> int:
    """Copy every intact template of ``src`` into the empty or new gallery ``dst``; returns how many."""
    source = open_store(src, create=False, readonly=True)
    try:
        info = source.info()
        batch, damaged = _batch(source)
    finally:
        source.close()
    target = open_store(dst, info.signature, info.dim, create=True)
    try:
        if target.count_identities():
            raise GalleryError(f"{target.location} is not empty ({target.count_identities()} identities); copy into a new or empty gallery")
        if batch:
            target.add(batch, replace=False)
        target.set_threshold(info.threshold)
    finally:
        target.close()
    copied = sum(len(item.vectors) for item in batch)
    log.info(
        "copied %d identities (%d templates) from %s to %s%s", len(batch), copied, src, dst, f"; {damaged} damaged templates left behind" if damaged else ""
    )
    return copied
