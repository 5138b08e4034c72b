"""Decisions on MQTT: the ``type = "mqtt"`` action, one topic per door, QoS 1, a JSON payload.

Home-automation and NVR setups (Home Assistant, Frigate, Node-RED) listen for events on a broker.
Why a background client: a broker that is down or slow must never stall the door. paho-mqtt's
network loop runs on its own thread, reconnects with backoff by itself, and keeps QoS 1 messages
published while the broker is away in a bounded queue, delivered once it is back (at least once:
a consumer may see a duplicate after a reconnection, and can tell by ``door`` + ``event``). A
broken broker is logged, once per outage, and the door goes on deciding.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Sequence
from typing import Any, Optional

from .decision import Decision

log = logging.getLogger(__name__)

MAX_QUEUED = 1000  # messages kept while the broker is away; the oldest decisions matter least


def default_door_id() -> str:
    """The host name, as a door id (what a fleet without [fleet] door_id calls this door)."""
    return socket.gethostname().split(".")[0] or "door"


def decision_payload(decision: Decision, snapshot: Optional[str], door_id: str) -> dict[str, Any]:
    """The JSON a subscriber gets: the decision's fields, the door and the wall-clock time."""
    return {
        "door": door_id,
        "decision": decision.decision,
        "identity": decision.identity,
        "score": decision.score,
        "liveness": decision.liveness,
        "track": decision.track,
        "reason": decision.reason,
        "time": decision.wall,
        "snapshot": snapshot,
    }


class MqttAction:
    """Publishes each decision in ``on`` to ``topic`` (default ``gfn-door/<door_id>/events``)."""

    def __init__(
        self,
        door_id: str,
        host: str = "localhost",
        port: int = 1883,
        topic: Optional[str] = None,
        on: Sequence[str] = ("grant", "deny", "unknown"),
        qos: int = 1,
        retain: bool = False,
        username: Optional[str] = None,
        password: Optional[str] = None,
        tls: bool = False,
        keepalive: int = 30,
    ):
        from .actions import ActionError

        try:
            import paho.mqtt.client as mqtt
        except ImportError as exc:
            raise ActionError(f"the mqtt action needs paho-mqtt ({exc}): pip install 'gfn-edge[mqtt]'") from None
        self.door_id = door_id
        self.topic = topic or f"gfn-door/{door_id}/events"
        if any(ch in self.topic for ch in "#+") or not self.topic:
            raise ActionError(f"mqtt topic {self.topic!r} must be a plain topic name (no wildcards # or +)")
        self.on = list(on)
        self.qos = int(qos)
        self.retain = bool(retain)
        self.where = f"{host}:{port}"
        self._connected = threading.Event()
        self._warned = False
        self._last: Any = None
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"gfn-door-{door_id}", clean_session=True)
        client.max_queued_messages_set(MAX_QUEUED)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        if username is not None:
            client.username_pw_set(username, password)
        if tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.connect_async(host, int(port), keepalive=int(keepalive))
        client.loop_start()  # connects (and reconnects) in the background: the door never waits on it
        self._client = client

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            self._report(f"refused the connection: {reason}")
            return
        self._connected.set()
        self._warned = False
        log.info("mqtt: connected to %s, publishing decisions on %s", self.where, self.topic)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
        if self._connected.is_set():
            self._connected.clear()
            self._report(f"connection lost ({reason}); reconnecting, decisions are queued meanwhile")

    def _report(self, what: str) -> None:
        if not self._warned:  # once per outage: a broker down all night is one line, not thousands
            self._warned = True
            log.warning("mqtt broker %s %s", self.where, what)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def __call__(self, decision: Decision, snapshot: Optional[str]) -> None:
        payload = json.dumps(decision_payload(decision, snapshot, self.door_id), sort_keys=True)
        info = self._client.publish(self.topic, payload, qos=self.qos, retain=self.retain)
        self._last = info
        if info.rc not in (0, 4):  # 0 sent, 4 (no connection) queued for the reconnection
            self._report(f"did not take a message (paho rc {info.rc}); the decision was not published")
        elif not self._connected.is_set():
            self._report("is not reachable; decisions are queued until it is back")

    def close(self, timeout: float = 5.0) -> None:
        """Wait (briefly) for queued messages to go out, then disconnect."""
        try:
            last = self._last
            if last is not None and self._connected.is_set():
                try:
                    last.wait_for_publish(timeout)  # QoS 1: until the broker acknowledged it
                except (RuntimeError, ValueError):
                    pass
            self._client.disconnect()
        finally:
            self._client.loop_stop()

    def __repr__(self) -> str:
        return f"mqtt {self.where} {self.topic} on {'/'.join(self.on)}"
