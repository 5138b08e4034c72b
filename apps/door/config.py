"""The door unit's configuration: a TOML file, checked strictly, then overridden by command-line flags.

Why strict: a typo such as ``treshold = 0.7`` silently ignored would leave a door running on the
default threshold. Unknown sections and keys, wrong types and out-of-range values are refused with
a message naming the file, the section and the key. Relative paths in the file are resolved
against the file's folder (so a config and its bundles can move together); paths given as flags
are relative to the working directory, as a shell user expects.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from gfn_edge import InvalidArgumentError, UnsafeSettingError, clamp_threads

DEFAULT_CONFIG_ENV = "GFN_DOOR_CONFIG"
DEFAULT_CONFIG_PATH = Path("/etc/gfn-door/door.toml")
DECISIONS = ("grant", "deny", "unknown", "cooldown")
_DOOR_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ConfigError(InvalidArgumentError):
    """A configuration that cannot be used; the message names the file, section and key."""


class UnsafeConfigError(ConfigError, UnsafeSettingError):
    """A configuration that would let strangers in or turn a check off without saying so."""


def _meta(kind: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, **extra}


def _f(default: Any, kind: str, **extra: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=_meta(kind, **extra))
    return field(default=default, metadata=_meta(kind, **extra))


@dataclass
class ModelsConfig:
    """Bundle folders written by gfn-export, and how to run them."""

    detector: Optional[Path] = _f(None, "path")
    recognizer: Optional[Path] = _f(None, "path")
    liveness: list = _f([], "paths")  # the two MiniFASNet bundles (2.7x V2 and 4.0x V1SE)
    backend: str = _f("auto", "choice", choices=("auto", "onnxruntime", "tflite", "openvino"))
    threads: Optional[int] = _f(None, "int", min=1, clamp=True)  # None: the backend's default (physical cores)
    flip: bool = _f(False, "bool")  # also embed the mirrored crop: a bit more accurate, 2x recogniser time


@dataclass
class SourceConfig:
    """Where frames come from and how a live source is kept alive."""

    uri: str = _f("0", "source")  # camera index, /dev/videoN, video file, rtsp:// or http:// URL, image folder
    width: Optional[int] = _f(None, "int", min=1)  # capture size asked of a camera (it may refuse)
    height: Optional[int] = _f(None, "int", min=1)
    fps: Optional[float] = _f(None, "float", min=0.1)  # camera request; the time step of an image folder
    max_reconnects: Optional[int] = _f(None, "int", min=0)  # None: retry for ever (a door must come back)
    reconnect_delay: float = _f(1.0, "float", min=0.0)  # first wait; doubles up to reconnect_max_delay
    reconnect_max_delay: float = _f(30.0, "float", min=0.0)
    read_timeout: float = _f(10.0, "float", min=0.1)  # a live source silent this long has dropped


@dataclass
class DetectionConfig:
    score_threshold: Optional[float] = _f(None, "float", gt=0.0, max=1.0)  # None: the bundle's default
    max_faces: Optional[int] = _f(3, "int", min=1)  # the largest ones: people at the door, not passers-by
    min_face_size: float = _f(40.0, "float", min=0.0)  # pixels; smaller faces are not even tracked


@dataclass
class TrackingConfig:
    iou_threshold: float = _f(0.3, "float", min=0.01, max=1.0)
    max_missed: int = _f(5, "int", min=0)
    min_hits: int = _f(2, "int", min=1)  # a one-frame false detection never reaches the recogniser


@dataclass
class RecognitionConfig:
    # None: the gallery's calibrated one (door_access.py calibrate --save); a value here may only be stricter
    threshold: Optional[float] = _f(None, "float", gt=0.0, max=1.0, unsafe=True)
    # runs the door on a threshold never calibrated on its recogniser (loudly warned): tests and first set-up only
    uncalibrated_threshold: Optional[float] = _f(None, "float", gt=0.0, max=1.0, unsafe=True)
    margin: float = _f(0.0, "float", min=0.0, max=2.0)  # best identity must beat the runner-up by this much
    consecutive: int = _f(3, "int", min=1)  # observations that must agree before any decision
    recheck_every: int = _f(15, "int", min=1)  # frames between re-recognitions of a decided track


@dataclass
class QualityConfig:
    """gfn_edge.QualityGates; a face failing one is not recognised on that frame (0 turns a gate off)."""

    min_face_size: float = _f(40.0, "float", min=0.0)
    min_blur: float = _f(30.0, "float", min=0.0)
    max_yaw: float = _f(0.4, "float", min=0.0)
    max_pitch: float = _f(0.3, "float", min=0.0)
    max_roll: float = _f(45.0, "float", min=0.0)


@dataclass
class LivenessConfig:
    enabled: bool = _f(True, "bool")  # only matters when models.liveness lists bundles
    threshold: float = _f(0.5, "float", min=0.0, max=1.0)  # 0 passes photos: refused unless enabled = false


@dataclass
class DecisionConfig:
    cooldown: float = _f(10.0, "float", min=0.0)  # seconds before the same identity can be granted again


@dataclass
class GalleryConfig:
    path: Path = _f(Path("/var/lib/gfn-door/gallery.db"), "path")  # with url: the door's local replica
    url: Optional[str] = _f(None, "pg_url")  # fleet: postgresql://user@host/db, the central gallery and event log


@dataclass
class EventsConfig:
    db: Path = _f(Path("/var/lib/gfn-door/events.db"), "path")
    keep_days: float = _f(90.0, "float", min=0.0)  # older events are deleted at start-up and daily; 0 keeps all


@dataclass
class SnapshotsConfig:
    dir: Optional[Path] = _f(None, "path")  # None: no snapshots
    unknown: bool = _f(True, "bool")
    deny: bool = _f(True, "bool")
    grant: bool = _f(False, "bool")
    max_files: int = _f(2000, "int", min=1)  # oldest deleted beyond this: an SD card must not fill up
    quality: int = _f(90, "int", min=1, max=100)


@dataclass
class DisplayConfig:
    show: bool = _f(False, "bool")
    record: Optional[Path] = _f(None, "path")
    record_fps: Optional[float] = _f(None, "float", min=0.1)  # None: the source's rate (10 for live sources)


@dataclass
class ActionConfig:
    """One ``[[actions]]`` table: what to do when a decision in ``on`` is taken."""

    type: str = _f("log", "choice", choices=("log", "command", "gpio", "mqtt"))
    on: Optional[list] = _f(None, "decisions")  # None: every decision for log, grant for command and gpio
    argv: list = _f([], "argv")  # command: program and arguments, never through a shell
    timeout: float = _f(10.0, "float", min=0.1)  # command
    pin: Optional[int] = _f(None, "int", min=0)  # gpio: BCM pin number of the relay
    pulse: float = _f(1.0, "float", min=0.01, max=60.0)  # gpio: seconds the relay stays on
    active_high: bool = _f(True, "bool")
    optional: bool = _f(False, "bool")  # gpio: run on (with a warning) when the relay cannot be driven
    # --- fleet: mqtt actions (apps/door/mqtt.py) ---
    host: str = _f("localhost", "str")  # mqtt: the broker
    port: int = _f(1883, "int", min=1, max=65535)
    topic: Optional[str] = _f(None, "str")  # mqtt: default gfn-door/<[fleet] door_id>/events
    qos: int = _f(1, "int", min=0, max=2)
    retain: bool = _f(False, "bool")
    username: Optional[str] = _f(None, "str")
    password: Optional[str] = _f(None, "str")
    tls: bool = _f(False, "bool")  # mqtts (the system's CA certificates)
    keepalive: int = _f(30, "int", min=5)


# ----------------------------------------------------------------------------- fleet (many doors)


@dataclass
class FleetConfig:
    """One door of many sharing a central gallery and event log ([gallery] url); see apps/door/fleet.py."""

    door_id: Optional[str] = _f(None, "door_id")  # default: the host name
    max_stale: float = _f(300.0, "float", min=1.0)  # seconds without the server before on_stale applies
    on_stale: str = _f("deny", "choice", choices=("deny", "keep"))  # deny: fail closed; keep: last replica
    check_interval: float = _f(10.0, "float", min=0.5)  # periodic replica check (LISTEN/NOTIFY is the fast path)
    ship_interval: float = _f(1.0, "float", min=0.05)  # event shipping: first retry delay, doubling to 60 s


# ----------------------------------------------------------------------------- sections


SECTIONS: dict[str, type] = {
    "models": ModelsConfig,
    "source": SourceConfig,
    "detection": DetectionConfig,
    "tracking": TrackingConfig,
    "recognition": RecognitionConfig,
    "quality": QualityConfig,
    "liveness": LivenessConfig,
    "decision": DecisionConfig,
    "gallery": GalleryConfig,
    "events": EventsConfig,
    "snapshots": SnapshotsConfig,
    "display": DisplayConfig,
    "fleet": FleetConfig,
}


@dataclass
class Config:
    models: ModelsConfig = field(default_factory=ModelsConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    recognition: RecognitionConfig = field(default_factory=RecognitionConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    liveness: LivenessConfig = field(default_factory=LivenessConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    snapshots: SnapshotsConfig = field(default_factory=SnapshotsConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    fleet: FleetConfig = field(default_factory=FleetConfig)
    actions: list = field(default_factory=lambda: [ActionConfig(type="log", on=list(DECISIONS))])
    path: Optional[Path] = None  # the file it came from, for messages

    def set(self, section: str, key: str, value: Any, base: Path | None = None) -> None:
        """Override one value (a command-line flag), validated like the file's; None leaves it alone."""
        if value is None:
            return
        obj = getattr(self, section)
        spec = {f.name: f for f in dataclasses.fields(obj)}[key]
        setattr(obj, key, _convert(value, spec, f"--{key.replace('_', '-')}", base or Path.cwd()))


# ----------------------------------------------------------------------------- loading


def _toml_loads(text: str) -> dict[str, Any]:
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # Ubuntu 22.04 ships 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ConfigError("reading TOML needs Python 3.11+, or `pip install tomli` on older Pythons") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(exc)) from None


def default_config_path() -> Path | None:
    """$GFN_DOOR_CONFIG, else /etc/gfn-door/door.toml when it exists, else None (built-in defaults)."""
    env = os.environ.get(DEFAULT_CONFIG_ENV)
    if env:
        return Path(env)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """The configuration in ``path`` (None: built-in defaults), validated."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    try:
        data = _toml_loads(text)
    except ConfigError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    cfg = config_from_dict(data, path.resolve().parent, str(path))
    cfg.path = path
    return cfg


def config_from_dict(data: dict[str, Any], base: Path, where: str = "config") -> Config:
    cfg = Config()
    for name, table in data.items():
        if name == "actions":
            if not isinstance(table, list) or not all(isinstance(t, dict) for t in table):
                raise ConfigError(f"{where}: actions must be an array of tables ([[actions]])")
            cfg.actions = [_section(ActionConfig, t, base, f"{where} [[actions]] #{i + 1}") for i, t in enumerate(table)]
            for i, action in enumerate(cfg.actions):
                _check_action(action, f"{where} [[actions]] #{i + 1}")
            continue
        cls = SECTIONS.get(name)
        if cls is None:
            raise ConfigError(f"{where}: unknown section [{name}]; known: {', '.join(list(SECTIONS) + ['actions'])}")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: {name} must be a table ([{name}])")
        setattr(cfg, name, _section(cls, table, base, f"{where} [{name}]"))
    check_safety(cfg, where)
    return cfg


def check_safety(cfg: Config, where: str = "config") -> None:
    """Refuse combinations that would disable a check silently (run again after flags are applied).

    A liveness threshold of 0 passes every photo: that is liveness off, and turning it off must
    be said out loud (``[liveness] enabled = false`` or ``--no-liveness``), which the door
    announces with its LIVENESS CHECK OFF warning at every start.
    """
    live = cfg.liveness
    if live.enabled and not (isinstance(live.threshold, (int, float)) and math.isfinite(live.threshold) and live.threshold > 0):
        raise UnsafeConfigError(
            f"{where} [liveness] threshold: {live.threshold} passes every face, printed photos included, so it turns the "
            f"liveness check off silently; set a threshold > 0 (default 0.5), or turn liveness off explicitly with "
            f"[liveness] enabled = false or --no-liveness"
        )


def _section(cls: type, table: dict[str, Any], base: Path, where: str) -> Any:
    specs = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        spec = specs.get(key)
        if spec is None:
            raise ConfigError(f"{where}: unknown key {key!r}; known: {', '.join(specs)}")
        values[key] = _convert(value, spec, f"{where} {key}", base)
    return cls(**values)


def _check_action(action: ActionConfig, where: str) -> None:
    if action.on is None:
        action.on = list(DECISIONS) if action.type in ("log", "mqtt") else ["grant"]
    if action.type == "command" and not action.argv:
        raise ConfigError(f"{where}: a command action needs argv = [\"/path/to/program\", \"arg\", ...]")
    if action.type == "gpio" and action.pin is None:
        raise ConfigError(f"{where}: a gpio action needs pin = <BCM pin number of the relay>")
    if action.type == "mqtt" and (action.password is not None and action.username is None):
        raise ConfigError(f"{where}: an mqtt password needs a username")


def _convert(value: Any, spec: dataclasses.Field, where: str, base: Path) -> Any:
    meta = spec.metadata
    kind = meta["kind"]
    if value is None:
        return None
    if kind == "path":
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return _resolve(value, base)
    if kind == "paths":
        if isinstance(value, (str, os.PathLike)):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, (str, os.PathLike)) and str(v) for v in value):
            raise ConfigError(f"{where}: expected a list of paths, got {value!r}")
        return [_resolve(v, base) for v in value]
    if kind == "source":
        if isinstance(value, bool) or not isinstance(value, (str, int, os.PathLike)):
            raise ConfigError(f"{where}: expected a camera index, a file, a folder or a URL, got {value!r}")
        text = str(value)
        if text.isdigit() or "://" in text or text.startswith("/dev/"):
            return text
        return str(_resolve(text, base))
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind in ("int", "float"):
        ok = isinstance(value, int) if kind == "int" else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            raise ConfigError(f"{where}: expected {'an integer' if kind == 'int' else 'a number'}, got {value!r}")
        value = int(value) if kind == "int" else float(value)
        if not math.isfinite(value):  # NaN or inf: no setting means "infinitely"
            raise ConfigError(f"{where}: expected a finite number, got {value}")
        lo, hi, gt = meta.get("min"), meta.get("max"), meta.get("gt")
        if (lo is not None and value < lo) or (hi is not None and value > hi) or (gt is not None and value <= gt):
            if gt is not None:
                bounds = f"> {gt}" if hi is None else f"> {gt} and <= {hi}"
            else:
                bounds = f">= {lo}" if hi is None else (f"<= {hi}" if lo is None else f"between {lo} and {hi}")
            error = UnsafeConfigError if meta.get("unsafe") else ConfigError
            raise error(f"{where}: {value} is out of range; expected {bounds}")
        if meta.get("clamp"):
            value = clamp_threads(value, where)
        return value
    if kind == "choice":
        if value not in meta["choices"]:
            raise ConfigError(f"{where}: expected one of {', '.join(meta['choices'])}, got {value!r}")
        return value
    if kind == "decisions":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or any(v not in DECISIONS for v in value):
            raise ConfigError(f"{where}: expected a list of decisions from {', '.join(DECISIONS)}, got {value!r}")
        return list(value)
    if kind == "argv":
        if isinstance(value, str):
            raise ConfigError(
                f"{where}: give the command as a list, e.g. argv = [\"/usr/local/bin/open-door\", \"--zone\", \"front\"]; "
                f"it runs without a shell, so names and scores can never be interpreted as shell code"
            )
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return list(value)
    if kind == "pg_url":
        if not isinstance(value, str) or not value.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"{where}: expected a postgresql://user@host/database URL, got {redact(str(value))!r}")
        return value
    if kind == "door_id":
        if not isinstance(value, str) or not _DOOR_ID.match(value):
            raise ConfigError(f"{where}: expected 1-64 letters, digits, '.', '_' or '-' (it names the door's MQTT topic), got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise AssertionError(kind)  # pragma: no cover


def _resolve(value: Any, base: Path) -> Path:
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else base / path


def redact(spec: str) -> str:
    """A source URL without its password (``rtsp://user:secret@host`` -> ``rtsp://user:***@host``), for logs."""
    if "://" not in spec or "@" not in spec:
        return spec
    scheme, rest = spec.split("://", 1)
    creds, _, host = rest.partition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else spec


def describe(cfg: Config) -> str:
    """A short summary for the start-up log."""
    where = f" from {cfg.path}" if cfg.path else " (built-in defaults)"
    return (
        f"config{where}: source {redact(cfg.source.uri)}, gallery {cfg.gallery.path}, events {cfg.events.db}, "
        f"{cfg.recognition.consecutive} consecutive observations, cooldown {cfg.decision.cooldown:g} s"
    )
