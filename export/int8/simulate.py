"""Simulated int8 (fake quantisation) on a traced model, and a per-layer sensitivity pass.

The simulation puts an int8 quantise-dequantise on every convolution's weights (per output
channel, symmetric) and on the output of every layer that produces a tensor (per tensor,
min/max from calibration), which is how QDQ backends place them. It is close enough to rank
layers by the damage int8 does to them in a second per layer, where a backend round trip per
candidate takes minutes; the backends' real numbers still decide (verification).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from . import headroom
from .equalize import collect_ranges
from .weight_grid import FULL_QMAX, layer_qmax


def _fq_weight(w: torch.Tensor, qmax: int = 127) -> torch.Tensor:
    """Per-output-channel symmetric weights on the backend's grid (127 levels a side; 64 for onnxruntime's 7-bit ``reduce_range``)."""
    dims = tuple(range(1, w.dim()))
    scale = w.abs().amax(dim=dims, keepdim=True).clamp(min=1e-12) / qmax
    return torch.round(w / scale).clamp(-qmax, qmax) * scale


def _fq_act(x: torch.Tensor, lo: float, hi: float, bits: int = 8) -> torch.Tensor:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    levels = 2**bits - 1
    scale = max(hi - lo, 1e-12) / levels
    zp = round(-lo / scale)
    return (torch.clamp(torch.round(x / scale) + zp, 0, levels) - zp) * scale


def quantisable_nodes(gm: fx.GraphModule) -> list[fx.Node]:
    """Layers a QDQ backend quantises (tensor-producing nodes of a graph from
    :func:`.graph.trace_folded`, which has no identities left), except the pass-through nodes that
    hand the model's outputs over, which the exporters leave in float (:mod:`.float_outputs`). The
    output layers before them are here (their weights and inputs are int8, and they are layer
    groups like any other); their results are not quantised (:func:`quantised_outputs`)."""
    out = []
    chain = _output_chain(gm)
    for n in gm.graph.nodes:
        if n.op in ("call_module", "call_function", "call_method") and "tensor_meta" in n.meta and n not in chain:
            meta = n.meta["tensor_meta"]
            if hasattr(meta, "shape") and len(meta.shape) >= 2 and meta.dtype == torch.float32:
                out.append(n)
    return out


_FUSED_ACTIVATIONS = (nn.ReLU, nn.ReLU6)
_PASS_THROUGH_FUNCTIONS = (
    torch.cat,
    torch.concat,
    torch.flatten,
    torch.reshape,
    torch.softmax,
    torch.sigmoid,
    torch.squeeze,
    torch.unsqueeze,
    torch.permute,
    torch.transpose,
    nn.functional.softmax,
)
_PASS_THROUGH_METHODS = frozenset({"view", "reshape", "permute", "transpose", "contiguous", "flatten", "squeeze", "unsqueeze", "softmax", "sigmoid"})
_PASS_THROUGH_MODULES = (nn.Softmax, nn.Sigmoid, nn.Flatten)


def _is_pass_through(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Whether ``node`` moves or normalises values (:data:`.float_outputs.ONNX_PASS_THROUGH`)."""
    if node.op == "call_function":
        return node.target in _PASS_THROUGH_FUNCTIONS
    if node.op == "call_method":
        return node.target in _PASS_THROUGH_METHODS
    return node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)), _PASS_THROUGH_MODULES)


def _reads_shape(node: fx.Node) -> bool:
    """``x.shape`` / ``x.size()`` / ``x.dim()``: reads a tensor's shape, not its values (RetinaFace's
    heads reshape with ``out.view(out.shape[0], -1, 10)``; exported, the shape is a constant)."""
    if node.op == "call_function" and node.target is getattr:
        return len(node.args) > 1 and node.args[1] in ("shape", "ndim", "dtype", "device")
    return node.op == "call_method" and node.target in ("size", "dim")


def _only_feeds(node: fx.Node, chain: set[fx.Node]) -> bool:
    """Whether every value ``node`` hands on goes to the graph's output or into ``chain``."""
    users = [u for u in node.users if not _reads_shape(u)]
    return bool(users) and all(u.op == "output" or u in chain for u in users)


def _output_chain(gm: fx.GraphModule) -> set[fx.Node]:
    """The pass-through nodes on the way to the outputs (:func:`.float_outputs.onnx_output_chain`)."""
    chain: set[fx.Node] = set()
    for n in reversed(list(gm.graph.nodes)):
        if _is_pass_through(gm, n) and _only_feeds(n, chain):
            chain.add(n)
    return chain


def output_layers(gm: fx.GraphModule) -> set[fx.Node]:
    """The layers whose results only the output chain (or the output) takes: the exporters hand
    their results over unquantised (:func:`.float_outputs.drop_output_quantisers`)."""
    chain = _output_chain(gm)
    # a tensor-producing layer (not an entry of a shape)
    return {n for n in gm.graph.nodes if n.op != "placeholder" and n not in chain and hasattr(n.meta.get("tensor_meta"), "shape") and _only_feeds(n, chain)}


def _is_fused_activation(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(str(node.target)), _FUSED_ACTIVATIONS)
    return node.op == "call_function" and node.target in (torch.relu, nn.functional.relu, nn.functional.relu6)


def _fused_into_activation(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Whether ``node``'s only consumer is a ReLU the backends fuse."""
    return len(node.users) == 1 and _is_fused_activation(gm, next(iter(node.users)))


def quantised_outputs(gm: fx.GraphModule) -> list[fx.Node]:
    """Where a backend puts an activation quantiser: every tensor-producing node except one whose
    only user is a ReLU (the backends fuse it into the layer and quantise after the ReLU) and the
    output layers (:func:`output_layers`)."""
    handed_over = output_layers(gm)
    return [n for n in quantisable_nodes(gm) if not _fused_into_activation(gm, n) and n not in handed_over]


def layer_name(gm: fx.GraphModule, node: fx.Node) -> str:
    return str(node.target) if node.op == "call_module" else node.name


@dataclass
class ActivationRange:
    lo: float
    hi: float


def calibrate_ranges(gm: fx.GraphModule, batches: Iterable[torch.Tensor]) -> dict[fx.Node, ActivationRange]:
    """Min/max of every quantisable output over ``batches`` (read once, so a generator will do),
    small tensors widened (:mod:`.headroom`)."""
    handed_over = output_layers(gm)  # their results are not quantised: no range
    nodes = [n for n in quantisable_nodes(gm) if n not in handed_over]
    ranges: dict[fx.Node, ActivationRange] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if (n in ranges or n in wanted) and isinstance(out, torch.Tensor):
                lo, hi = float(out.min()), float(out.max())
                r = ranges.get(n)
                ranges[n] = ActivationRange(min(lo, r.lo), max(hi, r.hi)) if r else ActivationRange(lo, hi)
            return out

    wanted = set(nodes)
    with torch.no_grad():
        for x in batches:
            Recorder(gm).run(x)
    # the backends widen small tensors' ranges the same way (:mod:`.headroom`)
    for n, r in ranges.items():
        meta = n.meta.get("tensor_meta")
        count = headroom.positions(tuple(meta.shape)) if hasattr(meta, "shape") else None
        ranges[n] = ActivationRange(*headroom.widened(r.lo, r.hi, count))
    return ranges


class FakeQuant(fx.Interpreter):
    """Runs ``gm`` with int8 weights and activations everywhere except the ``skip`` layers.

    ``weights`` / ``activations`` False leave that half in float, which tells which of the two costs
    the accuracy (:mod:`gfn_edge.export.int8_debug.error_sources`); ``weight_qmax`` is the backend's
    weight grid (depthwise layers keep the full one, :func:`.weight_grid.layer_qmax`); ``boundary``
    holds skipped layers whose results an int8 layer reads: a backend quantises those at the int8
    layer's input, so they are quantised here too.
    """

    def __init__(
        self,
        gm: fx.GraphModule,
        ranges: dict[fx.Node, ActivationRange],
        only: set[fx.Node] | None = None,
        skip: set[fx.Node] | None = None,
        *,
        weights: bool = True,
        activations: bool = True,
        weight_qmax: int = FULL_QMAX,
        boundary: set[fx.Node] | None = None,
    ):
        super().__init__(gm)
        self.ranges = ranges
        self.only = only
        self.skip = skip or set()
        self.weights, self.activations, self.weight_qmax = weights, activations, weight_qmax
        self.boundary = boundary or set()
        self._weights: dict[str, torch.Tensor] = {}

    def _active(self, n: fx.Node) -> bool:
        return n not in self.skip and (self.only is None or n in self.only)

    def call_module(self, target, args, kwargs):
        mod = self.module.get_submodule(target)
        node = self._current
        if self.weights and isinstance(mod, (nn.Conv2d, nn.Linear)) and self._active(node):
            if target not in self._weights:
                self._weights[target] = _fq_weight(mod.weight.detach(), layer_qmax(mod, self.weight_qmax))
            w = self._weights[target]
            if isinstance(mod, nn.Conv2d):
                return mod._conv_forward(args[0], w, mod.bias)
            return torch.nn.functional.linear(args[0], w, mod.bias)
        return super().call_module(target, args, kwargs)

    def run_node(self, n):
        self._current = n
        out = super().run_node(n)
        r = self.ranges.get(n)
        if self.activations and r is not None and isinstance(out, torch.Tensor) and (self._active(n) or n in self.boundary):
            out = _fq_act(out, r.lo, r.hi)
        return out


def run_fake_quant(gm: fx.GraphModule, x: torch.Tensor, ranges, only=None, skip=None) -> list[np.ndarray]:
    with torch.no_grad():
        out = FakeQuant(gm, ranges, only, skip).run(x)
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [o.numpy() for o in out]


def sensitivity(gm: fx.GraphModule, x: torch.Tensor, ranges, score, candidates: list[fx.Node] | None = None) -> list[tuple[str, float]]:
    """Damage of quantising each layer alone: ``score(outputs) -> float`` (higher is better) per layer,
    reported as (layer name, drop from float), worst first."""
    with torch.no_grad():
        base = score([t.numpy() for t in _as_tuple(gm(x))])
    rows = []
    for node in candidates or list(ranges):
        s = score(run_fake_quant(gm, x, ranges, only={node}))
        rows.append((node, base - s))
    rows.sort(key=lambda r: -r[1])
    return [(layer_name(gm, n), d) for n, d in rows]


def _as_tuple(out):
    return out if isinstance(out, (tuple, list)) else (out,)


__all__ = ["calibrate_ranges", "collect_ranges", "layer_name", "output_layers", "quantisable_nodes", "quantised_outputs", "run_fake_quant", "sensitivity"]
