"""A gallery as a portable .npz (every template with its identity, the signature, metadata).

For moving a gallery between stores, machines or gfn-edge versions without SQLite tools; a
backup of the file itself is ``Gallery.backup``. Only intact templates are exported (damaged
ones are logged by the store and left out: re-enrol them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GalleryError
from .store import GalleryStore


def export_npz(store: GalleryStore, signature: str, dest: str | os.PathLike[str]) -> Path:
    """Write ``dest`` (whole or not at all); a snapshot read again if a write raced it."""
    for _ in range(5):
        before = store.generation()
        loaded = store.load()
        meta = {name: store.metadata(name) for name in loaded.names}
        if store.generation() == before == loaded.generation:
            break
    else:
        raise GalleryError(f"gallery {store.location} kept changing while it was exported; try again when enrolment is quiet")
    names = np.asarray([loaded.names[i] for i in loaded.owners], dtype=str)
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, names=names, vectors=loaded.vectors, signature=np.asarray(signature), metadata=np.asarray(json.dumps(meta)))
    os.replace(tmp, dest)
    return dest


def read_npz(src: str | os.PathLike[str], signature: str) -> list[tuple[str, np.ndarray, dict[str, Any] | None]]:
    """(identity, templates, metadata) per identity from ``export_npz`` output of the same model."""
    try:
        with np.load(src, allow_pickle=False) as data:
            other = str(data["signature"])
            names, vectors = data["names"].tolist(), data["vectors"]
            meta = json.loads(str(data["metadata"]))
    except (OSError, KeyError, ValueError) as exc:
        raise GalleryError(f"{src} is not a gallery export (.npz from Gallery.export_npz): {exc}") from exc
    if other != signature:
        raise GalleryError(f"{src} was exported from a gallery of model {other!r}; this gallery is {signature!r}")
    if len(names) != len(vectors):
        raise GalleryError(f"{src} is damaged: {len(names)} names for {len(vectors)} templates")
    grouped: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        grouped.setdefault(name, []).append(i)
    return [(name, vectors[idx], meta.get(name) or None) for name, idx in grouped.items()]
