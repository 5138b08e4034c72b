"""A manifest for a model file written by a test (no export run), so the runtimes open it as a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gfn_edge.manifest import Manifest, TensorSpec


def int8_manifest(path: Path, target: str, input_tensor: str, shape: tuple[int, ...], output_tensor: str, export: dict[str, Any] | None = None) -> Manifest:
    """An INT8 embedder bundle of the one file ``path``: NCHW float input ``input_tensor`` of ``shape``,
    its embedding read from ``output_tensor``."""
    return Manifest(
        model=path.stem,
        task="embed",
        target=target,
        precision="int8",
        files={"model": path.name},
        spec={},
        inputs=[TensorSpec("input", input_tensor, list(shape), "float32", "NCHW")],
        outputs=[TensorSpec("embedding", output_tensor, [])],
        sha256={},
        path=path.parent,
        export=export or {},
    )
