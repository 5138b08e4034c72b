"""The SQLite gallery file: its schema, creating it atomically, its header checksum, migration.

File layout (schema version 2):

* ``meta`` (key, value): ``signature``, ``dim``, ``schema_version``, ``threshold`` (JSON of a
  ``ThresholdRecord`` or NULL), ``header_crc`` (CRC-32 over those four, see ``header_checksum``),
  ``generation`` (bumped by every template write) and ``created`` (not covered: harmless);
* ``identities`` (id, name, metadata JSON, created, updated);
* ``templates`` (id, identity, vector, created, checksum): one L2-normalised embedding per row as a
  little-endian float32 blob (``dim * 4`` bytes, enforced by a CHECK constraint) and
  ``codec.template_checksum(name, vector)``; NULL only for a row that failed its checks when a
  version-1 file was migrated (kept as evidence, never searched).

The SQLite header carries ``application_id`` ``GFNG`` and ``user_version`` = schema version, so a
gallery is recognised (and anything else refused) before a single table is read.

Version 1 (gfn-edge before template checksums) had no ``checksum`` column, a bare float as
``threshold`` and no ``header_crc``; ``migrate_v1`` upgrades it in one transaction.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GalleryError
from .codec import DTYPE, LOAD_NORM_TOL, invalid_rows, template_checksum
from .sqlite_files import fsync_dir, fsync_file

log = logging.getLogger("gfn_edge.gallery")

SCHEMA_VERSION = 2
APPLICATION_ID = 0x47464E47  # "GFNG": marks an SQLite file as a gfn-edge gallery
SQLITE_MAGIC = b"SQLite format 3\x00"
# 32 KiB pages hold ~15 512-d templates each (4 KiB pages hold one: half the file is slack) and
# read 3-5x faster when the matrix loads; an enrolment still writes only a few pages.
PAGE_SIZE = 32768
HEADER_KEYS = ("signature", "dim", "schema_version", "threshold")
REQUIRED_KEYS = ("signature", "dim", "schema_version", "generation", "header_crc")


def schema_sql(dim: int) -> str:
    """The version-2 tables (the column order is what migrating version 1 produces)."""
    return f"""
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
        vector BLOB NOT NULL CHECK (typeof(vector) = 'blob' AND length(vector) = {dim * DTYPE.itemsize}),
        created REAL NOT NULL,
        checksum INTEGER
    );
    CREATE INDEX templates_by_identity ON templates(identity, id);
    """


def header_checksum(signature: Any, dim: Any, schema_version: Any, threshold: Any) -> int:
    """CRC-32 of the JSON list [signature, dim, schema_version, threshold] as stored.

    Values are taken as SQLite returns them (threshold is the JSON text or None), so any change
    to one of them, including its type, changes the checksum.
    """
    text = json.dumps([signature, dim, schema_version, threshold], separators=(",", ":"))
    return zlib.crc32(text.encode("utf-8"))


def create_file(path: Path, signature: str | None, dim: Any) -> None:
    """Build an empty gallery in a temporary file, then link it into place.

    Nobody ever sees a half-initialised file, and two processes creating the same gallery at once
    both end up with the same one (``os.link`` refuses to replace an existing file).
    """
    if not isinstance(signature, str) or not signature.strip():
        raise GalleryError(
            f"creating gallery {path} needs signature= (the recogniser's model signature, "
            f"e.g. manifest.signature) so that embeddings of another model are refused later"
        )
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 0 < int(dim) <= 65536:
        raise GalleryError(f"creating gallery {path} needs dim= (the embedding size, e.g. 512), got {dim!r}")
    dim = int(dim)
    folder = path.parent
    if not folder.is_dir():
        raise GalleryError(f"cannot create gallery {path}: folder {folder} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".creating", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        conn = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            conn.execute("BEGIN")
            for statement in schema_sql(dim).split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?)",
                [
                    ("signature", signature),
                    ("dim", dim),
                    ("schema_version", SCHEMA_VERSION),
                    ("threshold", None),
                    ("header_crc", header_checksum(signature, dim, SCHEMA_VERSION, None)),
                    ("generation", 0),
                    ("created", time.time()),
                ],
            )
            conn.execute("COMMIT")
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("PRAGMA journal_mode=WAL")  # recorded in the header: persists
        finally:
            conn.close()
        fsync_file(tmp)
        try:
            os.link(tmp, path)
        except FileExistsError:
            log.info("gallery %s was created by another process meanwhile; opening it", path)
        except OSError:  # filesystems without hard links (FAT): a tiny race, never an overwrite
            if path.exists():
                log.info("gallery %s was created by another process meanwhile; opening it", path)
            else:
                os.rename(tmp, path)
        fsync_dir(folder)
        log.info("created gallery %s (%s, dim %d)", path, signature, dim)
    finally:
        for extra in ("", "-wal", "-shm", "-journal"):
            Path(str(tmp) + extra).unlink(missing_ok=True)


def check_file_header(path: Path) -> None:
    """Refuse what is plainly not an SQLite file before SQLite touches it."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(100)
    except OSError as exc:
        raise GalleryError(f"cannot read gallery {path}: {exc}") from exc
    if size == 0:
        raise GalleryError(
            f"gallery {path} is empty (0 bytes): it holds no gallery, possibly a failed copy; restore it from a backup, or delete it to start a new gallery"
        )
    if not (head.startswith(SQLITE_MAGIC) or (len(head) < 16 and SQLITE_MAGIC.startswith(head))):
        raise GalleryError(f"{path} is not a gallery: it is not an SQLite database; it was left untouched")
    if len(head) < 100:
        raise GalleryError(f"gallery {path} is truncated ({size} bytes); restore it from a backup. It was left untouched")


def migrate_v1(conn: sqlite3.Connection, path: Path, meta: dict[str, Any]) -> None:
    """Upgrade a version-1 gallery to version 2 inside the caller's write transaction.

    Every template gets its checksum; one that is already not a finite unit vector (damaged
    before checksums existed) keeps a NULL checksum, so it is quarantined, not blessed. The
    bare float threshold becomes a ``ThresholdRecord`` without a target FAR (not calibrated).
    """
    signature, dim = meta["signature"], int(meta["dim"])
    conn.execute("ALTER TABLE templates ADD COLUMN checksum INTEGER")
    rows = conn.execute("SELECT t.id, i.name, t.vector FROM templates t JOIN identities i ON i.id = t.identity ORDER BY t.id").fetchall()
    width = dim * DTYPE.itemsize
    good = [r for r in rows if isinstance(r[2], bytes) and len(r[2]) == width]
    bad_ids = {r[0] for r in rows} - {r[0] for r in good}
    if good:
        vectors = np.frombuffer(b"".join(r[2] for r in good), DTYPE).reshape(len(good), dim)
        bad_ids |= {good[i][0] for i in invalid_rows(vectors, LOAD_NORM_TOL)}
    conn.executemany(
        "UPDATE templates SET checksum = ? WHERE id = ?",
        [(template_checksum(name, blob), tid) for tid, name, blob in good if tid not in bad_ids],
    )
    for tid, name, _ in rows:
        if tid in bad_ids:
            log.error("gallery %s: template %d of %r was already damaged in the version-1 file; re-enrol %r", path, tid, name, name)
    threshold = meta.get("threshold")
    record = None
    if threshold is not None:
        record = json.dumps({"value": float(threshold), "target_far": None, "signature": signature, "calibrated_at": None, "details": {"migrated_from": 1}})
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('threshold', ?)", (record,))
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('header_crc', ?)", (header_checksum(signature, dim, SCHEMA_VERSION, record),))
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    log.warning("gallery %s: migrated from schema version 1 to %d (%d templates checksummed)", path, SCHEMA_VERSION, len(rows) - len(bad_ids))
