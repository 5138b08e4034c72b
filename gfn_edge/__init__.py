"""gfn-edge: face detection, alignment, embedding and 1:N search on CPUs, from verified bundles.

The device side imports numpy and OpenCV only; an inference backend (onnxruntime, LiteRT or
OpenVINO) is imported when a model is opened. Heavy pieces load lazily so ``import gfn_edge``
stays fast on a Raspberry Pi.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import (
    ArtifactError,
    BackendError,
    CalibrationError,
    CheckpointError,
    ChecksumError,
    GalleryError,
    GfnEdgeError,
    ImageError,
    InvalidArgumentError,
    InvalidTypeError,
    ManifestError,
    MissingDependencyError,
    NonFiniteError,
    PairsFileError,
    ResourceLimitError,
    UnknownModelError,
    UnsafeSettingError,
    UsageError,
    VerificationError,
    WeightsNotFoundError,
)
from .registry import REGISTRY, ModelSpec, get_spec, list_models

__version__ = "0.1.0"

# public name -> module that defines it (imported on first use)
_LAZY = {
    "open_model": "gfn_edge.runtimes",
    "available_backends": "gfn_edge.runtimes",
    "read_manifest": "gfn_edge.manifest",
    "Manifest": "gfn_edge.manifest",
    "read_image": "gfn_edge.image",
    "IMAGE_SUFFIXES": "gfn_edge.image",
    "read_pairs": "gfn_edge.pairs",
    "to_bgr_uint8": "gfn_edge.image",
    "align": "gfn_edge.align",
    "Detections": "gfn_edge.retinaface_decode",
    "Detector": "gfn_edge.detector",
    "Embedder": "gfn_edge.embedder",
    "FaceAnalyzer": "gfn_edge.analyzer",
    "Face": "gfn_edge.analyzer",
    "QualityGates": "gfn_edge.quality",
    "Quality": "gfn_edge.quality",
    "Gallery": "gfn_edge.gallery",
    "Match": "gfn_edge.gallery",
    "GalleryReplica": "gfn_edge.gallery.replica",
    "IoUTracker": "gfn_edge.tracker",
    "Track": "gfn_edge.tracker",
    "Liveness": "gfn_edge.liveness",
    "apply_threads": "gfn_edge.threads",
    "resolve_weights": "gfn_edge.export.hub",  # training side; resolved only when used
    "check_threshold": "gfn_edge.checks",
    "usable_cores": "gfn_edge.checks",
    "clamp_threads": "gfn_edge.checks",
    "run_cli": "gfn_edge.cli_errors",
}

__all__ = [
    "REGISTRY",
    "ModelSpec",
    "get_spec",
    "list_models",
    "GfnEdgeError",
    "ArtifactError",
    "BackendError",
    "CalibrationError",
    "CheckpointError",
    "ChecksumError",
    "GalleryError",
    "ImageError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "ManifestError",
    "MissingDependencyError",
    "NonFiniteError",
    "PairsFileError",
    "ResourceLimitError",
    "UnknownModelError",
    "UnsafeSettingError",
    "UsageError",
    "VerificationError",
    "WeightsNotFoundError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gfn_edge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
