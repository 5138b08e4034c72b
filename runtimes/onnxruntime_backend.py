"""ONNX Runtime backend (CPU execution provider)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from gfn_edge.errors import ArtifactError, InvalidTypeError, MissingDependencyError
from gfn_edge.manifest import METADATA_KEY, Manifest

from .base import InferenceModel, check_model_file
from .onnx_signed_weights import WireFormatError, signed_weights, u8s8_kernels_exact


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "onnx", "running .onnx models") from exc
    return onnxruntime


def available() -> bool:
    try:
        _ort()
    except MissingDependencyError:
        return False
    return True


SPINNING_DEFAULT = False
"""Whether ONNX Runtime's worker threads busy-wait for work after a run (its own default is yes).

Off here: a face pipeline holds two or three sessions (detector, recogniser, liveness) that run one
after another, and the threads of the session that just finished keep spinning on the cores the
next one needs. Measured on 2 x86 cores, 2 threads, RetinaFace-mnet025 at 640x480 then
GhostFaceNet w0.5-e16 per frame: 32.1 ms spinning, 18.5 ms not (w1.3-s2: 39.6 / 22.1; at 320x240
12.6 / 9.0). A lone model loses a little without it (the detector alone 9.4 -> 10.4 ms, the
recogniser alone 1.7 -> 2.1 ms), so ``spinning=True`` gives it back to a program that runs one model."""


class OnnxRuntimeModel(InferenceModel):
    """An ONNX model on onnxruntime's CPU provider. Option ``spinning`` (default
    :data:`SPINNING_DEFAULT`): let the worker threads busy-wait between runs. Option
    ``signed_weights`` (default None: where :func:`.onnx_signed_weights.u8s8_kernels_exact`, i.e. x86
    with VNNI): an INT8 bundle's uint8 weights run as int8 on the faster u8s8 kernels, same outputs."""

    backend = "onnxruntime"

    def __init__(self, path: Path, manifest: Manifest, threads: int | None = None, **options: Any):
        super().__init__(path, manifest, threads)
        ort = _ort()
        check_model_file(self.path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        spinning = options.get("spinning", SPINNING_DEFAULT)
        if not isinstance(spinning, (bool, np.bool_)):
            raise InvalidTypeError(f"spinning must be True or False, got {spinning!r}")
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.spinning = bool(spinning)
        signed = options.get("signed_weights")
        if signed not in (None, True, False):
            raise InvalidTypeError(f"signed_weights must be True, False or None (automatic), got {signed!r}")
        source = self._model_source(manifest.precision == "int8" and (u8s8_kernels_exact() if signed is None else signed))
        try:
            self.session = ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ArtifactError(f"onnxruntime cannot load {self.path}: {exc}") from exc
        inputs = {i.name: i for i in self.session.get_inputs()}
        if self.input.tensor not in inputs:
            raise ArtifactError(f"{self.path}: manifest input {self.input.tensor!r} is not in the model (has {sorted(inputs)})")
        outputs = {o.name: o for o in self.session.get_outputs()}
        missing = [o.tensor for o in self.outputs if o.tensor not in outputs]
        if missing:
            raise ArtifactError(f"{self.path}: manifest outputs {missing} are not in the model (has {sorted(outputs)})")
        self.check_model_shapes(inputs[self.input.tensor].shape, [outputs[o.tensor].shape for o in self.outputs])
        self._out_names = [o.tensor for o in self.outputs]

    def _model_source(self, signed: bool) -> str | bytes:
        """The file, or its bytes with the uint8 weights back on int8 (:mod:`.onnx_signed_weights`)."""
        self.signed_weights = 0
        if not signed:
            return str(self.path)
        try:
            data, self.signed_weights = signed_weights(self.path.read_bytes())
        except (OSError, WireFormatError):
            return str(self.path)  # onnxruntime names what is wrong with it
        return data if self.signed_weights else str(self.path)

    def settings(self) -> dict[str, object]:
        """Whether the worker threads spin between runs (timings depend on it), and for an INT8
        model how many uint8 weights run as int8 (u8s8 kernels)."""
        out: dict[str, object] = {"spinning": self.spinning}
        if self.manifest.precision == "int8":
            out["signed_weights"] = self.signed_weights
        return out

    def _infer(self, x: np.ndarray) -> list[np.ndarray]:
        try:
            return self.session.run(self._out_names, {self.input.tensor: x})
        except Exception as exc:  # onnxruntime's own error types are not importable portably
            raise ArtifactError(f"onnxruntime failed to run {self.path} on input {x.shape} {x.dtype}: {exc}") from exc


def read_embedded_manifest(path: Path) -> dict | None:
    ort = _ort()
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ArtifactError(f"onnxruntime cannot load {path}: {exc}") from exc
    raw = sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    return json.loads(raw) if raw else None
