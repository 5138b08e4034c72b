"""The door's ``type = "mqtt"`` action against a real mosquitto broker started by the test.

Checks: decisions arrive as JSON on the door's own topic at QoS 1; only the decisions in ``on``
are published; a broker that is down is logged and never stalls or stops the door, and what was
decided meanwhile is delivered once the broker is back; the TOML block is validated.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "apps"))

from door import config as door_config  # noqa: E402
from door.actions import ActionRunner, build_actions  # noqa: E402
from door.decision import Decision  # noqa: E402

mqtt = pytest.importorskip("paho.mqtt.client", reason="asset missing: paho-mqtt (pip install 'gfn-edge[mqtt]')")


class Subscriber:
    """A plain paho client on the broker, collecting what arrives on ``topic``."""

    def __init__(self, port: int, topic: str):
        self.messages: queue.Queue = queue.Queue()
        self.ready = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{time.monotonic_ns()}")
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.ready.put(True)
        self.client.on_message = lambda c, u, msg: self.messages.put((msg.topic, msg.qos, json.loads(msg.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.ready.get(timeout=10)

    def take(self, n: int, timeout: float = 10.0) -> list:
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            out.append(self.messages.get(timeout=max(0.01, deadline - time.monotonic())))
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _decision(kind: str, identity: str | None = "alice", track: int = 1) -> Decision:
    return Decision(kind, track, 0.0, identity=identity, score=0.81 if identity else None, liveness=0.97, reason="test")


def _mqtt_cfg(port: int, **kw) -> door_config.ActionConfig:
    cfg = door_config.ActionConfig(type="mqtt", host="127.0.0.1", port=port, **kw)
    door_config._check_action(cfg, "test")
    return cfg


def test_decisions_arrive_on_the_door_topic_as_json(mqtt_broker):
    sub = Subscriber(mqtt_broker.port, "gfn-door/#")
    (action,) = build_actions([_mqtt_cfg(mqtt_broker.port, on=["grant", "deny"])], door_id="front-door")
    assert action.wait_connected(10)
    runner = ActionRunner([action])
    try:
        runner.submit(_decision("grant"))
        runner.submit(_decision("unknown", None))  # not in on: never published
        runner.submit(_decision("deny", "bob", track=2), snapshot="/snap/2.jpg")
        first, second = sub.take(2)
        time.sleep(1.0)
        assert sub.messages.empty(), "a decision outside `on` was published"
    finally:
        runner.close()
        sub.close()
    assert first[0] == second[0] == "gfn-door/front-door/events"
    assert first[1] == second[1] == 1  # QoS 1 end to end
    assert first[2]["decision"] == "grant" and first[2]["identity"] == "alice" and first[2]["door"] == "front-door"
    assert first[2]["score"] == pytest.approx(0.81) and first[2]["liveness"] == pytest.approx(0.97)
    assert second[2]["decision"] == "deny" and second[2]["identity"] == "bob" and second[2]["snapshot"] == "/snap/2.jpg"


def test_broker_down_is_logged_and_queued_decisions_arrive_when_it_is_back(mqtt_broker, caplog):
    caplog.set_level(logging.WARNING, logger="door.mqtt")
    (action,) = build_actions([_mqtt_cfg(mqtt_broker.port, topic="site/door-7")], door_id="door-7")
    assert action.wait_connected(10)
    runner = ActionRunner([action])
    try:
        mqtt_broker.stop()
        deadline = time.monotonic() + 10
        while action.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not action.connected
        t0 = time.monotonic()
        for i in range(5):  # the door keeps deciding while the broker is away: nothing blocks
            runner.submit(_decision("grant", f"person-{i}", track=i))
        runner._queue.join()
        assert time.monotonic() - t0 < 1.0
        assert any("mqtt broker" in r.getMessage() for r in caplog.records)
        mqtt_broker_port = mqtt_broker.port
        mqtt_broker.start()  # same port
        sub = Subscriber(mqtt_broker_port, "site/door-7")
        assert action.wait_connected(40)
        got = sub.take(5, timeout=20)
        sub.close()
    finally:
        runner.close()
    assert sorted(m[2]["identity"] for m in got) == [f"person-{i}" for i in range(5)]


def test_mqtt_action_config_is_validated(tmp_path: Path):
    good = tmp_path / "ok.toml"
    good.write_text('[fleet]\ndoor_id = "lobby-1"\n[[actions]]\ntype = "mqtt"\nhost = "broker.lan"\nqos = 1\n')
    cfg = door_config.load_config(good)
    assert cfg.actions[0].type == "mqtt" and cfg.actions[0].on == list(door_config.DECISIONS) and cfg.fleet.door_id == "lobby-1"
    for text, says in [
        ('[[actions]]\ntype = "mqtt"\nqos = 3\n', "out of range"),
        ('[[actions]]\ntype = "mqtt"\nport = 0\n', "out of range"),
        ('[[actions]]\ntype = "mqtt"\npassword = "x"\n', "needs a username"),
        ('[fleet]\ndoor_id = "front door/#"\n', "door_id"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(door_config.ConfigError, match=says):
            door_config.load_config(bad)


def test_wildcard_topic_is_refused():
    from door.actions import ActionError

    with pytest.raises(ActionError, match="wildcards"):
        build_actions([_mqtt_cfg(1883, topic="doors/#")], door_id="x")
