"""The door's event log: one SQLite row per decision, and the queries behind ``door_access.py events``.

Why SQLite: the log is the audit trail ("who opened the door at 02:14?") and must survive power
cuts and be readable while the door runs. WAL mode lets ``events`` query a live log without
blocking the writer; ``synchronous=FULL`` costs one fsync per decision (a few a minute at most)
and means a logged grant is on disk. The file is marked with its own ``application_id`` so a
gallery (or any other database) given by mistake is refused, never written into.

Integrity (schema 2): every row carries a CRC-32 over its id and fields (``row_checksum``), so a
row damaged on the card (a flipped bit turning "deny" into "grant", or one identity into another)
is reported as damaged, never read or shipped as if it were valid. The row id is the door's local
sequence (AUTOINCREMENT: never reused, even after pruning): a fleet door ships its events to the
central log keyed by (door id, sequence) (apps/door/shipper.py), and ``shipping`` remembers how
far each central log has acknowledged, so pruning never deletes an event not yet shipped.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
import time
import urllib.parse
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)

APPLICATION_ID = 0x47464E45  # "GFNE"
SCHEMA_VERSION = 2
COLUMNS = ("id", "time", "frame", "source_time", "track", "identity", "score", "liveness", "decision", "reason", "snapshot", "source")
_MIGRATE_2 = """
ALTER TABLE events ADD COLUMN checksum INTEGER;
CREATE TABLE IF NOT EXISTS shipping (central TEXT PRIMARY KEY, last_seq INTEGER NOT NULL) WITHOUT ROWID;
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,          -- wall clock, Unix seconds
    frame INTEGER,               -- index of the frame in its source
    source_time REAL,            -- seconds into a video file, or monotonic seconds for live sources
    track INTEGER,
    identity TEXT,               -- the matched identity; NULL for unknown faces
    score REAL,                  -- cosine similarity of the best match (mean over the observations)
    liveness REAL,               -- real-face probability (lowest over the observations); NULL when off
    decision TEXT NOT NULL,      -- grant, deny, unknown, cooldown
    reason TEXT,
    snapshot TEXT,               -- path of the JPEG written for this event, if any
    source TEXT,
    checksum INTEGER             -- row_checksum(...): CRC-32 over id and every field above
);
CREATE TABLE IF NOT EXISTS shipping (central TEXT PRIMARY KEY, last_seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_time ON events(time);
CREATE INDEX IF NOT EXISTS events_by_identity ON events(identity, time);
"""


class EventLogError(Exception):
    """An event database that cannot be opened or is not ours."""


@dataclass
class Event:
    """One decision as stored."""

    time: float
    decision: str
    track: Optional[int] = None
    identity: Optional[str] = None
    score: Optional[float] = None
    liveness: Optional[float] = None
    reason: str = ""
    frame: Optional[int] = None
    source_time: Optional[float] = None
    snapshot: Optional[str] = None
    source: Optional[str] = None
    id: Optional[int] = None
    damaged: bool = False  # its stored checksum does not match: the fields cannot be trusted
    door: Optional[str] = None  # fleet: the door that logged it (central log only)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["time_iso"] = iso(self.time)
        return out


def row_checksum(row: Iterable[Any]) -> int:
    """CRC-32 of an event row's values in ``COLUMNS`` order (id first), as canonical JSON.

    Floats are written with repr (exact for SQLite REAL and PostgreSQL double precision), so the
    door and the central log compute the same number for the same row.
    """
    canonical = [None if v is None else _CANON[i](v) for i, v in enumerate(row)]
    return zlib.crc32(json.dumps(canonical, allow_nan=True, separators=(",", ":")).encode("utf-8"))


# what each column reads back as (SQLite's REAL affinity turns 5 into 5.0): the checksum's view of a value
_CANON = (int, float, int, float, int, str, float, float, str, str, str, str)


def iso(t: float) -> str:
    """Local time with offset, to the millisecond: what an operator reads in a report."""
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")


class EventLog:
    """Append and query events in one SQLite file (created with its folder when missing).

    ``readonly=True`` (the ``events`` subcommand) never creates or modifies anything.
    """

    def __init__(self, path: str | os.PathLike[str], readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.Lock()
        if readonly and not self.path.is_file():
            raise EventLogError(f"event log {self.path} does not exist (has the door run with this config?)")
        if not readonly:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EventLogError(f"cannot create the folder of event log {self.path}: {exc.strerror or exc}") from None
        existed = self.path.is_file() and self.path.stat().st_size > 0
        try:
            uri = f"file:{urllib.parse.quote(str(self.path.resolve()))}?mode={'ro' if readonly else 'rwc'}"
            self._conn = sqlite3.connect(uri, uri=True, timeout=5.0, isolation_level=None, check_same_thread=False)
            self._check(existed)
            if not readonly:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=FULL")
                if not existed:
                    self._conn.executescript("BEGIN;" + _SCHEMA + f"PRAGMA application_id={APPLICATION_ID}; PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
                else:
                    self._migrate()
        except sqlite3.Error as exc:
            raise EventLogError(f"cannot open event log {self.path}: {exc}") from None

    def _check(self, existed: bool) -> None:
        if not existed:
            return
        app = self._conn.execute("PRAGMA application_id").fetchone()[0]
        if app != APPLICATION_ID:
            self._conn.close()
            raise EventLogError(f"{self.path} is not a door event log (a gallery or another database?); it was left untouched. Give the event log its own file")

    def _migrate(self) -> None:
        """Schema 1 -> 2 in one transaction: checksums for the existing rows, the shipping table."""
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            if self._conn.execute("PRAGMA user_version").fetchone()[0] < 2:
                for statement in filter(str.strip, _MIGRATE_2.split(";")):
                    self._conn.execute(statement)
                rows = self._conn.execute(f"SELECT {', '.join(COLUMNS)} FROM events").fetchall()
                self._conn.executemany("UPDATE events SET checksum = ? WHERE id = ?", [(row_checksum(r), r[0]) for r in rows])
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        log.info("event log %s: upgraded to schema %d (row checksums)", self.path, SCHEMA_VERSION)

    # --- writing --------------------------------------------------------------------------
    def add(self, event: Event) -> int:
        """Append one event (one transaction, one fsync); returns its sequence number (the row id)."""
        row = asdict(event)
        for extra in ("id", "damaged", "door"):
            row.pop(extra)
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                seq = int(self._conn.execute(f"INSERT INTO events ({names}) VALUES ({marks})", tuple(row.values())).lastrowid)
                self._conn.execute("UPDATE events SET checksum = ? WHERE id = ?", (row_checksum([seq, *(row[c] for c in COLUMNS[1:])]), seq))
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        event.id = seq
        return seq

    def prune(self, keep_days: float) -> int:
        """Delete events older than ``keep_days`` (0: keep everything); returns how many went."""
        if keep_days <= 0:
            return 0
        with self._lock:  # never an event a central log has not acknowledged yet
            n = self._conn.execute(
                "DELETE FROM events WHERE time < ? AND id <= (SELECT COALESCE(MIN(last_seq), 9223372036854775807) FROM shipping)",
                (time.time() - keep_days * 86400,),
            ).rowcount
        if n:
            log.info("event log: deleted %d events older than %g days", n, keep_days)
        return n

    # --- reading --------------------------------------------------------------------------
    def query(
        self,
        since: float | None = None,
        until: float | None = None,
        identity: str | None = None,
        decisions: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """Events in time order (the newest ``limit`` when a limit is given)."""
        where, args = [], []
        if since is not None:
            where.append("time >= ?")
            args.append(since)
        if until is not None:
            where.append("time < ?")
            args.append(until)
        if identity is not None:
            where.append("identity = ?")
            args.append(identity)
        decisions = list(decisions or [])
        if decisions:
            where.append(f"decision IN ({', '.join('?' for _ in decisions)})")
            args.extend(decisions)
        # a schema-1 log opened read-only (the door has not run since the upgrade) has no checksums to check
        sql = f"SELECT {', '.join(COLUMNS)}, {'checksum' if self._checksums() else -1} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time DESC, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            try:
                rows = self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise EventLogError(f"cannot read event log {self.path}: {exc}") from None
        return [_event(r[:-1], None if r[-1] == -1 else r[-1], self.path, r[-1] == -1) for r in reversed(rows)]

    def _checksums(self) -> bool:
        return self._conn.execute("PRAGMA user_version").fetchone()[0] >= 2

    # --- shipping (apps/door/shipper.py) ----------------------------------------------------
    def shipped_upto(self, central: str) -> int:
        """The highest sequence ``central`` has acknowledged (0: none)."""
        with self._lock:
            row = self._conn.execute("SELECT last_seq FROM shipping WHERE central = ?", (central,)).fetchone()
        return 0 if row is None else int(row[0])

    def mark_shipped(self, central: str, seq: int) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO shipping(central, last_seq) VALUES (?, ?) ON CONFLICT(central) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)",
                (central, int(seq)),
            )

    def after(self, seq: int, limit: int = 500) -> list[tuple[Event, int]]:
        """Up to ``limit`` events with a sequence above ``seq``, in order, with their stored checksum."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {', '.join(COLUMNS)}, checksum FROM events WHERE id > ? ORDER BY id LIMIT ?", (int(seq), int(limit))).fetchall()
        return [(_event(r[:-1], r[-1], self.path), r[-1]) for r in rows]

    def last_seq(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _event(values: tuple, checksum: Optional[int], where: Path, unprotected: bool = False) -> Event:
    """An Event from a stored row, flagged (and logged) when its checksum does not match."""
    event = Event(**dict(zip(COLUMNS, values)))
    if unprotected:  # written before checksums existed: nothing to verify
        return event
    if checksum is None or row_checksum(values) != checksum:
        event.damaged = True
        log.error("event log %s: event %s is damaged (checksum mismatch); its fields cannot be trusted", where, values[0])
    return event


# ----------------------------------------------------------------------------- time arguments

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: float | None = None) -> float:
    """Unix seconds for ``30m``/``2h``/``7d`` ago, ``today``, or an ISO date/time (local unless it says).

    Raises ValueError with the accepted forms.
    """
    now = time.time() if now is None else now
    value = text.strip()
    m = _RELATIVE.match(value)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2).lower()]
    if value.lower() == "today":
        return datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"cannot read time {text!r}: use e.g. 90s, 30m, 2h, 7d, today, 2024-05-01 or 2024-05-01T08:30") from None
    return dt.timestamp()  # naive datetimes are local time


def format_table(events: list[Event]) -> str:
    """Human-readable columns for the terminal."""
    if not events:
        return "no events"
    doors = any(e.door for e in events)
    lines = [f"{'time':<19} {'door:<12} ' if doors else ''}{'decision':<8} {'identity':<20} {'score':>6} {'live':>5} {'track':>5}  reason"]
    for e in events:
        score = "" if e.score is None else f"{e.score:.3f}"
        live = "" if e.liveness is None else f"{e.liveness:.2f}"
        reason = e.reason or ""
        if e.damaged:
            reason = "DAMAGED ROW (checksum mismatch; fields untrustworthy) " + reason
        if e.snapshot:
            reason += f" [{e.snapshot}]"
        when = datetime.fromtimestamp(e.time).strftime("%Y-%m-%d %H:%M:%S")
        door = f"{(e.door or '-'):<12} " if doors else ""
        lines.append(f"{when:<19} {door}{e.decision:<8} {(e.identity or '-'):<20} {score:>6} {live:>5} {e.track or '':>5}  {reason}")
    return "\n".join(lines)


def to_json_lines(events: list[Event]) -> str:
    return "\n".join(json.dumps(e.to_dict(), sort_keys=True) for e in events)
