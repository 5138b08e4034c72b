"""OpenVINO backend (CPU plugin), with an explicit inference precision hint.

OpenVINO picks a lower inference precision by itself where the CPU has one: bf16 on x86 with
AVX512-BF16/AMX, f16 on ARM cores with FP16 arithmetic (Cortex-A76 / Raspberry Pi 5, not the
A72). The hint is therefore always pinned to f32, on every ISA, FP16 bundles included: those
store f16 weights, but their verification on x86 ran in f32 (the CPU plugin computes f32 where the
CPU lacks f16 arithmetic), and computed in f16 on a Cortex-A76 they move boxes by more than f16
weights alone do. So every bundle gives on the board the answers it was verified with. Pass
``precision="f16"`` (or ``"bf16"``) to trade that for speed, and check it with ``gfn-export
--verify-on``; :meth:`OpenVINOModel.describe` reports the precision that actually ran.

INT8 IR (FakeQuantize graphs) runs on the plugin's integer kernels on x86 (its low-precision
transformations). On aarch64 OpenVINO 2026.4 gets INT8 IR wrong two ways (emulated Cortex-A72 and
A76): with the integer kernels the w0.5 students' IR fails to compile on the A72 ("object is not
initialized") and computes garbage on the A76 (cosine 0.13-0.66 to the reference); with them off,
its JIT-fused subgraphs ("snippets") compute the FakeQuantize -> PReLU -> FakeQuantize chains of an
IR with a dynamic batch wrongly (NaN after one PReLU, cosine -0.06; with static shapes they are
right, and switching snippets off instead crashes qemu on the students' IR). So on ARM the backend
runs INT8 IR with the transformations off, on static shapes (batch 1, the picture size it is
given): each FakeQuantize computed in f32, the same quantisation simulated, no faster than FP32.
``tests/test_openvino_int8_kernels.py`` reproduces both on a four-channel ghost module. Pass
``int8_kernels=True`` or ``False`` to choose; ``describe()`` says which ran.

On x86 the integer kernels multiply uint8 activations by int8 weights; without VNNI (AVX2) their
int16 sums of two products saturate once both span their ranges, which full 8-bit weights do. The
exporter's openvino-int8 bundles carry the full 8-bit grid since 2026-12-06 (``int8_weight_bits``
in the manifest's export notes; 7 before, where nothing saturates): such a bundle runs on the
integer kernels where the CPU has VNNI (AVX512-VNNI, AVX-VNNI) and simulated in f32 elsewhere,
so it computes what it was verified to compute on every CPU.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from gfn_edge.errors import ArtifactError, MissingDependencyError
from gfn_edge.manifest import RT_INFO_KEY, Manifest

from .base import InferenceModel, check_model_file, cpu_has_vnni

PRECISION_HINTS = ("f32", "f16", "bf16")
_CORE = None


def _ov():
    try:
        import openvino
    except ImportError as exc:
        raise MissingDependencyError("openvino", "openvino", "running OpenVINO IR models") from exc
    return openvino


def core():
    global _CORE
    if _CORE is None:
        _CORE = _ov().Core()
    return _CORE


def pinned_precision(manifest: Manifest) -> str:
    """The inference precision hint a bundle runs with unless the caller chooses: f32, what x86 verified."""
    return "f32"


# OpenVINO CPU plugin properties (string keys: they are not in the Python API's namespaces)
SIMULATED_INT8 = {"LP_TRANSFORMS_MODE": False}


SATURATION_FREE_WEIGHT_BITS = 7
"""Weights on a grid of at most this many bits never saturate the u8s8 pair sums: 2*255*64 < 32767 < 2*255*127."""


def int8_weight_bits(manifest: Manifest) -> int:
    """The weight grid an INT8 IR bundle was exported on (bundles from before the field: 7 bits)."""
    notes = manifest.export.get("notes")
    bits = notes.get("int8_weight_bits") if isinstance(notes, dict) else None
    return int(bits) if isinstance(bits, int) and not isinstance(bits, bool) else SATURATION_FREE_WEIGHT_BITS


def int8_kernels_hold(machine: str | None = None, weight_bits: int = SATURATION_FREE_WEIGHT_BITS, vnni: bool | None = None) -> bool:
    """Whether the CPU plugin's integer kernels compute an INT8 IR with weights on a ``weight_bits``
    grid exactly here: never on ARM; on x86 for 7-bit weights, or with VNNI (``vnni``: read from
    /proc/cpuinfo when None)."""
    if (machine or platform.machine()).lower() in ("aarch64", "arm64", "armv8l", "armv7l"):
        return False
    if weight_bits <= SATURATION_FREE_WEIGHT_BITS:
        return True
    return cpu_has_vnni() if vnni is None else vnni


def is_quantized(model) -> bool:
    """An INT8 IR: FakeQuantize nodes carry its ranges (NNCF or ONNX QDQ converted by OpenVINO)."""
    return any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def available() -> bool:
    try:
        _ov()
    except MissingDependencyError:
        return False
    return True


class OpenVINOModel(InferenceModel):
    backend = "openvino"

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        threads: int | None = None,
        precision: str | None = None,
        int8_kernels: bool | None = None,
        **options: Any,
    ):
        super().__init__(path, manifest, threads)
        check_model_file(self.path)
        if self.path.suffix == ".xml":
            check_model_file(self.path.with_suffix(".bin"), min_bytes=1)
        precision = precision or pinned_precision(manifest)
        if precision not in PRECISION_HINTS:
            raise ArtifactError(f"OpenVINO precision {precision!r} is not one of {', '.join(PRECISION_HINTS)}")
        self.precision = precision
        try:
            model = core().read_model(str(self.path))
        except Exception as exc:
            raise ArtifactError(f"OpenVINO cannot read {self.path}: {exc}") from exc
        self._model = model
        self._check_model(model)
        self._config = {
            "INFERENCE_NUM_THREADS": self.threads,
            "INFERENCE_PRECISION_HINT": precision,
            "PERFORMANCE_HINT": options.get("performance_hint", "LATENCY"),
            "NUM_STREAMS": 1,
        }
        self.quantized = is_quantized(model)
        if int8_kernels not in (None, True, False):
            raise ArtifactError(f"OpenVINO int8_kernels must be True, False or None (automatic), not {int8_kernels!r}")
        self.int8_kernels = self.quantized and (int8_kernels_hold(weight_bits=int8_weight_bits(manifest)) if int8_kernels is None else int8_kernels)
        if not self.simulated_int8:
            self._compile()
            return
        self._config.update(SIMULATED_INT8)
        dims = _dims(model.inputs[0])
        if all(d is not None for d in dims[1:]):
            self._resize_input((1, *dims[1:]))
        else:
            self.compiled = None  # a dynamic picture size: compiled for the first picture's

    @property
    def simulated_int8(self) -> bool:
        """INT8 simulated in f32 (ARM): FakeQuantize through the plain kernels, on static shapes only."""
        return self.quantized and not self.int8_kernels

    @property
    def fixed_batch(self) -> int | None:
        return 1 if self.simulated_int8 else super().fixed_batch

    def _compile(self) -> None:
        try:
            self.compiled = core().compile_model(self._model, "CPU", self._config)
        except Exception as exc:
            raise ArtifactError(f"OpenVINO cannot compile {self.path}: {exc}") from exc
        self.request = self.compiled.create_infer_request()
        names = {}
        for port in self.compiled.outputs:
            for n in port.get_names():
                names[n] = port
        try:
            self._ports = [names[o.tensor] for o in self.outputs]
        except KeyError as exc:
            raise ArtifactError(f"{self.path}: manifest output {exc} is not in the model (has {sorted(names)})") from exc

    def _check_model(self, model) -> None:
        """Tensor names and shapes against the manifest, before compiling allocates anything."""
        if len(model.inputs) != 1:
            raise ArtifactError(f"{self.path}: expected one input tensor, found {len(model.inputs)}")
        ports = {n: port for port in model.outputs for n in port.get_names()}
        missing = [o.tensor for o in self.outputs if o.tensor not in ports]
        if missing:
            raise ArtifactError(f"{self.path}: manifest outputs {missing} are not in the model (has {sorted(ports)})")
        self.check_model_shapes(_dims(model.inputs[0]), [_dims(ports[o.tensor]) for o in self.outputs])

    def settings(self) -> dict[str, object]:
        """The hint asked for and the precision the CPU plugin really uses (and, for INT8 IR, its kernels)."""
        out: dict[str, object] = {"precision_hint": self.precision}
        if self.quantized:
            out["int8_kernels"] = self.int8_kernels
        try:
            value = self.compiled.get_property("INFERENCE_PRECISION_HINT")
            out["inference_precision"] = value.to_string() if hasattr(value, "to_string") else str(value)
        except Exception:
            out["inference_precision"] = self.precision
        return out

    def _resize_input(self, shape: tuple[int, ...]) -> None:
        self._model.reshape({self._model.inputs[0]: list(shape)})
        self._compile()

    def _infer(self, x: np.ndarray) -> list[np.ndarray]:
        if self.simulated_int8 and (self.compiled is None or tuple(self.compiled.inputs[0].get_shape()) != x.shape):
            self._resize_input(tuple(x.shape))
        result = self.request.infer({0: x})
        return [np.array(result[p]) for p in self._ports]


def _dims(port) -> list[int | None]:
    return [int(d.get_length()) if d.is_static else None for d in port.get_partial_shape()]


def read_embedded_manifest(path: Path) -> dict | None:
    try:
        model = core().read_model(str(path))
    except Exception as exc:
        raise ArtifactError(f"OpenVINO cannot read {path}: {exc}") from exc
    if model.has_rt_info(list(RT_INFO_KEY)):
        value = model.get_rt_info(list(RT_INFO_KEY))
        # OVAny's str() is "<OVAny class>"; astype(str) gives the stored text.
        return json.loads(value.astype(str) if hasattr(value, "astype") else str(value))
    return None
