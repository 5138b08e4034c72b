#!/usr/bin/env python3
"""Gallery stores compared: where 1:N search should run, and what a fleet's replica costs.

    python benchmarks/gallery_stores.py                              # 10k, 100k, 1M (PostgreSQL up to --pg-max)
    python benchmarks/gallery_stores.py --sizes 10000 --queries 50   # a quick look
    python benchmarks/gallery_stores.py --dsn postgresql://user@host/db   # an existing server (else pgserver's)

For each gallery size (512-d templates, two per identity, synthetic identities: a random unit
centre plus noise, genuine cosine ~0.75 as with a real recogniser) it measures:

* **local matrix**: ``Gallery`` on an SQLite file, the door's search (one matrix product in
  process): enrolment throughput, matrix load time, single-query latency;
* **pgvector exact**: ``PostgresStore.nearest(exact=True)``, a scan on the server;
* **pgvector HNSW** (``vector_cosine_ops``, m 16, ef_construction 64, ef_search 100): build time,
  latency, and recall@1 against the exact scan (the same top-1 identity);
* **replica**: a door's first full copy of the central gallery, then one enrolment's catch-up and
  its end-to-end propagation through LISTEN/NOTIFY.

Latencies are per single query (a door recognises one face at a time), p50 and p95 over
``--queries`` probes, each a noisy view of an enrolled identity. Results: a Markdown table on
stdout and in benchmarks/results/gallery_stores.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIM = 512
SIG = "benchmark-synthetic:512"
CHUNK = 20_000


def chunks(n: int, seed: int) -> Iterator[tuple[list[str], np.ndarray]]:
    """``n`` templates in chunks: (identity of each row, unit float32 rows), two rows per identity."""
    for start in range(0, n, CHUNK):
        k = min(CHUNK, n - start)
        rng = np.random.default_rng(seed + start)
        centres = rng.standard_normal(((k + 1) // 2, DIM)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        rows = np.repeat(centres, 2, axis=0)[:k] + 0.03 * rng.standard_normal((k, DIM)).astype(np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        names = [f"id{(start + i) // 2:07d}" for i in range(k)]
        yield names, rows


def probes(n: int, count: int, seed: int) -> np.ndarray:
    """Noisy views of ``count`` enrolled templates spread over the whole gallery."""
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(n, size=count, replace=False))
    out = []
    for start, (_, rows) in zip(range(0, n, CHUNK), chunks(n, seed=1)):
        mine = picks[(picks >= start) & (picks < start + CHUNK)] - start
        if len(mine):
            out.append(rows[mine])
    q = np.concatenate(out) + 0.03 * rng.standard_normal((count, DIM)).astype(np.float32)
    return rng.permutation((q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32))


def grouped(names: list[str], rows: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(identity, its rows) pairs for enroll_many (rows of one identity are adjacent)."""
    out, i = [], 0
    while i < len(names):
        j = i + 1
        while j < len(names) and names[j] == names[i]:
            j += 1
        out.append((names[i], rows[i:j]))
        i = j
    return out


def latency(fn: Any, queries: np.ndarray) -> tuple[float, float, list[Any]]:
    """(p50 ms, p95 ms, results) of ``fn`` over single queries (after one warm-up call)."""
    fn(queries[0])
    times, results = [], []
    for q in queries:
        t0 = time.perf_counter()
        results.append(fn(q))
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95)), results


def bench_local(n: int, queries: np.ndarray, folder: Path) -> dict[str, Any]:
    from gfn_edge.gallery import Gallery

    path = folder / f"local-{n}.db"
    t0 = time.perf_counter()
    with Gallery(path, signature=SIG, dim=DIM) as g:
        for names, rows in chunks(n, seed=1):
            g.enroll_many(grouped(names, rows))
        enrol_s = time.perf_counter() - t0
    with Gallery(path, signature=SIG, dim=DIM, check="none") as g:
        t0 = time.perf_counter()
        g.refresh()
        load_s = time.perf_counter() - t0
        p50, p95, results = latency(lambda q: g.search(q, k=1)[0].identity, queries)
        matrix_mb = g.matrix_bytes / 2**20
    path.unlink()
    return {"enrol_per_s": n / enrol_s, "load_s": load_s, "p50_ms": p50, "p95_ms": p95, "top1": results, "matrix_mb": matrix_mb}


def bench_postgres(n: int, queries: np.ndarray, dsn: str, exact_queries: int, folder: Path) -> dict[str, Any]:
    from gfn_edge.gallery import Gallery
    from gfn_edge.gallery.postgres_store import PostgresStore
    from gfn_edge.gallery.replica import GalleryReplica

    out: dict[str, Any] = {}
    store = PostgresStore(dsn, SIG, DIM, hnsw_min_templates=0)
    with Gallery(dsn, store=store) as g:
        t0 = time.perf_counter()
        for names, rows in chunks(n, seed=1):
            g.enroll_many(grouped(names, rows))
        out["enrol_per_s"] = n / (time.perf_counter() - t0)
        with store._txn("analyze", write=True) as conn:
            conn.execute("ANALYZE gfn_templates")
        if exact_queries:
            eq = queries[:exact_queries]
            out["exact_p50_ms"], out["exact_p95_ms"], exact = latency(lambda q: store.nearest(q, k=1, exact=True)[0][0], eq)
            t0 = time.perf_counter()
            store.ensure_index(force=True)
            out["hnsw_build_s"] = time.perf_counter() - t0
            out["hnsw_p50_ms"], out["hnsw_p95_ms"], approx = latency(lambda q: store.nearest(q, k=1, ef_search=100)[0][0], eq)
            out["hnsw_recall_at_1"] = float(np.mean([a == e for a, e in zip(approx, exact)]))
            out["exact_top1"] = exact

        # a door's replica: the first full copy, then one enrolment's catch-up
        replica_path = folder / f"replica-{n}.db"
        t0 = time.perf_counter()
        replica = GalleryReplica(dsn, replica_path, SIG, DIM, check_interval=60.0)
        out["replica_full_s"] = time.perf_counter() - t0
        replica.gallery.refresh()  # as the door does at start-up: the matrix is loaded before anyone arrives
        replica.start()
        time.sleep(1.0)
        newcomer = queries[0] * -1.0
        t0 = time.perf_counter()
        target = g.enroll("newcomer", newcomer) and store.generation()
        while not replica.gallery.search(newcomer, k=1) or replica.gallery.search(newcomer, k=1)[0].identity != "newcomer":
            time.sleep(0.002)
        out["replica_propagation_s"] = time.perf_counter() - t0
        while replica.generation != target:  # the catch-up's own timing is recorded when it returns
            time.sleep(0.002)
        out["replica_incremental_s"] = replica.last_sync_seconds
        replica.close()
        for extra in ("", ".replica.json", "-wal", "-shm"):
            Path(str(replica_path) + extra).unlink(missing_ok=True)
    cleanup = PostgresStore(dsn, SIG, DIM)
    with cleanup._txn("drop", write=True) as conn:
        conn.execute("DROP TABLE gfn_templates, gfn_identities, gfn_gallery")
    cleanup.close()
    return out


def server(args: argparse.Namespace) -> tuple[str, Any]:
    if args.dsn:
        return args.dsn, None
    sys.path.insert(0, str(ROOT / "tests"))
    from fleet_servers import (
        PgCluster,  # pgserver's PostgreSQL with pgvector, in a temporary folder
    )

    cluster = PgCluster()
    return cluster.dsn(), cluster


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| templates | local matrix p50 / p95 ms | pgvector exact p50 / p95 ms | pgvector HNSW p50 / p95 ms | HNSW recall@1 | HNSW build s "
        "| enrol/s SQLite | enrol/s PostgreSQL | matrix load s | replica full copy s | replica catch-up s | enrol -> door s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        loc, pg = r.get("local") or {}, r.get("postgres") or {}
        lines.append(
            f"| {r['n']:,} | {fmt(loc.get('p50_ms'), '.2f')} / {fmt(loc.get('p95_ms'), '.2f')} "
            f"| {fmt(pg.get('exact_p50_ms'), '.1f')} / {fmt(pg.get('exact_p95_ms'), '.1f')} "
            f"| {fmt(pg.get('hnsw_p50_ms'), '.2f')} / {fmt(pg.get('hnsw_p95_ms'), '.2f')} | {fmt(pg.get('hnsw_recall_at_1'), '.3f')} "
            f"| {fmt(pg.get('hnsw_build_s'), '.1f')} | {fmt(loc.get('enrol_per_s'), ',.0f')} | {fmt(pg.get('enrol_per_s'), ',.0f')} "
            f"| {fmt(loc.get('load_s'), '.2f')} | {fmt(pg.get('replica_full_s'), '.2f')} | {fmt(pg.get('replica_incremental_s'), '.3f')} "
            f"| {fmt(pg.get('replica_propagation_s'), '.3f')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000", help="gallery sizes in templates (comma-separated)")
    p.add_argument("--pg-max", type=int, default=100_000, help="largest size also loaded into PostgreSQL (time: see the README)")
    p.add_argument("--queries", type=int, default=200, help="probes per measurement")
    p.add_argument("--exact-queries", type=int, default=100, help="probes for the pgvector exact/HNSW comparison (0: skip it)")
    p.add_argument("--dsn", default=os.environ.get("GFN_EDGE_TEST_PG_DSN"), help="an existing server (default: start pgserver's)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder for gallery_stores.{md,json}")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    dsn, cluster = server(args) if any(n <= args.pg_max for n in sizes) else (None, None)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="gallery-bench-") as tmp:
            for n in sizes:
                queries = probes(n, min(args.queries, n), seed=2)
                row: dict[str, Any] = {"n": n}
                t0 = time.perf_counter()
                row["local"] = bench_local(n, queries, Path(tmp))
                print(f"{n:,} templates: local matrix done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
                if dsn is not None and n <= args.pg_max:
                    t0 = time.perf_counter()
                    row["postgres"] = bench_postgres(n, queries, dsn, min(args.exact_queries, len(queries)), Path(tmp))
                    exact = row["postgres"].pop("exact_top1", None)
                    if exact is not None:
                        row["postgres"]["agrees_with_local"] = float(np.mean([a == b for a, b in zip(row["local"]["top1"], exact)]))
                    print(f"{n:,} templates: PostgreSQL done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
                row["local"].pop("top1")
                rows.append(row)
                write(rows, args.out)  # after every size: a long run stopped early keeps what it measured
    finally:
        if cluster is not None:
            cluster.close()
    print(table(rows))
    return 0


def write(rows: list[dict[str, Any]], out: Path) -> None:
    load = os.getloadavg()[0]
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"1-minute load average {load:.1f} when written{' (a busy machine: latencies are inflated)' if load > (os.cpu_count() or 1) / 2 else ''}"
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "gallery_stores.md").write_text(f"Machine: {machine}\n\n{table(rows)}\n")
    (out / "gallery_stores.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
