"""Property tests for the door's configuration and the SDK's number checks.

Whatever a TOML file or a flag holds, loading ends in a Config or a ConfigError, and no Config
that loads can open the door for a stranger or turn liveness off silently.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "apps"))

from gfn_edge import GfnEdgeError, InvalidArgumentError  # noqa: E402
from gfn_edge.checks import check_number, clamp_threads, usable_cores  # noqa: E402

from door import config as door_config  # noqa: E402

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-3, 3), max_size=3),
    st.lists(st.text(max_size=4), max_size=3),
)
KEYS = [(name, f.name) for name, cls in door_config.SECTIONS.items() for f in dataclasses.fields(cls)]


@st.composite
def tables(draw) -> dict:
    """A TOML-like document: a few (section, key) picks with arbitrary values, sometimes a bad section or key."""
    data: dict = {}
    for _ in range(draw(st.integers(1, 6))):
        section, key = draw(st.sampled_from(KEYS))
        if draw(st.integers(0, 15)) == 0:
            key = key + "x"
        value = draw(SCALARS)
        if value is None:
            continue  # TOML has no null
        data.setdefault(section, {})[key] = value
    return data


def _finite_numbers(cfg: door_config.Config) -> None:
    for name in door_config.SECTIONS:
        section = getattr(cfg, name)
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if isinstance(value, float):
                assert math.isfinite(value), f"[{name}] {f.name} = {value}"


@FUZZ
@given(tables())
def test_any_document_loads_safely_or_is_refused(data: dict):
    try:
        cfg = door_config.config_from_dict(data, Path("/tmp"), "fuzz.toml")
    except door_config.ConfigError as exc:
        assert isinstance(exc, GfnEdgeError) and str(exc).startswith("fuzz.toml")
        return
    rec, live = cfg.recognition, cfg.liveness
    for value in (rec.threshold, rec.uncalibrated_threshold):
        assert value is None or (math.isfinite(value) and 0.0 < value <= 1.0)
    assert not live.enabled or live.threshold > 0.0
    assert cfg.models.threads is None or 1 <= cfg.models.threads <= usable_cores()
    assert cfg.detection.score_threshold is None or 0.0 < cfg.detection.score_threshold <= 1.0
    _finite_numbers(cfg)


@FUZZ
@given(st.floats(0.0, 1.0, exclude_min=True), st.floats(0.0, 1.0, exclude_min=True), st.floats(0.0, 2.0), st.booleans())
def test_valid_values_are_kept_exactly(threshold: float, live: float, margin: float, enabled: bool):
    data = {"recognition": {"threshold": threshold, "margin": margin}, "liveness": {"threshold": live, "enabled": enabled}}
    cfg = door_config.config_from_dict(data, Path("/tmp"))
    assert (cfg.recognition.threshold, cfg.recognition.margin, cfg.liveness.threshold, cfg.liveness.enabled) == (threshold, margin, live, enabled)


@FUZZ
@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 5))
def test_liveness_threshold_that_passes_everything_needs_liveness_off(value):
    data = {"liveness": {"threshold": value}}
    try:
        cfg = door_config.config_from_dict(data, Path("/tmp"))
    except door_config.ConfigError:
        assert not (math.isfinite(value) and 0 < value <= 1)
        return
    assert cfg.liveness.threshold > 0
    off = door_config.config_from_dict({"liveness": {"threshold": value, "enabled": False}}, Path("/tmp")) if 0 <= value <= 1 else None
    assert off is None or not off.liveness.enabled


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_any_text_file_loads_or_is_a_config_error(tmp_path_factory, text: str):
    path = tmp_path_factory.mktemp("toml") / "door.toml"
    path.write_text(text, encoding="utf-8")
    try:
        door_config.load_config(path)
    except door_config.ConfigError as exc:
        assert str(path) in str(exc)


@FUZZ
@given(
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10), st.text(max_size=3), st.none(), st.booleans()),
    st.floats(-2, 0),
    st.floats(0, 2),
    st.booleans(),
    st.booleans(),
)
def test_check_number_accepts_only_finite_numbers_in_range(value, lo, hi, lo_open, hi_open):
    try:
        out = check_number(value, "x", lo, hi, lo_open, hi_open)
    except InvalidArgumentError as exc:
        assert str(exc).startswith("x must be")
        return
    assert math.isfinite(out) and (lo < out if lo_open else lo <= out) and (out < hi if hi_open else out <= hi)
    assert not isinstance(value, bool)


@FUZZ
@given(st.one_of(st.integers(-10, 10**6), st.floats(allow_nan=True), st.text(max_size=3), st.booleans()))
def test_thread_counts_are_clamped_to_the_usable_cores(value):
    try:
        out = clamp_threads(value)
    except InvalidArgumentError:
        assert isinstance(value, (bool, str)) or not (value >= 1) or (isinstance(value, float) and not value.is_integer())
        return
    assert isinstance(out, int) and 1 <= out <= usable_cores() and out == min(int(value), usable_cores())


def test_flags_are_validated_like_the_file(tmp_path: Path):
    cfg = door_config.Config()
    with pytest.raises(door_config.UnsafeConfigError, match="--threshold: -0.5 is out of range"):
        cfg.set("recognition", "threshold", -0.5)
    with pytest.raises(door_config.ConfigError, match="--cooldown: expected a finite number, got inf"):
        cfg.set("decision", "cooldown", math.inf)
