"""The one place the export side assembles bundle manifests (and the copy embedded in model files).

Every manifest gfn-export writes — the shipped bundle's, each INT8 attempt's, the FP32 sibling's —
comes from :func:`manifest_header` plus :func:`build_manifest`, and is checked against the same
schema the device reads with (:mod:`gfn_edge.manifest_schema`) before it is written, so a writer
bug fails the export instead of shipping a bundle no device can open.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from gfn_edge.digest import sha256_file
from gfn_edge.manifest import FORMAT, FORMAT_VERSION, Manifest, TensorSpec
from gfn_edge.manifest_schema import validate_manifest
from gfn_edge.model_spec import ModelSpec

from .target_info import Artifact, TargetInfo

__all__ = ["build_manifest", "embedded_manifest_json", "manifest_header", "now_utc", "write_manifest"]


def manifest_header(spec: ModelSpec, source: dict[str, Any]) -> dict[str, Any]:
    """What every artifact of one export run shares: format, model, task, spec and weight source.

    ``source`` is the reference's description of its weights; its local ``path`` is dropped (it
    means nothing on another machine).
    """
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": spec.name,
        "task": spec.task,
        "spec": spec.to_dict(),
        "source": {k: v for k, v in source.items() if k != "path"},
    }


def embedded_manifest_json(header: dict[str, Any], info: TargetInfo, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> str:
    """The manifest text a target embeds in its model file (ONNX metadata, TFLite metadata, OpenVINO rt_info)."""
    data = dict(header)
    data.update(
        target=info.name,
        precision=info.precision,
        inputs=[t.to_dict() for t in inputs],
        outputs=[t.to_dict() for t in outputs],
    )
    return json.dumps(data, sort_keys=True)


def build_manifest(
    header: dict[str, Any],
    info: TargetInfo,
    folder: Path,
    artifact: Artifact,
    tools: dict[str, str] | None = None,
    export: dict[str, Any] | None = None,
) -> Manifest:
    """The manifest of ``artifact`` in ``folder`` (hashing its files), checked against the schema."""
    manifest = Manifest(
        model=header["model"],
        task=header["task"],
        target=info.name,
        precision=info.precision,
        files=dict(artifact.files),
        spec=header["spec"],
        inputs=artifact.inputs,
        outputs=artifact.outputs,
        sha256={name: sha256_file(folder / name) for name in artifact.files.values()},
        source=dict(header.get("source") or {}),
        tools=dict(tools or {}),
        export=dict(export or {}),
    )
    validate_manifest(manifest.to_dict(), f" written for {folder}")
    return manifest


def write_manifest(
    header: dict[str, Any],
    info: TargetInfo,
    folder: Path,
    artifact: Artifact,
    tools: dict[str, str] | None = None,
    export: dict[str, Any] | None = None,
) -> Manifest:
    """:func:`build_manifest`, then written atomically into ``folder``."""
    manifest = build_manifest(header, info, folder, artifact, tools, export)
    manifest.write(folder)
    return manifest


def now_utc() -> str:
    """The ``export.created`` timestamp."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
