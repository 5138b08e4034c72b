"""Where a test's galleries live: SQLite files or PostgreSQL schemas, behind one interface.

The gallery suite (tests/test_gallery*.py) takes its locations from the ``gallery_store``
fixture (tests/conftest.py), parametrised over ``sqlite`` and ``postgres``, so every test of
``Gallery`` semantics runs with the same assertions against both stores. ``new()`` gives a
fresh, empty location (a path in the test's tmp folder, or a schema of its own on the session's
real server); the few things a test must do *beneath* the Gallery API (damage a stored
template, hold the write lock as another writer would, see that a refused gallery was not
touched) are done here the way each store's own data is laid out.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class GalleryLocations:
    """Fresh gallery locations on one store; ``kind`` is ``"sqlite"`` or ``"postgres"``."""

    def __init__(self, kind: str, tmp_path: Path, admin_dsn: str | None = None):
        self.kind = kind
        self._tmp = tmp_path
        self._admin = admin_dsn
        self._made: list[str] = []
        self._count = 0

    def new(self, name: str | None = None) -> str | Path:
        """An empty location no other test sees: ``tmp/<name>.db`` (a numbered name by default), or a new schema's DSN."""
        self._count += 1
        if self.kind == "sqlite":
            path = self._tmp / f"{name or f'gallery-{self._count}'}.db"
            assert not path.exists(), f"{path} already used in this test"
            return path
        from fleet_servers import create_database

        dsn = create_database(self._admin)
        self._made.append(dsn)
        return dsn

    def close(self) -> None:
        if self._made:
            from fleet_servers import drop_database

            for dsn in self._made:
                drop_database(self._admin, dsn)

    # --- beneath the Gallery API ------------------------------------------------------------
    def _execute(self, location: str | Path, sqlite_sql: str, postgres_sql: str, args: tuple = ()) -> list[tuple]:
        if self.kind == "sqlite":
            conn = sqlite3.connect(location)
            try:
                with conn:
                    return conn.execute(sqlite_sql, args).fetchall()
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(str(location), autocommit=True) as conn:
            cur = conn.execute(postgres_sql.replace("?", "%s"), args)
            return cur.fetchall() if cur.description else []

    def flip_template_bit(self, location: str | Path, template_id: int, byte: int, bit: int) -> None:
        """What an ageing disk does to one stored template (the store stays structurally valid)."""
        (blob,) = self._execute(location, "SELECT vector FROM templates WHERE id = ?", "SELECT vector FROM gfn_templates WHERE id = ?", (template_id,))[0]
        flipped = bytearray(blob)
        flipped[byte] ^= 1 << bit
        self._execute(
            location, "UPDATE templates SET vector = ? WHERE id = ?", "UPDATE gfn_templates SET vector = ? WHERE id = ?", (bytes(flipped), template_id)
        )

    def rename_identity(self, location: str | Path, old: str, new: str) -> None:
        """An identity row's name changed behind the gallery's back (its templates' checksums still say ``old``)."""
        self._execute(location, "UPDATE identities SET name = ? WHERE name = ?", "UPDATE gfn_identities SET name = ? WHERE name = ?", (new, old))

    def store_damage(self, location: str | Path, template_id: int, blob: bytes, checksum: int) -> None:
        """Overwrite one template's bytes and checksum (another tool writing a valid-looking row)."""
        self._execute(
            location,
            "UPDATE templates SET vector = ?, checksum = ? WHERE id = ?",
            "UPDATE gfn_templates SET vector = ?, checksum = ? WHERE id = ?",
            (blob, checksum, template_id),
        )

    def snapshot(self, location: str | Path) -> Any:
        """Everything stored at ``location``, to show that a refused open changed nothing.

        SQLite: every byte of every file in the gallery's folder (no stray -wal/-shm either);
        PostgreSQL: every row of the gallery's three tables.
        """
        if self.kind == "sqlite":
            folder = Path(location).parent
            return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        return [self._execute(location, "", f"SELECT * FROM {table} ORDER BY 1") for table in ("gfn_gallery", "gfn_identities", "gfn_templates")]

    @contextlib.contextmanager
    def writer_holding_the_lock(self, location: str | Path) -> Iterator[None]:
        """Another process mid-enrolment: it holds the gallery's write lock until the block ends."""
        if self.kind == "sqlite":
            other = sqlite3.connect(location, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            release: Callable[[], None] = lambda: other.execute("ROLLBACK")  # noqa: E731
        else:
            import psycopg

            other = psycopg.connect(str(location))
            other.execute("SELECT generation FROM gfn_gallery WHERE id = 1 FOR UPDATE")
            release = other.rollback
        try:
            yield
        finally:
            release()
            other.close()
