"""Copy a GhostFaceNets Keras checkpoint's weights into the PyTorch twin, following a :class:`NetPlan`.

Every Keras layer with weights must be mapped: a layer left over means the plan missed part of
the graph, which is an error rather than a silently different model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gfn_edge.errors import CheckpointError

from .keras_graph import KerasGraph
from .keras_plan import ConvPlan, GhostPlan, NetPlan
from .models.ghostfacenet import Act, GhostFaceNet, SameConv, SqueezeExcite


class WeightLoader:
    """Loads one graph's weights into a model (``load``), keeping track of the layers used."""

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
        unused = [n for n in self.g.layers if self.g.weights(n) and n not in self.loaded]
        if unused:
            raise CheckpointError(f"{self.g.path.name}: weights of layers {unused[:5]} were not mapped to the PyTorch model")
