#!/usr/bin/env python3
"""Gallery stores compared: where 1:N search should run, and what a fleet's replica costs.

    nice -n 19 python benchmarks/gallery_stores.py                 # 10k, 100k, 1M templates, every column
    python benchmarks/gallery_stores.py --sizes 10000 --queries 50   # a quick look
    python benchmarks/gallery_stores.py --dsn postgresql://user@host/db   # an existing server (else pgserver's)

For each gallery size (512-d templates, two per identity, synthetic identities: a random unit
centre plus noise, genuine cosine ~0.75 as with a real recogniser) it measures:

* **local matrix**: ``Gallery`` on an SQLite file, the door's search (one matrix product in
  process): enrolment throughput, matrix load time, single-query latency;
* **pgvector exact**: ``PostgresStore.nearest(exact=True)``, a (parallel) scan on the server,
  after a bulk load with binary ``COPY`` (pgvector's adapter) and ``VACUUM ANALYZE``;
* **pgvector HNSW** (the store's own index: ``vector_cosine_ops``, m 16, ef_construction 64,
  built after the load with ``--maintenance-work-mem`` and ``--maintenance-workers``; queried
  at ``--ef-search``): build time, index size, latency, and recall@1 against the exact scan
  (the same top-1 identity);
* **enrolment** into the loaded server gallery through ``Gallery.enroll_many`` (2,000 more);
* **replica** (up to ``--replica-max``): a door's first full copy of the central gallery, then
  one enrolment's catch-up and its end-to-end propagation through LISTEN/NOTIFY.

Latencies are per single query (a door recognises one face at a time), p50 and p95 over the
same ``--queries`` probes for every store: 80 % noisy views of enrolled templates (spread over
the whole gallery), 20 % strangers (never enrolled; their exact top-1 is still a well-defined
target for recall@1). Results: a Markdown table on stdout and in
benchmarks/results/gallery_stores.{md,json}; the machine's load average is sampled throughout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIM = 512
SIG = "benchmark-synthetic:512"
CHUNK = 20_000
HNSW_PARAMS = "m 16, ef_construction 64"  # gfn_edge/gallery/postgres_search.py builds the index with these
EXTRA_ENROL = 2_000


def chunks(n: int, seed: int) -> Iterator[tuple[list[str], np.ndarray]]:
    """``n`` templates in chunks: (identity of each row, unit float32 rows), two rows per identity."""
    for start in range(0, n, CHUNK):
        k = min(CHUNK, n - start)
        rng = np.random.default_rng(seed + start)
        centres = rng.standard_normal(((k + 1) // 2, DIM)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        rows = np.repeat(centres, 2, axis=0)[:k] + 0.03 * rng.standard_normal((k, DIM)).astype(np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        names = [f"{prefix(seed)}{(start + i) // 2:07d}" for i in range(k)]
        yield names, rows


def prefix(seed: int) -> str:
    return "id" if seed == 1 else f"s{seed}-"


def probes(n: int, count: int, seed: int) -> tuple[np.ndarray, list[str | None]]:
    """(queries, the identity each one is a view of, None for a stranger), in a shuffled order."""
    rng = np.random.default_rng(seed)
    members = count - count // 5
    picks = np.sort(rng.choice(n, size=members, replace=False))
    views, truth = [], []
    for start, (names, rows) in zip(range(0, n, CHUNK), chunks(n, seed=1)):
        mine = picks[(picks >= start) & (picks < start + CHUNK)] - start
        views.extend(rows[mine])
        truth.extend(names[i] for i in mine)
    strangers = rng.standard_normal((count - members, DIM)).astype(np.float32)
    views.extend(strangers / np.linalg.norm(strangers, axis=1, keepdims=True))
    truth.extend([None] * (count - members))
    q = np.stack(views) + 0.03 * rng.standard_normal((count, DIM)).astype(np.float32)
    order = rng.permutation(count)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)[order], [truth[i] for i in order]


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


def agreement(a: list[Any], b: list[Any], mask: list[bool] | None = None) -> float:
    pairs = [(x, y) for i, (x, y) in enumerate(zip(a, b)) if mask is None or mask[i]]
    return float(np.mean([x == y for x, y in pairs])) if pairs else float("nan")


class LoadSampler:
    """The 1-minute load average every 15 s while the benchmark runs (the machine may be shared)."""

    def __init__(self) -> None:
        self.samples: list[float] = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(15.0):
            self.samples.append(os.getloadavg()[0])

    def summary(self) -> str:
        s = np.asarray(self.samples)
        return f"1-minute load average during the run: min {s.min():.1f}, median {np.median(s):.1f}, max {s.max():.1f}"


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
    for extra in ("", "-wal", "-shm"):
        Path(str(path) + extra).unlink(missing_ok=True)
    return {"enrol_per_s": n / enrol_s, "load_s": load_s, "p50_ms": p50, "p95_ms": p95, "top1": results, "matrix_mb": matrix_mb}


def bulk_load(store: Any, n: int) -> float:
    """Every template in two binary COPYs (one transaction), as ``PostgresStore.add`` writes them; seconds.

    The same rows as ``enroll_many`` would leave (bit-exact bytes, their CRC-32, the pgvector
    column, one generation), written without the per-batch upsert: a million templates in a
    minute or two instead of the better part of an hour. ``VACUUM ANALYZE`` afterwards, so the
    planner knows the table and scans need not set hint bits.
    """
    import psycopg
    from pgvector.psycopg import register_vector

    from gfn_edge.gallery import codec
    from gfn_edge.gallery.postgres_store import NOTIFY_CHANNEL

    t0 = time.perf_counter()
    with psycopg.connect(store.url) as conn:
        register_vector(conn)
        with conn.transaction():
            generation = int(conn.execute("SELECT generation FROM gfn_gallery WHERE id = 1 FOR UPDATE").fetchone()[0]) + 1
            now, people = time.time(), (n + 1) // 2
            with conn.cursor() as cur:
                with cur.copy("COPY gfn_identities (id, name, metadata, created, updated, changed) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(["int8", "text", "text", "float8", "float8", "int8"])
                    for i in range(people):
                        copy.write_row((i + 1, f"{prefix(1)}{i:07d}", None, now, now, generation))
                with cur.copy("COPY gfn_templates (identity, vector, checksum, embedding, created) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(["int8", "bytea", "int8", "vector", "float8"])
                    for start, (names, rows) in zip(range(0, n, CHUNK), chunks(n, seed=1)):
                        for i, (name, v) in enumerate(zip(names, rows)):
                            blob = codec.encode(v)
                            copy.write_row(((start + i) // 2 + 1, blob, codec.template_checksum(name, blob), v, now))
            conn.execute("SELECT setval(pg_get_serial_sequence('gfn_identities', 'id'), %s)", (people,))
            conn.execute("UPDATE gfn_gallery SET generation = %s WHERE id = 1", (generation,))
            conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(generation)))
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE gfn_identities, gfn_templates")
    return time.perf_counter() - t0


def relation_mb(store: Any, name: str, total: bool = False) -> float:
    fn = "pg_total_relation_size" if total else "pg_relation_size"
    with store._txn("measure") as conn:
        return int(conn.execute(f"SELECT {fn}(%s::regclass)", (name,)).fetchone()[0]) / 2**20


def bench_postgres(
    n: int, queries: np.ndarray, truth: list[str | None], dsn: str, args: argparse.Namespace, folder: Path, out: dict[str, Any], save: Any
) -> None:
    """Fills ``out`` phase by phase, calling ``save()`` after each (a run stopped early keeps them)."""
    from gfn_edge import GalleryError
    from gfn_edge.gallery import Gallery
    from gfn_edge.gallery.postgres_store import PostgresStore

    store = PostgresStore(dsn, SIG, DIM, hnsw_min_templates=0, timeout=30.0)
    with Gallery(dsn, store=store) as g:
        out["copy_load_s"] = bulk_load(store, n)
        out["copy_rows_per_s"] = n / out["copy_load_s"]
        log(f"{n:,} templates: COPY done in {out['copy_load_s']:.0f} s")
        assert store.count_templates() == n, "the bulk load lost rows"
        store.embeddings(truth[0] or "id0000000")  # the loaded rows pass the store's own checksum check
        extra = list(chunks(EXTRA_ENROL, seed=3))
        t0 = time.perf_counter()
        for names, rows in extra:
            g.enroll_many(grouped(names, rows))
        out["enrol_per_s"] = EXTRA_ENROL / (time.perf_counter() - t0)
        out["heap_mb"] = relation_mb(store, "gfn_templates")
        out["table_total_mb"] = relation_mb(store, "gfn_templates", total=True)
        with store._txn("explain") as conn:
            conn.execute("SET LOCAL enable_indexscan = off")
            plan = conn.execute(
                "EXPLAIN SELECT i.name, 1 - t.d FROM (SELECT identity, embedding <=> %(q)s AS d FROM gfn_templates ORDER BY d LIMIT 1) t "
                "JOIN gfn_identities i ON i.id = t.identity ORDER BY t.d",  # the query of PostgresStore.nearest
                {"q": queries[0]},
            ).fetchall()
        out["exact_plan"] = [re.sub(r"'\[[^]]*\]'", "'[query]'", r[0]) for r in plan]
        save()
        # the HNSW build first (the long pole), within --hnsw-budget-s; the exact scan's queries after it
        conn = store._connection()  # the build's own session: memory for the whole graph, and parallel workers
        conn.execute(f"SET maintenance_work_mem = '{args.maintenance_work_mem}'")
        conn.execute(f"SET max_parallel_maintenance_workers = {int(args.maintenance_workers)}")
        conn.execute(f"SET statement_timeout = {int(args.hnsw_budget_s * 1000)}")
        log(f"{n:,} templates: HNSW build started (budget {args.hnsw_budget_s:.0f} s)")
        t0 = time.perf_counter()
        try:
            store.ensure_index(force=True)
            out["hnsw_build_s"] = time.perf_counter() - t0
        except GalleryError as exc:
            out["hnsw_build_unfinished_after_s"] = time.perf_counter() - t0
            log(f"{n:,} templates: HNSW build stopped: {exc}")
        conn.execute("SET statement_timeout = 0")
        save()
        approx: dict[int, list[Any]] = {}
        if "hnsw_build_s" in out:
            log(f"{n:,} templates: HNSW built in {out['hnsw_build_s']:.0f} s")
            out["hnsw_index_mb"] = relation_mb(store, "gfn_templates_hnsw")
            out["hnsw_by_ef_search"] = {}
            for ef in sorted({args.ef_search, *args.ef_sweep}):
                p50, p95, approx[ef] = latency(lambda q, ef=ef: store.nearest(q, k=1, ef_search=ef)[0][0], queries)
                out["hnsw_by_ef_search"][ef] = {"p50_ms": p50, "p95_ms": p95}
            out["hnsw_p50_ms"], out["hnsw_p95_ms"] = (out["hnsw_by_ef_search"][args.ef_search][k] for k in ("p50_ms", "p95_ms"))
        out["exact_p50_ms"], out["exact_p95_ms"], exact = latency(lambda q: store.nearest(q, k=1, exact=True)[0][0], queries)
        members = [t is not None for t in truth]
        for ef, found in approx.items():
            out["hnsw_by_ef_search"][ef].update(
                recall_at_1=agreement(found, exact),
                members=agreement(found, exact, members),
                strangers=agreement(found, exact, [not m for m in members]),
            )
        if approx:
            chosen = out["hnsw_by_ef_search"][args.ef_search]
            out["hnsw_recall_at_1"], out["hnsw_recall_at_1_members"], out["hnsw_recall_at_1_strangers"] = (
                chosen["recall_at_1"],
                chosen["members"],
                chosen["strangers"],
            )
        out["exact_finds_the_member"] = agreement(exact, truth, members)
        out["exact_top1"] = exact
        save()
        if n <= args.replica_max:
            out.update(bench_replica(n, dsn, g, store, queries, folder))
    store.close()


def bench_replica(n: int, dsn: str, g: Any, store: Any, queries: np.ndarray, folder: Path) -> dict[str, Any]:
    """A door's first full copy, then one enrolment's catch-up and its end-to-end propagation."""
    from gfn_edge.gallery.replica import GalleryReplica

    out: dict[str, Any] = {}
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
    return out


def server(args: argparse.Namespace) -> tuple[str, Any]:
    if args.dsn:
        return args.dsn, None
    sys.path.insert(0, str(ROOT / "tests"))
    from fleet_servers import PgCluster, create_database  # pgserver's PostgreSQL with pgvector

    settings = {
        "shared_buffers": args.shared_buffers,
        "max_parallel_maintenance_workers": str(args.maintenance_workers),
        "max_parallel_workers_per_gather": str(args.gather_workers),
        "dynamic_shared_memory_type": "mmap" if shutil.disk_usage("/dev/shm").free < 8 * 2**30 else "posix",
    }
    shutil.rmtree(args.workdir / "cluster", ignore_errors=True)  # a run killed earlier left its data behind
    cluster = PgCluster(args.workdir / "cluster", settings=settings)
    return create_database(cluster.dsn()), cluster


def drop_gallery(dsn: str) -> None:
    from gfn_edge.gallery.postgres_store import PostgresStore

    cleanup = PostgresStore(dsn, SIG, DIM)
    with cleanup._txn("drop", write=True) as conn:
        conn.execute("DROP TABLE gfn_templates, gfn_identities, gfn_gallery")
    cleanup.close()


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| templates | local matrix p50 / p95 ms | pgvector exact p50 / p95 ms | pgvector HNSW p50 / p95 ms | HNSW recall@1 (members / strangers) "
        "| HNSW build s | HNSW index MB | table MB | COPY load s | enrol/s SQLite | enrol/s PostgreSQL | matrix load s "
        "| replica full copy s | replica catch-up s | enrol -> door s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        loc, pg = r.get("local") or {}, r.get("postgres") or {}
        recall = (
            "-"
            if pg.get("hnsw_recall_at_1") is None
            else (f"{pg['hnsw_recall_at_1']:.3f} ({pg['hnsw_recall_at_1_members']:.3f} / {pg['hnsw_recall_at_1_strangers']:.3f})")
        )
        build = fmt(pg.get("hnsw_build_s"), ".0f")
        if "hnsw_build_unfinished_after_s" in pg:
            build = f"unfinished after {pg['hnsw_build_unfinished_after_s']:.0f}"
        lines.append(
            f"| {r['n']:,} | {fmt(loc.get('p50_ms'), '.1f')} / {fmt(loc.get('p95_ms'), '.1f')} "
            f"| {fmt(pg.get('exact_p50_ms'), '.1f')} / {fmt(pg.get('exact_p95_ms'), '.1f')} "
            f"| {fmt(pg.get('hnsw_p50_ms'), '.2f')} / {fmt(pg.get('hnsw_p95_ms'), '.2f')} | {recall} "
            f"| {build} | {fmt(pg.get('hnsw_index_mb'), ',.0f')} | {fmt(pg.get('table_total_mb'), ',.0f')} "
            f"| {fmt(pg.get('copy_load_s'), '.1f')} | {fmt(loc.get('enrol_per_s'), ',.0f')} | {fmt(pg.get('enrol_per_s'), ',.0f')} "
            f"| {fmt(loc.get('load_s'), '.2f')} | {fmt(pg.get('replica_full_s'), '.1f')} | {fmt(pg.get('replica_incremental_s'), '.3f')} "
            f"| {fmt(pg.get('replica_propagation_s'), '.3f')} |"
        )
    return "\n".join(lines)


def sweep_table(rows: list[dict[str, Any]]) -> str:
    """HNSW recall@1 against latency, per hnsw.ef_search (the rows that measured several)."""
    lines = ["| templates | ef_search | HNSW p50 / p95 ms | recall@1 (members / strangers) |", "|---:|---:|---:|---:|"]
    for r in rows:
        for ef, m in sorted(((r.get("postgres") or {}).get("hnsw_by_ef_search") or {}).items(), key=lambda kv: int(kv[0])):
            if "recall_at_1" in m:
                lines.append(
                    f"| {r['n']:,} | {ef} | {m['p50_ms']:.2f} / {m['p95_ms']:.2f} | {m['recall_at_1']:.3f} ({m['members']:.3f} / {m['strangers']:.3f}) |"
                )
    return "\n".join(lines) if len(lines) > 2 else ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000", help="gallery sizes in templates (comma-separated)")
    p.add_argument("--pg-max", type=int, default=1_000_000, help="largest size also loaded into PostgreSQL")
    p.add_argument("--replica-max", type=int, default=100_000, help="largest size whose replica copy is timed")
    p.add_argument("--queries", type=int, default=100, help="probes per measurement, the same for every store (a fifth are strangers)")
    p.add_argument("--ef-search", type=int, default=100, help="hnsw.ef_search of the table's HNSW columns")
    p.add_argument("--ef-sweep", default="40,200,400", help="more hnsw.ef_search values measured (recall against latency; JSON and a second table)")
    p.add_argument("--hnsw-budget-s", type=float, default=4 * 3600, help="stop an HNSW build after this long (statement_timeout) and go on")
    p.add_argument("--merge-from", type=Path, help="a previous run's gallery_stores.json: its rows of sizes not measured now are kept")
    p.add_argument("--maintenance-work-mem", default="6GB", help="for the HNSW build: the whole graph must fit (~3 GB at 1M x 512-d)")
    p.add_argument("--maintenance-workers", type=int, default=1, help="parallel workers for the HNSW build (besides the leader)")
    p.add_argument("--gather-workers", type=int, default=2, help="max_parallel_workers_per_gather for the exact scan (own server only)")
    p.add_argument("--shared-buffers", default="2GB", help="shared_buffers of the benchmark's own server")
    p.add_argument("--dsn", default=os.environ.get("GFN_EDGE_TEST_PG_DSN"), help="an existing server (default: start pgserver's)")
    p.add_argument("--workdir", type=Path, default=Path("/work/cache/pg-bench"), help="data of the server and the SQLite galleries (GBs at 1M)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="folder for gallery_stores.{md,json}")
    args = p.parse_args(argv)
    args.ef_sweep = [int(v) for v in args.ef_sweep.split(",") if v]
    sizes = [int(s) for s in args.sizes.split(",")]
    args.workdir.mkdir(parents=True, exist_ok=True)
    sampler = LoadSampler()
    dsn, cluster = server(args) if any(n <= args.pg_max for n in sizes) else (None, None)
    rows: list[dict[str, Any]] = []
    if args.merge_from:
        earlier = json.loads(args.merge_from.read_text())
        rows = [dict(r, run=earlier["machine"]) for r in earlier["rows"] if r["n"] not in sizes]
    folder = args.workdir / "sqlite"
    folder.mkdir(exist_ok=True)
    try:
        for n in sizes:
            queries, truth = probes(n, min(args.queries, n), seed=2)
            row: dict[str, Any] = {"n": n}
            rows.append(row)
            rows.sort(key=lambda r: r["n"])
            exact = None
            if dsn is not None and n <= args.pg_max:  # first: its HNSW build is the long pole
                t0 = time.perf_counter()
                row["postgres"] = {}
                try:
                    bench_postgres(n, queries, truth, dsn, args, folder, row["postgres"], lambda: write(rows, args, sampler))
                finally:
                    drop_gallery(dsn)
                exact = row["postgres"].pop("exact_top1", None)
                log(f"{n:,} templates: PostgreSQL done in {time.perf_counter() - t0:.0f} s")
            t0 = time.perf_counter()
            row["local"] = bench_local(n, queries, folder)
            row["local"]["finds_the_member"] = agreement(row["local"]["top1"], truth, [t is not None for t in truth])
            if exact is not None:
                row["postgres"]["exact_agrees_with_local"] = agreement(row["local"]["top1"], exact)
            row["local"].pop("top1")
            log(f"{n:,} templates: local matrix done in {time.perf_counter() - t0:.0f} s")
            write(rows, args, sampler)  # after every size and phase: a long run stopped early keeps what it measured
    finally:
        if cluster is not None:
            cluster.close()
        shutil.rmtree(folder, ignore_errors=True)
    write(rows, args, sampler)
    print(table(rows))
    return 0


def log(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def write(rows: list[dict[str, Any]], args: argparse.Namespace, sampler: LoadSampler) -> None:
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; {sampler.summary()}"
    params = (
        f"HNSW {HNSW_PARAMS}, ef_search {args.ef_search}, vector_cosine_ops; build with maintenance_work_mem {args.maintenance_work_mem}, "
        f"{args.maintenance_workers} parallel worker(s) + leader; {args.queries} probes per size (a fifth strangers)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    runs = sorted({r["run"] for r in rows if "run" in r})
    earlier = "".join(f"\nRows of sizes not measured in this run come from an earlier run: {run}\n" for run in runs)
    sweep = sweep_table(rows)
    (args.out / "gallery_stores.md").write_text(
        f"Machine: {machine}\n{earlier}\nParameters: {params}\n\n{table(rows)}\n" + (f"\nHNSW by ef_search:\n\n{sweep}\n" if sweep else "")
    )
    (args.out / "gallery_stores.json").write_text(json.dumps({"machine": machine, "parameters": params, "rows": rows}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
