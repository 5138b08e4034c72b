"""Cross-layer channel equalisation: boost weak activation channels, shrink their consumers' weights.

For a positive per-channel factor ``s``, ``conv2(act(conv1(x)))`` is unchanged when conv1's output
channel c is divided by ``s_c`` and conv2's input column c multiplied by it, as long as ``act`` is
positively homogeneous (ReLU, LeakyReLU, PReLU with its own slopes) and everything between them
acts channel by channel (padding, pooling, resizing, depthwise convs, concatenation). Residual
additions tie the factors of their operands together; gates (sigmoid, hard-sigmoid, clamp) and the
model's outputs pin them to 1.

:func:`equalize` finds those constraints on a traced graph (one variable per channel, merged by a
union-find), measures every tensor's per-channel range on calibration inputs, and picks one factor
per free variable (:func:`balance_boosts`) for the least int8 rounding noise summed over every
tensor its channels appear in, within ``max_boost`` either way. One int8 scale per tensor then
resolves every channel as well as one factor can serve both sides of a PReLU.
"""

from __future__ import annotations

import logging
import operator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..models.retinaface_parts import nearest_resize
from .graph import ADD_OPS, MUL_OPS, node_shape

log = logging.getLogger(__name__)

FIXED = 0  # the variable of channels whose scale must stay 1

_SAME_MODULES = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ZeroPad2d,
    nn.ConstantPad2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Dropout,
    nn.Identity,
    nn.Upsample,
)
_SAME_FUNCTIONS = {
    F.relu,
    torch.relu,
    F.leaky_relu,
    F.pad,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.interpolate,
    nearest_resize,
    F.dropout,
    torch.nn.functional.prelu,
}
_SAME_METHODS = {"relu", "contiguous", "clone", "mean"}
_GATE_FUNCTIONS = {F.relu6, torch.clamp, torch.sigmoid, F.sigmoid, F.hardsigmoid, F.hardswish, F.softmax, torch.softmax, torch.tanh, F.hardtanh}
_GATE_METHODS = {"clamp", "sigmoid", "softmax", "tanh"}


class ChannelScale(nn.Conv2d):
    """``x * scale`` per channel, as a 1x1 depthwise convolution initialised to 1 (an exact no-op).

    Put on one operand of a residual addition it unties that operand's channel scales from the
    other's: a channel can then be weak in a block's output yet strong in the residual stream
    without one int8 scale having to serve both. Being a depthwise conv, its factors are
    quantised per channel by every backend (a Mul by a constant vector would get one scale).
    """

    def __init__(self, channels: int):
        super().__init__(channels, channels, 1, groups=channels, bias=False)
        with torch.no_grad():
            self.weight.fill_(1.0)

    @property
    def scale(self) -> torch.Tensor:
        return self.weight.detach().view(-1)


class _UnionFind:
    def __init__(self) -> None:
        self.parent = [FIXED]

    def new(self, n: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        return np.arange(start, start + n)

    def find(self, v: int) -> int:
        root = v
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[v] != root:
            self.parent[v], v = root, self.parent[v]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if rb == FIXED:
            ra, rb = rb, ra
        self.parent[rb] = ra  # FIXED always stays a root


@dataclass
class EqualizationReport:
    free_channels: int
    fixed_channels: int
    boosted_channels: int
    max_boost: float
    tensors: int
    worst_spread_before: float  # largest (strongest / weakest channel range) ratio over tensors
    worst_spread_after: float
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "details"}


class _Analysis:
    """Channel variables of every node output, and where each conv reads and writes them."""

    def __init__(self, gm: fx.GraphModule):
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.uf = _UnionFind()
        self.vars: dict[fx.Node, np.ndarray | None] = {}
        self.absorb_in: list[tuple[str, fx.Node]] = []  # (module name, input node) whose columns absorb
        self.produce_out: list[tuple[str, fx.Node]] = []  # (module name, output node) whose rows produce
        for node in gm.graph.nodes:
            self.vars[node] = self._visit(node)

    def fix(self, node) -> None:
        if isinstance(node, fx.Node):
            v = self.vars.get(node)
            if v is not None:
                for x in v:
                    self.uf.union(FIXED, int(x))
        elif isinstance(node, (list, tuple)):
            for n in node:
                self.fix(n)

    def _channels(self, node: fx.Node) -> int | None:
        shape = node_shape(node)
        return shape[1] if shape is not None and len(shape) >= 2 else None

    def _fixed_out(self, node: fx.Node) -> np.ndarray | None:
        c = self._channels(node)
        return np.full(c, FIXED) if c else None

    def _visit(self, node: fx.Node) -> np.ndarray | None:
        if node.op == "placeholder":
            return self._fixed_out(node)
        if node.op == "output":
            self.fix(node.args[0])
            return None
        if node.op == "get_attr":
            return None
        args = list(node.args)
        first = args[0] if args and isinstance(args[0], fx.Node) else None
        if node.op == "call_module":
            mod = self.modules[node.target]
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                self.absorb_in.append((node.target, first))
                self.produce_out.append((node.target, node))
                c = mod.out_channels if isinstance(mod, nn.Conv2d) else mod.out_features
                return self.uf.new(c)
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                self.absorb_in.append((node.target, first))
                self.produce_out.append((node.target, node))
                return self.uf.new(mod.num_features)
            if isinstance(mod, _SAME_MODULES) and first is not None:
                return self.vars.get(first)
            self.fix(args)
            return self._fixed_out(node)
        if node.op == "call_function" and node.target in ADD_OPS:
            return self._add(node, args)
        if node.op == "call_function" and node.target in MUL_OPS:
            return self._mul(node, args)
        if node.op == "call_function" and node.target in (operator.truediv,) and isinstance(args[1], (int, float)):
            return self.vars.get(first) if first is not None else None
        if node.op == "call_function" and node.target in (torch.cat,):
            tensors, dim = args[0], (args[1] if len(args) > 1 else node.kwargs.get("dim", 0))
            parts = [self.vars.get(t) for t in tensors]
            if dim == 1 and all(p is not None for p in parts):
                return np.concatenate(parts)
            self.fix(list(tensors))
            return self._fixed_out(node)
        if node.op == "call_function" and node.target is operator.getitem and first is not None:
            return self._getitem(node, first, args[1])
        if node.op == "call_function" and node.target in (torch.flatten,) and first is not None:
            shape = node_shape(first)
            if shape is not None and len(shape) == 4 and shape[2] == shape[3] == 1:
                return self.vars.get(first)
        same = (node.op == "call_function" and node.target in _SAME_FUNCTIONS) or (node.op == "call_method" and node.target in _SAME_METHODS)
        if same and first is not None and self._keeps_channels(node, first):
            return self.vars.get(first)
        if (node.op == "call_function" and node.target in _GATE_FUNCTIONS) or (node.op == "call_method" and node.target in _GATE_METHODS):
            self.fix(args)
            return self._fixed_out(node)
        if node.op == "call_method" and node.target in ("size", "dim"):
            return None
        self.fix(args)
        self.fix(list(node.kwargs.values()))
        return self._fixed_out(node)

    def _keeps_channels(self, node: fx.Node, first: fx.Node) -> bool:
        a, b = node_shape(first), node_shape(node)
        if node.op == "call_method" and node.target == "mean":
            dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            dims = tuple(dims) if isinstance(dims, (list, tuple)) else (dims,)
            return all(d in (2, 3, -1, -2) for d in dims) and bool(node.kwargs.get("keepdim", len(node.args) > 2 and node.args[2]))
        return a is not None and b is not None and len(a) == len(b) and a[:2] == b[:2]

    def _add(self, node: fx.Node, args: list) -> np.ndarray | None:
        tensors = [a for a in args if isinstance(a, fx.Node)]
        if len(tensors) == 2:
            va, vb = self.vars.get(tensors[0]), self.vars.get(tensors[1])
            if va is not None and vb is not None and len(va) == len(vb) and node_shape(tensors[0]) == node_shape(tensors[1]):
                for x, y in zip(va, vb):
                    self.uf.union(int(x), int(y))
                return va
        self.fix(tensors)  # adding a constant breaks homogeneity
        return self._fixed_out(node)

    def _mul(self, node: fx.Node, args: list) -> np.ndarray | None:
        tensors = [a for a in args if isinstance(a, fx.Node)]
        if len(tensors) == 1:  # times a python number
            return self.vars.get(tensors[0])
        if len(tensors) == 2:
            a, b = tensors
            sa, sb = node_shape(a), node_shape(b)
            if sa is not None and sb is not None and len(sa) == len(sb) == 4 and sa[1] == sb[1]:
                # x * gate: the gate is the operand already pinned (a sigmoid-like output), else the pooled one
                gate = b if self._pinned(b) or (not self._pinned(a) and sb[2] * sb[3] < sa[2] * sa[3]) else a
                x = a if gate is b else b
                self.fix(gate)
                return self.vars.get(x)
        self.fix(tensors)
        return self._fixed_out(node)

    def _pinned(self, node: fx.Node) -> bool:
        v = self.vars.get(node)
        return v is not None and all(self.uf.find(int(x)) == FIXED for x in v)

    def _getitem(self, node: fx.Node, first: fx.Node, index) -> np.ndarray | None:
        v = self.vars.get(first)
        channel_slice = isinstance(index, tuple) and len(index) >= 2 and index[0] == slice(None) and isinstance(index[1], slice)
        if v is not None and channel_slice and all(i == slice(None) for i in index[2:]):
            return v[index[1]]
        self.fix(first)
        return self._fixed_out(node)


def collect_ranges(gm: fx.GraphModule, batches: list[torch.Tensor], nodes: set[fx.Node]) -> dict[fx.Node, np.ndarray]:
    """Per-channel max |x| of the given nodes' outputs over all batches."""
    ranges: dict[fx.Node, np.ndarray] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n in nodes and isinstance(out, torch.Tensor) and out.dim() >= 2:
                dims = [d for d in range(out.dim()) if d != 1]
                r = out.detach().abs().amax(dim=dims).double().numpy()
                ranges[n] = np.maximum(ranges[n], r) if n in ranges else r
            return out

    with torch.no_grad():
        for x in batches:
            Recorder(gm).run(x)
    return ranges


def _spread(r: np.ndarray) -> float:
    live = r[r > 0]
    return float(live.max() / max(live.min(), 1e-12)) if live.size else 1.0


def balance_boosts(tensors: list[tuple[np.ndarray, np.ndarray]], free: np.ndarray, nvars: int, max_boost: float, steps: int = 300) -> np.ndarray:
    """Per-variable boost (between 1/max_boost and max_boost) that minimises int8 rounding noise.

    ``tensors``: (variable of each channel, each channel's range). With one int8 scale per tensor,
    a channel whose boosted range is ``k`` times below its tensor's largest gets ``k**2`` times the
    relative rounding-noise power of that channel. Minimised: the sum over tensors of the log of
    their channels' mean relative noise, by gradient descent on log-boosts (a smooth maximum for
    each tensor's largest). One boost per variable serves every tensor the channel passes through,
    so a PReLU whose slopes differ by 16x between channels gets a compromise: its input and output
    tensors each keep a spread of about 4 instead of one of them all 16. Dead channels (below 1e-6
    of their tensor's largest) are left out.
    """
    index, logs, owner = [], [], []
    for t, (var, r) in enumerate(tensors):
        live = r > r.max() * 1e-6
        index.append(var[live])
        logs.append(np.log(r[live]))
        owner.append(np.full(int(live.sum()), t))
    if not index:
        return np.ones(nvars)
    var_t = torch.from_numpy(np.concatenate(index).astype(np.int64))
    log_r = torch.from_numpy(np.concatenate(logs))
    tensor_of = torch.from_numpy(np.concatenate(owner).astype(np.int64))
    n = len(tensors)
    counts = torch.bincount(tensor_of, minlength=n).double()
    movable = torch.from_numpy(free.astype(np.float64))
    bound = float(np.log(max_boost))
    u = torch.zeros(nvars, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([u], lr=0.05)
    temperature = 0.05  # natural-log units: the smooth maximum sits within ~5 % of the true one

    def per_tensor_sum(values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n, dtype=torch.float64).index_add(0, tensor_of, values)

    def peak_of(level: torch.Tensor, smooth: bool) -> torch.Tensor:
        top = torch.zeros(n, dtype=torch.float64).scatter_reduce(0, tensor_of, level, "amax", include_self=False).detach()
        if not smooth:
            return top
        return top + temperature * torch.log(per_tensor_sum(torch.exp((level - top[tensor_of]) / temperature)))

    def noise(u_now: torch.Tensor, smooth: bool) -> torch.Tensor:
        level = log_r + (u_now * movable)[var_t]
        gap = peak_of(level, smooth)[tensor_of] - level  # log(largest / this channel) >= 0
        # log of the mean of exp(2 gap), computed stably, in bits
        worst = torch.zeros(n, dtype=torch.float64).scatter_reduce(0, tensor_of, 2 * gap, "amax", include_self=False).detach()
        mean = per_tensor_sum(torch.exp(2 * gap - worst[tensor_of])) / counts
        return ((worst + torch.log(mean)) / (2 * np.log(2.0))).sum()

    with torch.no_grad():
        start = float(noise(u, smooth=False))
    best, best_u = start, u.detach().clone()
    for _ in range(steps):
        opt.zero_grad()
        noise(u, smooth=True).backward()
        opt.step()
        with torch.no_grad():
            u.clamp_(-bound, bound)
            now = float(noise(u, smooth=False))
            if now < best:
                best, best_u = now, u.detach().clone()
    log.info("equalisation: rms bits lost, summed over %d tensors: %.1f -> %.1f", n, start, best)
    return np.where(free, np.exp(best_u.numpy()), 1.0)


def equalize(gm: fx.GraphModule, batches: list[torch.Tensor], max_boost: float = 32.0) -> EqualizationReport:
    """Rescale ``gm``'s weights in place so weak channels are boosted up to ``max_boost`` times."""
    an = _Analysis(gm)
    uf = an.uf
    tracked = {n for n, v in an.vars.items() if v is not None and n.op != "placeholder"}
    ranges = collect_ranges(gm, batches, tracked)
    nvars = len(uf.parent)
    roots = np.asarray([uf.find(v) for v in range(nvars)])
    factor = np.ones(nvars)  # per root: divide the channel by this (s <= 1 boosts it)
    tensors = []
    before = 1.0
    for node, r in ranges.items():
        v = an.vars[node]
        if v is None or len(v) != len(r) or r.max() <= 0:
            continue
        before = max(before, _spread(r))
        tensors.append((roots[v], r))
    free = roots != FIXED
    boost = balance_boosts(tensors, free, nvars, max_boost)
    factor[:] = (1.0 / boost)[roots]
    _apply(gm, an, factor)
    after_ranges = collect_ranges(gm, batches, tracked)
    after = max([_spread(r) for r in after_ranges.values()] + [1.0])
    boosted = int(np.sum(free & (factor < 0.999)))
    report = EqualizationReport(
        free_channels=int(free[1:].sum()),
        fixed_channels=int((~free[1:]).sum()),
        boosted_channels=boosted,
        max_boost=float(1.0 / factor.min()) if nvars > 1 else 1.0,
        tensors=len(ranges),
        worst_spread_before=before,
        worst_spread_after=after,
    )
    log.info(
        "equalisation: %d of %d channels boosted (up to %.1fx); worst channel-range spread %.0f -> %.0f",
        boosted,
        report.free_channels + report.fixed_channels,
        report.max_boost,
        before,
        after,
    )
    return report


def _apply(gm: fx.GraphModule, an: _Analysis, factor: np.ndarray) -> None:
    modules = dict(gm.named_modules())
    out_scale: dict[str, np.ndarray] = {name: factor[an.vars[node]] for name, node in an.produce_out}
    in_scale: dict[str, np.ndarray] = {}
    for name, node in an.absorb_in:
        v = an.vars.get(node) if node is not None else None
        if v is not None:
            in_scale[name] = factor[v]
    with torch.no_grad():
        for name, mod in modules.items():
            s_out = out_scale.get(name)
            s_in = in_scale.get(name)
            if s_out is None and s_in is None:
                continue
            if isinstance(mod, nn.Conv2d):
                _scale_conv(mod, s_in, s_out)
            elif isinstance(mod, nn.Linear):
                w = mod.weight
                if s_in is not None:
                    w.mul_(torch.as_tensor(s_in, dtype=w.dtype)[None, :])
                if s_out is not None:
                    so = torch.as_tensor(s_out, dtype=w.dtype)
                    w.div_(so[:, None])
                    if mod.bias is not None:
                        mod.bias.div_(so)
            elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
                si = torch.as_tensor(s_in if s_in is not None else np.ones(mod.num_features), dtype=torch.float32)
                so = torch.as_tensor(s_out if s_out is not None else np.ones(mod.num_features), dtype=torch.float32)
                mod.running_mean.div_(si)
                mod.weight.mul_(si / so)
                mod.bias.div_(so)


def _scale_conv(conv: nn.Conv2d, s_in: np.ndarray | None, s_out: np.ndarray | None) -> None:
    w = conv.weight  # (out, in/groups, kh, kw)
    dtype = w.dtype
    if s_in is not None:
        si = torch.as_tensor(s_in, dtype=dtype)
        g = conv.groups
        per_group_in = conv.in_channels // g
        per_group_out = conv.out_channels // g
        # column j of output o reads input channel (o // per_group_out) * per_group_in + j
        group_of_out = torch.arange(conv.out_channels) // per_group_out
        idx = group_of_out[:, None] * per_group_in + torch.arange(per_group_in)[None, :]
        w.mul_(si[idx][:, :, None, None])
    if s_out is not None:
        so = torch.as_tensor(s_out, dtype=dtype)
        w.div_(so[:, None, None, None])
        if conv.bias is not None:
            conv.bias.div_(so)
