"""Make a reference's PyTorch module INT8-friendly without changing what it computes.

Steps, each exact in FP32 (checked against the original model on the calibration inputs):

1. decouple: wrap the module that produces each residual-addition operand with a
   :class:`ChannelScale`, so that operand's channels can be scaled on their own;
2. fold BatchNorm into convolutions (and the GDC's embedding BatchNorm into its 1x1 conv);
3. equalise channel ranges across layers (:mod:`.equalize`);
4. write the folded, equalised weights back into the module tree, so exported graphs keep the
   module names (``/blocks/blocks.2/ghost2/...``) that the float-fallback remedy refers to.

The result also carries a per-group sensitivity ranking from the int8 simulation, used when an
artifact misses its tolerance: the most sensitive groups are kept in float first.
"""

from __future__ import annotations

import copy
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from gfn_edge.errors import InvalidArgumentError

from .equalize import ChannelScale, EqualizationReport, equalize
from .graph import residual_operands, symbolic_trace, trace_folded
from .simulate import calibrate_ranges, output_layers, quantisable_nodes, run_fake_quant

log = logging.getLogger(__name__)


@dataclass
class Int8Preparation:
    model: nn.Module  # FP32, BN folded, equalised; what INT8 targets are exported from
    equalization: EqualizationReport | None
    decouplers: list[str]
    sensitivity: list[tuple[str, float]]  # (module group, output damage when only it is int8), worst first
    simulated: dict[str, float] = field(default_factory=dict)
    max_abs_change: float = 0.0  # FP32 output change caused by the preparation (should be ~1e-5)
    seconds: float = 0.0

    def report(self) -> dict[str, Any]:
        return {
            "equalization": self.equalization.to_dict() if self.equalization else None,
            "decouplers": len(self.decouplers),
            "sensitivity": [{"group": g, "damage": round(d, 6)} for g, d in self.sensitivity[:20]],
            "simulated_int8": self.simulated,
            "fp32_max_abs_change": self.max_abs_change,
            "seconds": round(self.seconds, 1),
        }


# ----------------------------------------------------------------------------- decoupling


def _stack(node: fx.Node) -> list[str]:
    return list(node.meta.get("nn_module_stack", {}).keys())


def _returning_module(gm: fx.GraphModule, operand: fx.Node, user: fx.Node) -> str | None:
    """The submodule (one level inside the user's scope) whose output ``operand`` is, if any."""
    op_stack, user_stack = _stack(operand), _stack(user)
    if len(op_stack) <= len(user_stack) or op_stack[: len(user_stack)] != user_stack:
        return None
    name = op_stack[len(user_stack)]
    # ``operand`` must be the last node computed inside that module (its return value)
    inside = [n for n in gm.graph.nodes if name in n.meta.get("nn_module_stack", {})]
    return name if inside and inside[-1] is operand else None


def wrap_decouplers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Wrap each residual operand's producing module as ``Sequential(module, ChannelScale)``."""
    from torch.fx.passes.shape_prop import ShapeProp

    gm = symbolic_trace(model)
    ShapeProp(gm).propagate(example)
    targets: dict[str, int] = {}
    for node, operand, channels in residual_operands(gm):
        name = _returning_module(gm, operand, node)
        if name:
            targets[name] = channels
    for name, channels in targets.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        original = getattr(parent, child)
        setattr(parent, child, nn.Sequential(original, ChannelScale(channels)))
    return sorted(targets)


# ----------------------------------------------------------------------------- write-back


def _write_back(model: nn.Module, gm: fx.GraphModule) -> None:
    """Copy folded/equalised parameters from the fx graph into ``model``'s own module tree."""
    used = {n.target for n in gm.graph.nodes if n.op == "call_module"}
    with torch.no_grad():
        for name in used:
            src = gm.get_submodule(name)
            dst = model.get_submodule(name)
            if isinstance(src, (nn.Conv2d, nn.Linear)):
                # a layer without a bias gets one when a BatchNorm after it was folded into it
                # (MiniFASNet's bias-free Linear -> BatchNorm1d embedding)
                dst.weight.copy_(src.weight)
                if src.bias is not None:
                    if dst.bias is None:
                        dst.bias = nn.Parameter(src.bias.detach().clone())
                    else:
                        dst.bias.copy_(src.bias)
            elif isinstance(src, nn.modules.batchnorm._BatchNorm):
                dst.load_state_dict(src.state_dict())
    # BatchNorms folded away in the graph become identities in the tree
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and name not in used:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, nn.Identity())


# ----------------------------------------------------------------------------- sensitivity


def module_group(name: str) -> str:
    """A readable unit of fallback: the path up to the first numbered child (``blocks.2``), else the top module."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return parts[0]


def group_nodes(gm: fx.GraphModule, nodes) -> dict[str, set[fx.Node]]:
    groups: dict[str, set[fx.Node]] = {}
    for node in nodes:
        stack = _stack(node)
        name = node.target if node.op == "call_module" else (stack[-1] if stack else node.name)
        groups.setdefault(module_group(str(name)), set()).add(node)
    return groups


def nodes_of_groups(gm: fx.GraphModule, groups) -> set[fx.Node]:
    """Every computing node of ``gm`` in the given module groups (those an attempt keeps in float)."""
    by_group = group_nodes(gm, [n for n in gm.graph.nodes if n.op.startswith("call_")])
    return set().union(*(by_group.get(g, set()) for g in groups))


def group_sensitivity(gm: fx.GraphModule, x: torch.Tensor, ranges, score: Callable[[list[np.ndarray]], float]) -> list[tuple[str, float]]:
    """Damage (drop of ``score``) when only one module group is int8, for every group, worst first."""
    with torch.no_grad():
        out = gm(x)
    base = score([o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))])
    rows = []
    # every quantised layer, the output layers too (int8 weights and inputs, no range of their own)
    heads = output_layers(gm)
    for group, nodes in group_nodes(gm, [n for n in quantisable_nodes(gm) if n in ranges or n in heads]).items():
        rows.append((group, base - score(run_fake_quant(gm, x, ranges, only=nodes))))
    rows.sort(key=lambda r: -r[1])
    return rows


# ----------------------------------------------------------------------------- entry point


def prepare_for_int8(
    model: nn.Module,
    calibration: np.ndarray,
    score: Callable[[list[np.ndarray], list[np.ndarray]], float] | None = None,
    max_boost: float = 256.0,
    batch: int = 32,
    sensitivity_samples: int = 32,
) -> Int8Preparation:
    """An equalised FP32 copy of ``model`` plus diagnostics, from NHWC float calibration inputs.

    ``score(outputs, reference_outputs) -> float`` (higher is better) ranks layer groups by int8
    damage; without it no sensitivity pass is made.
    """
    start = time.perf_counter()
    x_all = torch.from_numpy(np.ascontiguousarray(calibration.transpose(0, 3, 1, 2), dtype=np.float32))
    batches = [x_all[i : i + batch] for i in range(0, len(x_all), batch)]
    work = copy.deepcopy(model).float().cpu().eval()
    with torch.no_grad():
        before = _as_list(work(batches[0]))
    decouplers = wrap_decouplers(work, batches[0][:2])
    gm = trace_folded(work, batches[0][:2])
    report = equalize(gm, batches, max_boost=max_boost)
    _write_back(work, gm)
    work.eval()
    with torch.no_grad():
        after = _as_list(work(batches[0]))
    change = max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)) for a, b in zip(after, before))
    if change > 1e-3:
        raise RuntimeError(f"INT8 preparation changed the FP32 model's outputs by {change:.2e} (relative); refusing to continue")
    sensitivity: list[tuple[str, float]] = []
    simulated: dict[str, float] = {}
    if score is not None:
        sensitivity, simulated = rank_groups(work, calibration, score, batch, sensitivity_samples)
    prep = Int8Preparation(
        model=work,
        equalization=report,
        decouplers=decouplers,
        sensitivity=sensitivity,
        simulated=simulated,
        max_abs_change=change,
        seconds=time.perf_counter() - start,
    )
    log.info(
        "INT8 preparation: %d decouplers, %d channels boosted, FP32 change %.1e, %.1f s",
        len(decouplers),
        report.boosted_channels,
        change,
        prep.seconds,
    )
    return prep


def rank_groups(model: nn.Module, calibration: np.ndarray, score, batch: int = 32, samples: int = 32) -> tuple[list[tuple[str, float]], dict[str, float]]:
    """Module groups by simulated int8 damage (worst first), and the simulated all-int8 score."""
    x_all = torch.from_numpy(np.ascontiguousarray(calibration.transpose(0, 3, 1, 2), dtype=np.float32))
    batches = [x_all[i : i + batch] for i in range(0, len(x_all), batch)]
    gm = trace_folded(model, batches[0][:2])
    ranges = calibrate_ranges(gm, batches)
    xs = x_all[:samples]
    with torch.no_grad():
        ref = _as_list(gm(xs))
    sensitivity = group_sensitivity(gm, xs, ranges, lambda outs: score(outs, ref))
    return sensitivity, {"all_int8": float(score(run_fake_quant(gm, xs, ranges), ref))}


def groups_in_order(model: nn.Module, example: torch.Tensor) -> list[str]:
    """The model's quantised module groups in the order the network runs them (input first)."""
    gm = trace_folded(model, example)
    return list(group_nodes(gm, quantisable_nodes(gm)))


def pyramid_groups(model: nn.Module, example: torch.Tensor) -> tuple[list[str], list[str]]:
    """A pyramid detector's module groups, from one trace, in running order: those its coarser
    levels' outputs depend on, and the rest (the finest level's own branch). No coarser groups for
    a model whose per-position outputs (a detector head's maps, one value per anchor) all have one
    size, or that has none."""
    gm = trace_folded(model, example)
    maps = {}
    for node in output_layers(gm):
        shape = getattr(node.meta.get("tensor_meta"), "shape", None)
        if shape is not None and len(shape) == 4 and shape[2] * shape[3] > 1:
            maps[node] = int(shape[2] * shape[3])
    computing = set(quantisable_nodes(gm)) | set(maps)
    groups = list(group_nodes(gm, [n for n in gm.graph.nodes if n in computing]))
    if len(set(maps.values())) < 2:
        return [], groups
    finest = max(maps.values())
    needed: set[fx.Node] = set()
    stack = [node for node, positions in maps.items() if positions < finest]
    while stack:
        node = stack.pop()
        if node not in needed:
            needed.add(node)
            stack.extend(node.all_input_nodes)
    coarse = list(group_nodes(gm, [n for n in gm.graph.nodes if n in needed and n in computing]))
    return coarse, [g for g in groups if g not in coarse]


def _as_list(out) -> list[np.ndarray]:
    return [o.detach().numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]


def scope_components(group: str) -> list[str]:
    """How torch.onnx names a module path's scopes: ``body.stage1.3`` -> ``body``, ``stage1``, ``stage1.3``.

    An indexed child gets a scope named ``parent.index`` inside its parent's scope, when the parent
    is called (a Sequential); a ModuleList is never called and has no scope of its own, so
    RetinaFace's heads are ``/LandmarkHead.0/...``, not ``/LandmarkHead/LandmarkHead.0/...``
    (:func:`onnx_name_patterns` accepts both).
    """
    parts = group.split(".")
    return [f"{parts[i - 1]}.{part}" if part.isdigit() and i > 0 else part for i, part in enumerate(parts)]


def onnx_name_patterns(groups: list[str]) -> list[re.Pattern]:
    """Regexes matching ONNX (and OpenVINO) node names of the given module groups."""
    patterns = []
    for group in groups:
        comps = scope_components(group)
        regex = ""
        for i, comp in enumerate(comps):
            parent_of_next = i + 1 < len(comps) and comps[i + 1].startswith(comp + ".")
            # a container's own scope exists only when it is called (Sequential), not for a ModuleList
            regex += f"(?:/{re.escape(comp)})?" if parent_of_next else f"/{re.escape(comp)}"
        patterns.append(re.compile(rf"^{regex}(/|$)"))
    return patterns


def names_in_groups(names: list[str], groups: list[str], patterns: list[re.Pattern], what: str) -> list[str]:
    """The ``names`` (nodes, tensors) inside the module ``groups``; an error for a group that has
    none, which would otherwise be "kept in float" while nothing of it is."""
    matched = [n for n in names if any(p.search(n) for p in patterns)]
    empty = [g for g, p in zip(groups, patterns) if not any(p.search(n) for n in names)]
    if empty:
        raise InvalidArgumentError(
            f"INT8 float groups {', '.join(empty)} match no {what} of the model "
            f"(groups are module paths up to the first index, as --int8-debug and the manifest's attempts name them)"
        )
    return matched


def tf_name_patterns(groups: list[str]) -> list[re.Pattern]:
    """Regexes matching TFLite tensor names made under :mod:`.tf_graph`'s name scopes."""
    return [re.compile(rf"(^|/){re.escape(g.replace('.', '_'))}(_|/)") for g in groups]
