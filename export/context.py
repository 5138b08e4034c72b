"""What a target gets to work with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gfn_edge.manifest import TensorSpec

from .manifest_writer import embedded_manifest_json
from .reference import Reference
from .target_info import TargetInfo


@dataclass
class ExportContext:
    ref: Reference
    bundle_dir: Path  # where the target writes its files (a fresh folder)
    work_dir: Path  # scratch shared by all targets of one run (e.g. the FP32 ONNX)
    metadata: dict[str, Any]  # the run's manifest header (manifest_writer.manifest_header)
    calibration: Any = None  # gfn_edge.calib CalibrationSet for INT8 targets
    options: dict[str, Any] = field(default_factory=dict)
    sample: np.ndarray | None = None  # one normalised NHWC input batch for tracing
    verify: Callable[[Path, str], Any] | None = None  # (bundle dir, precision) -> VerificationReport
    shared: dict[str, Any] = field(default_factory=dict)  # computed once per run, reused by every target
    # --verify-on: (candidate bundle dir, its tolerances) -> its verification on each named emulated CPU
    verify_on: Callable[[Path, dict[str, tuple[str, float]]], list[dict[str, Any]]] | None = None

    @property
    def spec(self):
        return self.ref.spec

    def embedded_manifest(self, info: TargetInfo, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> str:
        """The manifest text to embed in a model file of target ``info`` (see :mod:`.manifest_writer`)."""
        return embedded_manifest_json(self.metadata, info, inputs, outputs)

    def sample_input(self, batch: int = 1) -> np.ndarray:
        """A normalised NHWC sample batch (real data when the pipeline has it)."""
        if self.sample is not None:
            x = self.sample[:batch]
            if len(x) == batch:
                return np.ascontiguousarray(x, dtype=np.float32)
        pre = self.spec.preprocess
        w, h = pre.input_size
        rng = np.random.default_rng(0)
        return ((rng.uniform(0, 255, (batch, h, w, 3)) - np.asarray(pre.mean)) / np.asarray(pre.std)).astype(np.float32)
