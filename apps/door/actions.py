"""What a decision triggers: a log line, a command, a pulse on a GPIO relay, an MQTT message (mqtt.py).

Actions run on one worker thread, in decision order, so a one-second relay pulse or a slow
command never stalls the camera loop (which would also delay the next person's decision).

Commands get the decision in environment variables (``GFN_DOOR_DECISION``, ``GFN_DOOR_IDENTITY``,
``GFN_DOOR_SCORE``, ``GFN_DOOR_LIVENESS``, ``GFN_DOOR_TRACK``, ``GFN_DOOR_REASON``,
``GFN_DOOR_TIME``, ``GFN_DOOR_SNAPSHOT``) and run from an argument list without a shell: an
identity called ``$(reboot)`` is just text. Nothing is substituted into the arguments either,
so a name can never become an option of the program.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional, Protocol

from .config import ActionConfig
from .decision import Decision

log = logging.getLogger(__name__)


class ActionError(Exception):
    """An action that cannot be set up (e.g. a relay without gpiozero)."""


class Action(Protocol):
    on: Sequence[str]

    def __call__(self, decision: Decision, snapshot: Optional[str]) -> None: ...


def describe_decision(d: Decision) -> str:
    """The one-line summary used by the log action and the console."""
    who = d.identity or "face"
    score = f" score {d.score:.3f}" if d.score is not None else ""
    live = f" liveness {d.liveness:.2f}" if d.liveness is not None else ""
    return f"{d.decision.upper()} {who} (track {d.track}){score}{live}: {d.reason}"


class LogAction:
    """Writes the decision to the app's log (the console / journal)."""

    def __init__(self, on: Sequence[str] = ("grant", "deny", "unknown", "cooldown")):
        self.on = list(on)
        self.logger = logging.getLogger("door.decisions")

    def __call__(self, decision: Decision, snapshot: Optional[str]) -> None:
        level = logging.WARNING if decision.decision == "deny" else logging.INFO
        extra = f" [snapshot {snapshot}]" if snapshot else ""
        self.logger.log(level, "%s%s", describe_decision(decision), extra)

    def __repr__(self) -> str:
        return f"log on {'/'.join(self.on)}"


def decision_env(decision: Decision, snapshot: Optional[str]) -> dict[str, str]:
    """The GFN_DOOR_* variables a command receives."""
    return {
        "GFN_DOOR_DECISION": decision.decision,
        "GFN_DOOR_IDENTITY": decision.identity or "",
        "GFN_DOOR_SCORE": "" if decision.score is None else f"{decision.score:.6f}",
        "GFN_DOOR_LIVENESS": "" if decision.liveness is None else f"{decision.liveness:.6f}",
        "GFN_DOOR_TRACK": str(decision.track),
        "GFN_DOOR_REASON": decision.reason,
        "GFN_DOOR_TIME": f"{decision.wall:.3f}",
        "GFN_DOOR_SNAPSHOT": snapshot or "",
    }


class CommandAction:
    """Runs ``argv`` (no shell) with the decision in its environment; killed after ``timeout`` s."""

    def __init__(self, argv: Sequence[str], on: Sequence[str] = ("grant",), timeout: float = 10.0):
        if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
            raise ActionError("a command action needs its program and arguments as a list of strings")
        self.argv = list(argv)
        self.on = list(on)
        self.timeout = float(timeout)

    def __call__(self, decision: Decision, snapshot: Optional[str]) -> None:
        env = dict(os.environ)
        env.update(decision_env(decision, snapshot))
        try:
            proc = subprocess.run(self.argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=self.timeout, shell=False)
        except subprocess.TimeoutExpired:
            log.error("command %s did not finish within %g s; it was killed", self.argv[0], self.timeout)
            return
        except OSError as exc:
            log.error("command %s could not start: %s", self.argv[0], exc.strerror or exc)
            return
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout or "").strip()[-300:]
            log.error("command %s exited with status %d%s", self.argv[0], proc.returncode, f": {tail}" if tail else "")
        else:
            log.debug("command %s done", self.argv[0])

    def __repr__(self) -> str:
        return f"command {self.argv[0]} on {'/'.join(self.on)}"


class GpioAction:
    """Pulses a relay through gpiozero: on for ``pulse`` seconds, then off.

    The device is created at start-up, so a missing gpiozero (or a board it does not know) is
    reported before the first person arrives, not when the door should open.
    """

    def __init__(
        self, pin: int, pulse: float = 1.0, active_high: bool = True, on: Sequence[str] = ("grant",), device_factory: Callable[..., Any] | None = None
    ):
        self.pin = int(pin)
        self.pulse = float(pulse)
        self.on = list(on)
        if device_factory is None:
            try:
                from gpiozero import OutputDevice  # type: ignore[import-not-found]
            except ImportError as exc:
                raise ActionError(
                    f"the gpio action (relay on pin {self.pin}) needs gpiozero, which is not importable ({exc}). "
                    f"On Raspberry Pi OS: sudo apt install python3-gpiozero python3-lgpio and create the venv with "
                    f"--system-site-packages (or pip install gpiozero lgpio). On other boards use a command action "
                    f"with gpioset instead"
                ) from None
            device_factory = OutputDevice
        try:
            self.device = device_factory(self.pin, active_high=active_high, initial_value=False)
        except Exception as exc:  # gpiozero raises its own BadPinFactory, PinInvalidPin, ... or PermissionError
            raise ActionError(
                f"cannot drive GPIO pin {self.pin} through gpiozero: {type(exc).__name__}: {exc}. Is this a Raspberry Pi, "
                f"and is the service user in the 'gpio' group?"
            ) from None

    def __call__(self, decision: Decision, snapshot: Optional[str]) -> None:
        self.device.on()
        try:
            time.sleep(self.pulse)
        finally:
            self.device.off()
        log.debug("relay on pin %d pulsed for %g s", self.pin, self.pulse)

    def close(self) -> None:
        try:
            self.device.off()
            self.device.close()
        except Exception:  # best effort at shutdown
            pass

    def __repr__(self) -> str:
        return f"gpio pin {self.pin} ({self.pulse:g} s) on {'/'.join(self.on)}"


def build_actions(configs: Sequence[ActionConfig], gpio_factory: Callable[..., Any] | None = None, door_id: str | None = None) -> list[Action]:
    """Actions from the config; a relay that cannot be driven raises unless marked optional.

    ``door_id`` names this door in MQTT topics and payloads (default: the host name).
    """
    actions: list[Action] = []
    for cfg in configs:
        if cfg.type == "mqtt":
            from .mqtt import MqttAction, default_door_id

            actions.append(
                MqttAction(
                    door_id or default_door_id(),
                    cfg.host,
                    cfg.port,
                    cfg.topic,
                    on=cfg.on,
                    qos=cfg.qos,
                    retain=cfg.retain,
                    username=cfg.username,
                    password=cfg.password,
                    tls=cfg.tls,
                    keepalive=cfg.keepalive,
                )
            )
        elif cfg.type == "log":
            actions.append(LogAction(on=cfg.on))
        elif cfg.type == "command":
            actions.append(CommandAction(cfg.argv, on=cfg.on, timeout=cfg.timeout))
        elif cfg.type == "gpio":
            try:
                actions.append(GpioAction(cfg.pin, cfg.pulse, cfg.active_high, on=cfg.on, device_factory=gpio_factory))
            except ActionError as exc:
                if not cfg.optional:
                    raise ActionError(f"{exc}. (Set optional = true in this [[actions]] table to run without the relay.)") from None
                log.warning("%s. The relay will NOT be driven (optional = true)", exc)
    return actions


class ActionRunner:
    """Runs actions on a worker thread; one failing action never stops the others or the door."""

    def __init__(self, actions: Sequence[Action]):
        self.actions = list(actions)
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="door-actions", daemon=True)
        self._thread.start()

    def submit(self, decision: Decision, snapshot: Optional[str] = None) -> None:
        if any(decision.decision in a.on for a in self.actions):
            self._queue.put((decision, snapshot))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                decision, snapshot = item
                for action in self.actions:
                    if decision.decision in action.on:
                        try:
                            action(decision, snapshot)
                        except Exception:
                            log.exception("action %r failed", action)
            finally:
                self._queue.task_done()

    def close(self, timeout: float = 30.0) -> None:
        """Finish queued actions (up to ``timeout`` s), then release the devices; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("actions still running after %g s at shutdown; leaving them", timeout)
        for action in self.actions:
            close = getattr(action, "close", None)
            if callable(close):
                close()
