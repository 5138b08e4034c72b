"""A separate process writing to a gallery, for tests/test_gallery.py.

``loop PATH SIGNATURE START``: enrol person<START>, person<START+1>, ... forever; every third
step also re-enrols an earlier person of this run with ``replace=True`` and the next version.
After each enrolment returns (is committed) it prints ``<name> <version>``; the test kills the
process at random and checks that everything printed survived, exactly.

``enroll PATH SIGNATURE NAME VERSION`` / ``remove PATH SIGNATURE NAME``: one write, then exit.

``die-in-transaction PATH SIGNATURE NAME``: SIGKILL itself inside an enrolment, after its rows
reached the WAL but before COMMIT.

``write-v1 PATH SIGNATURE PEOPLE``: write a schema-version-1 gallery (gfn-edge before template
checksums) of PEOPLE identities with ``vectors_for(name, 0)``, with plain SQL exactly as that
version laid the file out, for the migration test (``write_v1`` does the same in-process).

Vectors are a pure function of (name, version): ``vectors_for``, imported by the test too.
"""

from __future__ import annotations

import os
import signal
import sys
import zlib
from contextlib import contextmanager

import numpy as np

DIM = 512
TEMPLATES = 8


def vectors_for(name: str, version: int) -> np.ndarray:
    from gfn_edge.gallery import normalize_embeddings

    rng = np.random.default_rng([zlib.crc32(name.encode()), version])
    return normalize_embeddings(rng.standard_normal((TEMPLATES, DIM)))


V1_SCHEMA = """
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
    vector BLOB NOT NULL CHECK (typeof(vector) = 'blob' AND length(vector) = {width}),
    created REAL NOT NULL
);
CREATE INDEX templates_by_identity ON templates(identity, id);
"""


def write_v1(path: str, signature: str, people: dict, threshold: float | None = None, metadata: dict | None = None) -> None:
    """A version-1 gallery file of ``people`` (name -> (k, DIM) float32 rows), as gfn-edge 1 wrote it."""
    import json
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA page_size=32768")
        conn.executescript("BEGIN;" + V1_SCHEMA.format(width=DIM * 4) + "COMMIT;")
        meta = [("signature", signature), ("dim", DIM), ("schema_version", 1), ("generation", 0), ("created", 0.0)]
        if threshold is not None:
            meta.append(("threshold", float(threshold)))
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", meta)
        for name, vecs in people.items():
            md = json.dumps((metadata or {}).get(name)) if (metadata or {}).get(name) else None
            ident = conn.execute("INSERT INTO identities(name, metadata, created, updated) VALUES (?, ?, 0, 0)", (name, md)).lastrowid
            rows = [(ident, np.asarray(v, "<f4").tobytes()) for v in vecs]
            conn.executemany("INSERT INTO templates(identity, vector, created) VALUES (?, ?, 0)", rows)
        conn.execute("COMMIT")
        conn.execute("PRAGMA application_id=1195789895")  # "GFNG"
        conn.execute("PRAGMA user_version=1")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    mode, path, signature = argv[:3]
    if mode == "write-v1":
        write_v1(path, signature, {f"person{i:05d}": vectors_for(f"person{i:05d}", 0) for i in range(int(argv[3]))})
        return 0
    from gfn_edge.gallery import Gallery

    with Gallery(path, signature=signature, dim=DIM) as gallery:
        if mode == "enroll":
            name, version = argv[3], int(argv[4])
            gallery.enroll(name, vectors_for(name, version))
            print(f"{name} {version}", flush=True)
        elif mode == "die-in-transaction":
            # kill this process inside enroll(): rows written, pages spilled to the WAL, no COMMIT
            name = argv[3]
            from gfn_edge.gallery.sqlite_store import SQLiteStore

            original = SQLiteStore._transaction

            @contextmanager
            def dying(self, action, bump=True):
                with original(self, action, bump) as txn:
                    yield txn
                    print(f"dying with {os.path.getsize(path + '-wal')} bytes of WAL", flush=True)
                    os.kill(os.getpid(), signal.SIGKILL)

            SQLiteStore._transaction = dying
            gallery._store._db().execute("PRAGMA cache_size=4")  # a tiny cache spills dirty pages to the WAL
            gallery.enroll(name, np.concatenate([vectors_for(name, v) for v in range(25)]))
        elif mode == "remove":
            print(gallery.remove(argv[3]), flush=True)
        elif mode == "loop":
            start = int(argv[3])
            versions: dict[str, int] = {}
            print("ready", flush=True)
            i = start
            while True:
                name = f"person{i:05d}"
                gallery.enroll(name, vectors_for(name, 0))
                versions[name] = 0
                print(f"{name} 0", flush=True)
                if i % 3 == 0 and i - 2 >= start:
                    other = f"person{i - 2:05d}"
                    versions[other] += 1
                    gallery.enroll(other, vectors_for(other, versions[other]), replace=True)
                    print(f"{other} {versions[other]}", flush=True)
                i += 1
        else:
            print(f"unknown mode {mode}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
