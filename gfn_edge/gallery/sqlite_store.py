"""``SQLiteStore``: a gallery in one SQLite file on the device (the default store).

Why SQLite: a door unit loses power or gets killed mid-enrolment. SQLite in WAL mode gives
atomic, durable transactions in a single file that any tool can open, so an enrolment is either
wholly stored or not at all, and identities enrolled earlier are never at risk.

Durability: ``synchronous=FULL``. With WAL, ``NORMAL`` already keeps the file consistent after a
crash, but a power cut may undo the last few commits; FULL costs one fsync per enrolment (rare
on a door unit) and means "enrolled" on the screen stays true after the power comes back.

Concurrency: one connection per store; any number of processes may open the same file: writers
serialise on SQLite's lock (``BEGIN IMMEDIATE`` + busy timeout), readers never block, and the
``generation`` counter tells a reader its matrix is stale. Open stores after ``fork()``, not
before. WAL needs a local filesystem (not NFS/SMB). The file layout is in ``sqlite_schema``.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GalleryError
from . import sqlite_schema as schema
from .codec import require_storable, template_checksum
from .integrity import verify_rows
from .sqlite_files import online_backup, sidecars, storage_error, tidy_readonly_sidecars
from .store import (
    CHECKS,
    DamagedTemplate,
    GalleryStore,
    LoadedTemplates,
    NewTemplates,
    StoreInfo,
    ThresholdRecord,
    WriteResult,
)
from .types import GalleryValueError, UnknownIdentityError

log = logging.getLogger("gfn_edge.gallery")

# what a damaged file can make the sqlite3 module raise (an undecodable error text included)
_STORAGE_ERRORS = (sqlite3.Error, UnicodeDecodeError)


class SQLiteStore(GalleryStore):
    """One gallery file; see ``GalleryStore`` for the contract and ``sqlite_schema`` for the layout."""

    def __init__(
        self,
        location: str | os.PathLike[str],
        signature: str | None = None,
        dim: int | None = None,
        *,
        create: bool = True,
        readonly: bool = False,
        check: str = "quick",
        timeout: float = 5.0,
    ):
        if check not in CHECKS:
            raise GalleryValueError(f"check must be one of {CHECKS}, got {check!r}")
        self.path = Path(location)
        self.location = str(self.path)
        self.readonly = bool(readonly)
        self._timeout = float(timeout)
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = None
        if self.path.is_dir():
            raise GalleryError(f"gallery path {self.path} is a folder; give a file name such as {self.path / 'gallery.db'}")
        if not self.path.exists():
            if not create or readonly:
                raise GalleryError(f"gallery {self.path} does not exist")
            schema.create_file(self.path, signature, dim)
        schema.check_file_header(self.path)
        self._sidecars_before = sidecars(self.path)
        self._conn = self._connect()
        try:
            version = self._check_identity()
            if check != "none":
                self._structure_check(check)
            meta = self._read_meta(version)
            self._signature, self._dim = str(meta["signature"]), int(meta["dim"])
            self._check_model(signature, dim)
            self._schema_version = version
            if version < schema.SCHEMA_VERSION and not self.readonly:
                with self._transaction("migrate to schema version 2", bump=False):
                    schema.migrate_v1(self._db(), self.path, meta)
                self._schema_version = schema.SCHEMA_VERSION
            elif version < schema.SCHEMA_VERSION:
                log.warning("gallery %s has schema version %d (no template checksums); open it read-write once to migrate it", self.path, version)
            if not self.readonly:
                mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    self._conn.execute("PRAGMA journal_mode=WAL")
        except _STORAGE_ERRORS as exc:
            self.close()
            raise self._error(exc, "open") from exc
        except BaseException:
            self.close()
            raise
        log.debug("opened gallery %s (%s, dim %d)", self.path, self._signature, self._dim)

    # --- opening ------------------------------------------------------------------------
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
        except _STORAGE_ERRORS as exc:
            conn.close()
            raise self._error(exc, "open") from exc
        return conn

    def _check_identity(self) -> int:
        conn = self._db()
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id != schema.APPLICATION_ID:
            raise GalleryError(
                f"{self.path} is an SQLite database but not a gfn-edge gallery (application_id {app_id:#x}); "
                f"it was left untouched. Give the gallery its own file name"
            )
        if version > schema.SCHEMA_VERSION:
            raise GalleryError(f"gallery {self.path} has schema version {version}, newer than this gfn-edge reads ({schema.SCHEMA_VERSION}); upgrade gfn-edge")
        if version < 1:
            raise GalleryError(f"gallery {self.path} has no valid schema version ({version}) in its header; it is damaged. Restore it from a backup")
        return int(version)

    def _structure_check(self, check: str) -> None:
        pragma = "integrity_check" if check == "full" else "quick_check"
        rows = [r[0] for r in self._db().execute(f"PRAGMA {pragma}").fetchall()]
        if rows != ["ok"]:
            detail = "; ".join(" ".join(str(r).split()) for r in rows)[:300]
            raise GalleryError(
                f"gallery {self.path} is damaged ({pragma}: {detail}); it was left untouched. Restore it from a backup, or re-enrol into a new file"
            )

    def _read_meta(self, version: int | None = None) -> dict[str, Any]:
        """The meta table, its header checksum verified (schema 2); damage is refused, never fixed."""
        version = self._schema_version if version is None else version
        meta = dict(self._db().execute("SELECT key, value FROM meta").fetchall())
        required = schema.REQUIRED_KEYS if version >= 2 else ("signature", "dim", "schema_version", "generation")
        missing = [k for k in required if k not in meta]
        if missing:
            raise GalleryError(f"gallery {self.path} lacks {', '.join(missing)} in its meta table; it is damaged. Restore it from a backup")
        if version >= 2:
            want = schema.header_checksum(*(meta.get(k) for k in schema.HEADER_KEYS))
            if meta["header_crc"] != want:
                raise GalleryError(
                    f"gallery {self.path}: its header (signature, dim, schema version, threshold) fails its checksum; "
                    f"it is damaged and was left untouched. Restore it from a backup"
                )
        if meta["schema_version"] != version:
            raise GalleryError(
                f"gallery {self.path}: schema version {meta['schema_version']!r} in meta disagrees with the file header ({version}); it is damaged"
            )
        signature, dim = meta["signature"], meta["dim"]
        if not isinstance(signature, str) or not signature or isinstance(dim, bool) or not isinstance(dim, int) or not 0 < dim <= 65536:
            raise GalleryError(f"gallery {self.path} has an invalid signature or dim ({signature!r}, {dim!r}); it is damaged. Restore it from a backup")
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

    def _error(self, exc: Exception, action: str) -> GalleryError:
        return storage_error(self.path, exc, action, self._timeout)

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
        except _STORAGE_ERRORS as exc:
            raise self._error(exc, action) from exc

    @contextmanager
    def _transaction(self, action: str, bump: bool = True) -> Iterator[list[int]]:
        """One write transaction, all or nothing; yields [generation before, generation after].

        The generation is bumped at commit when ``bump`` and the body left ``after > before``
        requested (``gen[1] = gen[0] + 1``); ``bump=False`` writes leave it alone.
        """
        if self.readonly:
            raise GalleryError(f"gallery {self.path} was opened read-only; cannot {action}")
        with self._sql(action) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                before = self._read_generation(conn)
                gen = [before, before + 1 if bump else before]
                yield gen
                if gen[1] != before:
                    conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (gen[1],))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:  # the connection is unusable; SQLite rolls back on reopen
                        log.exception("rollback failed on gallery %s", self.path)
                raise

    @contextmanager
    def _snapshot(self, action: str) -> Iterator[sqlite3.Connection]:
        """A read transaction: several SELECTs see one consistent state, whatever others write."""
        with self._sql(action) as conn:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    # --- header ---------------------------------------------------------------------------
    def info(self) -> StoreInfo:
        with self._sql("read") as conn:
            meta = self._read_meta() if self._schema_version >= 2 else dict(conn.execute("SELECT key, value FROM meta").fetchall())
        return StoreInfo(self._signature, self._dim, self._schema_version, self._threshold_record(meta.get("threshold")))

    def _threshold_record(self, raw: Any) -> ThresholdRecord | None:
        if raw is None:
            return None
        try:
            if self._schema_version < 2:
                return ThresholdRecord(float(raw), signature=self._signature)
            return ThresholdRecord.from_dict(json.loads(raw))
        except (TypeError, ValueError, KeyError) as exc:
            raise GalleryError(f"gallery {self.path}: its stored threshold is unreadable ({exc}); it is damaged") from exc

    def set_threshold(self, record: ThresholdRecord | None) -> None:
        text = None if record is None else json.dumps(record.to_dict(), sort_keys=True, allow_nan=False)
        with self._transaction("set the threshold", bump=False):
            conn = self._db()
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('threshold', ?)", (text,))
            crc = schema.header_checksum(self._signature, self._dim, self._schema_version, text)
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('header_crc', ?)", (crc,))

    def _read_generation(self, conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        if row is None or isinstance(row[0], bool) or not isinstance(row[0], int):
            raise GalleryError(f"gallery {self.path}: its generation counter is missing or damaged ({row!r}); restore it from a backup")
        return row[0]

    def generation(self) -> int:
        with self._sql("read") as conn:
            return self._read_generation(conn)

    # --- reading --------------------------------------------------------------------------
    def _verify(self, rows: list[tuple[int, str | None, Any, Any]], names: list[str]) -> tuple[list[int], np.ndarray, list[DamagedTemplate]]:
        return verify_rows(rows, self._dim, self.location, checksums=self._schema_version >= 2, names=names)

    def load(self) -> LoadedTemplates:
        t0 = time.perf_counter()
        crc_col = "t.checksum" if self._schema_version >= 2 else "NULL"
        with self._snapshot("read") as conn:
            generation = self._read_generation(conn)
            idents = conn.execute("SELECT id, name FROM identities ORDER BY id").fetchall()
            rows = conn.execute(
                f"SELECT t.id, i.name, t.vector, {crc_col}, t.identity FROM templates t LEFT JOIN identities i ON i.id = t.identity ORDER BY t.id"
            ).fetchall()
        names = [name for _, name in idents]
        slot_of = {ident: k for k, (ident, _) in enumerate(idents)}
        keep, vectors, damaged = self._verify([r[:4] for r in rows], names)
        owners = np.fromiter((slot_of[rows[i][4]] for i in keep), np.int32, len(keep))
        log.debug("gallery %s: loaded %d templates in %.3f s", self.path, len(keep), time.perf_counter() - t0)
        return LoadedTemplates(generation, names, owners, np.ascontiguousarray(vectors), damaged)

    def identities(self) -> list[str]:
        with self._sql("read") as conn:
            # from the table, as load() reads it (not from the name index, which could differ if damaged)
            return sorted(r[0] for r in conn.execute("SELECT name FROM identities ORDER BY id"))

    def count_identities(self) -> int:
        with self._sql("read") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM identities").fetchone()[0])

    def count_templates(self) -> int:
        with self._sql("read") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM templates").fetchone()[0])

    def contains(self, identity: str) -> bool:
        with self._sql("read") as conn:
            return conn.execute("SELECT 1 FROM identities WHERE name = ?", (identity,)).fetchone() is not None

    def embeddings(self, identity: str) -> np.ndarray:
        crc_col = "checksum" if self._schema_version >= 2 else "NULL"
        with self._snapshot("read") as conn:
            row = conn.execute("SELECT id FROM identities WHERE name = ?", (identity,)).fetchone()
            if row is None:
                raise UnknownIdentityError(f"{identity!r} is not enrolled in gallery {self.path}")
            rows = conn.execute(f"SELECT id, ?, vector, {crc_col} FROM templates WHERE identity = ? ORDER BY id", (identity, row[0])).fetchall()
        return self._verify(rows, [identity])[1]

    def metadata(self, identity: str) -> dict[str, Any]:
        with self._sql("read") as conn:
            row = conn.execute("SELECT metadata FROM identities WHERE name = ?", (identity,)).fetchone()
        if row is None:
            raise UnknownIdentityError(f"{identity!r} is not enrolled in gallery {self.path}")
        try:
            value = json.loads(row[0]) if row[0] else {}
        except (TypeError, ValueError) as exc:
            raise GalleryError(f"gallery {self.path}: the metadata of {identity!r} is damaged ({exc}); re-enrol with metadata") from exc
        if not isinstance(value, dict):
            raise GalleryError(f"gallery {self.path}: the metadata of {identity!r} is damaged (not a JSON object)")
        return value

    # --- writing --------------------------------------------------------------------------
    def add(self, batch: list[NewTemplates], replace: bool) -> WriteResult:
        for item in batch:
            require_storable(item.vectors, self._dim)
        now = time.time()
        totals: dict[str, int] = {}
        replaced: set[str] = set()
        with self._transaction("enrol") as gen:
            conn = self._db()
            for item in batch:
                name = item.identity
                row = conn.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
                if row is None:
                    sql = "INSERT INTO identities(name, metadata, created, updated) VALUES (?, ?, ?, ?)"
                    ident = conn.execute(sql, (name, item.metadata_json, now, now)).lastrowid
                else:
                    ident = row[0]
                    if replace and name not in replaced:
                        conn.execute("DELETE FROM templates WHERE identity = ?", (ident,))
                    sql = "UPDATE identities SET updated = ?, metadata = COALESCE(?, metadata) WHERE id = ?"
                    conn.execute(sql, (now, item.metadata_json, ident))
                replaced.add(name)
                blobs = [v.tobytes() for v in item.vectors]
                conn.executemany(
                    "INSERT INTO templates(identity, vector, created, checksum) VALUES (?, ?, ?, ?)",
                    [(ident, b, now, template_checksum(name, b)) for b in blobs],
                )
                totals[name] = int(conn.execute("SELECT COUNT(*) FROM templates WHERE identity = ?", (ident,)).fetchone()[0])
        return WriteResult(gen[0], gen[1], totals=totals)

    def remove(self, identity: str) -> WriteResult:
        with self._transaction("remove an identity") as gen:
            conn = self._db()
            row = conn.execute("SELECT id FROM identities WHERE name = ?", (identity,)).fetchone()
            if row is None:
                gen[1] = gen[0]
                return WriteResult(gen[0], gen[0])
            n = conn.execute("DELETE FROM templates WHERE identity = ?", (row[0],)).rowcount
            conn.execute("DELETE FROM identities WHERE id = ?", (row[0],))
        return WriteResult(gen[0], gen[1], removed=int(n))

    # --- lifetime -------------------------------------------------------------------------
    def backup(self, dest: str | os.PathLike[str]) -> Path:
        """SQLite's online backup: consistent and safe while others write."""
        with self._sql("back up") as conn:
            return online_backup(conn, self.path, Path(dest))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or os.getpid() != self._pid:
            return
        conn.close()
        if self.readonly and not self._sidecars_before:
            tidy_readonly_sidecars(self.path)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.location!r})"
