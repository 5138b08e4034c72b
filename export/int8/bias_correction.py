"""Empirical bias correction: move each layer's bias so its int8 output has the FP32 output's mean.

Quantising weights and activations shifts the mean of every channel a little (rounding is not
zero-mean on the few values a depthwise filter holds, clipping is one-sided), and the shifts add up
layer after layer. Detectors suffer most: a constant offset on a box or landmark regression channel
is a constant pixel error on every face. NNCF corrects biases by default and, measured on
RetinaFace-MobileNet-0.25, that halved the layer groups OpenVINO INT8 had to keep in float; ONNX
Runtime and the TFLite converter do not correct. This module does it once on the PyTorch twin,
before either quantises:

one pass over the calibration inputs through the traced graph in topological order, carrying two
values per node: the FP32 one and the int8 simulation (:mod:`.simulate`'s grid: per-channel
symmetric weights of ``weight_qmax`` levels (depthwise convolutions: 127, :mod:`.weight_grid`), per-tensor min/max activations, a ReLU fused into the
layer before it). At each convolution or linear layer the simulation is run with the layers above
it already corrected, and the per-channel mean of (int8 - FP32) output is taken off its bias
(sequential correction, as in Nagel et al. 2019, "Data-Free Quantization", section 4.2, with the
empirical means). Weight scales do not depend on biases, so the backend's weight grid is the one
corrected for; each backend re-measures its activation ranges on the corrected model.

The corrected model is an FP32 model that differs from the original by these bias shifts only; it
is verified against the original like every INT8 attempt. Layers in float groups are neither
quantised nor corrected, and neither are output layers that produce a map of positions
(:func:`_per_position`).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from gfn_edge.errors import CalibrationError

from .graph import trace_folded
from .learned.tensors import nchw
from .prepare import _write_back, nodes_of_groups
from .simulate import ActivationRange, _fq_act, _fq_weight, calibrate_ranges, output_layers, quantised_outputs
from .weight_grid import layer_qmax

log = logging.getLogger(__name__)

# Samples used: the mean of each channel over this many pictures and all their positions. Detector
# inputs are 640x640, and the pass holds two copies of every live tensor of the batch at once.
MAX_SAMPLES = {"detect": 32}
DEFAULT_MAX_SAMPLES = 256


@dataclass
class BiasCorrection:
    """The corrected FP32 model (same module tree as the one given) and what the correction did."""

    model: nn.Module
    report: dict[str, Any] = field(default_factory=dict)


def _call(gm: fx.GraphModule, node: fx.Node, args, kwargs):
    if node.op == "call_module":
        return gm.get_submodule(str(node.target))(*args, **kwargs)
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    self_obj, *rest = args
    return getattr(self_obj, str(node.target))(*rest, **kwargs)


def _last_uses(gm: fx.GraphModule) -> dict[fx.Node, list[fx.Node]]:
    """For each node, the values that are dead once it has run (to free both copies early)."""
    seen: set[fx.Node] = set()
    dead: dict[fx.Node, list[fx.Node]] = {}
    for node in reversed(gm.graph.nodes):
        for inp in node.all_input_nodes:
            if inp not in seen:
                seen.add(inp)
                dead.setdefault(node, []).append(inp)
    return dead


def correct_biases(
    model: nn.Module,
    calibration: np.ndarray,
    weight_qmax: int = 127,
    float_groups: tuple[str, ...] = (),
    task: str = "embed",
    max_samples: int | None = None,
) -> BiasCorrection:
    """``model`` (FP32, INT8-prepared) with biases corrected for int8 on NHWC ``calibration`` inputs.

    ``weight_qmax``: the backend's weight grid (127, or 64 for onnxruntime's 7-bit weights; depthwise
    convolutions keep 127 on every backend, :mod:`.weight_grid`).
    ``float_groups``: the module groups the attempt keeps in float (``blocks.3``, ``stem``).
    """
    start = time.perf_counter()
    bad = ~np.isfinite(calibration).reshape(len(calibration), -1).all(axis=1)
    if bad.any():
        raise CalibrationError(
            f"INT8 bias correction: {int(bad.sum())} of {len(calibration)} calibration inputs hold NaN or infinite values "
            f"(first at index {int(np.argmax(bad))}); rebuild the calibration set from the pictures"
        )
    cap = max_samples or MAX_SAMPLES.get(task, DEFAULT_MAX_SAMPLES)
    x = nchw(calibration[: min(len(calibration), cap)])
    gm = trace_folded(copy.deepcopy(model).float().eval(), x[:2])
    skip = nodes_of_groups(gm, float_groups)
    chunks = [x[i : i + 32] for i in range(0, len(x), 32)]
    placed = set(quantised_outputs(gm))
    heads = output_layers(gm)
    ranges = {n: r for n, r in calibrate_ranges(gm, chunks).items() if n in placed}
    input_range = ActivationRange(float(x.min()), float(x.max()))
    shifts: dict[str, float] = {}
    dead = _last_uses(gm)
    env_f: dict[fx.Node, Any] = {}
    env_q: dict[fx.Node, Any] = {}
    with torch.no_grad():
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                env_f[node] = x
                env_q[node] = _fq_act(x, input_range.lo, input_range.hi)
                continue
            if node.op == "output":
                break
            if node.op == "get_attr":
                value = getattr(gm, str(node.target))
                env_f[node] = env_q[node] = value
                continue
            args_f = fx.node.map_arg(node.args, lambda n: env_f[n])
            kwargs_f = fx.node.map_arg(node.kwargs, lambda n: env_f[n])
            args_q = fx.node.map_arg(node.args, lambda n: env_q[n])
            kwargs_q = fx.node.map_arg(node.kwargs, lambda n: env_q[n])
            active = node not in skip
            mod = gm.get_submodule(str(node.target)) if node.op == "call_module" else None
            out_f = _call(gm, node, args_f, kwargs_f)
            if active and isinstance(mod, (nn.Conv2d, nn.Linear)) and not (node in heads and _per_position(out_f)):
                out_q = _corrected(mod, args_q[0], out_f, weight_qmax, shifts, str(node.target))
            else:
                out_q = _call(gm, node, args_q, kwargs_q)
            r = ranges.get(node)
            if r is not None and active and isinstance(out_q, torch.Tensor):
                out_q = _fq_act(out_q, r.lo, r.hi)
            env_f[node], env_q[node] = out_f, out_q
            for gone in dead.get(node, ()):
                env_f.pop(gone, None)
                env_q.pop(gone, None)
    corrected = copy.deepcopy(model).float().eval()
    _write_back(corrected, gm)
    report = {
        "method": "empirical bias correction, sequential (int8 simulation vs FP32, per-channel output means)",
        "samples": len(x),
        "weight_qmax": weight_qmax,
        "layers": len(shifts),
        "float_groups": list(float_groups),
        "largest_shifts": dict(sorted(shifts.items(), key=lambda kv: -kv[1])[:5]),
        "seconds": round(time.perf_counter() - start, 1),
    }
    log.info("INT8 bias correction: %d layers on %d samples in %.1f s", len(shifts), len(x), report["seconds"])
    return BiasCorrection(corrected, report)


def _per_position(out: torch.Tensor) -> bool:
    """Whether a layer's output is a map of positions (a detector head's, one value per anchor).

    An output layer of that kind is not corrected: its channel means are taken over every anchor,
    nearly all background, and the device decodes it at the faces only. Corrected, RetinaFace's
    landmark heads moved every face's landmarks alike: openvino-int8 (min/max + correction, 20
    groups in float) passed NME 0.0097 on the scenes' small faces and put the pairs photos' 100 px
    faces' landmarks 1-3 % of the face from FP32's (onnx-int8, uncorrected: 0.5 %)."""
    return out.dim() == 4 and out.shape[2] * out.shape[3] > 1


def _corrected(mod: nn.Module, x_q: torch.Tensor, out_f: torch.Tensor, weight_qmax: int, shifts: dict[str, float], name: str) -> torch.Tensor:
    """The layer's int8-simulated output with its bias moved so the per-channel mean matches FP32;
    the layer's bias is updated in place (created when it had none)."""
    w = _fq_weight(mod.weight, layer_qmax(mod, weight_qmax))
    bias = mod.bias if mod.bias is not None else torch.zeros(w.shape[0])
    out_q = mod._conv_forward(x_q, w, bias) if isinstance(mod, nn.Conv2d) else nn.functional.linear(x_q, w, bias)
    dims = [d for d in range(out_q.dim()) if d != 1]
    delta = (out_q - out_f).mean(dim=dims)
    if not torch.isfinite(delta).all():
        return out_q
    if mod.bias is None:
        mod.bias = nn.Parameter(torch.zeros(w.shape[0]), requires_grad=False)
    mod.bias.sub_(delta)
    shape = [1] * out_q.dim()
    shape[1] = -1
    # relative to the channels' output spread, so the report shows where the int8 drift was largest
    spread = float(out_f.std()) or 1.0
    shifts[name] = round(float(delta.abs().max()) / spread, 5)
    return out_q - delta.reshape(shape)
