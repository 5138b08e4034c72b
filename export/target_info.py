"""The export targets as data: name, precision, building module, and what a target returns.

Kept apart from the target modules (:mod:`.targets`) so the INT8 search (:mod:`.int8`), which
those modules call, can name targets without importing them back.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gfn_edge.arg_types import names_given
from gfn_edge.manifest import TensorSpec, artifact_format, preferred_backend


@dataclass
class Artifact:
    files: dict[str, str]  # role ("model", "weights") -> file name inside the bundle
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    tools: dict[str, str] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)  # what was done (INT8 remedies, converter route...)

    def size_bytes(self, folder: Path) -> int:
        """The bytes of this artifact's files as written in ``folder``."""
        return sum((Path(folder) / f).stat().st_size for f in self.files.values())


@dataclass(frozen=True)
class TargetInfo:
    name: str
    module: str  # the module of gfn_edge.export.targets that builds it
    precision: str
    needs_calibration: bool = False
    description: str = ""

    @property
    def artifact_format(self) -> str:
        return artifact_format(self.name)

    @property
    def backend(self) -> str:
        """The runtime that runs (and verifies) the artifact: gfn_edge.bundle_format's table."""
        return preferred_backend(self.name)


TARGETS: dict[str, TargetInfo] = {
    t.name: t
    for t in (
        TargetInfo("onnx", "onnx_fp32", "fp32", description="ONNX opset 17, onnxsim-simplified"),
        TargetInfo("openvino", "openvino_ir", "fp32", description="OpenVINO IR, FP32 weights"),
        TargetInfo("openvino-fp16", "openvino_ir", "fp16", description="OpenVINO IR, FP16-compressed weights"),
        TargetInfo("tflite", "tflite_fp", "fp32", description="LiteRT/TFLite via litert-torch, NHWC input"),
        TargetInfo("tflite-fp16", "tflite_fp", "fp16", description="TFLite with FP16 weights"),
        TargetInfo("onnx-int8", "onnx_int8", "int8", True, "ONNX Runtime static QDQ, per-channel weights"),
        TargetInfo("openvino-int8", "openvino_int8", "int8", True, "NNCF post-training quantisation"),
        TargetInfo("tflite-int8", "tflite_int8", "int8", True, "full-integer TFLite (int8 weights and activations)"),
    )
}


def expand_targets(spec: str | list[str]) -> list[str]:
    """``"all"``, ``"onnx,tflite"`` or a list -> validated target names (closest names suggested)."""
    out: list[str] = []
    for raw in names_given(spec):
        names = list(TARGETS) if raw == "all" else [raw]
        for name in names:
            if name not in TARGETS:
                close = difflib.get_close_matches(name, list(TARGETS) + ["all"], n=3, cutoff=0.4)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ValueError(f"unknown target {name!r}{hint} (known: all, {', '.join(TARGETS)})")
            if name not in out:
                out.append(name)
    if not out:
        raise ValueError("no target given")
    return out
