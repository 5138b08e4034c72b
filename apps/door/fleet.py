"""One door of many: the central gallery through a local replica, the stale policy, event shipping.

A fleet door (``[gallery] url = "postgresql://..."``) searches a local SQLite replica of the
central gallery (gfn_edge.GalleryReplica: refreshed on every central write through
LISTEN/NOTIFY, checked every ``[fleet] check_interval`` seconds), so recognition never waits on
the network, and ships its local event log to the central one (shipper.py).

The stale policy: a door that has not reached the server for longer than ``[fleet] max_stale``
seconds cannot know about revocations made since. ``on_stale = "deny"`` (the default) then
matches nobody, so nobody is granted (fail closed: a fired employee's badge must not keep working
because a cable was cut); ``on_stale = "keep"`` keeps searching the last replica (a site that
prefers its doors open over a fresh revocation list). Either way it is logged, once per outage,
and again when the server is back.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Optional

from gfn_edge import GalleryReplica

from .config import Config, redact
from .mqtt import default_door_id
from .shipper import EventShipper

log = logging.getLogger(__name__)


class FleetGallery:
    """What the door searches: the replica's gallery, behind the ``max_stale`` / ``on_stale`` policy.

    Everything but ``search`` and ``best`` is the local gallery's (``threshold``, ``count``...).
    """

    def __init__(self, replica: GalleryReplica, max_stale: float, on_stale: str = "deny"):
        if on_stale not in ("deny", "keep"):
            raise ValueError(f"on_stale must be 'deny' or 'keep', got {on_stale!r}")
        self.replica = replica
        self.max_stale = float(max_stale)
        self.on_stale = on_stale
        self._blocked = False
        self._lock = threading.Lock()

    def fail_closed(self) -> bool:
        """True while the door must match nobody (replica older than max_stale, policy deny)."""
        stale = self.replica.stale_for()
        blocked = self.on_stale == "deny" and stale > self.max_stale
        with self._lock:
            if blocked != self._blocked:
                self._blocked = blocked
                if blocked:
                    since = "never reached" if stale == float("inf") else f"unreachable for {stale:.0f} s"
                    log.error("gallery server %s (max_stale %g s): DENYING EVERYONE until it is back ([fleet] on_stale = \"deny\")", since, self.max_stale)
                else:
                    log.warning("gallery server reachable again: the door recognises enrolled people again")
        if not blocked and self.on_stale == "keep" and stale > self.max_stale:
            log.debug("gallery replica is %.0f s old; kept ([fleet] on_stale = \"keep\")", stale)
        return blocked

    def search(self, embedding: Any, *args: Any, **kwargs: Any) -> list:
        if self.fail_closed():
            return [] if getattr(embedding, "ndim", 1) == 1 else [[] for _ in range(len(embedding))]
        return self.replica.gallery.search(embedding, *args, **kwargs)

    def best(self, embedding: Any, *args: Any, **kwargs: Any) -> Any:
        if self.fail_closed():
            return None
        return self.replica.gallery.best(embedding, *args, **kwargs)

    def close(self) -> None:
        self.replica.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.replica.gallery, name)

    def __enter__(self) -> FleetGallery:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def door_id(cfg: Config) -> str:
    return cfg.fleet.door_id or default_door_id()


def open_fleet_gallery(cfg: Config, signature: Optional[str], dim: Optional[int]) -> FleetGallery:
    """The replica of ``[gallery] url`` at ``[gallery] path``, started, behind the stale policy."""
    f = cfg.fleet
    if f.max_stale < 2 * f.check_interval:
        log.warning(
            "[fleet] max_stale (%g s) is less than twice check_interval (%g s): a healthy door may briefly count as stale", f.max_stale, f.check_interval
        )
    replica = GalleryReplica(cfg.gallery.url, cfg.gallery.path, signature, dim, check_interval=f.check_interval).start()
    log.info(
        "fleet door %s: central gallery %s, local replica %s, max_stale %g s, on_stale %s",
        door_id(cfg),
        replica_location(cfg),
        cfg.gallery.path,
        f.max_stale,
        f.on_stale,
    )
    return FleetGallery(replica, f.max_stale, f.on_stale)


def start_shipper(cfg: Config) -> EventShipper:
    """Forward ``[events] db`` to the central event log on the gallery's server."""
    return EventShipper(cfg.events.db, cfg.gallery.url, door_id(cfg), interval=cfg.fleet.ship_interval).start()


def replica_location(cfg: Config) -> str:
    """The central server as messages name it: no password, no query options."""
    return redact(cfg.gallery.url or "").split("?", 1)[0]
