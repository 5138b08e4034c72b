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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bundle_format import (
    FORMAT,
    FORMAT_BACKENDS,
    FORMAT_SUFFIXES,
    FORMAT_VERSION,
    MANIFEST_NAME,
    METADATA_KEY,
    RT_INFO_KEY,
    artifact_format,
    preferred_backend,
)
from .digest import sha256_file
from .errors import ArtifactError, ManifestError
from .manifest_schema import validate_manifest
from .model_spec import Anchors, ModelSpec, Preprocess

__all__ = [
    "FORMAT",
    "FORMAT_BACKENDS",
    "FORMAT_SUFFIXES",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "METADATA_KEY",
    "RT_INFO_KEY",
    "Manifest",
    "TensorSpec",
    "artifact_format",
    "find_bundles",
    "preferred_backend",
    "read_manifest",
    "verify_bundle_files",
]

log = logging.getLogger(__name__)


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
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(
            name=data["name"],
            tensor=data.get("tensor", data["name"]),
            shape=list(data["shape"]),
            dtype=data.get("dtype", "float32"),
            layout=data.get("layout"),
            quantization=data.get("quantization"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tensor": self.tensor,
            "shape": self.shape,
            "dtype": self.dtype,
            "layout": self.layout,
            "quantization": self.quantization,
        }


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
    def model_spec(self) -> ModelSpec:
        """The typed view of ``spec``: read fields as attributes, never by string keys.

        Parsed on each access (a few microseconds), so an edit to ``spec`` is always seen.
        """
        try:
            return ModelSpec.from_dict(self.spec)
        except (KeyError, TypeError, ValueError) as exc:
            where = f" in {self.path / MANIFEST_NAME}" if self.path else ""
            raise ManifestError(f"manifest{where}: spec is malformed ({exc!r}); re-export the bundle with gfn-export") from exc

    @property
    def preprocess(self) -> Preprocess:
        return self.model_spec.preprocess

    @property
    def anchors(self) -> Anchors | None:
        return self.model_spec.anchors

    @property
    def artifact_format(self) -> str:
        return artifact_format(self.target)

    @property
    def backend(self) -> str:
        return preferred_backend(self.target)

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
    def from_dict(cls, data: dict[str, Any], path: Path | None = None, origin: str | None = None) -> Manifest:
        """Build from parsed JSON after checking it against the schema (:mod:`.manifest_schema`).

        ``origin`` says where the JSON came from in error messages (default: the bundle's manifest.json).
        """
        where = f" {origin}" if origin else (f" in {path / MANIFEST_NAME}" if path else "")
        validate_manifest(data, where)
        try:
            manifest = cls(
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
        manifest.model_spec  # parse the typed spec now, so a bad one fails at load  # noqa: B018
        return manifest


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
    if manifest.path is None:
        raise ManifestError("manifest was not read from a bundle folder; its files cannot be checked")
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
    """Bundle folders (holding manifest.json) under ``roots``, at any depth, sorted; a root may be a
    bundle itself. Linked folders are followed (a folder of links to bundles, or to folders of
    bundles, is common; each real folder is entered once, so a link back up does not loop); folders
    whose name starts with a dot are not entered. A root that holds no bundle is logged: until
    2026-12-07 links two levels down were not followed, and gfn-bench went on without those
    bundles, saying nothing."""
    found: set[Path] = set()
    for root in roots:
        root = Path(root)
        if (root / MANIFEST_NAME).is_file():
            found.add(root)
            continue
        if not root.is_dir():
            log.warning("bundle folder %s does not exist", root)
            continue
        here, entered = set(), set()
        for folder, subfolders, files in os.walk(root, followlinks=True):
            real = os.path.realpath(folder)
            if real in entered:
                subfolders[:] = []
                continue
            entered.add(real)
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            if MANIFEST_NAME in files:
                here.add(Path(folder))
        if not here:
            log.warning("no bundle (a folder holding %s) under %s", MANIFEST_NAME, root)
        found |= here
    return sorted(found)
