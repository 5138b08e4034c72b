"""Enrolled identities for 1:N search: one SQLite file on disk, one float32 matrix in memory.

Why SQLite: a door unit loses power or gets killed mid-enrolment. SQLite in WAL mode gives
atomic, durable transactions in a single file that any tool can open, so an enrolment is either
wholly stored or not at all, and identities enrolled earlier are never at risk.

File layout (schema version 1):

* ``meta`` (key, value): ``signature`` (the recogniser's model signature, see
  ``Manifest.signature``), ``dim``, ``schema_version``, ``generation`` (bumped by every write, so
  any process can tell its cached matrix is stale), optional ``threshold``;
* ``identities`` (id, name, metadata JSON, created, updated);
* ``templates`` (id, identity, vector): one L2-normalised embedding per row as a little-endian
  float32 blob (``dim * 4`` bytes, enforced by a CHECK constraint).

The SQLite header carries ``application_id`` ``GFNG`` and ``user_version`` = schema version, so a
gallery is recognised (and anything else refused) before a single table is read.

Durability: ``synchronous=FULL``. With WAL, ``NORMAL`` already keeps the file consistent after a
crash, but a power cut may undo the last few commits; FULL costs one fsync per enrolment (rare
on a door unit) and means "enrolled" on the screen stays true after the power comes back.

Concurrency: one SQLite connection per ``Gallery``; every call takes the instance's lock, so an
instance may be shared between threads (calls run one at a time). Any number of processes may
open the same file: writers serialise on SQLite's lock (``BEGIN IMMEDIATE`` + busy timeout),
readers never block, and a search sees other processes' enrolments through the ``generation``
counter. Open galleries after ``fork()``, not before. WAL needs a local filesystem (not NFS/SMB).
"""
from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .errors import GalleryError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
APPLICATION_ID = 0x47464E47  # "GFNG": marks an SQLite file as a gfn-edge gallery
_SQLITE_MAGIC = b"SQLite format 3\x00"
_DTYPE = np.dtype("<f4")  # stored bytes are little-endian whatever the board
_NORM_TOL = 1e-5  # vectors closer than this to unit norm are stored bit-exact
_MAX_NAME = 256
# 32 KiB pages hold ~15 512-d templates each (4 KiB pages hold one: half the file is slack) and
# read 3-5x faster when the matrix loads; an enrolment still writes only a few pages.
_PAGE_SIZE = 32768
_CHECKS = ("quick", "full", "none")
_AGGREGATES = ("max", "mean")


class GalleryValueError(GalleryError, ValueError):
    """An argument the gallery cannot store or search with (bad name, NaN, wrong size)."""


class UnknownIdentityError(GalleryError, KeyError):
    """An identity that is not enrolled."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Match(NamedTuple):
    """One ranked search result.

    ``score`` is the cosine similarity in [-1, 1]; ``index`` is which of the identity's templates
    matched best, as a position in ``Gallery.embeddings(identity)``.
    """

    identity: str
    score: float
    index: int


@dataclass
class EnrollReport:
    """What ``enroll_images`` stored, and which images it could not use.

    ``skipped``: images without a face; ``rejected``: image index -> the quality gates its face
    failed (blur, pose, size...), when the analyzer measures them.
    """

    identity: str
    added: int
    total: int
    skipped: list[int] = field(default_factory=list)
    rejected: dict[int, list[str]] = field(default_factory=dict)


def normalize_embeddings(embeddings: Any, dim: int | None = None) -> np.ndarray:
    """One vector or a batch -> (n, dim) little-endian float32 rows of unit length.

    Rows already within 1e-5 of unit norm are kept bit-exact (so what an embedder returned is
    what is stored); others are rescaled in float64. NaN/Inf, zero vectors and a wrong size raise
    ``GalleryValueError``: storing them would silently break every later search.
    """
    arr = np.asarray(embeddings)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise GalleryValueError(f"embeddings must be real numbers, got an array of {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise GalleryValueError(f"expected one embedding (dim,) or a batch (n, dim) with n >= 1, got shape {np.shape(embeddings)}")
    if dim is not None and arr.shape[1] != dim:
        raise GalleryValueError(
            f"embedding has {arr.shape[1]} values but this gallery holds {dim}-d embeddings; "
            f"it comes from another recogniser than the one the gallery was built with"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(_DTYPE)  # always a copy: the caller's array is never modified
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        raise GalleryValueError(f"embedding rows {np.flatnonzero(bad).tolist()[:10]} contain NaN or Inf (or overflow float32)")
    norms = np.sqrt(np.einsum("ij,ij->i", out, out, dtype=np.float64))  # no float64 copy of the batch
    zero = norms < 1e-6
    if zero.any():
        raise GalleryValueError(f"embedding rows {np.flatnonzero(zero).tolist()[:10]} are (near) zero and have no direction")
    off = np.abs(norms - 1.0) > _NORM_TOL
    if off.any():
        out[off] = (out[off].astype(np.float64) / norms[off, None]).astype(_DTYPE)
    return np.ascontiguousarray(out)


def _check_name(identity: Any) -> str:
    if not isinstance(identity, str):
        raise GalleryValueError(f"identity must be a string, got {type(identity).__name__}")
    if not identity.strip():
        raise GalleryValueError("identity must not be empty or blank")
    if identity != identity.strip():
        raise GalleryValueError(f"identity {identity!r} has leading or trailing whitespace; strip it first")
    if len(identity) > _MAX_NAME:
        raise GalleryValueError(f"identity is {len(identity)} characters long; at most {_MAX_NAME} are allowed")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in identity):
        raise GalleryValueError(f"identity {identity!r} contains control characters")
    return identity


def _dump_metadata(metadata: Mapping[str, Any] | None) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise GalleryValueError(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        return json.dumps(dict(metadata), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise GalleryValueError(f"metadata must be JSON-serialisable: {exc}") from exc


class _Matrix:
    """All templates as one float32 matrix (with spare rows for appends) and who owns each row."""

    def __init__(self, dim: int, capacity: int):
        self.vectors = np.empty((capacity, dim), _DTYPE)
        self.owner = np.empty(capacity, np.int32)  # slot of the identity owning each row
        self.pos = np.empty(capacity, np.int32)  # the row's position among its identity's templates
        self.n = 0
        self.names: list[str | None] = []  # slot -> name; None once removed
        self.counts: list[int] = []  # slot -> templates in the matrix
        self.slots: dict[str, int] = {}

    def slot(self, name: str) -> int:
        slot = self.slots.get(name)
        if slot is None:
            slot = self.slots[name] = len(self.names)
            self.names.append(name)
            self.counts.append(0)
        return slot

    def _reserve(self, extra: int) -> None:
        need = self.n + extra
        cap = len(self.vectors)
        if need <= cap:
            return
        cap = max(need, cap + cap // 4 + 64)
        for attr in ("vectors", "owner", "pos"):
            old = getattr(self, attr)
            new = np.empty((cap,) + old.shape[1:], old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, attr, new)

    def append(self, name: str, vectors: np.ndarray) -> None:
        slot = self.slot(name)
        k = len(vectors)
        self._reserve(k)
        rows = slice(self.n, self.n + k)
        self.vectors[rows] = vectors
        self.owner[rows] = slot
        self.pos[rows] = np.arange(self.counts[slot], self.counts[slot] + k)
        self.counts[slot] += k
        self.n += k

    def drop(self, name: str) -> None:
        """Remove an identity's rows in place (chunked, so no second matrix is allocated)."""
        slot = self.slots.pop(name, None)
        if slot is None:
            return
        mine = self.owner[: self.n] == slot
        if mine.any():
            first = int(np.argmax(mine))  # rows before it stay where they are
            keep = first + np.flatnonzero(~mine[first:])
            step = 8192
            for start in range(0, len(keep), step):  # keep[j] >= first + j: never overwritten early
                src = keep[start : start + step]
                lo, hi = first + start, first + start + len(src)
                self.vectors[lo:hi] = self.vectors[src]
                self.owner[lo:hi] = self.owner[src]
                self.pos[lo:hi] = self.pos[src]
            self.n = first + len(keep)
        self.names[slot] = None
        self.counts[slot] = 0


class _Txn:
    def __init__(self, generation: int):
        self.generation = generation
        self.changed = True  # False: commit without bumping the generation (no template changed)


class Gallery:
    """Enrolled identities and their templates, with 1:N search as one matrix product.

    ``Gallery(path, signature, dim)`` creates the file if needed (``create=True``) or opens it,
    refusing a file built with another model (``signature``/``dim`` differ), one that is not a
    gallery, or one that fails SQLite's ``quick_check`` (``check="full"`` runs
    ``integrity_check``, ``"none"`` skips it for very large galleries). A refused file is never
    modified. ``signature=None`` opens any gallery without the model check (admin tools).
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
    ):
        if check not in _CHECKS:
            raise GalleryValueError(f"check must be one of {_CHECKS}, got {check!r}")
        self.path = Path(path)
        self.readonly = bool(readonly)
        self._timeout = float(timeout)
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = None
        self._matrix: _Matrix | None = None
        self._matrix_generation: int | None = None
        if self.path.is_dir():
            raise GalleryError(f"gallery path {self.path} is a folder; give a file name such as {self.path / 'gallery.db'}")
        if not self.path.exists():
            if not create or readonly:
                raise GalleryError(f"gallery {self.path} does not exist")
            self._create_file(signature, dim)
        self._check_header()
        self._conn = self._connect()
        try:
            meta = self._validate(check)
            self._signature = str(meta["signature"])
            self._dim = int(meta["dim"])
            self._schema_version = int(meta["schema_version"])
            self._check_model(signature, dim)
            if not readonly:
                mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    self._conn.execute("PRAGMA journal_mode=WAL")
        except BaseException:
            self._conn.close()
            self._conn = None
            raise
        log.debug("opened gallery %s (%s, dim %d)", self.path, self._signature, self._dim)

    # --- opening ------------------------------------------------------------------------
    def _create_file(self, signature: str | None, dim: int | None) -> None:
        """Build the empty gallery in a temporary file, then link it into place.

        Nobody ever sees a half-initialised file, and two processes creating the same gallery
        at once both end up with the same one (``os.link`` refuses to replace an existing file).
        """
        if not isinstance(signature, str) or not signature.strip():
            raise GalleryError(
                f"creating gallery {self.path} needs signature= (the recogniser's model signature, "
                f"e.g. manifest.signature) so that embeddings of another model are refused later"
            )
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 0 < int(dim) <= 65536:
            raise GalleryError(f"creating gallery {self.path} needs dim= (the embedding size, e.g. 512), got {dim!r}")
        folder = self.path.parent
        if not folder.is_dir():
            raise GalleryError(f"cannot create gallery {self.path}: folder {folder} does not exist")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".creating", dir=folder)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            conn = sqlite3.connect(str(tmp), isolation_level=None)
            try:
                conn.execute(f"PRAGMA page_size={_PAGE_SIZE}")
                conn.executescript(_schema(int(dim)))
                conn.executemany(
                    "INSERT INTO meta(key, value) VALUES (?, ?)",
                    [
                        ("signature", signature),
                        ("dim", int(dim)),
                        ("schema_version", SCHEMA_VERSION),
                        ("generation", 0),
                        ("created", time.time()),
                    ],
                )
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("PRAGMA journal_mode=WAL")  # recorded in the header: persists
            finally:
                conn.close()
            _fsync_file(tmp)
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                log.info("gallery %s was created by another process meanwhile; opening it", self.path)
            except OSError:  # filesystems without hard links (FAT): a tiny race, never an overwrite
                if self.path.exists():
                    log.info("gallery %s was created by another process meanwhile; opening it", self.path)
                else:
                    os.rename(tmp, self.path)
            _fsync_dir(folder)
            log.info("created gallery %s (%s, dim %d)", self.path, signature, dim)
        finally:
            for extra in ("", "-wal", "-shm", "-journal"):
                Path(str(tmp) + extra).unlink(missing_ok=True)

    def _check_header(self) -> None:
        """Refuse what is plainly not an SQLite file before SQLite touches it."""
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as fh:
                head = fh.read(100)
        except OSError as exc:
            raise GalleryError(f"cannot read gallery {self.path}: {exc}") from exc
        if size == 0:
            raise GalleryError(
                f"gallery {self.path} is empty (0 bytes): it holds no gallery, possibly a failed copy; "
                f"restore it from a backup, or delete it to start a new gallery"
            )
        if not (head.startswith(_SQLITE_MAGIC) or (len(head) < 16 and _SQLITE_MAGIC.startswith(head))):
            raise GalleryError(f"{self.path} is not a gallery: it is not an SQLite database; it was left untouched")
        if len(head) < 100:
            raise GalleryError(f"gallery {self.path} is truncated ({size} bytes); restore it from a backup. It was left untouched")

    def _connect(self) -> sqlite3.Connection:
        mode = "ro" if self.readonly else "rw"  # rw: never create a file that vanished meanwhile
        uri = f"file:{urllib.parse.quote(str(self.path.resolve()))}?mode={mode}"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=self._timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise GalleryError(f"cannot open gallery {self.path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            conn.close()
            raise self._error(exc, "open") from exc
        return conn

    def _validate(self, check: str) -> dict[str, Any]:
        conn = self._conn
        assert conn is not None
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise self._error(exc, "open") from exc
        if app_id != APPLICATION_ID:
            raise GalleryError(
                f"{self.path} is an SQLite database but not a gfn-edge gallery (application_id {app_id:#x}); "
                f"it was left untouched. Give the gallery its own file name"
            )
        if version > SCHEMA_VERSION:
            raise GalleryError(
                f"gallery {self.path} has schema version {version}, newer than this gfn-edge reads "
                f"({SCHEMA_VERSION}); upgrade gfn-edge"
            )
        try:
            if check != "none":
                pragma = "integrity_check" if check == "full" else "quick_check"
                rows = [r[0] for r in conn.execute(f"PRAGMA {pragma}").fetchall()]
                if rows != ["ok"]:
                    detail = "; ".join(" ".join(str(r).split()) for r in rows)[:300]
                    raise GalleryError(
                        f"gallery {self.path} is damaged ({pragma}: {detail}); it was left untouched. "
                        f"Restore it from a backup, or re-enrol into a new file"
                    )
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            raise self._error(exc, "open") from exc
        missing = [k for k in ("signature", "dim", "schema_version", "generation") if k not in meta]
        if missing:
            raise GalleryError(f"gallery {self.path} lacks {', '.join(missing)} in its meta table; it is damaged. Restore it from a backup")
        return meta

    def _check_model(self, signature: str | None, dim: int | None) -> None:
        if signature is not None and signature != self._signature:
            raise GalleryError(
                f"gallery {self.path} was built with model {self._signature!r} but the recogniser in use is "
                f"{signature!r}: embeddings of different models are not comparable. Re-enrol everyone with "
                f"the new model into a new gallery, or keep using the bundle of {self._signature!r}"
            )
        if dim is not None and int(dim) != self._dim:
            raise GalleryError(
                f"gallery {self.path} holds {self._dim}-d embeddings (model {self._signature!r}) but {dim}-d "
                f"were given: re-enrol with the new model into a new gallery, or use the model it was built with"
            )

    def _error(self, exc: sqlite3.Error, action: str) -> GalleryError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return GalleryError(f"gallery {self.path} is locked by another process (could not {action} within {self._timeout:g} s)")
        if isinstance(exc, sqlite3.OperationalError) and ("readonly" in text or "read-only" in text):
            return GalleryError(f"gallery {self.path} is read-only (could not {action}): {text}")
        if "malformed" in text or "not a database" in text or "corrupt" in text:
            return GalleryError(
                f"gallery {self.path} is damaged ({text}); it was left untouched. "
                f"Restore it from a backup, or re-enrol into a new file"
            )
        if "full" in text:
            return GalleryError(f"could not {action} gallery {self.path}: {text}; free some disk space")
        return GalleryError(f"could not {action} gallery {self.path}: {text}. Nothing was changed; if this repeats the file may be damaged (restore a backup)")

    # --- plumbing -------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise GalleryError(f"gallery {self.path} is closed")
        if os.getpid() != self._pid:
            raise GalleryError(f"gallery {self.path} was opened before fork(); open it again in this process")
        return self._conn

    @contextmanager
    def _sql(self, action: str) -> Iterator[sqlite3.Connection]:
        conn = self._db()
        try:
            yield conn
        except sqlite3.Error as exc:
            raise self._error(exc, action) from exc

    @contextmanager
    def _transaction(self, action: str) -> Iterator[_Txn]:
        """One write transaction: all or nothing, bumping the generation other processes watch."""
        if self.readonly:
            raise GalleryError(f"gallery {self.path} was opened read-only; cannot {action}")
        with self._sql(action) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                txn = _Txn(self._generation(conn))
                yield txn
                if txn.changed:
                    conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (txn.generation + 1,))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:  # the connection is unusable; SQLite rolls back on reopen
                        log.exception("rollback failed on gallery %s", self.path)
                raise

    @staticmethod
    @contextmanager
    def _snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """A read transaction: several SELECTs see one consistent state, whatever others write."""
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    @staticmethod
    def _generation(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    def _after_write(self, txn: _Txn, update: Any) -> None:
        """Apply our own write to the cached matrix, if it was current; else it reloads later."""
        if not txn.changed:
            return
        if self._matrix is not None and self._matrix_generation == txn.generation:
            try:
                update(self._matrix)
                self._matrix_generation = txn.generation + 1
                return
            except Exception:  # the write is committed; never report it as failed
                log.exception("gallery %s: could not update the cached matrix; it will be reloaded", self.path)
                self._matrix = None
        self._matrix_generation = None

    def _current_matrix(self) -> _Matrix:
        with self._sql("read") as conn:
            if self._matrix is None or self._matrix_generation != self._generation(conn):
                self._reload(conn)
        assert self._matrix is not None
        return self._matrix

    def _reload(self, conn: sqlite3.Connection) -> None:
        """Read every template into one matrix, in one read transaction (a consistent snapshot)."""
        self._matrix = None  # free the old matrix first: never two in memory
        self._matrix_generation = None
        t0 = time.perf_counter()
        dim, width = self._dim, self._dim * _DTYPE.itemsize
        with self._snapshot(conn):
            generation = self._generation(conn)
            n = conn.execute("SELECT COUNT(*) FROM templates").fetchone()[0]
            m = _Matrix(dim, n + n // 16 + 64)  # a little room for enrolments
            slot_of = {ident: m.slot(name) for ident, name in conn.execute("SELECT id, name FROM identities ORDER BY id")}
            cur = conn.execute("SELECT identity, vector FROM templates ORDER BY id")
            while True:
                rows = cur.fetchmany(4096)
                if not rows:
                    break
                if any(len(blob) != width for _, blob in rows):
                    raise GalleryError(f"gallery {self.path} holds a template of the wrong size; it is damaged. Restore it from a backup")
                k = len(rows)
                block = np.frombuffer(b"".join(blob for _, blob in rows), _DTYPE).reshape(k, dim)
                m.vectors[m.n : m.n + k] = block
                m.owner[m.n : m.n + k] = [slot_of[ident] for ident, _ in rows]
                m.n += k
        # position of each row among its identity's templates (rows are in template-id order)
        owner = m.owner[: m.n]
        order = np.argsort(owner, kind="stable")
        counts = np.bincount(owner, minlength=len(m.names))
        starts = np.cumsum(counts) - counts
        m.pos[order] = np.arange(m.n) - np.repeat(starts, counts)
        m.counts = counts.tolist()
        self._matrix, self._matrix_generation = m, generation
        log.debug("gallery %s: loaded %d templates in %.3f s", self.path, m.n, time.perf_counter() - t0)

    # --- properties -----------------------------------------------------------------------
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
        with self._lock, self._sql("read") as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'threshold'").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        if value is not None and (not isinstance(value, (int, float, np.floating)) or not -1.0 <= float(value) <= 1.0):
            raise GalleryValueError(f"threshold must be a cosine similarity in [-1, 1], got {value!r}")
        with self._lock, self._transaction("set the threshold") as txn:
            txn.changed = False  # templates untouched: no need for others to reload the matrix
            self._db().execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('threshold', ?)", (None if value is None else float(value),))
            # a hand-set threshold is not the calibrated one: drop what the calibration was measured for
            self._db().execute("DELETE FROM meta WHERE key IN ('threshold_far', 'threshold_signature')")

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The stored threshold with what it was calibrated for: ``{"threshold", "target_far", "signature"}``.

        None unless :meth:`set_calibration` stored one: a bare ``threshold`` says nothing about
        the false-accept rate it gives, or on which recogniser it was measured.
        """
        with self._lock, self._sql("read") as conn:
            rows = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('threshold', 'threshold_far', 'threshold_signature')").fetchall())
        if rows.get("threshold") is None or rows.get("threshold_far") is None or not rows.get("threshold_signature"):
            return None
        return {"threshold": float(rows["threshold"]), "target_far": float(rows["threshold_far"]), "signature": str(rows["threshold_signature"])}

    def set_calibration(self, threshold: float, target_far: float, signature: str) -> None:
        """Store a threshold calibrated for ``target_far`` on the recogniser with ``signature`` (one transaction)."""
        if not isinstance(threshold, (int, float, np.floating)) or not math.isfinite(float(threshold)) or not -1.0 <= float(threshold) <= 1.0:
            raise GalleryValueError(f"threshold must be a finite cosine similarity in [-1, 1], got {threshold!r}")
        if not isinstance(target_far, (int, float, np.floating)) or not 0.0 < float(target_far) < 1.0:
            raise GalleryValueError(f"target_far must be a rate in (0, 1), got {target_far!r}")
        if not isinstance(signature, str) or not signature:
            raise GalleryValueError(f"signature must name the recogniser the threshold was measured on, got {signature!r}")
        with self._lock, self._transaction("store the calibration") as txn:
            txn.changed = False  # templates untouched: no need for others to reload the matrix
            self._db().executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [("threshold", float(threshold)), ("threshold_far", float(target_far)), ("threshold_signature", signature)],
            )

    @property
    def matrix_bytes(self) -> int:
        """Memory held by the cached template matrix (0 until the first search)."""
        m = self._matrix
        return 0 if m is None else m.vectors.nbytes + m.owner.nbytes + m.pos.nbytes

    # --- writing --------------------------------------------------------------------------
    def enroll(
        self,
        identity: str,
        embeddings: Any,
        replace: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> int:
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

    def _prepare(self, batch: Sequence[tuple[str, Any, Mapping[str, Any] | None]]) -> list[tuple[str, np.ndarray, str | None]]:
        """Check every name, vector and metadata before anything is written."""
        prepared = []
        for name, emb, meta in batch:
            name = _check_name(name)
            try:
                vectors = normalize_embeddings(emb, self._dim)
            except GalleryValueError as exc:
                raise GalleryValueError(f"{name!r}: {exc}") from None
            prepared.append((name, vectors, _dump_metadata(meta)))
        return prepared

    def _enroll_batch(self, batch: Sequence[tuple[str, Any, Mapping[str, Any] | None]], replace: bool) -> tuple[dict[str, int], int]:
        """Validate everything first, then write it all in one transaction; (totals, added)."""
        prepared = self._prepare(batch)
        now = time.time()
        totals: dict[str, int] = {}
        seen: set[str] = set()
        with self._lock:
            with self._transaction("enrol") as txn:
                conn = self._db()
                for name, vecs, meta in prepared:
                    row = conn.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
                    if row is None:
                        ident = conn.execute(
                            "INSERT INTO identities(name, metadata, created, updated) VALUES (?, ?, ?, ?)", (name, meta, now, now)
                        ).lastrowid
                    else:
                        ident = row[0]
                        if replace and name not in seen:
                            conn.execute("DELETE FROM templates WHERE identity = ?", (ident,))
                        conn.execute("UPDATE identities SET updated = ?, metadata = COALESCE(?, metadata) WHERE id = ?", (now, meta, ident))
                    seen.add(name)
                    conn.executemany(
                        "INSERT INTO templates(identity, vector, created) VALUES (?, ?, ?)", [(ident, v.tobytes(), now) for v in vecs]
                    )
                    if row is None or (replace and name not in totals):
                        totals[name] = totals.get(name, 0) + len(vecs)
                    else:
                        totals[name] = conn.execute("SELECT COUNT(*) FROM templates WHERE identity = ?", (ident,)).fetchone()[0]

            def update(m: _Matrix) -> None:
                done: set[str] = set()
                for name, vecs, _ in prepared:
                    if replace and name not in done:
                        m.drop(name)
                    done.add(name)
                    m.append(name, vecs)

            self._after_write(txn, update)
        added = sum(len(v) for _, v, _ in prepared)
        if len(prepared) > 10:
            log.info("gallery %s: enrolled %d identities (+%d templates)", self.path.name, len(totals), added)
        else:
            for name, vecs, _ in prepared:
                log.info("gallery %s: enrolled %r (+%d templates, %d in all)", self.path.name, name, len(vecs), totals[name])
        return totals, added

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
        images = list(images)
        if not images:
            raise GalleryValueError("enroll_images needs at least one image")
        if analyzer is None and embedder is not None and hasattr(embedder, "analyze"):
            analyzer, embedder = embedder, None
        source = analyzer if analyzer is not None else embedder
        if source is None:
            raise GalleryValueError("enroll_images needs an embedder (with embed(crops)) or an analyzer (with analyze(image))")
        other = getattr(source, "signature", None)
        if isinstance(other, str) and other != self._signature:
            raise GalleryError(
                f"gallery {self.path} was built with model {self._signature!r} but the recogniser given is {other!r}; "
                f"enrol with the same model the gallery uses"
            )
        skipped: list[int] = []
        rejected: dict[int, list[str]] = {}
        if analyzer is not None:
            vectors = []
            for i, image in enumerate(images):
                faces = list(analyzer.analyze(image) or [])
                if not faces:
                    skipped.append(i)
                    continue
                if len(faces) > 1:
                    log.warning("enrolment image %d of %r shows %d faces; using the largest", i, identity, len(faces))
                face = max(faces, key=_face_area)  # never a smaller one: it may be a passer-by
                if require_quality and getattr(face, "passed", True) is False:
                    rejected[i] = list(getattr(face, "rejected_reasons", None) or ["quality"])
                    continue
                if getattr(face, "embedding", None) is None:
                    raise GalleryValueError("the analyzer returned faces without embeddings; give it a recogniser")
                vectors.append(np.asarray(face.embedding).reshape(-1))
            if skipped or rejected:
                log.warning("enrolment of %r: no face in images %s; failed quality gates: %s", identity, skipped, rejected)
            if not vectors:
                raise GalleryValueError(
                    f"no usable face in the {len(images)} images of {identity!r} (no face: {skipped}, failed quality "
                    f"gates: {rejected}); nothing was enrolled"
                )
            embeddings = np.stack(vectors)
        else:
            embeddings = np.asarray(embedder.embed(images))
            if embeddings.ndim == 1:
                embeddings = embeddings[None]
        total = self.enroll(identity, embeddings, replace=replace, metadata=metadata)
        return EnrollReport(identity, len(embeddings), total, skipped, rejected)

    def remove(self, identity: str) -> int:
        """Delete an identity and its templates; returns how many templates went (0 if unknown)."""
        with self._lock:
            with self._transaction("remove an identity") as txn:
                conn = self._db()
                row = conn.execute("SELECT id FROM identities WHERE name = ?", (identity,)).fetchone()
                if row is None:
                    txn.changed = False
                    return 0
                n = conn.execute("DELETE FROM templates WHERE identity = ?", (row[0],)).rowcount
                conn.execute("DELETE FROM identities WHERE id = ?", (row[0],))
            self._after_write(txn, lambda m: m.drop(identity))
        log.info("gallery %s: removed %r (%d templates)", self.path.name, identity, n)
        return n

    # --- reading --------------------------------------------------------------------------
    def identities(self) -> list[str]:
        """Enrolled names, sorted."""
        with self._lock, self._sql("read") as conn:
            return [r[0] for r in conn.execute("SELECT name FROM identities ORDER BY name")]

    def count(self) -> int:
        """Number of enrolled identities."""
        with self._lock, self._sql("read") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM identities").fetchone()[0])

    @property
    def num_templates(self) -> int:
        with self._lock, self._sql("read") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM templates").fetchone()[0])

    def __len__(self) -> int:
        return self.count()

    def __iter__(self) -> Iterator[str]:
        return iter(self.identities())

    def __contains__(self, identity: object) -> bool:
        if not isinstance(identity, str):
            return False
        with self._lock, self._sql("read") as conn:
            return conn.execute("SELECT 1 FROM identities WHERE name = ?", (identity,)).fetchone() is not None

    def embeddings(self, identity: str) -> np.ndarray:
        """The identity's templates, (n, dim) float32, exactly as stored, in enrolment order."""
        with self._lock, self._sql("read") as conn, self._snapshot(conn):
            row = conn.execute("SELECT id FROM identities WHERE name = ?", (identity,)).fetchone()
            if row is None:
                raise UnknownIdentityError(f"{identity!r} is not enrolled in gallery {self.path}")
            blobs = [r[0] for r in conn.execute("SELECT vector FROM templates WHERE identity = ? ORDER BY id", (row[0],))]
        return np.frombuffer(b"".join(blobs), _DTYPE).reshape(len(blobs), self._dim).astype(np.float32)

    def metadata(self, identity: str) -> dict[str, Any]:
        with self._lock, self._sql("read") as conn:
            row = conn.execute("SELECT metadata FROM identities WHERE name = ?", (identity,)).fetchone()
        if row is None:
            raise UnknownIdentityError(f"{identity!r} is not enrolled in gallery {self.path}")
        return json.loads(row[0]) if row[0] else {}

    # --- search ---------------------------------------------------------------------------
    def search(self, embedding: Any, k: int = 5, threshold: float | None = None, aggregate: str = "max") -> list[Any]:
        """Rank identities by similarity to one embedding (-> list[Match]) or a batch (-> list of lists).

        An identity's score is the best cosine over its templates (``aggregate="max"``): a person
        enrolled with several poses matches on the closest pose, and adding templates never hurts
        a genuine match. Calibrate thresholds with the number of templates used in production:
        more templates give impostors more chances too. ``aggregate="mean"`` averages instead.
        Results are at most ``k`` distinct identities, best first, with score >= ``threshold``.
        """
        if aggregate not in _AGGREGATES:
            raise GalleryValueError(f"aggregate must be one of {_AGGREGATES}, got {aggregate!r}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise GalleryValueError(f"k must be a positive integer, got {k!r}")
        arr = np.asarray(embedding)
        single = arr.ndim == 1
        if arr.ndim == 2 and arr.shape[0] == 0:
            return []
        queries = normalize_embeddings(arr, self._dim)
        with self._lock:
            m = self._current_matrix()
            if m.n == 0:
                return [] if single else [[] for _ in range(len(queries))]
            scores = queries @ m.vectors[: m.n].T  # (B, n): the 1:N search, one matrix product
            ranked = [self._rank(m, s, int(k), threshold, aggregate) for s in scores]
        return ranked[0] if single else ranked

    def best(self, embedding: Any, threshold: float | None = None, margin: float = 0.0) -> Match | None:
        """The top match if it clears ``threshold`` (default: the gallery's stored one), else None.

        ``margin`` > 0 also demands the runner-up identity score that much lower: an ambiguous
        face (two similar people enrolled) is better refused at a door than guessed.
        """
        thr = self.threshold if threshold is None else threshold
        if thr is None:
            raise GalleryValueError("best() needs a threshold: pass threshold= or set gallery.threshold (calibrated for the model)")
        if np.asarray(embedding).ndim != 1:
            raise GalleryValueError("best() takes one embedding; use search() for a batch")
        matches = self.search(embedding, k=2 if margin > 0 else 1)
        if not matches or matches[0].score < thr:
            return None
        if margin > 0 and len(matches) > 1 and matches[0].score - matches[1].score < margin:
            return None
        return matches[0]

    @staticmethod
    def _rank(m: _Matrix, s: np.ndarray, k: int, threshold: float | None, aggregate: str) -> list[Match]:
        if aggregate == "mean":
            counts = np.asarray(m.counts, np.float64)
            sums = np.bincount(m.owner[: m.n], weights=s, minlength=len(counts))
            per_identity = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)
            order = np.argsort(-per_identity, kind="stable")[:k]
            out = []
            for slot in order:
                score = float(per_identity[slot])
                if not math.isfinite(score) or (threshold is not None and score < threshold):
                    break
                rows = np.flatnonzero(m.owner[: m.n] == slot)
                row = rows[int(np.argmax(s[rows]))]
                out.append(Match(m.names[slot], min(max(score, -1.0), 1.0), int(m.pos[row])))
            return out
        # max: the top-k identities' best rows are among the top rows; widen until k distinct
        n = len(s)
        want = min(n, max(4 * k, 32))
        while True:
            cand = np.argpartition(s, n - want)[n - want :] if want < n else np.arange(n)
            cand = cand[np.argsort(-s[cand], kind="stable")]
            exhausted = want == n
            if threshold is not None:
                above = s[cand] >= threshold
                if not above.all():
                    cand, exhausted = cand[above], True
            _, first = np.unique(m.owner[cand], return_index=True)
            if len(first) >= k or exhausted:
                rows = cand[np.sort(first)[:k]]
                return [Match(m.names[m.owner[r]], min(max(float(s[r]), -1.0), 1.0), int(m.pos[r])) for r in rows]
            want = min(n, want * 4)

    def refresh(self) -> None:
        """Load (or reload) the template matrix now, e.g. at start-up, so the first search is fast."""
        with self._lock:
            self._current_matrix()

    # --- backup ---------------------------------------------------------------------------
    def backup(self, dest: str | os.PathLike[str]) -> Path:
        """A consistent copy of the gallery (SQLite online backup), safe while others write.

        Written to a temporary file and linked into place, so ``dest`` is whole or absent; an
        existing ``dest`` is refused.
        """
        dest = Path(dest)
        if dest.exists():
            raise GalleryError(f"backup target {dest} exists; remove it or choose another name")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".backup", dir=dest.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            target = sqlite3.connect(str(tmp))
            try:
                with self._lock, self._sql("back up") as conn:
                    conn.backup(target)
            finally:
                target.close()
            _fsync_file(tmp)
            os.link(tmp, dest)
            _fsync_dir(dest.parent)
        finally:
            for extra in ("", "-wal", "-shm", "-journal"):
                Path(str(tmp) + extra).unlink(missing_ok=True)
        log.info("gallery %s backed up to %s", self.path, dest)
        return dest

    def export_npz(self, dest: str | os.PathLike[str]) -> Path:
        """Every template with its identity, plus signature and metadata, as a portable .npz."""
        with self._lock, self._sql("export") as conn, self._snapshot(conn):
            rows = conn.execute("SELECT i.name, t.vector FROM templates t JOIN identities i ON i.id = t.identity ORDER BY t.id").fetchall()
            meta = {name: json.loads(md) if md else {} for name, md in conn.execute("SELECT name, metadata FROM identities")}
        vectors = np.frombuffer(b"".join(r[1] for r in rows), _DTYPE).reshape(len(rows), self._dim)
        dest = Path(dest)
        tmp = dest.with_name(dest.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                names=np.asarray([r[0] for r in rows], dtype=str),
                vectors=vectors,
                signature=np.asarray(self._signature),
                metadata=np.asarray(json.dumps(meta)),
            )
        os.replace(tmp, dest)
        return dest

    def import_npz(self, src: str | os.PathLike[str], replace: bool = False) -> int:
        """Enrol everything from ``export_npz`` output in one transaction; refuses another model's."""
        with np.load(src, allow_pickle=False) as data:
            signature = str(data["signature"])
            names, vectors = data["names"].tolist(), data["vectors"]
            meta = json.loads(str(data["metadata"]))
        if signature != self._signature:
            raise GalleryError(f"{src} was exported from a gallery of model {signature!r}; this gallery is {self._signature!r}")
        grouped: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            grouped.setdefault(name, []).append(i)
        batch = [(name, vectors[idx], meta.get(name) or None) for name, idx in grouped.items()]
        if batch:
            self._enroll_batch(batch, replace)
        return len(names)

    # --- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                if os.getpid() == self._pid:
                    self._conn.close()
                self._conn = None
            self._matrix = None

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else f"{self._signature}, dim {self._dim}"
        return f"Gallery({str(self.path)!r}, {state})"


def _schema(dim: int) -> str:
    return f"""
    BEGIN;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
    CREATE TABLE identities (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        metadata TEXT,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE templates (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        identity INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
        vector BLOB NOT NULL CHECK (typeof(vector) = 'blob' AND length(vector) = {dim * _DTYPE.itemsize}),
        created REAL NOT NULL
    );
    CREATE INDEX templates_by_identity ON templates(identity, id);
    COMMIT;
    """


def _face_area(face: Any) -> float:
    box = getattr(face, "box", None)
    if box is None:
        box = getattr(face, "bbox", None)
    if box is None:
        return 0.0
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box).reshape(-1)[:4])
    return max(x2 - x1, 0.0) * max(y2 - y1, 0.0)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory
        pass
    finally:
        os.close(fd)
