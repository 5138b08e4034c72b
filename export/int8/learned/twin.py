"""The fake-quantised twin: a traced FP32 model run with learnable int8 weights and activations.

Quantisers sit where a QDQ backend puts them: every convolution / linear weight (per channel)
and the output of every tensor-producing node plus the model input (per tensor). Nodes are
grouped into blocks (``blocks.3``, ``stem`` ...; :func:`..prepare.module_group`); with
``detach_blocks`` each block reads its inputs without gradient, so each block is fitted to
reproduce its own FP32 outputs from the quantised outputs of the blocks before it (block-wise
reconstruction, all blocks in one pass).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn
from torch.fx.node import map_arg

from ..prepare import module_group
from ..simulate import ActivationRange, quantisable_nodes
from .quantizers import AdaRoundWeight, LearnedRange

INPUT_GROUP = "input"


def node_group(node: fx.Node) -> str:
    if node.op in ("placeholder", "get_attr", "output"):
        return INPUT_GROUP if node.op != "output" else "output"
    stack = list(node.meta.get("nn_module_stack", {}).keys())
    name = node.target if node.op == "call_module" else (stack[-1] if stack else node.name)
    return module_group(str(name))


class QuantTwin(nn.Module):
    """Runs ``gm`` (from :func:`..graph.trace_folded`) with int8 weights and activations."""

    def __init__(self, gm: fx.GraphModule, ranges: dict[fx.Node, ActivationRange], input_range: ActivationRange):
        super().__init__()
        self.gm = gm
        for p in gm.parameters():
            p.requires_grad_(False)
        self.nodes = list(gm.graph.nodes)
        self.groups = {n: node_group(n) for n in self.nodes}
        layers = [n for n in self.nodes if n.op == "call_module" and isinstance(gm.get_submodule(n.target), (nn.Conv2d, nn.Linear))]
        self.weight_targets = [str(n.target) for n in layers]
        self.weights = nn.ModuleList(AdaRoundWeight(gm.get_submodule(t).weight) for t in self.weight_targets)
        self._weight_index = {t: i for i, t in enumerate(self.weight_targets)}
        act_nodes = [n for n in self.nodes if n.op == "placeholder"] + [n for n in quantisable_nodes(gm) if n in ranges]
        self.act_names = [n.name for n in act_nodes]
        self.acts = nn.ModuleList(
            LearnedRange(input_range.lo, input_range.hi) if n.op == "placeholder" else LearnedRange(ranges[n].lo, ranges[n].hi) for n in act_nodes
        )
        self._act_index = {name: i for i, name in enumerate(self.act_names)}
        # block outputs: values a later block (or the model output) reads
        self.block_outputs = [
            n
            for n in self.nodes
            if n.op not in ("placeholder", "get_attr", "output")
            and n.name in self._act_index
            and any(u.op == "output" or self.groups[u] != self.groups[n] for u in n.users)
        ]

    def forward(
        self,
        x: torch.Tensor,
        quant_weights: bool = True,
        quant_acts: bool = True,
        detach_blocks: bool = False,
        collect: set[str] | None = None,
    ) -> tuple[Any, dict[str, torch.Tensor]]:
        """The model output and the values of the ``collect`` nodes (after their quantiser)."""
        env: dict[fx.Node, Any] = {}
        seen: dict[str, torch.Tensor] = {}
        result = None
        for n in self.nodes:
            group = self.groups[n]

            def fetch(a: fx.Node, group=group):
                v = env[a]
                if detach_blocks and isinstance(v, torch.Tensor) and self.groups[a] != group:
                    return v.detach()
                return v

            args = map_arg(n.args, fetch)
            kwargs = map_arg(n.kwargs, fetch)
            if n.op == "placeholder":
                v = x
            elif n.op == "get_attr":
                v = _get_attr(self.gm, str(n.target))
            elif n.op == "call_module":
                v = self._call_module(str(n.target), args, kwargs, quant_weights)
            elif n.op == "call_function":
                v = n.target(*args, **kwargs)
            elif n.op == "call_method":
                v = getattr(args[0], n.target)(*args[1:], **kwargs)
            else:  # output
                result = args[0]
                continue
            i = self._act_index.get(n.name)
            if quant_acts and i is not None and isinstance(v, torch.Tensor):
                v = self.acts[i](v)
            if collect is not None and n.name in collect:
                seen[n.name] = v
            env[n] = v
        return result, seen

    def _call_module(self, target: str, args, kwargs, quant_weights: bool):
        mod = self.gm.get_submodule(target)
        i = self._weight_index.get(target)
        if i is None or not quant_weights:
            return mod(*args, **kwargs)
        w = self.weights[i]()
        if isinstance(mod, nn.Conv2d):
            return mod._conv_forward(args[0], w, mod.bias)
        return nn.functional.linear(args[0], w, mod.bias)

    # ------------------------------------------------------------------ results

    def harden(self) -> None:
        for w in self.weights:
            w.harden()

    def quantised_weights(self) -> dict[str, torch.Tensor]:
        """Module path -> dequantised int8 weight (on the per-channel grid), after learning."""
        with torch.no_grad():
            return {t: w().detach().clone() for t, w in zip(self.weight_targets, self.weights)}

    def activation_ranges(self) -> dict[str, tuple[float, float]]:
        """fx node name -> learned (lo, hi) of its uint8 quantiser."""
        return {name: q.range() for name, q in zip(self.act_names, self.acts)}


def _get_attr(gm: fx.GraphModule, target: str):
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
