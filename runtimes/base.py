"""The contract every inference backend implements, and the work they share.

A backend only loads a model file and runs one already-laid-out, already-typed array; this base
class does the rest once for all of them: NHWC->NCHW where the artifact wants it, int8/uint8
quantisation of inputs and dequantisation of outputs from the manifest's scale/zero-point, and
mapping the artifact's tensor names to the canonical ones (``loc``, ``conf``, ``embedding`` ...).
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gfn_edge.checks import clamp_threads, usable_cores
from gfn_edge.errors import ArtifactError, InvalidArgumentError, ManifestError
from gfn_edge.manifest import Manifest, TensorSpec

log = logging.getLogger(__name__)

_INT_TYPES = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16}


def cpu_features(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags from ``cpuinfo`` (x86 ``flags``, ARM ``Features``; empty where it
    cannot be read): which integer and float kernels a runtime can use, and which are exact."""
    try:
        with open(cpuinfo, errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
"""/proc/cpuinfo flags of x86 CPUs whose u8 x s8 dot products (VPDPBUSD, AMX) sum in int32: no saturation."""

X86_MACHINES = ("x86_64", "amd64", "i386", "i686")


def cpu_has_vnni(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> bool:
    """Whether this x86 CPU has VNNI, from ``cpuinfo`` (False where it cannot be read: the safe side).
    Both INT8 runtimes ask it which integer kernels are exact here."""
    return not cpu_features(cpuinfo).isdisjoint(VNNI_FLAGS)


def physical_cores() -> int:
    """Physical cores (hyper-threads do not speed up these models); falls back to logical ones."""
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
        if n:
            return int(n)
    except ImportError:
        pass
    try:
        cores = set()
        phys = core = None
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":")[1].strip()
                elif not line.strip():
                    if core is not None:
                        cores.add((phys, core))
                    phys = core = None
        if cores:
            return len(cores)
    except OSError:
        pass
    return os.cpu_count() or 1


def default_threads() -> int:
    """Physical cores, but never more than this process may use (a container or taskset may allow fewer)."""
    return max(1, min(physical_cores(), usable_cores()))


def quantize(x: np.ndarray, q: dict[str, float], dtype: str) -> np.ndarray:
    info = np.iinfo(_INT_TYPES[dtype])
    return np.clip(np.round(x / q["scale"] + q["zero_point"]), info.min, info.max).astype(_INT_TYPES[dtype])


def dequantize(x: np.ndarray, q: dict[str, float]) -> np.ndarray:
    return (x.astype(np.float32) - q["zero_point"]) * np.float32(q["scale"])


class InferenceModel(ABC):
    """One loaded model on one backend. ``run`` takes NHWC float32 and returns canonical outputs."""

    backend = "base"

    def __init__(self, path: Path, manifest: Manifest, threads: int | None = None):
        self.path = Path(path)
        self.manifest = manifest
        self.threads = default_threads() if threads is None else clamp_threads(threads, f"{manifest.model}: threads")
        if len(manifest.inputs) != 1:
            raise ManifestError(f"{path}: expected one model input, manifest lists {len(manifest.inputs)}")
        self.input: TensorSpec = manifest.inputs[0]
        self.outputs: list[TensorSpec] = manifest.outputs

    # --- backends implement these -------------------------------------------------------
    @abstractmethod
    def _infer(self, x: np.ndarray) -> list[np.ndarray]:
        """Run one array (artifact layout and dtype); return outputs in ``self.outputs`` order."""

    def _resize_input(self, shape: tuple[int, ...]) -> None:
        """Backends with static shapes override this to accept a new batch size or image size."""

    # --- shared logic ------------------------------------------------------------------
    def check_model_shapes(self, model_input: Sequence[object], model_outputs: Sequence[Sequence[object]]) -> None:
        """Refuse a manifest whose tensor shapes disagree with the model file's, before any allocation.

        Backends call this right after reading the model: a manifest claiming a 100000x100000 input or
        an output dimension of 10^12 (edited, or of another model) must not size a buffer or promise
        embeddings the model does not make. Dims compare where both sides are static; the model's
        dims are ints, or None / a string / -1 / 0 where dynamic. ``model_outputs`` follows
        ``self.outputs`` order.
        """
        pairs = [("inputs[0]", self.input, model_input)]
        if len(model_outputs) != len(self.outputs):
            raise ManifestError(f"{self.path}: the manifest lists {len(self.outputs)} outputs, the model file has {len(model_outputs)}")
        pairs += [(f"outputs[{i}] ({spec.name})", spec, shape) for i, (spec, shape) in enumerate(zip(self.outputs, model_outputs))]
        for key, spec, actual in pairs:
            if not spec.shape:  # no shape declared (a peer's or a lone file's manifest): nothing to contradict
                continue
            declared = [d if isinstance(d, int) and d > 0 else None for d in spec.shape]
            real = [d if isinstance(d, int) and not isinstance(d, bool) and d > 0 else None for d in actual]
            if len(declared) != len(real) or any(a is not None and b is not None and a != b for a, b in zip(declared, real)):
                raise ManifestError(
                    f"{self.path}: the manifest's {key}.shape {list(spec.shape)} does not match the model file's "
                    f"{[d if d is not None else '?' for d in real]}; the manifest was edited or belongs to another "
                    f"model: re-export the bundle with gfn-export"
                )

    @property
    def layout(self) -> str:
        return self.input.layout or "NCHW"

    @property
    def input_hw(self) -> tuple[int, int] | None:
        """(height, width) the model was built for, or None when the spatial size is dynamic."""
        shape = self.input.shape
        h, w = (shape[1], shape[2]) if self.layout == "NHWC" else (shape[2], shape[3])
        return (int(h), int(w)) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None

    @property
    def fixed_batch(self) -> int | None:
        b = self.input.shape[0]
        return int(b) if isinstance(b, int) and b > 0 else None

    def prepare(self, x_nhwc: np.ndarray) -> np.ndarray:
        if x_nhwc.ndim != 4 or x_nhwc.shape[-1] != 3:
            raise InvalidArgumentError(f"expected an NHWC batch with 3 channels, got shape {x_nhwc.shape}")
        hw = self.input_hw
        if hw is not None and tuple(x_nhwc.shape[1:3]) != hw:
            raise InvalidArgumentError(f"{self.manifest.model} ({self.path.name}) takes {hw[1]}x{hw[0]} inputs, got {x_nhwc.shape[2]}x{x_nhwc.shape[1]}")
        x = x_nhwc if self.layout == "NHWC" else x_nhwc.transpose(0, 3, 1, 2)
        if self.input.quantization and self.input.dtype in _INT_TYPES:
            return quantize(x, self.input.quantization, self.input.dtype)
        return np.ascontiguousarray(x, dtype=np.float32)

    def run(self, x_nhwc: np.ndarray) -> dict[str, np.ndarray]:
        """Canonical outputs for a float32 NHWC batch (split into the model's fixed batch if it has one)."""
        x = self.prepare(x_nhwc)
        fixed = self.fixed_batch
        if fixed is not None and len(x) != fixed:
            if fixed != 1:
                self._resize_input((len(x),) + tuple(x.shape[1:]))
                return self._collect([self._infer(x)])
            return self._collect([self._infer(x[i : i + 1]) for i in range(len(x))])
        return self._collect([self._infer(x)])

    def _collect(self, parts: list[list[np.ndarray]]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i, spec in enumerate(self.outputs):
            arr = np.concatenate([p[i] for p in parts], axis=0) if len(parts) > 1 else parts[0][i]
            if spec.quantization and spec.dtype in _INT_TYPES:
                arr = dequantize(arr, spec.quantization)
            out[spec.name] = np.asarray(arr, dtype=np.float32)
        return out

    def settings(self) -> dict[str, object]:
        """The backend's own run settings that outputs or timings depend on (none here; each backend
        adds its own), recorded beside verification results and benchmark timings."""
        return {}

    def describe(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "model": self.manifest.model,
            "target": self.manifest.target,
            "precision": self.manifest.precision,
            "threads": self.threads,
            "input": self.input.to_dict(),
            "outputs": [o.to_dict() for o in self.outputs],
            **self.settings(),
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.manifest.model} {self.manifest.target} threads={self.threads}>"


def check_model_file(path: Path, min_bytes: int = 64) -> None:
    if not path.is_file():
        raise ArtifactError(f"model file {path} does not exist")
    if path.stat().st_size < min_bytes:
        raise ArtifactError(f"model file {path} is only {path.stat().st_size} bytes: truncated or empty")
