"""Which layer groups the search may keep in float: the module groups of the sensitivity ranking,
the float-group steps, a liveness model's output side, a detector's recognition levels, and the
check of the user's ``--int8-float`` names."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gfn_edge.errors import OptionError

from ..context import ExportContext
from .attempt import Attempt
from .prepare import groups_in_order, pyramid_groups


def is_module_group(model: Any, group: str) -> bool:
    """Whether ``group`` names a module of ``model``: only those reach the exported graphs by name.
    The ranking also sees operations outside any module (RetinaFace's top-level ``torch.cat`` of
    its heads, ranked as ``cat_5``), which no backend's node names carry."""
    try:
        model.get_submodule(group)
    except (AttributeError, TypeError):
        return False
    return True


def module_groups(model: Any, ranking: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """The sensitivity ranking's (group, damage), most damaging first, of the groups that are
    modules of ``model`` (:func:`is_module_group`): what the float-group steps choose from."""
    return [(g, damage) for g, damage in ranking if is_module_group(model, g)]


def plan(ctx: ExportContext, methods: list[str], groups: list[str], model_groups: int | None = None) -> tuple[list[Attempt], list[list[str]]]:
    """The plain attempts, and the float-group sets to try from ``groups`` (most damaging first).

    The default cap is half of ``model_groups``, all the model's groups the simulation ranked
    (``groups`` by default), not half of those that showed a damage above zero: that count moves
    with the calibration pictures (aligned anew, w0.5-e16's went from 20 or more to 19, and the
    search lost the ten-group step that had passed), the model's size does not."""
    pinned = ctx.options.get("calib_method")
    method_list = [pinned] if pinned else methods
    cap = ctx.options.get("max_float_groups")
    half = (len(groups) if model_groups is None else model_groups) // 2
    cap = min(half, len(groups)) if cap is None else min(int(cap), len(groups))
    steps = [k for k in (1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24) if k <= cap]
    return [Attempt(m) for m in method_list], [groups[:k] for k in steps]


OUTPUT_SIDE_SHARE = 1 / 3
"""The share of a liveness model's layer groups, counted from its output, that
:func:`output_side_groups` adds in float."""


def example_inputs(ctx: ExportContext) -> torch.Tensor:
    """Two calibration inputs, NCHW, for tracing the model's graph."""
    return torch.from_numpy(np.ascontiguousarray(ctx.calibration.inputs(limit=2).transpose(0, 3, 1, 2), dtype=np.float32))


def output_side_groups(ctx: ExportContext, model: Any) -> list[str]:
    """The module groups nearest a liveness model's output (the last third, in running order).

    Why: the ranking sees the calibration faces, which are live, and on them the first layers do
    the most int8 damage; where the model tells a print or a replay from a face, its last stage,
    only the attacks show the damage. MiniFASNetV1SE calibrated on the portraits kept the ten
    ranked groups in float and still turned a spoof crop live (0.29 -> 0.61); those ten plus its
    last six groups (``conv_5.model.0`` to ``prob``) keep every verdict. Other tasks' calibration shows
    what verification judges, so they are not given this step."""
    order = groups_in_order(model, example_inputs(ctx))
    tail = order[len(order) - max(1, round(len(order) * OUTPUT_SIDE_SHARE)) :]
    return [g for g in tail if is_module_group(model, g)]


def recognition_levels_groups(ctx: ExportContext, model: Any) -> list[str]:
    """A pyramid detector's groups every coarser level depends on (:func:`.prepare.pyramid_groups`),
    less any group whose name also covers a part of the finest level's own branch: the backends
    find a group's layers by its name's prefix, so ``fpn`` would keep the whole pyramid in float.

    Why: recognition reads a detector through the landmarks of faces large enough to recognise,
    which the coarser levels find, and their landmark error is recogniser error. RetinaFace-
    MobileNet-0.25 onnx-int8 with its ranked first stage in float passed (landmark NME 0.0087 on the
    scenes) and, beside an FP32 recogniser, changed 3 of the 349 pairs decisions (pair scores moved
    0.0127 on average; the INT8 pipeline changed 4-5, more than the issue's 1 %). With these groups
    in float: NME 0.0089 (the small faces, int8), 0.0007 on the faces of 96 px or more, no decision
    changed (pair scores 0.0016), the INT8 pipeline 1. The finest level's own branch, half the
    compute at 640x480, stays int8. Tried first among a detector's float-group steps; when it fails,
    the ranked groups are added to it."""
    coarse, finest_branch = pyramid_groups(model, example_inputs(ctx))
    return [g for g in coarse if is_module_group(model, g) and not any(other.startswith(g + ".") for other in finest_branch)]


def check_user_groups(ctx: ExportContext, model: Any) -> None:
    """Refuse ``--int8-float`` names that are no layer group of this model, listing the groups: a
    misspelt group used to be dropped by every backend's node matching, so the user's first attempt
    quietly kept nothing in float."""
    wanted = ctx.options.get("float_groups") or ()
    if not wanted:
        return
    known = [g for g in groups_in_order(model, example_inputs(ctx)) if is_module_group(model, g)]
    unknown = [g for g in wanted if g not in known]
    if unknown:
        raise OptionError(f"--int8-float {', '.join(unknown)}: no such layer group in {ctx.spec.name}; its groups, input first: {', '.join(known)}")
