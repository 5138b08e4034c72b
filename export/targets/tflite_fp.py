"""TFLite FP32/FP16 via litert-torch (PyTorch -> LiteRT, no TensorFlow in the path).

``litert_torch.to_channel_last_io`` makes the input NHWC, so the converter's layout pass removes
the NCHW transposes and the graph runs as plain NHWC convolutions on XNNPACK. FP16 stores the
conv/FC weights as float16 with DEQUANTIZE ops (ai-edge-quantizer's float casting), the usual
TFLite "float16 quantisation": half the size, float32 arithmetic.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np

from gfn_edge.errors import MissingDependencyError
from gfn_edge.manifest import METADATA_KEY, TensorSpec

from ..context import ExportContext
from ..target_info import Artifact, TargetInfo
from ..tflite_flatbuffer import pack, unpack
from ..tools import versions

log = logging.getLogger(__name__)


def _litert_torch():
    try:
        import litert_torch
    except ImportError as exc:
        raise MissingDependencyError("litert-torch", "export", "TFLite export") from exc
    return litert_torch


def fp32_tflite(ctx: ExportContext) -> Path:
    """FP32 .tflite of the reference's PyTorch module, NHWC input (made once per run)."""
    path = ctx.work_dir / "fp32.tflite"
    if path.is_file():
        return path
    import torch

    lt = _litert_torch()
    model = ctx.ref.torch_model.float().cpu().eval()
    sample = torch.from_numpy(ctx.sample_input(1))
    nhwc = lt.to_channel_last_io(model, args=[0]).eval()
    with torch.no_grad():
        edge = lt.convert(nhwc, (sample,))
    edge.export(str(path))
    return path


def _output_order(names: list[str], count: int) -> list[int]:
    """Index of each canonical output among the interpreter's outputs (litert names them output_<i>)."""
    order = []
    for i in range(count):
        hit = [j for j, n in enumerate(names) if re.search(rf"output_{i}(\D|$)", n)]
        order.append(hit[0] if hit else i)
    return order


def tensor_specs(path: Path, canonical: list[str]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    ind = it.get_input_details()[0]
    outs = it.get_output_details()
    order = _output_order([o["name"] for o in outs], len(canonical))

    def quant(d):
        scale, zp = d.get("quantization", (0.0, 0))
        return {"scale": float(scale), "zero_point": int(zp)} if scale else None

    def dtype(d):
        return np.dtype(d["dtype"]).name

    inputs = [TensorSpec("input", ind["name"], [int(v) for v in ind["shape"]], dtype(ind), layout="NHWC", quantization=quant(ind))]
    outputs = [
        TensorSpec(name, outs[j]["name"], [int(v) for v in outs[j]["shape"]], dtype(outs[j]), quantization=quant(outs[j])) for name, j in zip(canonical, order)
    ]
    return inputs, outputs


def embed_metadata(path: Path, text: str) -> None:
    """Add (or replace) a metadata entry holding ``text`` in the .tflite flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    data = path.read_bytes()
    model = unpack(data)
    model.metadata = [m for m in (model.metadata or []) if (m.name.decode() if isinstance(m.name, bytes) else m.name) != METADATA_KEY]
    buf = schema.BufferT()
    buf.data = np.frombuffer(text.encode(), dtype=np.uint8)
    model.buffers.append(buf)
    meta = schema.MetadataT()
    meta.name = METADATA_KEY
    meta.buffer = len(model.buffers) - 1
    model.metadata.append(meta)
    path.write_bytes(pack(model, len(data) + len(text)))


def to_fp16(src: Path, dst: Path) -> None:
    from ai_edge_quantizer import qtyping, quantizer

    q = quantizer.Quantizer(str(src))
    q.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16, algorithm_key="float_casting")
    q.quantize().export_model(str(dst), overwrite=True)


def finish(ctx: ExportContext, info: TargetInfo, model_path: Path, notes: dict, tools: tuple[str, ...] = ()) -> Artifact:
    canonical = [o.name for o in ctx.spec.outputs]
    inputs, outputs = tensor_specs(model_path, canonical)
    embed_metadata(model_path, ctx.embedded_manifest(info, inputs, outputs))
    return Artifact(
        files={"model": model_path.name},
        inputs=inputs,
        outputs=outputs,
        tools=versions("torch", "litert-torch", "ai-edge-litert", *tools),
        notes=notes,
    )


def export(ctx: ExportContext, info: TargetInfo) -> Artifact:
    src = fp32_tflite(ctx)
    dst = ctx.bundle_dir / "model.tflite"
    if info.precision == "fp16":
        to_fp16(src, dst)
        notes = {"route": "litert-torch -> ai-edge-quantizer float casting", "weights": "fp16", "compute": "fp32"}
        return finish(ctx, info, dst, notes, ("ai-edge-quantizer",))
    shutil.copyfile(src, dst)
    return finish(ctx, info, dst, {"route": "litert-torch (PyTorch -> LiteRT)", "weights": "fp32"})
