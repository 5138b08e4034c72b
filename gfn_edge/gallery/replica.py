"""A door's local replica of the central gallery: searched locally, refreshed from the server.

Why a replica: recognition must never wait on the network, and a door must keep working when
the server or the link is down. The door searches an ordinary SQLite gallery on its own disk;
this module keeps that file in step with the central PostgreSQL gallery:

* **on change**: the central store sends ``NOTIFY gfn_gallery`` in every write transaction; a
  background thread LISTENs and catches up within a second of the commit;
* **periodic check** (``check_interval``): the fallback when a notification is lost (a dropped
  connection, a proxy in between); between checks a one-second heartbeat on the LISTEN
  connection tells that the server is reachable (so the replica is known to be current);
* **catch-up reads only what changed**: every central identity records the generation of its last
  change, so a refresh fetches the changed identities' templates and the list of names (removals
  are names no longer there). Removals are applied first: revocation is the urgent direction.
  Templates failing their checksum on the server are not replicated (and logged).

``last_contact`` (Unix time of the last successful exchange with the server) is what the door's
``max_stale`` policy reads (apps/door/fleet.py). It and the replicated generation are kept in a
small JSON file beside the replica, so a door restarted while the server is away still knows how
old its replica is.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import GalleryError
from .facade import Gallery
from .store import NewTemplates, open_store

log = logging.getLogger(__name__)

STATE_SUFFIX = ".replica.json"
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}  # a dead link is noticed in ~11 s


PATCH_MAX = 200  # up to this many changed identities go through the door's Gallery (patched in place)
HEARTBEAT_S = 1.0  # a round trip on the LISTEN connection this often keeps last_contact (max_stale's clock) exact
RETRY_MAX_S = 5.0  # reconnection attempts: 1, 2, 4, 5, 5... s (cheap, and a door should recover at once)


class ReplicaModelError(GalleryError):
    """The central gallery is for another recogniser than the door's: never replicated."""


class GalleryReplica:
    """Keeps the SQLite gallery at ``local_path`` a copy of the central gallery at ``url``.

    ``gallery`` is the local ``Gallery`` to search. ``signature``/``dim`` (the door's recogniser)
    are checked against the central gallery; a mismatch is an error, never a silent copy.
    """

    def __init__(
        self,
        url: str,
        local_path: str | os.PathLike[str],
        signature: str | None = None,
        dim: int | None = None,
        check_interval: float = 10.0,
        timeout: float = 5.0,
    ):
        self.url = url
        self.local_path = Path(local_path)
        self.signature, self.dim = signature, dim
        self.check_interval = float(check_interval)
        self.timeout = float(timeout)
        self._state_path = self.local_path.with_name(self.local_path.name + STATE_SUFFIX)
        state = self._read_state()
        self.generation: int = int(state.get("generation", -1)) if self.local_path.exists() else -1
        self.last_contact: float | None = state.get("last_contact")
        self.last_sync_seconds: float | None = None
        self._saved_contact = self.last_contact or 0.0
        self._lock = threading.Lock()  # one catch-up at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: Any = None
        self._central: Any = None
        self._outage = False
        try:
            self.sync()
        except ReplicaModelError:
            raise
        except GalleryError as exc:
            log.warning("gallery server %s not reachable at start-up (%s); using the local replica %s", _short(url), exc, self.local_path)
        if not self.local_path.exists():
            if signature is None or dim is None:
                raise GalleryError(f"no replica at {self.local_path} and the gallery server is not reachable")
            Gallery(self.local_path, signature=signature, dim=dim).close()  # empty: nobody is granted until the first sync
        self.gallery = Gallery(self.local_path, signature=signature, dim=dim)

    # --- state -------------------------------------------------------------------------------
    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self._state_path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _save_state(self) -> None:
        tmp = self._state_path.with_name(self._state_path.name + ".tmp")
        tmp.write_text(json.dumps({"central": _short(self.url), "generation": self.generation, "last_contact": self.last_contact}))
        os.replace(tmp, self._state_path)
        self._saved_contact = self.last_contact or 0.0

    def _contact(self) -> None:
        self.last_contact = time.time()
        if self._outage:
            self._outage = False
            log.info("gallery server %s is back", _short(self.url))
        if self.last_contact - self._saved_contact > 60:  # an SD card: not a write every few seconds
            self._save_state()

    def stale_for(self) -> float:
        """Seconds since the server was last reached (infinite when never)."""
        return float("inf") if self.last_contact is None else max(0.0, time.time() - self.last_contact)

    # --- catching up --------------------------------------------------------------------------
    def _central_store(self) -> Any:
        if self._central is None:
            store = open_store(self.url, create=False, readonly=True, timeout=self.timeout)
            info = store.info()
            if (self.signature is not None and info.signature != self.signature) or (self.dim is not None and info.dim != self.dim):
                store.close()
                raise ReplicaModelError(
                    f"the gallery server {_short(self.url)} holds model {info.signature!r} ({info.dim}-d) but this door runs "
                    f"{self.signature!r} ({self.dim}-d): embeddings of different models are not comparable; nothing was replicated"
                )
            self._central = store
        return self._central

    def sync(self) -> bool:
        """One catch-up round; True when the replica changed. Raises GalleryError if unreachable."""
        with self._lock:
            t0 = time.perf_counter()
            try:
                central = self._central_store()
                info = central.info()
                if central.generation() == self.generation and self.local_path.exists():
                    self._contact()
                    self._sync_threshold(info)
                    return False
                current, names, changed = central.changes_since(self.generation)
            except GalleryError as exc:
                if not isinstance(exc, ReplicaModelError):
                    self._drop_central()
                raise
            if current < self.generation:  # the central gallery was restored or recreated: start over
                log.warning("gallery server %s went back to generation %d (was %d): full refresh", _short(self.url), current, self.generation)
                current, names, changed = central.changes_since(-1)
            batch = [NewTemplates(name, vectors, meta) for name, meta, vectors in changed if len(vectors)]
            door = getattr(self, "gallery", None)
            if door is not None and len(batch) <= PATCH_MAX:
                gone = self._apply_through(door, names, batch)
            else:
                gone = self._apply_in_one_transaction(info, names, batch)
            self._sync_threshold(info)
            self.generation = current
            self.last_sync_seconds = time.perf_counter() - t0
            self._contact()
            self._save_state()
        if gone or batch:
            log.info(
                "gallery replica %s: generation %d (%d updated, %d removed) in %.3f s",
                self.local_path.name,
                current,
                len(batch),
                len(gone),
                self.last_sync_seconds,
            )
        return bool(gone or batch)

    @staticmethod
    def _apply_through(door: Gallery, names: list[str], batch: list[NewTemplates]) -> list[str]:
        """A few changes, through the door's own Gallery: its search matrix is patched in place,
        not reloaded (a 100k-template reload per enrolment would stall recognition)."""
        gone = sorted(set(door.identities()) - set(names))
        for name in gone:  # revocations first
            door.remove(name)
        for item in batch:
            door.enroll(item.identity, item.vectors, replace=True, metadata=json.loads(item.metadata_json) if item.metadata_json else None)
        return gone

    def _apply_in_one_transaction(self, info: Any, names: list[str], batch: list[NewTemplates]) -> list[str]:
        """Many changes (a first copy, a restored server): one local transaction, one reload later."""
        local = open_store(self.local_path, info.signature, info.dim, create=True)
        try:
            gone = sorted(set(local.identities()) - set(names))
            for name in gone:  # revocations first
                local.remove(name)
            if batch:
                local.add(batch, replace=True)
        finally:
            local.close()
        return gone

    def _sync_threshold(self, info: Any) -> None:
        local = open_store(self.local_path, create=False)
        try:
            if local.info().threshold != info.threshold:
                local.set_threshold(info.threshold)
        finally:
            local.close()

    def _drop_central(self) -> None:
        if self._central is not None:
            try:
                self._central.close()
            except GalleryError:
                pass
            self._central = None

    # --- background ---------------------------------------------------------------------------
    def start(self) -> GalleryReplica:
        self._thread = threading.Thread(target=self._run, name="gallery-replica", daemon=True)
        self._thread.start()
        return self

    def _listen(self) -> Any:
        import psycopg

        if self._listener is None or self._listener.closed or self._listener.broken:
            self._listener = psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self.timeout)), **KEEPALIVE)
            self._listener.execute("LISTEN gfn_gallery")
        return self._listener

    def _run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                conn = self._listen()
                self.sync()  # also after every reconnection: notifications sent meanwhile are lost
                delay, last_check = 1.0, time.monotonic()
                while not self._stop.is_set():
                    woken = any(True for _ in conn.notifies(timeout=HEARTBEAT_S, stop_after=1))
                    if woken or time.monotonic() - last_check >= self.check_interval:
                        self.sync()
                        last_check = time.monotonic()
                    else:
                        conn.execute("SELECT 1")  # the heartbeat: the server answers, so the replica is current
                        self._contact()
            except Exception as exc:  # psycopg errors, GalleryError: the server is away; the replica stays
                self._close_listener()
                if isinstance(exc, ReplicaModelError):
                    log.error("%s", exc)
                if not self._outage:
                    self._outage = True
                    log.warning(
                        "gallery server %s unreachable (%s); searching the local replica (last contact %.0f s ago)",
                        _short(self.url),
                        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                        self.stale_for(),
                    )
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def _close_listener(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            except Exception:
                pass
            self._listener = None

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)
        self._close_listener()
        self._drop_central()
        if self.last_contact is not None:
            self._save_state()
        self.gallery.close()


def _short(url: str) -> str:
    from .postgres_schema import redact_url

    return redact_url(url).split("?", 1)[0]
