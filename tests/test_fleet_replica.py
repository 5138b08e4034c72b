"""Fleet doors searching local replicas of the central gallery: propagation and the stale policy.

The propagation test: three doors (each a GalleryReplica with its own SQLite file, its own
LISTEN connection and background thread, behind the door's FleetGallery policy) and a real
PostgreSQL that the test stops. Enrolment through the central gallery (what ``door_access.py
enroll`` does on any door of the fleet) must reach the others within 5 s, a removal likewise;
with the server down, doors keep granting from their replica until ``max_stale``, then deny
(default), while a door configured ``on_stale = "keep"`` keeps granting; when the server is
back, they recognise again. The periodic check is set to 30 s, so the 5 s can only come from
LISTEN/NOTIFY.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "apps"))

pytest.importorskip("psycopg", reason="asset missing: psycopg (pip install 'gfn-edge[postgres]')")

from test_gallery import DIM, SIG, make_people, probe  # noqa: E402

from gfn_edge import GalleryError  # noqa: E402
from gfn_edge.gallery import Gallery  # noqa: E402
from gfn_edge.gallery.replica import GalleryReplica, ReplicaModelError  # noqa: E402

from door.fleet import FleetGallery  # noqa: E402

THRESHOLD = 0.5


def _until(condition, timeout: float) -> float:
    """Seconds until ``condition()`` held (polling every 20 ms); fails after ``timeout``."""
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - t0


def _grants(door: FleetGallery, query: np.ndarray, who: str) -> bool:
    match = door.best(query, threshold=THRESHOLD)
    return match is not None and match.identity == who


def test_propagation_and_stale_policy(pg_cluster, tmp_path: Path, caplog):
    url = pg_cluster.dsn()
    centres, people = make_people(40, templates=3, seed=31)
    rng = np.random.default_rng(32)
    with Gallery(url, signature=SIG, dim=DIM) as central:  # the fleet's gallery, with 38 people already
        central.enroll_many({k: v for k, v in people.items() if k not in ("person-000", "person-001")})
        max_stale = 4.0
        doors = [
            FleetGallery(GalleryReplica(url, tmp_path / f"door-{i}.db", SIG, DIM, check_interval=30.0).start(), max_stale, "keep" if i == 2 else "deny")
            for i in range(3)
        ]
        try:
            alice, bob = probe(centres[0], rng), probe(centres[1], rng)
            assert _grants(doors[0], probe(centres[5], rng), "person-005")  # the initial copy
            assert not any(_grants(d, alice, "person-000") for d in doors)

            central.enroll("person-000", people["person-000"])  # enrolled "on door A"
            took = [_until(lambda d=d: _grants(d, alice, "person-000"), 5.0) for d in doors]
            print(f"\nenrolment reached the doors in {', '.join(f'{t:.2f}' for t in took)} s")

            assert central.remove("person-000") == 3  # revoked
            took = [_until(lambda d=d: not _grants(d, alice, "person-000"), 5.0) for d in doors]
            print(f"removal reached the doors in {', '.join(f'{t:.2f}' for t in took)} s")

            central.enroll("person-001", people["person-001"])
            for d in doors:
                _until(lambda d=d: _grants(d, bob, "person-001"), 5.0)

            pg_cluster.stop("immediate")  # the server (or the link) goes away
            t_stop = time.monotonic()
            assert all(_grants(d, bob, "person-001") for d in doors)  # replicas carry on
            denied_after = []
            for d in doors[:2]:
                _until(lambda d=d: not _grants(d, bob, "person-001"), max_stale + 5)
                denied_after.append(time.monotonic() - t_stop)
            print(
                f"server down: doors granted from their replica, then denied {', '.join(f'{t:.1f}' for t in denied_after)} s "
                f"after the server stopped (max_stale {max_stale:g} s, heartbeat 1 s)"
            )
            assert all(max_stale - 1.5 <= t <= max_stale + 0.5 for t in denied_after)
            assert _grants(doors[2], bob, "person-001")  # on_stale = "keep"
            assert any("DENYING EVERYONE" in r.getMessage() for r in caplog.records)

            pg_cluster.start()
            t_start = time.monotonic()
            for d in doors[:2]:
                _until(lambda d=d: _grants(d, bob, "person-001"), 20.0)
            back = [time.monotonic() - t_start]
            print(f"server back: both denying doors recognised again {back[0]:.1f} s after it restarted")
        finally:
            for d in doors:
                d.close()


def test_a_restarted_door_knows_how_old_its_replica_is(pg_cluster, tmp_path: Path):
    url = pg_cluster.dsn()
    _, people = make_people(3, seed=41)
    with Gallery(url, signature=SIG, dim=DIM) as central:
        central.enroll_many(people)
    replica = GalleryReplica(url, tmp_path / "door.db", SIG, DIM, check_interval=30.0)
    assert replica.gallery.count() == 3 and replica.stale_for() < 5
    replica.close()
    pg_cluster.stop()
    time.sleep(1.5)
    again = GalleryReplica(url, tmp_path / "door.db", SIG, DIM, check_interval=30.0, timeout=1.0)  # server away
    try:
        assert again.gallery.count() == 3  # the last replica, searchable
        assert 1.5 <= again.stale_for() < 30  # its age survived the restart
        door = FleetGallery(again, max_stale=1.0)
        assert door.search(people["person-000"][0], k=1) == []  # fail closed
    finally:
        again.close()
    fresh = GalleryReplica(url, tmp_path / "new-door.db", SIG, DIM, timeout=1.0)  # never reached: empty, infinitely stale
    try:
        assert fresh.gallery.count() == 0 and fresh.stale_for() == float("inf")
    finally:
        fresh.close()


def test_a_replica_refuses_another_models_gallery(pg_dsn, tmp_path: Path):
    with Gallery(pg_dsn, signature=SIG, dim=DIM) as central:
        central.enroll("a", make_people(1)[1]["person-000"])
    with pytest.raises(ReplicaModelError, match="not comparable"):
        GalleryReplica(pg_dsn, tmp_path / "door.db", "other-model:1", DIM)
    assert isinstance(ReplicaModelError("x"), GalleryError)
