"""The storage interface of a gallery: what ``Gallery`` needs from durable storage, nothing more.

``Gallery`` (gfn_edge/gallery/facade.py) validates every argument, keeps the in-memory matrix
and ranks; a ``GalleryStore`` only keeps identities and templates safe and hands them back. Two
implementations: ``SQLiteStore`` (a file on the device, the default) and ``PostgresStore`` (a
shared server for many doors, gfn_edge/gallery/postgres_store.py). ``open_store`` picks one from
the location. Everything below is the contract a new store must keep; the gallery test suite runs
against each store to hold it to it.

Terms:

* **signature**: the recogniser's model signature (``Manifest.signature``); embeddings of
  another model are not comparable, so a store refuses to open for a different one.
* **template**: one L2-normalised embedding, ``dim`` float32 values, stored as ``codec.encode``
  bytes (little-endian float32) with ``codec.template_checksum(identity_name, blob)`` next to it.
* **generation**: an integer in the store, incremented by one in the same transaction as every
  write that changes templates or identities, so any process holding a matrix can tell it is
  stale by comparing numbers (cheap: no template is read).
* **quarantine**: a template whose checksum does not match, whose vector is not finite or not of
  unit length (|norm - 1| > ``codec.LOAD_NORM_TOL``), or whose identity reference leads nowhere,
  is never returned for searching (stores apply ``integrity.verify_rows`` to what they read);
  it is reported as a ``DamagedTemplate`` and logged at ERROR level naming the identity to
  re-enrol. It stays in storage, untouched (evidence, and a backup
  restore is the repair), until its identity is re-enrolled with ``replace=True`` or removed.
"""

from __future__ import annotations

import abc
import importlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GalleryError, MissingDependencyError

CHECKS = ("quick", "full", "none")
_URL = re.compile(r"^(postgresql|postgres)://", re.IGNORECASE)


@dataclass(frozen=True)
class ThresholdRecord:
    """A decision threshold stored with the gallery, and how it was obtained.

    ``value``: cosine in [-1, 1]. ``target_far``: the false-accept rate it was calibrated for
    (None: set by hand, not calibrated). ``signature``: the model it was calibrated on (a
    threshold is meaningless for another recogniser). ``calibrated_at``: Unix time.
    ``details``: JSON-able facts about the calibration (pairs used, measured FAR/FRR...).
    """

    value: float
    target_far: float | None = None
    signature: str | None = None
    calibrated_at: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def calibrated(self) -> bool:
        return self.target_far is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "target_far": self.target_far,
            "signature": self.signature,
            "calibrated_at": self.calibrated_at,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThresholdRecord:
        return cls(
            value=float(data["value"]),
            target_far=None if data.get("target_far") is None else float(data["target_far"]),
            signature=data.get("signature"),
            calibrated_at=None if data.get("calibrated_at") is None else float(data["calibrated_at"]),
            details=dict(data.get("details") or {}),
        )


@dataclass(frozen=True)
class StoreInfo:
    """The gallery's header: fixed at creation except ``threshold`` (``set_threshold``)."""

    signature: str
    dim: int
    schema_version: int
    threshold: ThresholdRecord | None = None


@dataclass(frozen=True)
class DamagedTemplate:
    """A template that failed its checks on reading; never searched.

    ``identity``: the name to re-enrol (when the identity reference itself is broken, the
    enrolled identity whose name makes the checksum match, else None); ``template_id``: the
    store's own id for the row; ``reason``: one short phrase, one of "checksum mismatch",
    "wrong size", "not a finite unit vector", "identity reference broken", "no checksum
    (damaged before schema 2)" (``integrity.verify_rows`` decides, for every store).
    """

    identity: str | None
    template_id: int
    reason: str

    def line(self, location: str) -> str:
        """The one line ``gfn-edge gallery check`` prints for it."""
        if self.identity is None:
            return (
                f"{location}: template {self.template_id} of an unknown identity is damaged ({self.reason}); "
                f"re-enrol whoever is missing a template (compare with your enrolment records)"
            )
        return f"{location}: template {self.template_id} of {self.identity!r} is damaged ({self.reason}); re-enrol {self.identity!r}"


@dataclass
class LoadedTemplates:
    """Every intact template, ready to become the search matrix; see ``GalleryStore.load``.

    ``names``: every enrolled identity (even one whose templates are all damaged), in enrolment
    order (the store's identity id). ``owners[i]`` is the position in ``names`` of the identity
    owning row ``i`` of ``vectors``; rows of one identity are in their enrolment order (the same
    order ``embeddings(identity)`` returns). ``vectors``: (n, dim) float32, C-contiguous,
    writable, every row finite and of unit length. ``generation``: the store's generation the
    snapshot was read at. ``damaged``: the quarantined templates, not in ``vectors``.
    """

    generation: int
    names: list[str]
    owners: np.ndarray
    vectors: np.ndarray
    damaged: list[DamagedTemplate] = field(default_factory=list)


@dataclass(frozen=True)
class NewTemplates:
    """One identity's part of a write: validated name, (k, dim) unit float32 rows, metadata.

    ``metadata_json``: canonical JSON (``codec.dump_metadata``) replacing the stored metadata,
    or None to keep what is stored (empty for a new identity).
    """

    identity: str
    vectors: np.ndarray
    metadata_json: str | None = None


@dataclass(frozen=True)
class WriteResult:
    """What a write did. ``before``: the generation the write started from (read inside its
    transaction); ``after``: the generation it committed (``before`` when nothing changed).
    A caller holding a matrix of generation ``before`` may patch it and call it ``after``;
    any other matrix must be reloaded. ``totals``: identity -> its template count after the
    write (``add``); ``removed``: templates deleted (``remove``)."""

    before: int
    after: int
    totals: dict[str, int] = field(default_factory=dict)
    removed: int = 0

    @property
    def changed(self) -> bool:
        return self.after != self.before


class GalleryStore(abc.ABC):
    """Durable storage of one gallery. Implementations must be safe to call from several threads
    (one call at a time is enough: ``Gallery`` serialises its calls) and several processes or
    hosts at once (writes are transactions; readers are never blocked by writers for long).

    Construction (every implementation takes these arguments, in this order)::

        Store(location, signature=None, dim=None, *, create=True, readonly=False, check="quick", timeout=5.0)

    * ``location`` not holding a gallery: with ``create`` (and not ``readonly``) a new, empty one
      is made atomically (two processes creating it at once end up with the same gallery),
      needing ``signature`` (non-empty str) and ``dim`` (1..65536), else ``GalleryError`` saying
      which is missing; without ``create`` ``GalleryError("... does not exist")``.
    * an existing gallery: its header is read and validated; a missing or unreadable signature,
      dim or schema version, or one whose header checksum fails, is refused with
      ``GalleryError`` naming the location and saying it is damaged, and never "repaired".
      A newer schema than this code reads is refused; an older one is migrated atomically (all
      or nothing, no template lost) unless ``readonly``, in which case it is read as it is.
    * ``signature``/``dim`` given and different from the stored ones: ``GalleryError`` naming
      both models and saying to re-enrol with one or use the other's bundle. ``None``: any.
    * ``check``: "quick" runs the store's cheap structural check on open, "full" its thorough
      one, "none" skips it (huge galleries); a store without such checks treats all three alike.
    * ``readonly``: every write raises ``GalleryError`` containing "read-only", and closing
      leaves nothing behind that was not there before (no -wal/-shm files, no server state).
    * ``timeout``: seconds to wait for another writer's lock before ``GalleryError("... locked
      ...")``.

    Every failure of the underlying storage surfaces as ``GalleryError`` (never sqlite3/psycopg
    exceptions) and leaves the stored gallery as it was before the call.
    """

    #: Where the gallery lives, as the user would write it (a path, or a URL without password).
    location: str
    #: True when opened read-only.
    readonly: bool

    # --- header ---------------------------------------------------------------------------
    @abc.abstractmethod
    def info(self) -> StoreInfo:
        """Signature, dim, schema version and the stored threshold, re-read from storage.

        The threshold record is covered by the header checksum: a damaged one raises
        ``GalleryError`` (never a silently different threshold).
        """

    @abc.abstractmethod
    def set_threshold(self, record: ThresholdRecord | None) -> None:
        """Store (or with None clear) the decision threshold, atomically with its checksum.

        Does not change the generation (templates are untouched). ``record.value`` must be a
        finite cosine in [-1, 1] (checked by the caller; stores may check again).
        """

    @abc.abstractmethod
    def generation(self) -> int:
        """The current generation (see module docstring); one cheap read."""

    # --- reading --------------------------------------------------------------------------
    @abc.abstractmethod
    def load(self) -> LoadedTemplates:
        """Every intact template and every identity, read in one consistent snapshot.

        Each row's checksum, finiteness and unit norm are verified here; failures go to
        ``damaged`` (and are logged at ERROR level, one line per template naming the identity
        to re-enrol), never into ``vectors``.
        """

    @abc.abstractmethod
    def identities(self) -> list[str]:
        """Enrolled names, sorted (Python string order)."""

    @abc.abstractmethod
    def count_identities(self) -> int:
        """Number of enrolled identities."""

    @abc.abstractmethod
    def count_templates(self) -> int:
        """Number of stored templates, damaged ones included."""

    @abc.abstractmethod
    def contains(self, identity: str) -> bool:
        """Whether ``identity`` is enrolled."""

    @abc.abstractmethod
    def embeddings(self, identity: str) -> np.ndarray:
        """The identity's intact templates, (n, dim) float32 in enrolment order, bit-exact as
        stored; damaged ones are left out (and logged). ``UnknownIdentityError`` if not
        enrolled."""

    @abc.abstractmethod
    def metadata(self, identity: str) -> dict[str, Any]:
        """The identity's metadata dict ({} when none); ``UnknownIdentityError`` if not
        enrolled, ``GalleryError`` if the stored JSON is damaged."""

    # --- writing --------------------------------------------------------------------------
    @abc.abstractmethod
    def add(self, batch: list[NewTemplates], replace: bool) -> WriteResult:
        """Store every item of ``batch`` in one transaction: all or nothing.

        A new identity is created; an existing one gets the templates appended, or with
        ``replace`` its old templates deleted first (once per identity per batch: a name
        repeated in ``batch`` accumulates its items). Each template is stored with its checksum.
        Rows that are not (k, dim) finite unit float32 raise ``GalleryValueError`` before
        anything is written (``codec.require_storable``). ``totals`` holds every named identity.
        """

    @abc.abstractmethod
    def remove(self, identity: str) -> WriteResult:
        """Delete an identity and all its templates in one transaction; ``removed`` counts the
        templates (0 and an unchanged generation when it was not enrolled)."""

    # --- lifetime -------------------------------------------------------------------------
    @abc.abstractmethod
    def backup(self, dest: str | os.PathLike[str]) -> Path:
        """A consistent copy of the whole gallery as a new SQLite gallery file at ``dest``.

        Every store writes the same portable format (what ``Gallery(dest)`` opens anywhere),
        through a temporary file renamed into place: ``dest`` is whole or absent. An existing
        ``dest`` is refused with ``GalleryError("... exists ...")``.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and files; idempotent. Later calls raise ``GalleryError``
        containing "closed"."""


def is_server_url(location: str | os.PathLike[str]) -> bool:
    """True for a ``postgresql://`` or ``postgres://`` URL, False for a filesystem path."""
    return isinstance(location, str) and bool(_URL.match(location))


#: location kind -> the module and class of its store, imported on first use (a plug-in table:
#: stores import this module for the interface, so this module never imports them by name).
STORES = {
    "sqlite": ("gfn_edge.gallery.sqlite_store", "SQLiteStore"),
    "postgresql": ("gfn_edge.gallery.postgres_store", "PostgresStore"),
}


def open_store(
    location: str | os.PathLike[str],
    signature: str | None = None,
    dim: int | None = None,
    *,
    create: bool = True,
    readonly: bool = False,
    check: str = "quick",
    timeout: float = 5.0,
) -> GalleryStore:
    """The store for ``location``: a filesystem path means SQLite, a PostgreSQL URL the server.

    Arguments as in ``GalleryStore``; raises ``GalleryError`` for an unknown URL scheme and
    ``MissingDependencyError`` when the server store or its driver is not installed.
    """
    if check not in CHECKS:
        from .types import GalleryValueError

        raise GalleryValueError(f"check must be one of {CHECKS}, got {check!r}")
    if is_server_url(location):
        kind = "postgresql"
    elif isinstance(location, str) and "://" in location:
        raise GalleryError(f"unknown gallery location {location!r}: give a file path (SQLite) or a postgresql:// URL")
    else:
        kind = "sqlite"
    module_name, class_name = STORES[kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise MissingDependencyError(module_name, "postgres", "a PostgreSQL gallery (this gfn-edge has no server store)") from exc
        raise MissingDependencyError(exc.name or "psycopg", "postgres", "a PostgreSQL gallery") from exc
    store_class = getattr(module, class_name)
    return store_class(str(location) if kind != "sqlite" else location, signature, dim, create=create, readonly=readonly, check=check, timeout=timeout)
