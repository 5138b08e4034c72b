"""``Gallery``: enrolled identities and 1:N search, a thin facade over a store and an index.

The facade checks every argument (names, vectors, thresholds) before the store sees it, keeps
the ``TemplateIndex`` in step with the store's generation, and applies enrolment policy. Where
the data lives is the store's job (``open_store``: a path is an SQLite file, a
``postgresql://`` URL a shared server).

Concurrency: every call takes the instance's lock, so an instance may be shared between threads
(calls run one at a time). Other processes' writes are seen by the next search.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GalleryError
from . import enrolment, portable
from .codec import (
    check_margin,
    check_name,
    check_threshold,
    dump_metadata,
    normalize_embeddings,
)
from .index import AGGREGATES, TemplateIndex, decide
from .store import (
    DamagedTemplate,
    GalleryStore,
    NewTemplates,
    ThresholdRecord,
    WriteResult,
    open_store,
)
from .types import EnrollReport, GalleryValueError, Match

log = logging.getLogger("gfn_edge.gallery")

Batch = Sequence[tuple[str, Any, "Mapping[str, Any] | None"]]


class Gallery:
    """Enrolled identities and their templates, with 1:N search as one matrix product.

    ``Gallery(path, signature, dim)`` creates the gallery if needed (``create=True``) or opens it,
    refusing one built with another model (``signature``/``dim`` differ), a file that is not a
    gallery, or one that fails its structural check (``check="quick"``; ``"full"`` is thorough,
    ``"none"`` skips it for very large galleries). A refused gallery is never modified.
    ``signature=None`` opens any gallery without the model check (admin tools). ``store``: an
    already open ``GalleryStore`` to wrap instead (the location arguments are then ignored).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        signature: str | None = None,
        dim: int | None = None,
        create: bool = True,
        readonly: bool = False,
        *,
        check: str = "quick",
        timeout: float = 5.0,
        store: GalleryStore | None = None,
    ):
        self._lock = threading.RLock()
        self._index: TemplateIndex | None = None
        self._damaged: list[DamagedTemplate] = []
        self._store: GalleryStore | None = None
        self._store = store if store is not None else open_store(path, signature, dim, create=create, readonly=readonly, check=check, timeout=timeout)
        try:
            info = self._store.info()
        except BaseException:
            self._store.close()
            raise
        self._signature, self._dim, self._schema_version = info.signature, info.dim, info.schema_version
        self.path: Path | str = getattr(self._store, "path", self._store.location)
        self.readonly = self._store.readonly

    # --- properties -----------------------------------------------------------------------
    @property
    def location(self) -> str:
        """Where the gallery lives: a file path or a server URL (without password)."""
        return self._db().location

    @property
    def signature(self) -> str:
        """The model signature the gallery was built with."""
        return self._signature

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def schema_version(self) -> int:
        return self._schema_version

    @property
    def threshold(self) -> float | None:
        """The decision threshold stored with the gallery (calibrated for its model), if any."""
        record = self.threshold_info
        return None if record is None else record.value

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        self.set_threshold(value)

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The stored threshold with what it was calibrated for: ``{"threshold", "target_far", "signature"}``.

        None unless :meth:`set_calibration` stored one: a bare ``threshold`` says nothing about
        the false-accept rate it gives, or on which recogniser it was measured.
        """
        record = self.threshold_info
        if record is None or record.target_far is None:
            return None
        signature = (record.details or {}).get("recognizer_signature") or record.signature
        return {"threshold": record.value, "target_far": record.target_far, "signature": signature}

    def set_calibration(self, threshold: float, target_far: float, signature: str) -> None:
        """Store a threshold calibrated for ``target_far`` on the recogniser with ``signature`` (one write)."""
        if not isinstance(signature, str) or not signature:
            raise GalleryValueError(f"signature must name the recogniser the threshold was measured on, got {signature!r}")
        if target_far is None:
            raise GalleryValueError("target_far must be a false-accept rate in (0, 1), got None")
        self.set_threshold(threshold, target_far=target_far, details={"recognizer_signature": signature})

    @property
    def threshold_info(self) -> ThresholdRecord | None:
        """The stored threshold with how it was obtained (target FAR, model, time), if any."""
        with self._lock:
            return self._db().info().threshold

    def set_threshold(self, value: float | None, *, target_far: float | None = None, details: Mapping[str, Any] | None = None) -> None:
        """Store the decision threshold; ``target_far`` (in (0, 1)) marks it as calibrated for
        that false-accept rate on this gallery's model. ``None`` clears it."""
        record = None
        if value is not None:
            value = check_threshold(value)
            if target_far is not None:
                far = check_threshold(target_far, "target_far")
                if not 0.0 < far < 1.0:
                    raise GalleryValueError(f"target_far must be a false-accept rate in (0, 1), got {target_far!r}")
                target_far = far
            dump_metadata(details)  # JSON-able, finite
            record = ThresholdRecord(value, target_far, self._signature, time.time(), dict(details or {}))
        with self._lock:
            self._db().set_threshold(record)

    @property
    def matrix_bytes(self) -> int:
        """Memory held by the cached template matrix (0 until the first search)."""
        index = self._index
        return 0 if index is None else index.nbytes

    @property
    def damaged(self) -> list[DamagedTemplate]:
        """Templates quarantined when the matrix last loaded (never searched): re-enrol them."""
        with self._lock:
            self._current_index()
            return list(self._damaged)

    # --- writing --------------------------------------------------------------------------
    def enroll(self, identity: str, embeddings: Any, replace: bool = False, metadata: Mapping[str, Any] | None = None) -> int:
        """Store one or more templates for ``identity``; returns how many it now has.

        ``replace=False`` adds to an existing identity's templates (more poses, better recall);
        ``replace=True`` swaps them all for the new ones. ``metadata`` (a JSON-able dict)
        replaces the stored metadata when given. The whole call is one transaction.
        """
        totals, _ = self._enroll_batch([(identity, embeddings, metadata)], replace)
        return totals[identity]

    def enroll_many(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]], replace: bool = False) -> int:
        """Enrol many identities in one transaction (all or nothing); returns templates added.

        ``items`` maps identity -> embeddings, or is (identity, embeddings) pairs; a name may
        repeat in pairs (its templates accumulate).
        """
        pairs = items.items() if isinstance(items, Mapping) else items
        batch = [(name, emb, None) for name, emb in pairs]
        if not batch:
            return 0
        return self._enroll_batch(batch, replace)[1]

    def _prepare(self, batch: Batch) -> list[NewTemplates]:
        """Check every name, vector and metadata before anything is written."""
        prepared = []
        for name, emb, meta in batch:
            name = check_name(name)
            try:
                vectors = normalize_embeddings(emb, self._dim)
            except GalleryValueError as exc:
                raise GalleryValueError(f"{name!r}: {exc}") from None
            prepared.append(NewTemplates(name, vectors, dump_metadata(meta)))
        return prepared

    def _enroll_batch(self, batch: Batch, replace: bool) -> tuple[dict[str, int], int]:
        """Validate everything first, then write it all in one transaction; (totals, added)."""
        prepared = self._prepare(batch)
        with self._lock:
            result = self._db().add(prepared, replace)

            def update(index: TemplateIndex) -> None:
                done: set[str] = set()
                for item in prepared:
                    if replace and item.identity not in done:
                        index.drop(item.identity)
                    done.add(item.identity)
                    index.append(item.identity, item.vectors)

            self._after_write(result, update, {item.identity for item in prepared} if replace else set())
        added = sum(len(item.vectors) for item in prepared)
        if len(prepared) > 10:
            log.info("gallery %s: enrolled %d identities (+%d templates)", self.location, len(result.totals), added)
        else:
            for item in prepared:
                log.info("gallery %s: enrolled %r (+%d templates, %d in all)", self.location, item.identity, len(item.vectors), result.totals[item.identity])
        return result.totals, added

    def enroll_images(
        self,
        identity: str,
        images: Sequence[Any],
        embedder: Any = None,
        analyzer: Any = None,
        replace: bool = False,
        metadata: Mapping[str, Any] | None = None,
        require_quality: bool = True,
    ) -> EnrollReport:
        """Enrol from pictures: via a face analyzer (largest face per image) or an embedder of crops.

        ``analyzer`` (or an ``embedder`` that has ``analyze``) is any object with
        ``analyze(image) -> list of faces`` having ``.embedding`` (and ``.box`` or ``.bbox``);
        images without a face are skipped, and with ``require_quality`` so are faces whose
        ``.passed`` is False (a blurred template costs recall for ever). Both are listed in the
        report. Otherwise ``embedder.embed`` gets ``images`` as aligned face crops. A recogniser
        with a ``signature`` attribute other than the gallery's is refused.
        """
        got = enrolment.harvest(identity, images, self._signature, str(self.path), embedder, analyzer, require_quality)
        total = self.enroll(identity, got.embeddings, replace=replace, metadata=metadata)
        return EnrollReport(identity, len(got.embeddings), total, got.skipped, got.rejected)

    def remove(self, identity: str) -> int:
        """Delete an identity and its templates; returns how many templates went (0 if unknown)."""
        with self._lock:
            result = self._db().remove(identity)
            self._after_write(result, lambda index: index.drop(identity), {identity})
        if result.changed:
            log.info("gallery %s: removed %r (%d templates)", self.location, identity, result.removed)
        return result.removed

    def _after_write(self, result: WriteResult, update: Callable[[TemplateIndex], None], cleared: set[str]) -> None:
        """Apply our own write to the cached index if it was current; else it reloads later.

        ``cleared``: identities whose stored templates the write deleted (with any damaged ones).
        """
        if not result.changed:
            return
        index = self._index
        if index is not None and index.generation == result.before:
            try:
                update(index)
                index.generation = result.after
                self._damaged = [d for d in self._damaged if d.identity not in cleared]
                return
            except Exception:  # the write is committed; never report it as failed
                log.exception("gallery %s: could not update the cached matrix; it will be reloaded", self.location)
        self._index = None

    # --- reading --------------------------------------------------------------------------
    def identities(self) -> list[str]:
        """Enrolled names, sorted."""
        with self._lock:
            return self._db().identities()

    def count(self) -> int:
        """Number of enrolled identities."""
        with self._lock:
            return self._db().count_identities()

    @property
    def num_templates(self) -> int:
        """Stored templates, quarantined ones included."""
        with self._lock:
            return self._db().count_templates()

    def __len__(self) -> int:
        return self.count()

    def __iter__(self) -> Iterator[str]:
        return iter(self.identities())

    def __contains__(self, identity: object) -> bool:
        if not isinstance(identity, str):
            return False
        with self._lock:
            return self._db().contains(identity)

    def embeddings(self, identity: str) -> np.ndarray:
        """The identity's intact templates, (n, dim) float32, exactly as stored, in enrolment order."""
        with self._lock:
            return self._db().embeddings(identity)

    def metadata(self, identity: str) -> dict[str, Any]:
        with self._lock:
            return self._db().metadata(identity)

    # --- search ---------------------------------------------------------------------------
    def search(self, embedding: Any, k: int = 5, threshold: float | None = None, aggregate: str = "max") -> list[Any]:
        """Rank identities by similarity to one embedding (-> list[Match]) or a batch (-> list of lists).

        An identity's score is the best cosine over its templates (``aggregate="max"``): a person
        enrolled with several poses matches on the closest pose, and adding templates never hurts
        a genuine match. Calibrate thresholds with the number of templates used in production:
        more templates give impostors more chances too. ``aggregate="mean"`` averages instead.
        Results are at most ``k`` distinct identities, best first, with score >= ``threshold``.
        """
        if aggregate not in AGGREGATES:
            raise GalleryValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise GalleryValueError(f"k must be a positive integer, got {k!r}")
        if threshold is not None:
            threshold = check_threshold(threshold)
        arr = np.asarray(embedding)
        single = arr.ndim == 1
        if arr.ndim == 2 and arr.shape[0] == 0:
            return []
        queries = normalize_embeddings(arr, self._dim)
        with self._lock:
            ranked = self._current_index().search(queries, int(k), threshold, aggregate)
        return ranked[0] if single else ranked

    def best(self, embedding: Any, threshold: float | None = None, margin: float = 0.0) -> Match | None:
        """The top match if it clears ``threshold`` (default: the gallery's stored one), else None.

        ``margin`` > 0 also demands the runner-up identity score that much lower: an ambiguous
        face (two similar people enrolled) is better refused at a door than guessed.
        """
        thr = self.threshold if threshold is None else check_threshold(threshold)
        margin = check_margin(margin)
        if thr is None:
            raise GalleryValueError("best() needs a threshold: pass threshold= or set gallery.threshold (calibrated for the model)")
        if np.asarray(embedding).ndim != 1:
            raise GalleryValueError("best() takes one embedding; use search() for a batch")
        return decide(self.search(embedding, k=2 if margin > 0 else 1), thr, margin)

    def refresh(self) -> None:
        """Load (or reload) the template matrix now, e.g. at start-up, so the first search is fast."""
        with self._lock:
            self._current_index()

    def _current_index(self) -> TemplateIndex:
        store = self._db()
        index = self._index
        if index is None or index.generation != store.generation():
            self._index = None  # free the old matrix first: never two in memory
            loaded = store.load()
            self._damaged = loaded.damaged
            self._index = index = TemplateIndex.from_loaded(loaded, self._dim)
        return index

    # --- backup ---------------------------------------------------------------------------
    def backup(self, dest: str | os.PathLike[str]) -> Path:
        """A consistent copy of the gallery as a gallery file, safe while others write.

        Written to a temporary file and linked into place, so ``dest`` is whole or absent; an
        existing ``dest`` is refused.
        """
        with self._lock:
            return self._db().backup(dest)

    def export_npz(self, dest: str | os.PathLike[str]) -> Path:
        """Every intact template with its identity, plus signature and metadata, as a portable .npz."""
        with self._lock:
            return portable.export_npz(self._db(), self._signature, dest)

    def import_npz(self, src: str | os.PathLike[str], replace: bool = False) -> int:
        """Enrol everything from ``export_npz`` output in one transaction; refuses another model's."""
        batch = portable.read_npz(src, self._signature)
        if batch:
            self._enroll_batch(batch, replace)
        return sum(len(vectors) for _, vectors, _ in batch)

    # --- lifetime -------------------------------------------------------------------------
    def _db(self) -> GalleryStore:
        store = self._store
        if store is None:
            raise GalleryError(f"gallery {self.path} is closed")
        return store

    def close(self) -> None:
        with self._lock:
            store, self._store = self._store, None
            self._index = None
            if store is not None:
                store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._store is None else f"{self._signature}, dim {self._dim}"
        return f"Gallery({str(self.path)!r}, {state})"
