"""Calibration sets for INT8 export: built from photos as the device sees them, saved, checked."""

from __future__ import annotations

from .build import ENV_CALIB, build_calibration_set, resolve_calibration
from .dataset import RECOMMENDED_MINIMUM, CalibrationSet

__all__ = ["ENV_CALIB", "RECOMMENDED_MINIMUM", "CalibrationSet", "build_calibration_set", "resolve_calibration"]
