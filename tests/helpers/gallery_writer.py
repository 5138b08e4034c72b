"""A separate process writing to a gallery, for tests/test_gallery.py.

``loop PATH SIGNATURE START``: enrol person<START>, person<START+1>, ... forever; every third
step also re-enrols an earlier person of this run with ``replace=True`` and the next version.
After each enrolment returns (is committed) it prints ``<name> <version>``; the test kills the
process at random and checks that everything printed survived, exactly.

``enroll PATH SIGNATURE NAME VERSION`` / ``remove PATH SIGNATURE NAME``: one write, then exit.

``die-in-transaction PATH SIGNATURE NAME``: SIGKILL itself inside an enrolment, after its rows
reached the WAL but before COMMIT.

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


def main(argv: list[str]) -> int:
    from gfn_edge.gallery import Gallery

    mode, path, signature = argv[:3]
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
