"""What an INT8 bundle's manifest says beside the search's attempts: the calibration, the remedies
used, and size and latency beside the FP32 bundle of the same backend."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from gfn_edge.benchmark import paired

from ..context import ExportContext
from ..manifest_writer import write_manifest
from ..target_info import TARGETS, Artifact, TargetInfo
from .attempt import Attempt, Outcome

log = logging.getLogger(__name__)


def calibration_note(ctx: ExportContext, method: str) -> dict[str, Any]:
    calib = ctx.calibration
    return {
        "method": method,
        "samples": len(calib),
        "model": calib.manifest.get("model"),
        "source_images": len(calib.source_images),
        # a large folder is drawn from (gfn_edge.calib.build.draw_pictures): how much of it was read
        **(
            {"pictures_drawn": calib.manifest["pictures_drawn"], "pictures_found": calib.manifest.get("pictures_found")}
            if calib.manifest.get("pictures_drawn")
            else {}
        ),
        **calib.augmentation,
        "seed": calib.manifest.get("seed"),
    }


def remedies(chosen: Outcome, outcomes: list[Outcome], recipe: Attempt | None = None) -> list[str]:
    done = ["cross-layer channel equalisation (exact FP32 re-parameterisation)", "per-channel weight quantisation"]
    if len({o.attempt.method for o in outcomes}) > 1:
        done.append(f"calibration methods tried: {', '.join(dict.fromkeys(o.attempt.method for o in outcomes))}")
    if recipe is not None and chosen.attempt == recipe:
        done.append(f"known INT8 recipe (the user's float groups, or the registry's from an earlier sensitivity search on these weights): {recipe.label()}")
    if chosen.source:
        done.append(f"the quantisation {chosen.source} shipped in the same run (the same QDQ graph), verified again on this backend")
    if chosen.attempt.route == "qdq":
        done.append("quantised by onnxruntime (QDQ graph, the onnx-int8 quantiser), compiled by this backend")
    if chosen.attempt.bias_corrected:
        done.append("empirical bias correction of the FP32 model for int8 (sequential, per-channel output means on the calibration inputs)")
    if chosen.attempt.rounded:
        done.append("learned rounding (AdaRound) of the int8 weights against the FP32 model (int8 simulation of this backend), written on their levels")
    if chosen.attempt.distilled:
        done.append("label-free distillation QAT of the FP32 weights against the FP32 model (int8 simulation of this backend)")
    if chosen.attempt.float_groups and not (recipe is not None and chosen.attempt == recipe):
        done.append(f"kept in float (most sensitive first): {', '.join(chosen.attempt.float_groups)}")
        if chosen.attempt.int8_weights:
            done.append("the float groups' weights stored as int8 (weight-only, computed in float; verified, no slower)")
    if chosen.attempt.half_weights:
        which = "the other float ops' weights (those too small for int8 storage)" if chosen.attempt.int8_weights else "the float ops' weights"
        done.append(f"{which} stored as float16 (computed in FP32; verified, no slower)")
    return done


def fp32_sibling(ctx: ExportContext, info: TargetInfo, build_fp32: Callable[[Path], Artifact]) -> dict[str, Any]:
    """The FP32 bundle on the INT8 target's backend, written once per export run."""
    key = f"fp32-sibling:{info.backend}"
    if key not in ctx.shared:
        fp32_info = TARGETS[info.name.removesuffix("-int8")]
        folder = ctx.work_dir / f"fp32-sibling-{fp32_info.name}"
        folder.mkdir(exist_ok=True)
        artifact = build_fp32(folder)
        write_manifest(ctx.metadata, fp32_info, folder, artifact)
        ctx.shared[key] = {"folder": folder, "size_bytes": artifact.size_bytes(folder)}
    return ctx.shared[key]


def compare_with_fp32(ctx: ExportContext, info: TargetInfo, chosen: Outcome, build_fp32: Callable[[Path], Artifact]) -> dict[str, Any]:
    """Size and latency of the INT8 artifact beside the FP32 one on the same backend."""
    fp32 = fp32_sibling(ctx, info, build_fp32)
    out: dict[str, Any] = {"size_bytes": chosen.artifact.size_bytes(chosen.folder)}
    try:
        # both opened once and timed in alternating rounds: timed one after the other inside the
        # export, w0.5-e6 onnx-int8 once read 6.30 ms against FP32's 1.35 (2026-12-04: 1.85 against 1.22)
        int8_ms, fp32_ms = paired.paired_latency_ms([chosen.folder, fp32["folder"]], rounds=3, threads=None)
        out["latency_ms"] = round(int8_ms, 3)
        out["fp32_size_bytes"] = fp32["size_bytes"]
        out["fp32_latency_ms"] = round(fp32_ms, 3)
    except Exception as exc:  # a timing failure must not fail the export
        log.warning("could not time %s: %s", info.name, exc)
        return out
    out["speedup_vs_fp32"] = round(out["fp32_latency_ms"] / max(out["latency_ms"], 1e-9), 2)
    if out["speedup_vs_fp32"] <= 1.0:
        # a search that ends with many groups in float can pass on accuracy and still be no gain
        log.warning(
            "%s: the INT8 artifact (%d layer groups in float) runs in %.2f ms against FP32's %.2f ms on this CPU: "
            "no faster than the FP32 bundle, %.0f %% of its size",
            info.name,
            len(chosen.attempt.float_groups),
            out["latency_ms"],
            out["fp32_latency_ms"],
            100 * out["size_bytes"] / max(fp32["size_bytes"], 1),
        )
    return out
