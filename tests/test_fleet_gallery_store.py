"""The gallery on PostgreSQL + pgvector: the gallery suite's store-independent tests, unchanged,
on a real server, plus what a location means for a server (reopening, other models, concurrent
handles and processes, damage, backup to a portable file, copy both ways, server-side search).

The tests imported from test_gallery.py run here with the ``gallery`` fixture below: a
``Gallery("postgresql://...")`` on a fresh database of the session's server (pgserver's build,
or ``GFN_EDGE_TEST_PG_DSN``). Their assertions are those of the SQLite suite.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("psycopg", reason="asset missing: psycopg (pip install 'gfn-edge[postgres]')")

from test_gallery import (  # noqa: F401  (collected here, run against PostgreSQL)
    DIM,
    OTHER_SIG,
    SIG,
    assert_matches,
    brute_force,
    make_people,
    probe,
    test_batch_search_equals_single_queries,
    test_empty_gallery_searches_to_nothing,
    test_enroll_images_takes_the_sdk_face_type,
    test_enroll_images_with_an_analyzer,
    test_enroll_images_with_an_embedder_of_crops,
    test_enroll_many_is_all_or_nothing,
    test_max_and_mean_aggregation,
    test_normalises_defensively_without_touching_input,
    test_rejects_bad_input_and_stores_nothing,
    test_rejects_bad_queries,
    test_replace_append_and_metadata,
    test_search_ranks_identities_by_best_template,
    unit,
)

from gfn_edge import GalleryError
from gfn_edge.gallery import Gallery, UnknownIdentityError


@pytest.fixture
def gallery(pg_dsn):
    with Gallery(pg_dsn, signature=SIG, dim=DIM) as g:
        yield g


def test_round_trip_persists_and_reopens(pg_dsn):
    _, people = make_people(20, templates=3)
    with Gallery(pg_dsn, signature=SIG, dim=DIM) as g:
        for name, vecs in people.items():
            assert g.enroll(name, vecs) == 3
        assert g.identities() == sorted(people) and g.count() == 20 and g.num_templates == 60
        assert "postgresql://" in g.location
    with Gallery(pg_dsn, signature=SIG, dim=DIM) as g:  # another connection, same data, bit-exact
        for name, vecs in people.items():
            np.testing.assert_array_equal(g.embeddings(name), vecs)
        assert g.remove("person-000") == 3 and g.remove("person-000") == 0
        with pytest.raises(UnknownIdentityError, match="person-000"):
            g.embeddings("person-000")
    with Gallery(pg_dsn, signature=SIG) as g:
        assert "person-000" not in g and g.count() == 19


def test_threshold_persists_and_best_uses_it(pg_dsn):
    centres, people = make_people(25, templates=3, seed=5)
    rng = np.random.default_rng(6)
    with Gallery(pg_dsn, signature=SIG, dim=DIM) as g:
        g.enroll_many(people)
        genuine = probe(centres[3], rng)
        assert g.threshold is None
        g.set_threshold(0.3, target_far=0.01)
        assert g.best(genuine).identity == "person-003"
    with Gallery(pg_dsn, signature=SIG) as g:
        assert g.threshold == pytest.approx(0.3) and g.threshold_info.target_far == pytest.approx(0.01)


def test_refuses_another_model_and_missing_galleries(pg_dsn, pg_admin_dsn):
    with Gallery(pg_dsn, signature=SIG, dim=DIM) as g:
        g.enroll("a", unit(np.ones(DIM)))
    with pytest.raises(GalleryError, match=OTHER_SIG):
        Gallery(pg_dsn, signature=OTHER_SIG, dim=DIM)
    with pytest.raises(GalleryError, match="512-d"):
        Gallery(pg_dsn, signature=SIG, dim=128)
    from fleet_servers import create_database, drop_database

    empty = create_database(pg_admin_dsn)
    try:
        with pytest.raises(GalleryError, match="does not exist"):
            Gallery(empty, signature=SIG, dim=DIM, create=False)
        with pytest.raises(GalleryError, match="signature"):
            Gallery(empty)
        with pytest.raises(GalleryError, match="dim"):
            Gallery(empty, signature=SIG)
    finally:
        drop_database(pg_admin_dsn, empty)


def test_readonly_never_writes(pg_dsn):
    _, people = make_people(5)
    with Gallery(pg_dsn, signature=SIG, dim=DIM) as g:
        g.enroll_many(people)
    with Gallery(pg_dsn, signature=SIG, readonly=True) as g:
        assert g.search(people["person-001"][0], k=1)[0].identity == "person-001"
        for write in (lambda: g.enroll("x", people["person-001"]), lambda: g.remove("person-001")):
            with pytest.raises(GalleryError, match="read-only"):
                write()
        assert g.count() == 5


def test_two_handles_and_threads_stay_coherent(pg_dsn):
    rng = np.random.default_rng(15)
    truth: dict[str, np.ndarray] = {}
    queries = unit(rng.standard_normal((3, DIM)))
    with Gallery(pg_dsn, signature=SIG, dim=DIM) as a, Gallery(pg_dsn, signature=SIG, dim=DIM) as b:
        for step in range(20):
            g = (a, b)[step % 2]
            name = f"id{step % 7}"
            vecs = unit(rng.standard_normal((1 + step % 3, DIM)))
            if step % 5 == 4 and name in truth:
                assert g.remove(name) == len(truth.pop(name))
            else:
                g.enroll(name, vecs, replace=True)
                truth[name] = vecs
            for h in (a, b):
                for q in queries:
                    assert_matches(h.search(q, k=3), brute_force(truth, q)[:3])
        errors: list[BaseException] = []

        def work(worker: int) -> None:
            try:
                with Gallery(pg_dsn, signature=SIG, dim=DIM) as own:
                    for i in range(5):
                        v = unit(np.random.default_rng(worker * 10 + i).standard_normal((2, DIM)))
                        own.enroll(f"w{worker}-{i}", v)
                        assert own.search(v[0], k=1)[0].identity == f"w{worker}-{i}"
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert a.count() == len(truth) + 20


def test_a_damaged_template_is_quarantined_never_matched(pg_dsn):
    import psycopg

    _, people = make_people(10, templates=2, seed=3)
    with Gallery(pg_dsn, signature=SIG, dim=DIM) as g:
        g.enroll_many(people)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # bit rot in one stored template of person-004
        tid = conn.execute(
            "SELECT t.id FROM gfn_templates t JOIN gfn_identities i ON i.id = t.identity WHERE i.name = 'person-004' ORDER BY t.id LIMIT 1"
        ).fetchone()[0]
        conn.execute("UPDATE gfn_templates SET vector = set_byte(vector, 17, get_byte(vector, 17) # 16) WHERE id = %s", (tid,))
    with Gallery(pg_dsn, signature=SIG, dim=DIM) as g:
        hits = g.search(people["person-004"][0], k=1)
        assert not hits or hits[0].score < 0.99  # the damaged template itself is never searched
        assert [(d.identity, d.reason) for d in g.damaged] == [("person-004", "checksum mismatch")]
        assert g.search(people["person-004"][1], k=1)[0].identity == "person-004"  # the intact one still works
        assert len(g.embeddings("person-004")) == 1


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


def test_a_writer_holding_the_lock_times_out_cleanly_and_nothing_half_done(pg_dsn):
    import psycopg

    v = unit(np.random.default_rng(21).standard_normal((1, DIM)))
    with Gallery(pg_dsn, signature=SIG, dim=DIM, timeout=0.3) as g:
        g.enroll("first", v)
        other = psycopg.connect(pg_dsn)  # another door mid-enrolment holds the gallery's write lock
        other.execute("SELECT generation FROM gfn_gallery WHERE id = 1 FOR UPDATE")
        t0 = time.monotonic()
        with pytest.raises(GalleryError, match="locked"):
            g.enroll("second", v)
        assert time.monotonic() - t0 < 3
        other.rollback()
        other.close()
        assert g.identities() == ["first"]
        assert g.enroll("second", v) == 1  # and the next attempt goes through
