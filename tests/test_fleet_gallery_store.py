"""The gallery on PostgreSQL + pgvector: what only a server gallery has.

The gallery suite itself (tests/test_gallery*.py) runs unchanged against both stores through the
``gallery_store`` fixture (``[sqlite]`` / ``[postgres]``, a real server: pgserver's build or
``GFN_EDGE_TEST_PG_DSN``), so round trips, other models, read-only, concurrent handles and
processes, the write lock, damaged templates and thresholds are tested there. Here: copying a
gallery between the stores (both ways, and its portable SQLite backup), server-side search
(exact scan and the HNSW index), the ``gfn-edge gallery`` commands against a server URL, and a
long-lived handle reconnecting after a server restart. LISTEN/NOTIFY: test_fleet_replica.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("psycopg", reason="asset missing: psycopg (pip install 'gfn-edge[postgres]')")

from test_gallery import DIM, SIG, make_people, probe, unit

from gfn_edge import GalleryError
from gfn_edge.gallery import Gallery


def test_backup_is_a_portable_sqlite_gallery_and_copy_goes_both_ways(pg_dsn, pg_admin_dsn, tmp_path: Path):
    from fleet_servers import create_database, drop_database

    from gfn_edge.gallery.copy import copy_gallery

    _, people = make_people(30, templates=3, seed=11)
    with Gallery(pg_dsn, signature=SIG, dim=DIM) as g:
        g.enroll_many(people)
        g.enroll("with-meta", unit(np.ones((1, DIM))), metadata={"badge": 42})
        g.set_threshold(0.42, target_far=0.001)
        dest = g.backup(tmp_path / "backup.db")
        with pytest.raises(GalleryError, match="exists"):
            g.backup(dest)
    with Gallery(dest, signature=SIG, dim=DIM, check="full") as b:
        assert b.count() == 31 and b.metadata("with-meta") == {"badge": 42} and b.threshold == pytest.approx(0.42)
        for name, vecs in people.items():
            np.testing.assert_array_equal(b.embeddings(name), vecs)
    second = create_database(pg_admin_dsn)
    try:
        assert copy_gallery(dest, second) == 91  # SQLite -> PostgreSQL
        back = tmp_path / "back.db"
        assert copy_gallery(second, back) == 91  # and back
        with Gallery(second, signature=SIG) as s, Gallery(back, signature=SIG) as t:
            assert s.identities() == t.identities() == sorted([*people, "with-meta"])
            assert s.threshold == t.threshold == pytest.approx(0.42)
            for name, vecs in people.items():
                np.testing.assert_array_equal(s.embeddings(name), vecs)
                np.testing.assert_array_equal(t.embeddings(name), vecs)
        with pytest.raises(GalleryError, match="not empty"):
            copy_gallery(dest, second)
    finally:
        drop_database(pg_admin_dsn, second)


def test_server_side_search_exact_and_hnsw(pg_dsn):
    from gfn_edge.gallery.postgres_store import PostgresStore

    centres, people = make_people(300, templates=2, seed=21)
    store = PostgresStore(pg_dsn, SIG, DIM, hnsw_min_templates=500)
    with Gallery(pg_dsn, store=store) as g:
        g.enroll_many(people)
        rng = np.random.default_rng(22)
        probes = [probe(centres[i], rng) for i in range(0, 300, 15)]
        exact = [store.nearest(q, k=1, exact=True)[0] for q in probes]
        for (name, score), q in zip(exact, probes):
            local = g.search(q, k=1)[0]
            assert name == local.identity and score == pytest.approx(local.score, abs=1e-5)
        assert store.ensure_index() is True  # 600 templates >= 500
        approx = [store.nearest(q, k=1)[0][0] for q in probes]
        assert approx == [n for n, _ in exact]  # clusters this clear: HNSW finds the same


def test_gallery_cli_copy_check_and_info_on_the_server(pg_dsn, tmp_path: Path, capsys):
    import json

    from gfn_edge.cli import main

    _, people = make_people(12, templates=2, seed=51)
    src = tmp_path / "door.db"
    with Gallery(src, signature=SIG, dim=DIM) as g:
        g.enroll_many(people)
    assert main(["gallery", "copy", str(src), pg_dsn]) == 0
    assert json.loads(capsys.readouterr().out)["templates"] == 24
    assert main(["gallery", "check", pg_dsn]) == 0
    assert "ok (12 identities, 24 templates" in capsys.readouterr().out
    assert main(["gallery", "info", pg_dsn]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["signature"], info["dim"], info["identities"], info["templates"]) == (SIG, DIM, 12, 24)
    back = tmp_path / "back.db"
    assert main(["gallery", "copy", pg_dsn, str(back)]) == 0
    with Gallery(back, signature=SIG) as g:
        for name, vecs in people.items():
            np.testing.assert_array_equal(g.embeddings(name), vecs)
    assert main(["gallery", "copy", str(src), pg_dsn]) == 1  # not empty: refused with one line
    assert "not empty" in capsys.readouterr().err


def test_a_long_lived_handle_survives_a_server_restart(pg_cluster):
    """PostgreSQL only: the server goes away under an open Gallery and comes back on the same port.

    While it is down a write fails with a clear GalleryError naming the unreachable server and
    nothing is half-done; once it is back the same handle reconnects by itself.
    """
    from fleet_servers import create_database

    dsn = create_database(pg_cluster.dsn())
    _, people = make_people(6, templates=2, seed=61)
    with Gallery(dsn, signature=SIG, dim=DIM, timeout=2.0) as g:
        g.enroll_many(people)
        pg_cluster.stop()
        with pytest.raises(GalleryError, match="unreachable|cannot reach"):
            g.enroll("during-the-outage", unit(np.ones((1, DIM))))
        pg_cluster.start()
        assert g.enroll("after-the-outage", unit(np.ones((1, DIM)))) == 1
        assert g.count() == 7 and "during-the-outage" not in g
        for name, vecs in people.items():
            np.testing.assert_array_equal(g.embeddings(name), vecs)
