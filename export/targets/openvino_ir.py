"""OpenVINO IR (FP32, or FP16-compressed weights) converted from the FP32 ONNX."""

from __future__ import annotations

import re
from pathlib import Path

from gfn_edge.errors import MissingDependencyError
from gfn_edge.manifest import RT_INFO_KEY, TensorSpec

from ..context import ExportContext
from ..target_info import Artifact, TargetInfo
from ..tools import versions
from .onnx_fp32 import fp32_onnx
from .openvino_constants import slim_constants


def _ov():
    try:
        import openvino as ov
    except ImportError as exc:
        raise MissingDependencyError("openvino", "export", "OpenVINO export") from exc
    return ov


def _shape(partial) -> list[int | str]:
    return [int(d.get_length()) if d.is_static else "?" for d in partial]


def ir_tensor_specs(model) -> tuple[list[TensorSpec], list[TensorSpec]]:
    ins = [TensorSpec("input", p.get_any_name(), _shape(p.get_partial_shape()), "float32", layout="NCHW") for p in model.inputs]
    outs = [TensorSpec(p.get_any_name(), p.get_any_name(), _shape(p.get_partial_shape()), "float32") for p in model.outputs]
    return ins, outs


_BETWEEN_TAGS = re.compile(rb">\s+<")


def compact_xml(xml: Path) -> int:
    """Drop the indentation OpenVINO writes between the IR's tags (a tab per level, a line per
    element); returns the bytes saved. Why: 18 % of w0.5-e6's INT8 .xml (499 -> 411 KB), which
    outweighs its weights 4 to 1; the parser needs none of it. Nothing else can match: the IR has
    text only in ``<dim>`` elements, and attribute values (the embedded manifest) escape ``<``."""
    data = xml.read_bytes()
    compact = _BETWEEN_TAGS.sub(b"><", data)
    xml.write_bytes(compact)
    return len(data) - len(compact)


def save_ir(model, ctx: ExportContext, info: TargetInfo, compress_to_fp16: bool, extra: dict | None = None) -> Artifact:
    ov = _ov()
    inputs, outputs = ir_tensor_specs(model)
    model.set_rt_info(
        ctx.embedded_manifest(info, inputs, outputs),
        list(RT_INFO_KEY),
    )
    xml = ctx.bundle_dir / "model.xml"
    slim_constants(model)
    ov.save_model(model, str(xml), compress_to_fp16=compress_to_fp16)
    compact_xml(xml)
    return Artifact(
        files={"model": xml.name, "weights": xml.with_suffix(".bin").name},
        inputs=inputs,
        outputs=outputs,
        tools=versions("torch", "onnx", "openvino", "nncf"),
        notes=extra or {},
    )


def export(ctx: ExportContext, info: TargetInfo) -> Artifact:
    ov = _ov()
    model = ov.convert_model(str(fp32_onnx(ctx)))
    fp16 = info.precision == "fp16"
    return save_ir(model, ctx, info, compress_to_fp16=fp16, extra={"route": "ONNX -> openvino.convert_model", "weights": "fp16" if fp16 else "fp32"})
