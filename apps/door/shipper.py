"""Shipping a door's events to the fleet's central log on PostgreSQL, losing none, doubling none.

The door always writes an event to its local SQLite log first (apps/door/events.py): a decision
is on the door's own disk before anything else happens, whatever the network does. This module
then forwards the log, in sequence order, to the central table ``gfn_events``. Why nothing is
lost or counted twice:

* the key of a central row is (door id, local sequence) and the insert is ``ON CONFLICT DO
  NOTHING``: re-sending a batch (the door was killed after the server committed but before the
  door recorded it, or a commit's acknowledgement was lost) changes nothing;
* the door records how far the server has acknowledged only *after* the server's commit, so a
  crash at any point re-sends, never skips; pruning keeps every event not yet acknowledged;
* a server that does not answer is retried with exponential backoff (``interval`` doubling to
  ``max_delay``), one log line per outage, while the door goes on deciding and logging locally.

A row whose checksum fails locally is shipped flagged ``damaged`` (its fields are kept for the
investigation) and logged: never shipped as if it were valid, and never silently dropped, so the
central sequence of a door has no unexplained gap.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Optional

from .events import COLUMNS, Event, EventLog, row_checksum

log = logging.getLogger(__name__)

CENTRAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS gfn_events (
    door_id text NOT NULL,
    seq bigint NOT NULL,                 -- the door's local sequence (its SQLite row id)
    time double precision NOT NULL,
    frame bigint,
    source_time double precision,
    track bigint,
    identity text,
    score double precision,
    liveness double precision,
    decision text NOT NULL,
    reason text,
    snapshot text,
    source text,
    checksum bigint NOT NULL,            -- events.row_checksum over (seq, fields), as on the door
    damaged boolean NOT NULL DEFAULT false,
    received double precision NOT NULL DEFAULT extract(epoch FROM clock_timestamp()),
    PRIMARY KEY (door_id, seq)
);
CREATE INDEX IF NOT EXISTS gfn_events_by_time ON gfn_events(time);
CREATE INDEX IF NOT EXISTS gfn_events_by_identity ON gfn_events(identity, time);
"""
_FIELDS = COLUMNS[1:]  # everything but the id, which is the sequence
_INSERT = (
    f"INSERT INTO gfn_events (door_id, seq, {', '.join(_FIELDS)}, checksum, damaged) "
    f"VALUES (%s, %s, {', '.join('%s' for _ in _FIELDS)}, %s, %s) ON CONFLICT (door_id, seq) DO NOTHING"
)


def ensure_central_table(conn: Any) -> None:
    """Create ``gfn_events`` once (an advisory lock makes concurrent first starts safe)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('gfn_events create'))")
        conn.execute(CENTRAL_SCHEMA)


class EventShipper:
    """Forwards ``events_db`` to the central log at ``url`` on a background thread."""

    def __init__(
        self, events_db: str | Path, url: str, door_id: str, interval: float = 1.0, max_delay: float = 60.0, batch: int = 500, connect_timeout: float = 5.0
    ):
        self.events_db = Path(events_db)
        self.url = url
        self.door_id = door_id
        self.interval = float(interval)
        self.max_delay = float(max_delay)
        self.batch = int(batch)
        self.connect_timeout = connect_timeout
        self.central = f"{_host(url)}#{door_id}"  # this central log (server/database, door) in the local shipping table
        self._log = EventLog(self.events_db)
        self._conn: Any = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._outage_since: Optional[float] = None
        self.shipped = 0

    # --- one round -------------------------------------------------------------------------
    def _connection(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self.connect_timeout)))
            ensure_central_table(self._conn)
        return self._conn

    def ship_once(self) -> int:
        """Ship every pending event (in batches); returns how many. Raises psycopg errors."""
        total = 0
        while True:
            upto = self._log.shipped_upto(self.central)
            pending = self._log.after(upto, self.batch)
            if not pending:
                return total
            rows = [self._row(event, stored) for event, stored in pending]
            conn = self._connection()
            with conn.transaction():
                with conn.cursor() as cur:
                    cur.executemany(_INSERT, rows)
            self._log.mark_shipped(self.central, pending[-1][0].id)  # only after the server's commit
            total += len(rows)
            self.shipped += len(rows)

    def _row(self, event: Event, stored: Optional[int]) -> tuple:
        values = [getattr(event, c) for c in _FIELDS]
        if event.damaged:
            log.error("event %d of door %s is damaged in the local log; shipped flagged damaged", event.id, self.door_id)
        checksum = stored if stored is not None else row_checksum([event.id, *values])
        return (self.door_id, event.id, *values, checksum, bool(event.damaged))

    def pending(self) -> int:
        return self._log.last_seq() - self._log.shipped_upto(self.central)

    # --- background ------------------------------------------------------------------------
    def start(self) -> EventShipper:
        self._thread = threading.Thread(target=self._run, name="door-event-shipper", daemon=True)
        self._thread.start()
        return self

    def notify(self) -> None:
        """A new event was logged: ship it now rather than at the next tick."""
        self._wake.set()

    def _run(self) -> None:
        delay = self.interval
        while not self._stop.is_set():
            try:
                self.ship_once()
            except Exception as exc:  # psycopg errors, a server restarting, DNS...: retry later
                self._close_conn()
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
                    log.warning(
                        "event shipping to %s failed (%s); events stay in the local log and are retried",
                        _host(self.url),
                        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                    )
                self._stop.wait(delay)
                delay = min(delay * 2, self.max_delay)
                continue
            if self._outage_since is not None:
                log.info("event shipping to %s resumed after %.0f s", _host(self.url), time.monotonic() - self._outage_since)
                self._outage_since = None
            delay = self.interval
            self._wake.wait(self.interval)
            self._wake.clear()

    def _close_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def close(self, drain: float = 5.0) -> None:
        """Stop, after trying for up to ``drain`` seconds to ship what is pending."""
        if self._thread is not None:
            deadline = time.monotonic() + drain
            while self._outage_since is None and self.pending() > 0 and time.monotonic() < deadline:
                self._wake.set()
                time.sleep(0.05)
            self._stop.set()
            self._wake.set()
            self._thread.join(10)
        self._close_conn()
        self._log.close()


def query_central(
    url: str,
    since: Optional[float] = None,
    until: Optional[float] = None,
    identity: Optional[str] = None,
    decisions: Optional[list] = None,
    limit: Optional[int] = None,
    door: Optional[str] = None,
) -> list[Event]:
    """The fleet's events (``door_access.py events`` on a fleet), oldest first; checksums verified again.

    A row flagged damaged by its door, or whose checksum fails here, comes back ``damaged``.
    """
    import psycopg

    where, args = [], []
    for cond, value in (("time >= %s", since), ("time < %s", until), ("identity = %s", identity), ("door_id = %s", door)):
        if value is not None:
            where.append(cond)
            args.append(value)
    if decisions:
        where.append("decision = ANY(%s)")
        args.append(list(decisions))
    sql = f"SELECT door_id, seq, {', '.join(_FIELDS)}, checksum, damaged FROM gfn_events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY time DESC, door_id, seq DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            if conn.execute("SELECT to_regclass('gfn_events')").fetchone()[0] is None:
                return []
            rows = conn.execute(sql, args).fetchall()
    except psycopg.Error as exc:
        from .events import EventLogError

        raise EventLogError(f"cannot read the central event log at {_host(url)}: {str(exc).strip().splitlines()[0]}") from None
    out = []
    for door_id, seq, *values, checksum, damaged in reversed(rows):
        event = Event(**dict(zip(_FIELDS, values)), id=seq, door=door_id)
        event.damaged = bool(damaged) or row_checksum([seq, *values]) != checksum
        out.append(event)
    return out


def _host(url: str) -> str:
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    return f"{parts.hostname or 'localhost'}{':' + str(parts.port) if parts.port else ''}{parts.path}"
