"""The door's event log: one SQLite row per decision, and the queries behind ``door_access.py events``.

Why SQLite: the log is the audit trail ("who opened the door at 02:14?") and must survive power
cuts and be readable while the door runs. WAL mode lets ``events`` query a live log without
blocking the writer; ``synchronous=FULL`` costs one fsync per decision (a few a minute at most)
and means a logged grant is on disk. The file is marked with its own ``application_id`` so a
gallery (or any other database) given by mistake is refused, never written into.
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
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)

APPLICATION_ID = 0x47464E45  # "GFNE"
SCHEMA_VERSION = 1
COLUMNS = ("id", "time", "frame", "source_time", "track", "identity", "score", "liveness", "decision", "reason", "snapshot", "source")

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
    source TEXT
);
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

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["time_iso"] = iso(self.time)
        return out


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
        except sqlite3.Error as exc:
            raise EventLogError(f"cannot open event log {self.path}: {exc}") from None

    def _check(self, existed: bool) -> None:
        if not existed:
            return
        app = self._conn.execute("PRAGMA application_id").fetchone()[0]
        if app != APPLICATION_ID:
            self._conn.close()
            raise EventLogError(
                f"{self.path} is not a door event log (a gallery or another database?); it was left untouched. "
                f"Give the event log its own file"
            )

    # --- writing --------------------------------------------------------------------------
    def add(self, event: Event) -> int:
        row = asdict(event)
        row.pop("id")
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._lock:
            cur = self._conn.execute(f"INSERT INTO events ({names}) VALUES ({marks})", tuple(row.values()))
        event.id = int(cur.lastrowid)
        return event.id

    def prune(self, keep_days: float) -> int:
        """Delete events older than ``keep_days`` (0: keep everything); returns how many went."""
        if keep_days <= 0:
            return 0
        with self._lock:
            n = self._conn.execute("DELETE FROM events WHERE time < ?", (time.time() - keep_days * 86400,)).rowcount
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
        sql = f"SELECT {', '.join(COLUMNS)} FROM events"
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
        return [Event(**dict(zip(COLUMNS, r))) for r in reversed(rows)]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "EventLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


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
    lines = [f"{'time':<19} {'decision':<8} {'identity':<20} {'score':>6} {'live':>5} {'track':>5}  reason"]
    for e in events:
        score = "" if e.score is None else f"{e.score:.3f}"
        live = "" if e.liveness is None else f"{e.liveness:.2f}"
        reason = e.reason or ""
        if e.snapshot:
            reason += f" [{e.snapshot}]"
        when = datetime.fromtimestamp(e.time).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{when:<19} {e.decision:<8} {(e.identity or '-'):<20} {score:>6} {live:>5} {e.track or '':>5}  {reason}")
    return "\n".join(lines)


def to_json_lines(events: list[Event]) -> str:
    return "\n".join(json.dumps(e.to_dict(), sort_keys=True) for e in events)
