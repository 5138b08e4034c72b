"""Export targets, one module each, behind one table (:mod:`..target_info`).

A target turns the reference's PyTorch module into files in a bundle folder and describes the
artifact's tensors; verification and the manifest are the pipeline's job (:mod:`..api`).
"""

from __future__ import annotations

import importlib

from ..context import ExportContext
from ..target_info import TARGETS, Artifact, TargetInfo, expand_targets

__all__ = ["TARGETS", "Artifact", "ExportContext", "TargetInfo", "expand_targets", "run_target"]


def run_target(name: str, ctx: ExportContext) -> Artifact:
    info = TARGETS[name]
    module = importlib.import_module(f"{__name__}.{info.module}")
    return module.export(ctx, info)
