"""Recognise a GhostFaceNets Keras graph's structure: which layers form the stem, each bottleneck
(ghost modules, DFC attention, depthwise down-sampling, squeeze-excite, shortcut) and the GDC head.

Why by structure: truncated or re-sized students have other layer names and counts than the
published models; the shapes of the segments (see :mod:`gfn_edge.export.keras_graph`) are what
every GhostFaceNets graph shares. The resulting :class:`NetPlan` names, for each part of the PyTorch
:class:`~gfn_edge.export.models.ghostfacenet.GhostFaceNet`, the Keras layers it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gfn_edge.errors import CheckpointError

from .keras_graph import KerasGraph, KerasLayer

# Keras activation name -> the PyTorch model's Act kind
ACT_KINDS = {
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


class GraphParser:
    """Parse a :class:`KerasGraph` into a :class:`NetPlan`, backwards from each segment's output."""

    def __init__(self, graph: KerasGraph):
        self.g = graph

    # --- helpers ---------------------------------------------------------------------
    def fail(self, what: str, layer: str | None = None) -> _Unexpected:
        where = f" at layer {layer!r} ({self.g[layer].cls})" if layer else ""
        return _Unexpected(f"{self.g.path.name}: not a GhostFaceNets graph: {what}{where}")

    def act_kind(self, layer: KerasLayer) -> str:
        act = layer.activation
        if act is None or act not in ACT_KINDS:
            raise self.fail(f"unsupported activation {act!r}", layer.name)
        return ACT_KINDS[act]

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
