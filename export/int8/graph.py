"""Trace a reference model into a torch.fx graph with BatchNorms folded into their convolutions."""

from __future__ import annotations

import copy
import operator

import torch
import torch.fx as fx
from torch import nn
from torch.fx.experimental.optimization import fuse
from torch.fx.passes.shape_prop import ShapeProp


class LeafTracer(fx.Tracer):
    """fx tracer that keeps every Conv2d subclass (e.g. ChannelScale) as one conv node."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, nn.Conv2d) or super().is_leaf_module(m, qualname)


def symbolic_trace(model: nn.Module) -> fx.GraphModule:
    return fx.GraphModule(model, LeafTracer().trace(model))


def trace_folded(model: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    """An fx copy of ``model`` (eval) with Conv+BN fused and shapes recorded in ``node.meta``.

    The pattern conv(1x1) -> flatten -> BatchNorm1d (the GDC embedding head) is folded as well,
    so the embedding comes straight out of a convolution. Identities (where the INT8 preparation
    folded a BatchNorm) and dropouts are erased: every exporter drops them, so in the graph they
    would be tensors and layer groups (``fpn.merge2.1``) that no backend has.
    """
    model = copy.deepcopy(model).float().cpu().eval()
    gm = fuse(symbolic_trace(model), no_trace=True)
    _fold_conv_flatten_bn1d(gm)
    _erase_no_ops(gm)
    gm.graph.lint()
    gm.recompile()
    ShapeProp(gm).propagate(example)
    return gm


_NO_OPS = (nn.Identity, nn.Dropout)


def _erase_no_ops(gm: fx.GraphModule) -> None:
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and isinstance(gm.get_submodule(str(node.target)), _NO_OPS):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
    gm.delete_all_unused_submodules()


def _is_flatten(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in (torch.flatten,)) or (node.op == "call_method" and node.target in ("flatten",))


def _fold_conv_flatten_bn1d(gm: fx.GraphModule) -> None:
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm1d):
            continue
        flat = node.args[0]
        if not isinstance(flat, fx.Node) or not _is_flatten(flat) or len(flat.users) != 1:
            continue
        conv_node = flat.args[0]
        conv = modules.get(conv_node.target) if isinstance(conv_node, fx.Node) and conv_node.op == "call_module" else None
        if not isinstance(conv, nn.Conv2d) or len(conv_node.users) != 1 or conv.kernel_size != (1, 1):
            continue
        bn = modules[node.target]
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        with torch.no_grad():
            bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
            new = nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=True)
            new.weight.copy_(conv.weight * scale[:, None, None, None])
            new.bias.copy_((bias - bn.running_mean) * scale + bn.bias.detach())
        parent, _, name = conv_node.target.rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, name, new)
        node.replace_all_uses_with(flat)
        gm.graph.erase_node(node)


def node_shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


ADD_OPS = {operator.add, operator.iadd, torch.add}
MUL_OPS = {operator.mul, operator.imul, torch.mul}


def residual_operands(gm: fx.GraphModule):
    """(add node, operand, channels) for each 4-D residual addition's operand that nothing else
    reads: the places where a per-channel decoupler can be put without changing other consumers."""
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in ADD_OPS:
            continue
        operands = [a for a in node.args if isinstance(a, fx.Node)]
        if len(operands) != 2 or node_shape(operands[0]) != node_shape(operands[1]):
            continue
        shape = node_shape(operands[0])
        if shape is None or len(shape) != 4:
            continue
        for operand in operands:
            if len(operand.users) == 1 and operand.op != "placeholder":
                yield node, operand, shape[1]
