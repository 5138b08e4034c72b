"""Fleet event log: doors log locally first and ship to PostgreSQL; nothing lost, nothing doubled.

The fault test runs 4 real door processes (tests/helpers/fleet_door.py) against a real
PostgreSQL that the test stops and restarts twice while they write, and SIGKILLs one door and
restarts it: the central table must end with exactly the 2,000 events, no duplicates, each door's
in its local order. The other tests cover the parts: checksums, damaged rows, idempotent
re-shipping, pruning that keeps what is not yet shipped, and the schema 1 -> 2 migration.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "apps"))
DOOR = Path(__file__).parent / "helpers" / "fleet_door.py"

from door.events import Event, EventLog  # noqa: E402
from door.shipper import EventShipper  # noqa: E402

psycopg = pytest.importorskip("psycopg", reason="asset missing: psycopg (pip install 'gfn-edge[postgres]')")


def _central(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT door_id, seq, frame, decision, identity, damaged FROM gfn_events ORDER BY door_id, seq").fetchall()


def test_fault_four_doors_server_restarted_twice_one_door_killed(pg_cluster, tmp_path: Path):
    doors, per_door = 4, 500
    dsn = pg_cluster.dsn()

    def spawn(i: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(DOOR), str(tmp_path / f"door{i}.db"), dsn, f"door-{i}", str(per_door), "0.02"],
            stdout=subprocess.PIPE,
            stderr=open(tmp_path / f"door{i}.log", "ab"),
            text=True,
        )

    procs = {i: spawn(i) for i in range(doors)}
    t0 = time.monotonic()

    def at(seconds: float) -> None:
        time.sleep(max(0.0, t0 + seconds - time.monotonic()))

    at(2.0)
    pg_cluster.stop()  # 1st outage, while all four write
    at(4.0)
    pg_cluster.start()
    at(6.0)
    pg_cluster.stop("immediate")  # 2nd outage: a crash, not a clean shutdown
    at(7.0)
    procs[0].send_signal(signal.SIGKILL)  # and a door dies meanwhile
    procs[0].wait(10)
    at(8.0)
    procs[0] = spawn(0)  # systemd would restart it
    at(9.0)
    pg_cluster.start()
    outputs = {}
    for i, p in procs.items():
        out, _ = p.communicate(timeout=180)
        outputs[i] = (p.returncode, out.strip())
    logs = {i: (tmp_path / f"door{i}.log").read_text()[-1500:] for i in range(doors)}
    assert all(rc == 0 and out == "done" for rc, out in outputs.values()), (outputs, logs)
    assert "failed" in logs[1] and "resumed" in logs[1], "the outages were not noticed: the test did not test them"

    rows = _central(dsn)
    print(f"\ncentral gfn_events: {len(rows)} rows from {doors} doors ({time.monotonic() - t0:.1f} s)")
    assert len(rows) == doors * per_door
    assert len({(r[0], r[1]) for r in rows}) == len(rows)  # the primary key, and no (door, frame) twice either
    assert len({(r[0], r[2]) for r in rows}) == len(rows)
    for i in range(doors):
        mine = [r for r in rows if r[0] == f"door-{i}"]
        assert [r[1] for r in mine] == list(range(1, per_door + 1))  # gapless local sequence
        assert [r[2] for r in mine] == list(range(per_door))  # per-door order = the order they happened
        assert not any(r[5] for r in mine)
    with sqlite3.connect(tmp_path / "door0.db") as local:
        assert local.execute("SELECT COUNT(*) FROM events").fetchone()[0] == per_door


def test_reshipping_is_idempotent_and_damaged_rows_are_flagged(pg_dsn, tmp_path: Path):
    db = tmp_path / "events.db"
    with EventLog(db) as log:
        for i in range(10):
            log.add(Event(time=1000.0 + i, decision="grant", frame=i, identity="alice", score=0.8))
    # a flipped bit on the card: "grant" becomes "grunt" in row 4
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE events SET decision = 'grunt' WHERE id = 4")
    shipper = EventShipper(db, pg_dsn, "front")
    assert shipper.ship_once() == 10
    with sqlite3.connect(db) as raw:  # the acknowledgement is lost: the door ships it all again
        raw.execute("DELETE FROM shipping")
    assert shipper.ship_once() == 10
    shipper.close()
    rows = _central(pg_dsn)
    assert len(rows) == 10 and [r[1] for r in rows] == list(range(1, 11))
    assert [r[5] for r in rows] == [i == 3 for i in range(10)]  # shipped, but flagged: never as if valid
    with EventLog(db, readonly=True) as log:
        events = log.query()
    assert [e.damaged for e in events] == [i == 3 for i in range(10)]


def test_prune_keeps_unshipped_events(pg_dsn, tmp_path: Path):
    db = tmp_path / "events.db"
    old = time.time() - 200 * 86400
    with EventLog(db) as log:
        for i in range(6):
            log.add(Event(time=old + i, decision="unknown", frame=i))
        shipper = EventShipper(db, pg_dsn, "side")
        shipper.ship_once()
        log.add(Event(time=old + 10, decision="unknown", frame=6))  # old, but not shipped yet
        assert log.prune(90) == 6
        assert [e.frame for e in log.query()] == [6]
        shipper.ship_once()
        assert log.prune(90) == 1
        shipper.close()


def test_schema_1_log_is_migrated_with_checksums(tmp_path: Path):
    db = tmp_path / "v1.db"
    conn = sqlite3.connect(db)
    conn.executescript(
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, frame INTEGER, source_time REAL, "
        "track INTEGER, identity TEXT, score REAL, liveness REAL, decision TEXT NOT NULL, reason TEXT, snapshot TEXT, source TEXT);"
        "INSERT INTO events(time, decision, identity, score) VALUES (5, 'grant', 'bob', 0.75), (6, 'deny', 'eve', 0.9);"
        f"PRAGMA application_id={0x47464E45}; PRAGMA user_version=1;"
    )
    conn.close()
    with EventLog(db, readonly=True) as log:  # `events` before the door ran the new version: readable, unchanged
        assert [(e.identity, e.damaged) for e in log.query()] == [("bob", False), ("eve", False)]
    with EventLog(db) as log:
        events = log.query()
        assert [(e.id, e.decision, e.damaged) for e in events] == [(1, "grant", False), (2, "deny", False)]
        assert log.add(Event(time=7.0, decision="unknown")) == 3
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 2
        raw.execute("UPDATE events SET identity = 'mallory' WHERE id = 1")
    with EventLog(db, readonly=True) as log:
        assert [e.damaged for e in log.query()] == [True, False, False]


def test_shipper_waits_out_an_unreachable_server(tmp_path: Path):
    from fleet_servers import free_port

    db = tmp_path / "events.db"
    with EventLog(db) as log:
        log.add(Event(time=1.0, decision="grant"))
    shipper = EventShipper(db, f"postgresql://postgres@127.0.0.1:{free_port()}/none", "lost", interval=0.05, max_delay=0.2, connect_timeout=1).start()
    time.sleep(1.0)
    assert shipper.pending() == 1 and shipper._thread.is_alive()
    shipper.close(drain=0)
    assert shipper.shipped == 0
