"""Bundle manifests: the contract between gfn-export (writer) and the runtime (reader).

A bundle is a folder ``<model>-<target>/`` holding the model file(s) and ``manifest.json``. The
manifest carries the registry entry's preprocessing (``spec``), tensor specs with quantisation
parameters, sha256 of every file, tool versions and the verification report, so a bundle is
usable, and checkable, without the registry that produced it.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import ArtifactError, ManifestError
from .registry import Anchors, Preprocess

MANIFEST_NAME = "manifest.json"

log = logging.getLogger(__name__)
FORMAT = "gfn-edge-bundle"
FORMAT_VERSION = 1
_REQUIRED = ("format", "format_version", "model", "task", "target", "precision", "files", "spec", "inputs", "outputs", "sha256")


@dataclass
class TensorSpec:
    """One model input or output as the artifact sees it."""

    name: str  # canonical name: "input", "loc", "conf", "landms", "embedding", "logits"
    tensor: str  # the artifact's own tensor name (TFLite and OpenVINO rename tensors)
    shape: list[int | str]
    dtype: str = "float32"
    layout: str | None = None  # inputs: "NCHW" or "NHWC"
    quantization: dict[str, float] | None = None  # {"scale": s, "zero_point": z} when the tensor is integer

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TensorSpec":
        return cls(
            name=data["name"],
            tensor=data.get("tensor", data["name"]),
            shape=list(data["shape"]),
            dtype=data.get("dtype", "float32"),
            layout=data.get("layout"),
            quantization=data.get("quantization"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class Manifest:
    model: str
    task: str
    target: str
    precision: str
    files: dict[str, str]
    spec: dict[str, Any]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    sha256: dict[str, str]
    source: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # the bundle folder, when read from disk

    # --- views the runtime needs -------------------------------------------------------
    @property
    def preprocess(self) -> Preprocess:
        return Preprocess.from_dict(self.spec["preprocess"])

    @property
    def anchors(self) -> Anchors | None:
        data = self.spec.get("anchors")
        return Anchors.from_dict(data) if data else None

    @property
    def backend(self) -> str:
        return {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "tflite"}[self.target.split("-")[0]]

    @property
    def model_file(self) -> Path:
        if self.path is None:
            raise ManifestError("manifest was not read from a bundle folder")
        return self.path / self.files["model"]

    @property
    def signature(self) -> str:
        """What embeddings are comparable across: the model and its source weights, not the backend."""
        src = self.source.get("sha256", "")
        return f"{self.model}:{src[:16]}" if src else self.model

    # --- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "task": self.task,
            "target": self.target,
            "precision": self.precision,
            "files": self.files,
            "spec": self.spec,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "sha256": self.sha256,
            "source": self.source,
            "tools": self.tools,
            "export": self.export,
            "verification": self.verification,
        }

    def write(self, folder: str | os.PathLike[str]) -> Path:
        """Write atomically, so a crash never leaves half a manifest."""
        folder = Path(folder)
        target = folder / MANIFEST_NAME
        tmp = folder / (MANIFEST_NAME + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        os.replace(tmp, target)
        self.path = folder
        return target

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | None = None) -> "Manifest":
        where = f" in {path / MANIFEST_NAME}" if path else ""
        if not isinstance(data, dict):
            raise ManifestError(f"manifest{where} is not a JSON object")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise ManifestError(f"manifest{where} lacks {', '.join(missing)}; re-export the bundle with gfn-export")
        if data["format"] != FORMAT:
            raise ManifestError(f"manifest{where} has format {data['format']!r}, expected {FORMAT!r}")
        if int(data["format_version"]) > FORMAT_VERSION:
            raise ManifestError(
                f"manifest{where} is format version {data['format_version']}, newer than this gfn-edge reads "
                f"({FORMAT_VERSION}); upgrade gfn-edge"
            )
        try:
            return cls(
                model=data["model"],
                task=data["task"],
                target=data["target"],
                precision=data["precision"],
                files=dict(data["files"]),
                spec=dict(data["spec"]),
                inputs=[TensorSpec.from_dict(t) for t in data["inputs"]],
                outputs=[TensorSpec.from_dict(t) for t in data["outputs"]],
                sha256=dict(data["sha256"]),
                source=dict(data.get("source") or {}),
                tools=dict(data.get("tools") or {}),
                export=dict(data.get("export") or {}),
                verification=dict(data.get("verification") or {}),
                path=path,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"manifest{where} is malformed: {exc!r}") from exc


def read_manifest(bundle: str | os.PathLike[str], verify_files: bool = True) -> Manifest:
    """Read and check a bundle folder (or the manifest.json inside it)."""
    path = Path(bundle)
    if path.name == MANIFEST_NAME:
        path = path.parent
    if not path.exists():
        raise ArtifactError(f"bundle {path} does not exist")
    if not path.is_dir():
        raise ManifestError(f"{path} is a file, not a bundle folder; open lone model files with open_model(path, spec=...)")
    file = path / MANIFEST_NAME
    if not file.is_file():
        raise ManifestError(f"bundle {path} has no {MANIFEST_NAME}; it was not written by gfn-export or is incomplete")
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{file} is not valid JSON ({exc}); the bundle is damaged, re-export it") from exc
    manifest = Manifest.from_dict(data, path)
    if verify_files:
        verify_bundle_files(manifest)
    return manifest


def verify_bundle_files(manifest: Manifest) -> None:
    """Every listed file exists and has the recorded sha256: catches truncated or swapped models."""
    from .hub import sha256_file

    assert manifest.path is not None
    for role, name in manifest.files.items():
        file = manifest.path / name
        if not file.is_file():
            raise ArtifactError(f"bundle {manifest.path}: {role} file {name} is missing")
        expected = manifest.sha256.get(name)
        if expected is None:
            raise ManifestError(f"bundle {manifest.path}: manifest records no sha256 for {name}")
        actual = sha256_file(file)
        if actual != expected:
            raise ArtifactError(
                f"bundle {manifest.path}: {name} has sha256 {actual[:12]}…, manifest says {expected[:12]}…; "
                f"the file is corrupt, truncated or replaced. Re-export or re-copy the bundle."
            )


def find_bundles(roots: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Bundle folders (holding manifest.json) under ``roots``, sorted; a root may be a bundle itself."""
    found: set[Path] = set()
    for root in roots:
        root = Path(root)
        if (root / MANIFEST_NAME).is_file():
            found.add(root)
            continue
        if not root.is_dir():
            log.warning("bundle folder %s does not exist", root)
            continue
        # rglob does not enter linked folders; a folder of links to bundles is common (glob follows them)
        for manifest in set(root.rglob(MANIFEST_NAME)) | set(root.glob(f"*/{MANIFEST_NAME}")):
            if not any(part.startswith(".") for part in manifest.parent.relative_to(root).parts):
                found.add(manifest.parent)
    return sorted(found)
