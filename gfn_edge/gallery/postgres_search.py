"""Server-side 1:N search on the PostgreSQL gallery (pgvector): exact scan, or HNSW when large.

Doors never search here (they search a local replica, gfn_edge/gallery/replica.py); this is for
central tools, very large galleries and the benchmark (benchmarks/gallery_stores.py measures its
latency and the HNSW index's recall@1 against the exact scan). A mixin of ``PostgresStore``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg

from ..errors import GalleryError
from . import codec
from .types import GalleryValueError

log = logging.getLogger(__name__)

HNSW_MIN_TEMPLATES = 100_000  # below this an exact scan is fast enough and has perfect recall
_INDEX = "gfn_templates_hnsw"


class ServerSearch:
    """``ensure_index`` and ``nearest`` for a store with ``_txn``, ``_dim``, ``hnsw_min_templates``."""

    _dim: int
    _timeout: float
    hnsw_min_templates: int
    location: str
    readonly: bool

    def ensure_index(self, force: bool = False) -> bool:
        """Build the HNSW (cosine) index when the gallery holds ``hnsw_min_templates`` or more.

        Returns whether the index exists afterwards. Built ``CONCURRENTLY``: it takes minutes at
        a million templates (it reads them all), and searches and enrolments go on meanwhile.
        """
        with self._txn("index") as conn:
            if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (_INDEX,)).fetchone()[0]:
                return True
            n = int(conn.execute("SELECT count(*) FROM gfn_templates").fetchone()[0])
        if n < self.hnsw_min_templates and not force:
            return False
        if self.readonly:
            raise GalleryError(f"gallery {self.location} was opened read-only; cannot build its search index")
        t0 = time.perf_counter()
        with self._lock:
            conn = self._connection()  # autocommit: CREATE INDEX CONCURRENTLY cannot run in a transaction
            try:
                conn.execute("SET lock_timeout = 0")  # it waits for running transactions to end, by design
                conn.execute(
                    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {_INDEX} ON gfn_templates "
                    "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
                )
                conn.execute(f"SET lock_timeout = {int(self._timeout * 1000)}")
            except psycopg.Error as exc:
                raise GalleryError(f"could not build the search index of gallery {self.location}: {str(exc).strip().splitlines()[0]}") from None
        log.info("gallery %s: HNSW index over %d templates built in %.1f s", self.location, n, time.perf_counter() - t0)
        return True

    def nearest(self, query: Any, k: int = 5, exact: bool | None = None, ef_search: int = 100) -> list[tuple[str, float]]:
        """The ``k`` templates nearest to one embedding, ranked on the server: [(identity, cosine)].

        ``exact=None`` uses the HNSW index when it exists (approximate: see the benchmark's
        recall@1), an exact scan otherwise; ``exact=True`` always scans.
        """
        q = codec.normalize_embeddings(query, self._dim)
        if len(q) != 1:
            raise GalleryValueError("nearest() takes one embedding")
        with self._txn("search") as conn:
            if exact:
                conn.execute("SET LOCAL enable_indexscan = off")
            else:
                conn.execute(f"SET LOCAL hnsw.ef_search = {max(int(ef_search), int(k))}")
            # the k nearest first (a top-k, in parallel when it scans), then their names: joining
            # first would hash every identity and sort every template on each query
            rows = conn.execute(
                "SELECT i.name, 1 - t.d FROM (SELECT identity, embedding <=> %(q)s AS d FROM gfn_templates ORDER BY d LIMIT %(k)s) t "
                "JOIN gfn_identities i ON i.id = t.identity ORDER BY t.d",
                {"q": q[0], "k": int(k)},
            ).fetchall()
        return [(name, float(score)) for name, score in rows]
