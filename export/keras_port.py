"""Port a GhostFaceNets Keras ``.h5`` to the PyTorch :class:`GhostFaceNet`, by the graph's structure.

The Keras graph is cut into segments (see :mod:`gfn_edge.export.keras_graph`); each segment is
recognised by its shape (a conv, a BN, a ghost module, a bottleneck with or without shortcut,
a squeeze-excite, the GDC head), which yields both the architecture (so truncated or re-sized
students load) and, layer by layer, where each Keras weight goes in the PyTorch model.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gfn_edge.errors import CheckpointError

from .keras_graph import KerasGraph, KerasLayer
from .models.ghostfacenet import Act, BlockConfig, GhostFaceNet, GhostFaceNetConfig, GhostModuleConfig, SameConv, SqueezeExcite

log = logging.getLogger(__name__)

_ACT_KINDS = {
    "relu": "relu",
    "relu6": "relu6",
    "prelu": "prelu",
    "linear": "linear",
    "sigmoid": "sigmoid",
    "hard_sigmoid": "hard_sigmoid",
    "hard_sigmoid_torch": "hard_sigmoid_torch",
    "swish": "swish",
    "hard_swish": "hard_swish",
    "hard_swish_torch": "hard_swish",
}


class _Unexpected(CheckpointError):
    pass


@dataclass
class ConvPlan:
    """Keras layers feeding one SameConv: conv (or depthwise), BN, activation."""

    conv: str
    bn: str | None = None
    act: str | None = None


@dataclass
class GhostPlan:
    primary: ConvPlan
    cheap: ConvPlan
    dfc: list[ConvPlan] = field(default_factory=list)  # conv, horizontal, vertical
    dfc_gate: str | None = None


@dataclass
class BlockPlan:
    ghost1: GhostPlan
    ghost2: GhostPlan
    down: ConvPlan | None = None
    se: tuple[str, str, str, str] | None = None  # reduce conv, act, expand conv, gate
    shortcut: tuple[ConvPlan, ConvPlan] | None = None


@dataclass
class NetPlan:
    stem: ConvPlan
    blocks: list[BlockPlan]
    last: ConvPlan
    pw: ConvPlan | None
    gdc: ConvPlan
    gdc_conv: str
    emb_bn: str


class _Parser:
    def __init__(self, graph: KerasGraph):
        self.g = graph

    # --- helpers ---------------------------------------------------------------------
    def fail(self, what: str, layer: str | None = None) -> _Unexpected:
        where = f" at layer {layer!r} ({self.g[layer].cls})" if layer else ""
        return _Unexpected(f"{self.g.path.name}: not a GhostFaceNets graph: {what}{where}")

    def act_kind(self, layer: KerasLayer) -> str:
        act = layer.activation
        if act is None or act not in _ACT_KINDS:
            raise self.fail(f"unsupported activation {act!r}", layer.name)
        return _ACT_KINDS[act]

    def is_act(self, name: str) -> bool:
        return self.g[name].cls in ("Activation", "ReLU", "PReLU")

    def single_input(self, name: str) -> str:
        ins = self.g[name].inputs
        if len(ins) != 1:
            raise self.fail(f"expected one input, found {len(ins)}", name)
        return ins[0]

    def conv_chain_back(self, end: str) -> tuple[ConvPlan, str]:
        """Walk back from ``end`` over [act] <- [BN] <- conv; returns the plan and the conv's input."""
        act = bn = None
        node = end
        if self.is_act(node):
            act = node
            node = self.single_input(node)
        if self.g[node].cls == "BatchNormalization":
            bn = node
            node = self.single_input(node)
        if self.g[node].cls not in ("Conv2D", "DepthwiseConv2D"):
            raise self.fail("expected a convolution", node)
        return ConvPlan(conv=node, bn=bn, act=act), self.single_input(node)

    def chain(self, names: list[str]) -> list[str]:
        """Consume a run of single-layer segments, skipping inference no-ops."""
        return [n for n in names if self.g[n].cls not in ("Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout")]

    # --- blocks, parsed backwards from their output ------------------------------------
    def ghost_back(self, end: str) -> tuple[GhostPlan, str]:
        """Ghost module ending at ``end`` (its concatenation, or the DFC multiply); returns it and its input."""
        node = self.g[end]
        dfc: list[ConvPlan] = []
        gate = None
        dfc_entry = None
        if node.cls == "Multiply":
            concat = next((i for i in node.inputs if self.g[i].cls == "Concatenate"), None)
            resize = next((i for i in node.inputs if i != concat), None)
            if concat is None or resize is None or self.g[resize].cls not in ("TFOpLambda", "Resizing", "UpSampling2D"):
                raise self.fail("expected DFC attention: a resized gate times a ghost concatenation", end)
            gate_node = next((i for i in self.g[resize].inputs if self.is_act(i)), None)
            if gate_node is None:
                raise self.fail("the DFC gate must be an activation", resize)
            gate = self.act_kind(self.g[gate_node])
            vertical, src = self.conv_chain_back(self.single_input(gate_node))
            horizontal, src = self.conv_chain_back(src)
            conv, src = self.conv_chain_back(src)
            if self.g[src].cls not in ("AveragePooling2D", "AvgPool2D"):
                raise self.fail("DFC attention must start with 2x2 average pooling", src)
            dfc = [conv, horizontal, vertical]
            dfc_entry = self.single_input(src)
            end = concat
        concat_node = self.g[end]
        if concat_node.cls != "Concatenate" or len(concat_node.inputs) != 2:
            raise self.fail("a ghost module ends with a two-way concatenation", end)
        cheap, src = self.conv_chain_back(concat_node.inputs[1])
        if src != concat_node.inputs[0]:
            raise self.fail("the cheap depthwise conv must read the primary conv's output", concat_node.inputs[1])
        primary, entry = self.conv_chain_back(concat_node.inputs[0])
        if dfc_entry is not None and dfc_entry != entry:
            raise self.fail("DFC attention and ghost module must read the same input", dfc[0].conv)
        return GhostPlan(primary=primary, cheap=cheap, dfc=dfc, dfc_gate=gate), entry

    def squeeze_excite_back(self, end: str) -> tuple[tuple[str, str, str, str], str]:
        mul = self.g[end]
        if mul.cls != "Multiply" or len(mul.inputs) != 2:
            raise self.fail("squeeze-excite must multiply its input by a gate", end)
        for entry, gate in (mul.inputs, mul.inputs[::-1]):
            try:
                expand = self.single_input(gate)
                act = self.single_input(expand)
                reduce = self.single_input(act)
                node = self.single_input(reduce)
                if self.g[node].cls == "Reshape":
                    node = self.single_input(node)
            except CheckpointError:
                continue
            if (
                self.g[node].cls == "GlobalAveragePooling2D"
                and self.single_input(node) == entry
                and self.g[reduce].cls == "Conv2D"
                and self.g[expand].cls == "Conv2D"
                and self.is_act(gate)
                and self.is_act(act)
            ):
                return (reduce, act, expand, gate), entry
        raise self.fail("squeeze-excite must be pool, 1x1 conv, activation, 1x1 conv, gate", end)

    def is_squeeze_excite(self, name: str) -> bool:
        try:
            self.squeeze_excite_back(name)
        except CheckpointError:
            return False
        return True

    def bottleneck(self, entry: str, end: str) -> BlockPlan:
        add = self.g[end]
        if add.cls != "Add" or len(add.inputs) != 2:
            raise self.fail("a bottleneck ends with a two-way Add", end)
        shortcut = None
        if entry in add.inputs:
            main_end = next(i for i in add.inputs if i != entry)
        else:
            main_end = None
            for cand in add.inputs:
                try:
                    second, src = self.conv_chain_back(cand)
                    first, src2 = self.conv_chain_back(src)
                except CheckpointError:
                    continue
                if src2 == entry and self.g[first.conv].cls == "DepthwiseConv2D" and first.act is None and second.act is None:
                    shortcut = (first, second)
                    main_end = next(i for i in add.inputs if i != cand)
            if shortcut is None or main_end is None:
                raise self.fail("residual Add without identity or depthwise+pointwise shortcut", end)
        ghost2, cursor = self.ghost_back(main_end)
        se = down = None
        if self.g[cursor].cls == "Multiply" and self.is_squeeze_excite(cursor):
            se, cursor = self.squeeze_excite_back(cursor)
        node = cursor
        if self.g[node].cls == "BatchNormalization" and self.g[self.single_input(node)].cls == "DepthwiseConv2D":
            conv = self.single_input(node)
            down = ConvPlan(conv=conv, bn=node)
            cursor = self.single_input(conv)
        elif self.g[node].cls == "DepthwiseConv2D":
            down = ConvPlan(conv=node)
            cursor = self.single_input(node)
        ghost1, start = self.ghost_back(cursor)
        if start != entry:
            raise self.fail("the first ghost module must read the block input", ghost1.primary.conv)
        return BlockPlan(ghost1=ghost1, ghost2=ghost2, down=down, se=se, shortcut=shortcut)

    def parse(self) -> NetPlan:
        segs = self.g.segments()
        singles: list[str] = []
        blocks: list[BlockPlan] = []
        i = 0
        # stem: conv, bn, act
        stem_nodes = []
        while i < len(segs) and len(segs[i]) == 1 and len(stem_nodes) < 3:
            stem_nodes.append(segs[i][0])
            i += 1
        if len(stem_nodes) < 3:
            raise self.fail("expected stem conv, BN and activation", stem_nodes[0] if stem_nodes else None)
        stem, src = self.conv_chain_back(stem_nodes[-1])
        if src != self.g.input:
            raise self.fail("stem must read the model input", stem.conv)
        cursor = stem_nodes[-1]
        while i < len(segs) and len(segs[i]) > 1:
            blocks.append(self.bottleneck(cursor, segs[i][-1]))
            cursor = segs[i][-1]
            i += 1
        singles = self.chain([s[0] for s in segs[i:] if len(s) == 1])
        if i + len([s for s in segs[i:] if len(s) == 1]) != len(segs):
            raise self.fail("unexpected branching after the last bottleneck", segs[i][0])
        # head: last conv/bn/act, [pw conv/bn/act], GDC dw, bn, conv, flatten, bn, [linear act]
        heads = [n for n in singles if not (self.g[n].cls == "Activation" and self.g[n].activation == "linear")]
        kinds = [self.g[n].cls for n in heads]
        j = 0

        def take(expected: tuple[str, ...]) -> str:
            nonlocal j
            if j >= len(heads) or kinds[j] not in expected:
                got = heads[j] if j < len(heads) else None
                raise self.fail(f"expected {' or '.join(expected)} in the head", got)
            j += 1
            return heads[j - 1]

        def conv_bn_act() -> ConvPlan:
            conv = take(("Conv2D",))
            bn = take(("BatchNormalization",))
            act = take(("Activation", "ReLU", "PReLU"))
            return ConvPlan(conv, bn, act)

        last = conv_bn_act()
        pw = conv_bn_act() if j < len(kinds) and kinds[j] == "Conv2D" else None
        gdc = ConvPlan(take(("DepthwiseConv2D",)), take(("BatchNormalization",)))
        gdc_conv = take(("Conv2D",))
        take(("Flatten", "Reshape"))
        emb_bn = take(("BatchNormalization",))
        if j != len(heads):
            raise self.fail("unexpected layers after the embedding BatchNorm", heads[j])
        return NetPlan(stem=stem, blocks=blocks, last=last, pw=pw, gdc=gdc, gdc_conv=gdc_conv, emb_bn=emb_bn)


# ----------------------------------------------------------------------------- config + weights


class _Builder:
    def __init__(self, graph: KerasGraph):
        self.g = graph

    def act(self, name: str | None) -> str | None:
        return None if name is None else _ACT_KINDS[self.g[name].activation or "linear"]

    def filters(self, conv: str) -> int:
        layer = self.g[conv]
        if layer.cls == "DepthwiseConv2D":
            if int(layer.config.get("depth_multiplier", 1)) != 1:
                raise CheckpointError(f"{conv}: depth_multiplier other than 1 is not supported")
            return -1
        return int(layer.config["filters"])

    def kernel(self, conv: str) -> tuple[int, int]:
        k = self.g[conv].config["kernel_size"]
        return (int(k[0]), int(k[1]))

    def stride(self, conv: str) -> int:
        s = self.g[conv].config.get("strides", [1, 1])
        if s[0] != s[1]:
            raise CheckpointError(f"{conv}: unequal strides {s} are not supported")
        return int(s[0])

    def ghost_cfg(self, plan: GhostPlan) -> GhostModuleConfig:
        dw_k = self.kernel(plan.cheap.conv)
        cfg = GhostModuleConfig(primary=self.filters(plan.primary.conv), dw_kernel=dw_k[0], act=self.act(plan.primary.act))
        if plan.dfc:
            cfg.dfc = True
            cfg.dfc_kernel = max(self.kernel(plan.dfc[1].conv))
            cfg.dfc_gate = _ACT_KINDS[plan.dfc_gate or "sigmoid"]
        return cfg

    def config(self, plan: NetPlan, input_size: int) -> GhostFaceNetConfig:
        blocks = []
        for b in plan.blocks:
            kernel = self.kernel(b.down.conv)[0] if b.down else (self.kernel(b.shortcut[0].conv)[0] if b.shortcut else 3)
            stride = self.stride(b.down.conv) if b.down else 1
            se_reduced = se_act = se_gate = None
            if b.se:
                se_reduced = self.filters(b.se[0])
                se_act = self.act(b.se[1])
                se_gate = self.act(b.se[3])
            blocks.append(
                BlockConfig(
                    ghost1=self.ghost_cfg(b.ghost1),
                    ghost2=self.ghost_cfg(b.ghost2),
                    kernel=kernel,
                    stride=stride,
                    se_reduced=se_reduced or 0,
                    se_act=se_act or "relu",
                    se_gate=se_gate or "hard_sigmoid",
                    shortcut=b.shortcut is not None,
                )
            )
        gdc_conv = self.g[plan.gdc_conv]
        emb_bn = self.g[plan.emb_bn]
        bns = [l for l in self.g.layers.values() if l.cls == "BatchNormalization"]
        eps = {float(l.config.get("epsilon", 1e-3)) for l in bns}
        mom = {float(l.config.get("momentum", 0.99)) for l in bns}
        if len(eps) > 1:
            log.info("%s: BatchNorm epsilons differ between layers %s; each layer keeps its own", self.g.path.name, sorted(eps))
        return GhostFaceNetConfig(
            stem=self.filters(plan.stem.conv),
            stem_stride=self.stride(plan.stem.conv),
            stem_act=self.act(plan.stem.act) or "linear",
            blocks=blocks,
            last=self.filters(plan.last.conv),
            last_act=self.act(plan.last.act) or "linear",
            emb=int(gdc_conv.config["filters"]),
            pw_conv=self.filters(plan.pw.conv) if plan.pw else 0,
            pw_act=(self.act(plan.pw.act) or "linear") if plan.pw else "relu",
            gdc_bias=bool(gdc_conv.config.get("use_bias", False)),
            emb_scale=bool(emb_bn.config.get("scale", True)),
            input_size=input_size,
            version=2 if any(b.ghost1.dfc for b in plan.blocks) else 1,
            bn_eps=min(eps) if eps else 1e-3,
            bn_momentum=min(mom) if mom else 0.99,
        )


class _WeightLoader:
    def __init__(self, graph: KerasGraph):
        self.g = graph
        self.loaded: set[str] = set()

    def _get(self, layer: str, key: str, required: bool = True) -> np.ndarray | None:
        w = self.g.weights(layer)
        if key not in w:
            if required:
                raise CheckpointError(f"{self.g.path.name}: layer {layer} has no weight {key!r} (has {sorted(w)})")
            return None
        return w[key]

    @staticmethod
    def _copy(param: torch.Tensor, value: np.ndarray, what: str) -> None:
        if tuple(param.shape) != tuple(value.shape):
            raise CheckpointError(f"{what}: shape {tuple(value.shape)} does not fit {tuple(param.shape)}")
        with torch.no_grad():
            param.copy_(torch.from_numpy(np.ascontiguousarray(value)))

    def conv(self, module: nn.Conv2d, layer: str) -> None:
        cls = self.g[layer].cls
        if cls == "DepthwiseConv2D":
            k = self._get(layer, "depthwise_kernel")
            value = k.transpose(2, 3, 0, 1).reshape(-1, 1, k.shape[0], k.shape[1])
        else:
            value = self._get(layer, "kernel").transpose(3, 2, 0, 1)
        self._copy(module.weight, value, layer)
        bias = self._get(layer, "bias", required=False)
        if (bias is None) != (module.bias is None):
            raise CheckpointError(f"{layer}: bias presence differs between checkpoint and model")
        if bias is not None:
            self._copy(module.bias, bias, layer + "/bias")
        self.loaded.add(layer)

    def bn(self, module: nn.modules.batchnorm._BatchNorm, layer: str) -> None:
        cfg = self.g[layer].config
        n = module.num_features
        gamma = self._get(layer, "gamma", required=bool(cfg.get("scale", True)))
        beta = self._get(layer, "beta", required=bool(cfg.get("center", True)))
        self._copy(module.weight, np.ones(n, np.float32) if gamma is None else gamma, layer + "/gamma")
        self._copy(module.bias, np.zeros(n, np.float32) if beta is None else beta, layer + "/beta")
        self._copy(module.running_mean, self._get(layer, "moving_mean"), layer + "/moving_mean")
        self._copy(module.running_var, self._get(layer, "moving_variance"), layer + "/moving_variance")
        module.eps = float(cfg.get("epsilon", 1e-3))
        module.momentum = 1.0 - float(cfg.get("momentum", 0.99))
        self.loaded.add(layer)

    def act(self, module: Act | None, layer: str | None) -> None:
        if layer is None or module is None:
            return
        if module.kind == "prelu":
            alpha = self._get(layer, "alpha")
            if alpha.ndim != 3 or alpha.shape[0] != 1 or alpha.shape[1] != 1:
                raise CheckpointError(f"{layer}: PReLU must share its slope over height and width (shared_axes=[1, 2])")
            self._copy(module.prelu.weight, alpha.reshape(-1), layer + "/alpha")
            self.loaded.add(layer)

    def same_conv(self, module: SameConv, plan: ConvPlan) -> None:
        self.conv(module.conv, plan.conv)
        if plan.bn:
            self.bn(module.bn, plan.bn)
        self.act(module.act, plan.act)

    def ghost(self, module, plan: GhostPlan) -> None:
        self.same_conv(module.primary, plan.primary)
        self.same_conv(module.cheap, plan.cheap)
        if plan.dfc:
            for key, p in zip(("conv", "horizontal", "vertical"), plan.dfc):
                self.same_conv(module.dfc[key], p)

    def se(self, module: SqueezeExcite, names: tuple[str, str, str, str]) -> None:
        reduce, act, expand, _ = names
        self.conv(module.reduce, reduce)
        self.act(module.act, act)
        self.conv(module.expand, expand)

    def load(self, model: GhostFaceNet, plan: NetPlan) -> None:
        self.same_conv(model.stem, plan.stem)
        for block, bp in zip(model.blocks, plan.blocks):
            self.ghost(block.ghost1, bp.ghost1)
            if bp.down:
                self.same_conv(block.down, bp.down)
            if bp.se:
                self.se(block.se, bp.se)
            self.ghost(block.ghost2, bp.ghost2)
            if bp.shortcut:
                self.same_conv(block.shortcut[0], bp.shortcut[0])
                self.same_conv(block.shortcut[1], bp.shortcut[1])
        self.same_conv(model.last, plan.last)
        if plan.pw:
            self.same_conv(model.pw, plan.pw)
        self.same_conv(model.gdc, plan.gdc)
        self.conv(model.gdc_conv, plan.gdc_conv)
        self.bn(model.emb_bn, plan.emb_bn)
        unused = [n for n, l in self.g.layers.items() if self.g.weights(n) and n not in self.loaded]
        if unused:
            raise CheckpointError(f"{self.g.path.name}: weights of layers {unused[:5]} were not mapped to the PyTorch model")


@dataclass
class PortedModel:
    model: GhostFaceNet
    config: GhostFaceNetConfig
    graph: KerasGraph
    keras_params: int


def port_keras_h5(path: str | os.PathLike[str]) -> PortedModel:
    """Build the PyTorch twin of a GhostFaceNets ``.h5`` and load its weights (eval mode)."""
    graph = KerasGraph.load(path)
    input_cfg = graph[graph.input].config
    shape = input_cfg.get("batch_input_shape") or input_cfg.get("batch_shape")
    if not shape or len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
        raise CheckpointError(f"{Path(path).name}: expected a square NHWC RGB input, found {shape}")
    plan = _Parser(graph).parse()
    cfg = _Builder(graph).config(plan, input_size=int(shape[1]))
    model = GhostFaceNet(cfg)
    _WeightLoader(graph).load(model, plan)
    keras_params = sum(int(np.prod(a.shape)) for n in graph.layers for a in graph.weights(n).values())
    model.eval()
    return PortedModel(model=model, config=cfg, graph=graph, keras_params=keras_params)
