"""The INT8 debugger for OpenVINO: NNCF's FakeQuantize outputs against the FP32 IR's tensors.

NNCF marks each quantised activation with a FakeQuantize whose input is the FP32 tensor (named
as in the ONNX graph both IRs come from). The INT8 IR gets the FakeQuantize outputs added as
model outputs, the FP32 twin (the same prepared ONNX converted without quantisation) gets the
tensors of the same names; both run on the CPU plugin, one face at a time (the INT8 IR has batch
1). The FakeQuantize's input range and levels give the table's scale and zero point.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from gfn_edge.errors import GfnEdgeError

from .report import ErrorStats, TensorPoint

log = logging.getLogger(__name__)


def _constant(node: Any) -> np.ndarray | None:
    return node.get_data() if node.get_type_name() == "Constant" else None


def _tensor_name(output: Any) -> str | None:
    names = sorted(output.get_names())
    return names[0] if names else None


def openvino_points(int8_model: Any, fp32_names: set[str]) -> tuple[list[TensorPoint], list[Any]]:
    """Activation FakeQuantize nodes of ``int8_model`` whose input tensor the FP32 IR also has, in
    topological order, with the FakeQuantize output to read for each."""
    points, reads, names = [], [], {}
    ops = list(int8_model.get_ordered_ops())
    for op in ops:
        if op.get_type_name() != "FakeQuantize":
            continue
        src = op.input_value(0)
        name = _tensor_name(src)
        bounds = [_constant(op.input_value(i).get_node()) for i in (1, 2)]
        if name is None or name not in fp32_names or any(b is None for b in bounds) or _constant(src.get_node()) is not None:
            continue  # weights (constant inputs) and tensors the FP32 IR does not name
        lo, hi = (float(np.asarray(b).reshape(-1)[0]) for b in bounds)
        if np.asarray(bounds[0]).size != 1:
            continue  # per-channel activation ranges are not NNCF's default; not compared
        levels = int(op.get_attributes()["levels"])
        scale = (hi - lo) / (levels - 1)
        names[src.get_node().get_friendly_name()] = name
        points.append((op, name, src, scale, int(round(-lo / scale)) if scale > 0 else 0, levels))
    rows = []
    for op, name, src, scale, zp, levels in points:
        rows.append(
            TensorPoint(name, src.get_node().get_type_name(), src.get_node().get_friendly_name(), _upstream(src.get_node(), names), scale, zp, 0, levels - 1)
        )
        reads.append(op.output(0))
    return rows, reads


def _upstream(node: Any, compared: dict[str, str]) -> tuple[str, ...]:
    """Nearest compared tensors ``node`` is computed from (through FakeQuantize and float ops)."""
    found, seen, stack = set(), set(), [v.get_node() for v in node.input_values()]
    while stack:
        n = stack.pop()
        key = n.get_friendly_name()
        if key in seen:
            continue
        seen.add(key)
        if key in compared:
            found.add(compared[key])
        elif n.get_type_name() != "Constant":
            stack.extend(v.get_node() for v in n.input_values())
    return tuple(sorted(found))


def debug_openvino_models(fp32_onnx: Path, int8_xml: Path, inputs: np.ndarray) -> list[dict[str, Any]]:
    """Per-tensor error rows of the NNCF INT8 IR against the FP32 conversion of ``fp32_onnx`` on
    ``inputs`` (NCHW, normalised); the model outputs close the table."""
    import openvino as ov

    core = ov.Core()
    fp = ov.convert_model(str(fp32_onnx))
    q = core.read_model(str(int8_xml))
    fp_outputs = {name: out for op in fp.get_ordered_ops() for out in op.outputs() for name in out.get_names()}
    points, reads = openvino_points(q, set(fp_outputs))
    if not points:
        raise GfnEdgeError(f"{int8_xml}: no FakeQuantize on a tensor the FP32 model names: nothing to compare")
    final = [
        (TensorPoint(f"output:{i}", "Output", _tensor_name(o) or f"output:{i}", (points[-1].name,)), o, fo)
        for i, (o, fo) in enumerate(zip(q.outputs, fp.outputs))
    ]
    fp_reads = [fp_outputs[p.name] for p in points]
    fp.add_outputs(fp_reads)
    q.add_outputs(reads)
    # f32 for the layers outside the integer kernels, as the verification and the device run pin it:
    # unpinned, OpenVINO computes them in bf16 on CPUs that have it (AVX-512 BF16, AMX) and the
    # table stopped matching the verified cosine there (0.98616 against 0.98597)
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}
    fp_c = core.compile_model(fp, "CPU", f32)
    q_c = core.compile_model(q, "CPU", f32)
    deployed = core.compile_model(core.read_model(str(int8_xml)), "CPU", f32)
    n_out = len(final)
    stats = ErrorStats(points + [p for p, _, _ in final])
    for x in inputs:
        x = np.ascontiguousarray(x[None], dtype=np.float32)
        fp_res = list(fp_c(x).values())
        q_res = list(q_c(x).values())
        dep_res = list(deployed(x).values())
        for k, p in enumerate(points):
            stats.add(p, fp_res[n_out + k], q_res[n_out + k])
        for k, (p, _, _) in enumerate(final):
            stats.add(p, fp_res[k][: len(x)], dep_res[k])
    return stats.rows()


def debug_openvino(ctx: Any, bundle: Path, inputs: np.ndarray) -> tuple[list[dict[str, Any]], str]:
    """:func:`debug_openvino_models` for one export's chosen artifact (inputs NHWC as verified)."""
    from ..int8.attempt import chosen_attempt
    from ..targets.onnx_int8 import prepared_onnx
    from ..targets.openvino_int8 import WEIGHT_QMAX

    fp32 = prepared_onnx(ctx, chosen_attempt(ctx, "openvino-int8"), WEIGHT_QMAX)
    rows = debug_openvino_models(fp32, bundle / "model.xml", np.ascontiguousarray(inputs.transpose(0, 3, 1, 2)))
    return rows, "the FP32 ONNX the chosen attempt quantised, converted to OpenVINO (the model NNCF quantised)"


__all__ = ["debug_openvino", "debug_openvino_models", "openvino_points"]
