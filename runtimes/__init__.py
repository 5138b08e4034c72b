"""Inference backends behind one interface: ``open_model(bundle_or_file, backend="auto")``.

Backends (one module each): onnxruntime, TFLite/LiteRT, OpenVINO. Each is imported only when
used, so ``import gfn_edge`` stays fast and needs none of them.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from gfn_edge.errors import (
    ArtifactError,
    BackendError,
    ManifestError,
    MissingDependencyError,
)
from gfn_edge.manifest import FORMAT_BACKENDS, FORMAT_SUFFIXES, Manifest, read_manifest

from .base import InferenceModel, physical_cores

__all__ = ["BACKENDS", "InferenceModel", "available_backends", "open_model", "open_model_file", "physical_cores"]

# backend name -> (module, class, extra that installs it)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "onnxruntime": ("onnxruntime_backend", "OnnxRuntimeModel", "onnx"),
    "tflite": ("tflite", "TFLiteModel", "tflite"),
    "openvino": ("openvino_backend", "OpenVINOModel", "openvino"),
}
_ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "litert": "tflite", "ov": "openvino"}


def _module(backend: str):
    return importlib.import_module(f"{__name__}.{BACKENDS[backend][0]}")


def available_backends() -> list[str]:
    """Backends whose package is installed (imports each candidate)."""
    return [b for b in BACKENDS if _module(b).available()]


def _artifact_format(manifest: Manifest | None, path: Path) -> str:
    if manifest is not None:
        return manifest.artifact_format
    fmt = FORMAT_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ArtifactError(f"{path}: unknown model format {path.suffix!r}; expected .onnx, .tflite or .xml")
    return fmt


def _pick_backend(requested: str, fmt: str) -> str:
    if not isinstance(requested, str):
        raise BackendError(f"backend must be a name (auto, {', '.join(BACKENDS)}), got {requested!r}")
    requested = _ALIASES.get(requested, requested)
    candidates = FORMAT_BACKENDS[fmt]
    if requested != "auto":
        if requested not in BACKENDS:
            raise BackendError(f"unknown backend {requested!r}; choose from auto, {', '.join(BACKENDS)}")
        if requested not in candidates:
            raise BackendError(f"backend {requested} cannot run {fmt} artifacts; use {' or '.join(candidates)}")
        return requested
    for backend in candidates:
        if _module(backend).available():
            return backend
    first = candidates[0]
    raise MissingDependencyError(first, BACKENDS[first][2], f"running {fmt} artifacts")


def _lone_file_manifest(path: Path, fmt: str) -> Manifest:
    module = _module(FORMAT_BACKENDS[fmt][0]) if fmt != "onnx" or _module("onnxruntime").available() else _module("openvino")
    data = module.read_embedded_manifest(path)
    if not data:
        raise ManifestError(f"{path} carries no gfn-edge metadata (it was not written by gfn-export); open its bundle folder instead")
    data = dict(data)
    data["files"] = {"model": path.name}
    data.setdefault("sha256", {})
    return Manifest.from_dict(data, path.parent, origin=f"embedded in {path}")


def open_model(
    source: str | os.PathLike[str],
    backend: str = "auto",
    threads: int | None = None,
    task: str | None = None,
    verify_files: bool = True,
    **options: Any,
) -> InferenceModel:
    """Load a bundle folder written by gfn-export (or a lone model file it wrote) on a backend.

    ``threads`` defaults to the machine's physical cores; ``task`` ("detect", "embed", "liveness")
    makes a bundle of the wrong kind fail here with a clear message rather than later.
    Backend-specific ``options``: OpenVINO ``precision`` ("f32" default, "bf16", "f16") and
    ``int8_kernels`` (INT8 IR on integer kernels: default on x86, off on ARM, where they fail);
    onnxruntime ``spinning`` (worker threads busy-wait between runs: default off, which a pipeline of
    several models needs; on is a little faster for one model alone).
    """
    path = Path(source)
    if path.is_dir():
        manifest = read_manifest(path, verify_files=verify_files)
        model_file = manifest.model_file
        fmt = _artifact_format(manifest, model_file)
    elif path.is_file():
        fmt = _artifact_format(None, path)
        manifest = _lone_file_manifest(path, fmt)
        model_file = path
    else:
        raise ArtifactError(f"{path} does not exist (expected a bundle folder from gfn-export or a model file)")
    if task is not None and manifest.task != task:
        kinds = {"detect": "detector", "embed": "recogniser", "liveness": "liveness"}
        raise ManifestError(
            f"{path} is a {kinds.get(manifest.task, manifest.task)} bundle ({manifest.model}), but a {kinds.get(task, task)} bundle is needed here"
        )
    chosen = _pick_backend(backend, fmt)
    module_name, cls_name, _ = BACKENDS[chosen]
    cls = getattr(_module(chosen), cls_name)
    return cls(model_file, manifest, threads=threads, **options)


def open_model_file(
    path: str | os.PathLike[str],
    manifest: Manifest,
    backend: str = "auto",
    threads: int | None = None,
    **options: Any,
) -> InferenceModel:
    """Open a model file gfn-export did not write (no bundle, no embedded metadata), described by ``manifest``.

    For files from elsewhere, e.g. the benchmark's peer models: the caller's in-memory manifest
    names the tensors and layout, and the file runs on the same backend classes, with the same
    session options and ``threads``, as a bundle would.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist (expected a model file)")
    chosen = _pick_backend(backend, _artifact_format(manifest, path))
    cls = getattr(_module(chosen), BACKENDS[chosen][1])
    return cls(path, manifest, threads=threads, **options)
