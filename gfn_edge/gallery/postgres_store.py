"""A gallery on PostgreSQL + pgvector: one gallery shared by many doors (``postgresql://`` URLs).

Same contract as the SQLite store (gfn_edge/gallery/store.py): signature and dim checked on
open, every write one transaction that bumps the ``generation``, templates stored bit-exact with
the CRC-32 of ``codec.template_checksum`` and quarantined on load when it fails. What the server
adds:

* every template is also a pgvector ``vector(dim)`` column, so the server itself can answer a
  1:N query (``nearest``): exact (a scan) by default, through an HNSW index (cosine) once the
  gallery holds ``hnsw_min_templates`` or more (``ensure_index``). Doors do not search here:
  they search their local replica (gfn_edge/gallery/replica.py), which never waits on a network;
* every write sends ``NOTIFY gfn_gallery, '<generation>'`` in its transaction, so replicas
  refresh within a second of a commit, and every identity row records the generation that last
  changed it, so a refresh reads only what changed.

One database holds one gallery (tables ``gfn_gallery``, ``gfn_identities``, ``gfn_templates``)
beside anything else (the fleet's event log lives there too). The connection is re-opened
after the server went away, so a long-lived store survives a server restart.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GalleryError
from . import codec
from .integrity import verify_rows
from .postgres_schema import SCHEMA_VERSION, header_checksum, redact_url, schema_sql
from .postgres_search import HNSW_MIN_TEMPLATES, ServerSearch
from .store import (
    GalleryStore,
    LoadedTemplates,
    NewTemplates,
    StoreInfo,
    ThresholdRecord,
    WriteResult,
)
from .types import UnknownIdentityError

try:
    import psycopg
    from pgvector.psycopg import register_vector
except ModuleNotFoundError as _exc:  # open_store turns this into MissingDependencyError
    raise ModuleNotFoundError(f"the PostgreSQL gallery needs {_exc.name}: pip install 'gfn-edge[postgres]'", name=_exc.name) from None

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "gfn_gallery"
_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}  # a dead link: ~11 s


class PostgresStore(ServerSearch, GalleryStore):
    """``GalleryStore`` on a PostgreSQL server with the pgvector extension."""

    def __init__(
        self,
        location: str,
        signature: str | None = None,
        dim: int | None = None,
        *,
        create: bool = True,
        readonly: bool = False,
        check: str = "quick",
        timeout: float = 5.0,
        hnsw_min_templates: int = HNSW_MIN_TEMPLATES,
    ):
        self.url = str(location)
        self.location = redact_url(self.url)
        self.readonly = bool(readonly)
        self.hnsw_min_templates = int(hnsw_min_templates)
        self._timeout = float(timeout)
        self._lock = threading.RLock()
        self._conn: Any = None
        self._closed = False
        self._pid = os.getpid()
        with self._lock:
            if not self._exists():
                if not create or readonly:
                    raise GalleryError(f"gallery {self.location} does not exist (no gfn_gallery table in that database)")
                self._create(signature, dim)
            info = self.info()
            if check == "full":
                self._full_check(info.dim)
        self._dim = info.dim
        if signature is not None and signature != info.signature:
            self.close()
            raise GalleryError(
                f"gallery {self.location} was built with model {info.signature!r} but the recogniser in use is {signature!r}: "
                f"embeddings of different models are not comparable. Re-enrol everyone with the new model into a new "
                f"gallery, or keep using the bundle of {info.signature!r}"
            )
        if dim is not None and int(dim) != info.dim:
            self.close()
            raise GalleryError(
                f"gallery {self.location} holds {info.dim}-d embeddings (model {info.signature!r}) but {dim}-d were given: "
                f"re-enrol with the new model into a new gallery, or use the model it was built with"
            )

    # --- connection -------------------------------------------------------------------------
    def _connection(self) -> Any:
        if self._closed:
            raise GalleryError(f"gallery {self.location} is closed")
        if os.getpid() != self._pid:
            raise GalleryError(f"gallery {self.location} was opened before fork(); open it again in this process")
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self._timeout)), **_KEEPALIVE)
                self._conn.execute(f"SET lock_timeout = {int(self._timeout * 1000)}")  # not in options=: the URL may carry its own
                if self.readonly:
                    self._conn.execute("SET default_transaction_read_only = on")
            except psycopg.Error as exc:
                raise GalleryError(f"cannot reach the gallery server {self.location}: {_first_line(exc)}") from None
            try:
                register_vector(self._conn)
            except psycopg.ProgrammingError:
                pass  # no vector type yet: only before the gallery is created
        return self._conn

    @contextmanager
    def _txn(self, action: str, write: bool = False) -> Iterator[Any]:
        """One transaction; psycopg errors become GalleryError and nothing is left half-done."""
        if write and self.readonly:
            raise GalleryError(f"gallery {self.location} was opened read-only; cannot {action}")
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    if not write:
                        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # one snapshot for all reads
                    yield conn
            except psycopg.errors.LockNotAvailable:
                raise GalleryError(f"gallery {self.location} is locked by another writer (could not {action} within {self._timeout:g} s)") from None
            except psycopg.OperationalError as exc:
                raise GalleryError(f"could not {action} gallery {self.location}: the server is unreachable ({_first_line(exc)})") from None
            except psycopg.Error as exc:
                raise GalleryError(f"could not {action} gallery {self.location}: {_first_line(exc)}. Nothing was changed") from None

    def _exists(self) -> bool:
        with self._txn("open") as conn:
            return conn.execute("SELECT to_regclass('gfn_gallery') IS NOT NULL").fetchone()[0]

    def _create(self, signature: str | None, dim: int | None) -> None:
        if not isinstance(signature, str) or not signature.strip():
            raise GalleryError(f"creating gallery {self.location} needs signature= (the recogniser's model signature)")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 0 < int(dim) <= 16000:
            raise GalleryError(f"creating gallery {self.location} needs dim= (the embedding size, 1..16000 for pgvector), got {dim!r}")
        with self._txn("create", write=True) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('gfn_gallery create'))")  # two creators: one gallery
            if conn.execute("SELECT to_regclass('gfn_gallery') IS NOT NULL").fetchone()[0]:
                return
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.errors.InsufficientPrivilege:
                raise GalleryError(
                    f"gallery {self.location} needs the pgvector extension, and this user may not create it: "
                    f"ask the database administrator to run CREATE EXTENSION vector in that database"
                ) from None
            conn.execute(schema_sql(int(dim)))
            conn.execute(
                "INSERT INTO gfn_gallery VALUES (1, %s, %s, %s, NULL, %s, 0, %s)",
                (signature, int(dim), SCHEMA_VERSION, header_checksum(signature, int(dim), SCHEMA_VERSION, None), time.time()),
            )
        register_vector(self._conn)
        log.info("created gallery %s (%s, dim %d)", self.location, signature, dim)

    def _full_check(self, dim: int) -> None:
        with self._txn("check") as conn:
            bad = conn.execute("SELECT count(*) FROM gfn_templates WHERE octet_length(vector) <> %s", (dim * 4,)).fetchone()[0]
        if bad:
            log.error("gallery %s: %d templates have the wrong size; they are quarantined on load", self.location, bad)

    # --- header -------------------------------------------------------------------------------
    def info(self) -> StoreInfo:
        with self._txn("read") as conn:
            row = conn.execute("SELECT signature, dim, schema_version, threshold, checksum FROM gfn_gallery WHERE id = 1").fetchone()
        if row is None:
            raise GalleryError(f"gallery {self.location} has no header row; it is damaged. Restore it from a backup")
        signature, dim, version, threshold, checksum = row
        if version > SCHEMA_VERSION:
            raise GalleryError(f"gallery {self.location} has schema version {version}, newer than this gfn-edge reads ({SCHEMA_VERSION}); upgrade gfn-edge")
        if header_checksum(signature, dim, version, threshold) != checksum:
            raise GalleryError(f"gallery {self.location}: its header (model, dim, threshold) fails its checksum; it is damaged. Restore it from a backup")
        record = ThresholdRecord.from_dict(threshold) if threshold is not None else None
        return StoreInfo(signature, int(dim), int(version), record)

    def set_threshold(self, record: ThresholdRecord | None) -> None:
        if record is not None:
            codec.check_threshold(record.value)
        data = None if record is None else record.to_dict()
        with self._txn("set the threshold", write=True) as conn:
            signature, dim, version, generation = conn.execute(
                "SELECT signature, dim, schema_version, generation FROM gfn_gallery WHERE id = 1 FOR UPDATE"
            ).fetchone()
            conn.execute(
                "UPDATE gfn_gallery SET threshold = %s, checksum = %s WHERE id = 1",
                (None if data is None else psycopg.types.json.Jsonb(data), header_checksum(signature, dim, version, data)),
            )
            conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(generation)))

    def generation(self) -> int:
        with self._txn("read") as conn:
            return int(conn.execute("SELECT generation FROM gfn_gallery WHERE id = 1").fetchone()[0])

    # --- reading ------------------------------------------------------------------------------
    def load(self) -> LoadedTemplates:
        with self._txn("read") as conn:
            generation = int(conn.execute("SELECT generation FROM gfn_gallery WHERE id = 1").fetchone()[0])
            names = [r[0] for r in conn.execute("SELECT name FROM gfn_identities ORDER BY id")]
            rows = self._rows(conn, "", ())
        keep, vectors, damaged = verify_rows(rows, self._dim, self.location, names=names)
        position = {name: i for i, name in enumerate(names)}
        owners = np.asarray([position[rows[i][1]] for i in keep], np.int32)
        return LoadedTemplates(generation, names, owners, np.ascontiguousarray(vectors), damaged)

    @staticmethod
    def _rows(conn: Any, where: str, args: tuple) -> list[tuple[int, str | None, bytes, int]]:
        """(template id, identity name, vector bytes, checksum) of the templates matching ``where``, in id order."""
        cur = conn.cursor(binary=True)
        cur.execute(
            f"SELECT t.id, i.name, t.vector, t.checksum FROM gfn_templates t LEFT JOIN gfn_identities i ON i.id = t.identity {where} ORDER BY t.id", args
        )
        return [(int(tid), name, bytes(blob), int(crc)) for tid, name, blob, crc in cur]

    def identities(self) -> list[str]:
        with self._txn("read") as conn:
            return sorted(r[0] for r in conn.execute("SELECT name FROM gfn_identities"))

    def count_identities(self) -> int:
        with self._txn("read") as conn:
            return int(conn.execute("SELECT count(*) FROM gfn_identities").fetchone()[0])

    def count_templates(self) -> int:
        with self._txn("read") as conn:
            return int(conn.execute("SELECT count(*) FROM gfn_templates").fetchone()[0])

    def contains(self, identity: str) -> bool:
        with self._txn("read") as conn:
            return conn.execute("SELECT 1 FROM gfn_identities WHERE name = %s", (identity,)).fetchone() is not None

    def embeddings(self, identity: str) -> np.ndarray:
        with self._txn("read") as conn:
            if conn.execute("SELECT 1 FROM gfn_identities WHERE name = %s", (identity,)).fetchone() is None:
                raise UnknownIdentityError(f"{identity!r} is not enrolled in gallery {self.location}")
            rows = self._rows(conn, "WHERE i.name = %s", (identity,))
        return np.ascontiguousarray(verify_rows(rows, self._dim, self.location)[1])

    def metadata(self, identity: str) -> dict[str, Any]:
        with self._txn("read") as conn:
            row = conn.execute("SELECT metadata FROM gfn_identities WHERE name = %s", (identity,)).fetchone()
        if row is None:
            raise UnknownIdentityError(f"{identity!r} is not enrolled in gallery {self.location}")
        try:
            return json.loads(row[0]) if row[0] else {}
        except ValueError:
            raise GalleryError(f"gallery {self.location}: the metadata of {identity!r} is damaged (not JSON)") from None

    def changes_since(self, generation: int) -> tuple[int, list[str], list[tuple[str, str | None, np.ndarray]]]:
        """(current generation, every enrolled name, [(name, metadata JSON, templates)] changed after ``generation``).

        What a replica needs to catch up: names it holds that are not in the list were removed;
        the changed identities come with all their intact templates (damaged ones are logged and
        left out, as on load). One consistent snapshot.
        """
        with self._txn("read") as conn:
            current = int(conn.execute("SELECT generation FROM gfn_gallery WHERE id = 1").fetchone()[0])
            names = [r[0] for r in conn.execute("SELECT name FROM gfn_identities ORDER BY id")]
            changed = conn.execute("SELECT name, metadata FROM gfn_identities WHERE changed > %s ORDER BY id", (generation,)).fetchall()
            rows = self._rows(conn, "WHERE i.changed > %s", (generation,)) if changed else []
        keep, vectors, _ = verify_rows(rows, self._dim, self.location)
        mine: dict[str, list[int]] = {}
        for j, i in enumerate(keep):
            mine.setdefault(rows[i][1], []).append(j)
        out = [(name, meta, np.ascontiguousarray(vectors[mine.get(name, [])])) for name, meta in changed]
        return current, names, out

    # --- writing ------------------------------------------------------------------------------
    @contextmanager
    def _write(self, action: str) -> Iterator[tuple[Any, list[int]]]:
        """A write transaction holding the header row: writers queue here, the generation moves by one."""
        with self._txn(action, write=True) as conn:
            before = int(conn.execute("SELECT generation FROM gfn_gallery WHERE id = 1 FOR UPDATE").fetchone()[0])
            state = [before, before]  # [before, after]: the body sets after = before + 1 when it changed anything
            yield conn, state
            if state[1] != state[0]:
                conn.execute("UPDATE gfn_gallery SET generation = %s WHERE id = 1", (state[1],))
                conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(state[1])))

    def add(self, batch: list[NewTemplates], replace: bool) -> WriteResult:
        for item in batch:
            codec.require_storable(item.vectors, self._dim)
        now = time.time()
        metadata: dict[str, str | None] = {}
        for item in batch:  # a name repeated in the batch: its last given metadata wins, as one write after another would
            if item.identity not in metadata or item.metadata_json is not None:
                metadata[item.identity] = item.metadata_json if item.metadata_json is not None else metadata.get(item.identity)
        names = list(metadata)
        with self._write("enrol") as (conn, state):
            after = state[1] = state[0] + 1
            ids = dict(
                conn.execute(
                    "INSERT INTO gfn_identities(name, metadata, created, updated, changed) "
                    "SELECT n, m, %s, %s, %s FROM unnest(%s::text[], %s::text[]) AS u(n, m) "
                    "ON CONFLICT (name) DO UPDATE SET updated = EXCLUDED.updated, changed = EXCLUDED.changed, "
                    "metadata = COALESCE(EXCLUDED.metadata, gfn_identities.metadata) RETURNING name, id",
                    (now, now, after, names, [metadata[n] for n in names]),
                ).fetchall()
            )
            if replace:
                conn.execute("DELETE FROM gfn_templates WHERE identity = ANY(%s)", (list(ids.values()),))
            with conn.cursor() as cur:  # one binary COPY for every template of the batch
                with cur.copy("COPY gfn_templates (identity, vector, checksum, embedding, created) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(["int8", "bytea", "int8", "vector", "float8"])
                    for item in batch:
                        ident = ids[item.identity]
                        for v in item.vectors:
                            blob = codec.encode(v)
                            copy.write_row((ident, blob, codec.template_checksum(item.identity, blob), v, now))
            counts = dict(
                conn.execute("SELECT identity, count(*) FROM gfn_templates WHERE identity = ANY(%s) GROUP BY identity", (list(ids.values()),)).fetchall()
            )
        totals = {name: int(counts.get(ident, 0)) for name, ident in ids.items()}
        return WriteResult(state[0], state[1], totals=totals)

    def remove(self, identity: str) -> WriteResult:
        with self._write("remove an identity") as (conn, state):
            row = conn.execute("SELECT id FROM gfn_identities WHERE name = %s", (identity,)).fetchone()
            removed = 0
            if row is not None:
                removed = conn.execute("DELETE FROM gfn_templates WHERE identity = %s", (row[0],)).rowcount
                conn.execute("DELETE FROM gfn_identities WHERE id = %s", (row[0],))
                state[1] = state[0] + 1
        return WriteResult(state[0], state[1], removed=removed)

    # --- lifetime -----------------------------------------------------------------------------
    def backup(self, dest: str | os.PathLike[str]) -> Path:
        from .store import open_store

        dest = Path(dest)
        if dest.exists():
            raise GalleryError(f"backup target {dest} exists; remove it or choose another name")
        info = self.info()
        loaded = self.load()
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.backup")
        try:
            store = open_store(str(tmp), info.signature, info.dim, create=True)
            try:
                with self._txn("back up") as conn:
                    meta = dict(conn.execute("SELECT name, metadata FROM gfn_identities").fetchall())
                order = np.argsort(loaded.owners, kind="stable")
                bounds = np.searchsorted(loaded.owners[order], np.arange(len(loaded.names) + 1))
                batch = [
                    NewTemplates(name, np.ascontiguousarray(loaded.vectors[order[bounds[i] : bounds[i + 1]]], codec.DTYPE), meta.get(name))
                    for i, name in enumerate(loaded.names)
                    if bounds[i + 1] > bounds[i]
                ]
                if batch:
                    store.add(batch, replace=False)
                store.set_threshold(info.threshold)
            finally:
                store.close()
            os.link(tmp, dest)
        finally:
            for extra in ("", "-wal", "-shm", "-journal"):
                Path(str(tmp) + extra).unlink(missing_ok=True)
        log.info("gallery %s backed up to %s (%d templates)", self.location, dest, len(loaded.vectors))
        return dest

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None and os.getpid() == self._pid:
                try:
                    self._conn.close()
                except psycopg.Error:
                    pass
            self._conn = None

    def __repr__(self) -> str:
        return f"PostgresStore({self.location!r})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
