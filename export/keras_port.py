"""Port a GhostFaceNets Keras ``.h5`` to the PyTorch :class:`GhostFaceNet`, by the graph's structure.

The Keras graph is cut into segments (see :mod:`gfn_edge.export.keras_graph`); each segment is
recognised by its shape (a conv, a BN, a ghost module, a bottleneck with or without shortcut,
a squeeze-excite, the GDC head; :mod:`gfn_edge.export.keras_plan`), which yields both the
architecture (built here, so truncated or re-sized students load) and, layer by layer, where each
Keras weight goes in the PyTorch model (:mod:`gfn_edge.export.keras_weights`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gfn_edge.errors import CheckpointError

from .keras_graph import KerasGraph
from .keras_plan import ACT_KINDS, GhostPlan, GraphParser, NetPlan
from .keras_weights import WeightLoader
from .models.ghostfacenet import BlockConfig, GhostFaceNet, GhostFaceNetConfig, GhostModuleConfig

log = logging.getLogger(__name__)


class _Builder:
    """The :class:`GhostFaceNetConfig` a plan describes, read from the Keras layers' configs."""

    def __init__(self, graph: KerasGraph):
        self.g = graph

    def act(self, name: str | None) -> str | None:
        return None if name is None else ACT_KINDS[self.g[name].activation or "linear"]

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
            cfg.dfc_gate = ACT_KINDS[plan.dfc_gate or "sigmoid"]
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
        bns = [layer for layer in self.g.layers.values() if layer.cls == "BatchNormalization"]
        eps = {float(bn.config.get("epsilon", 1e-3)) for bn in bns}
        mom = {float(bn.config.get("momentum", 0.99)) for bn in bns}
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
    plan = GraphParser(graph).parse()
    cfg = _Builder(graph).config(plan, input_size=int(shape[1]))
    model = GhostFaceNet(cfg)
    WeightLoader(graph).load(model, plan)
    keras_params = sum(int(np.prod(a.shape)) for n in graph.layers for a in graph.weights(n).values())
    model.eval()
    return PortedModel(model=model, config=cfg, graph=graph, keras_params=keras_params)
