"""ONNX FP32: torch.onnx (TorchScript exporter, opset 17) then onnxsim.

The TorchScript exporter (``dynamo=False``) gives the most portable graph for these models;
recognisers get a dynamic batch axis, detectors are fixed at the requested input size (the
anchor count follows it).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from gfn_edge.errors import MissingDependencyError
from gfn_edge.manifest import METADATA_KEY, TensorSpec

from ..context import ExportContext
from ..onnx_prelu import decompose_prelu
from ..target_info import Artifact, TargetInfo
from ..tools import versions

log = logging.getLogger(__name__)

OPSET = 17


def _import_onnx():
    try:
        import onnx
        import onnxsim
    except ImportError as exc:
        raise MissingDependencyError("onnx and onnxsim", "export", "ONNX export") from exc
    return onnx, onnxsim


def export_onnx(model, ctx: ExportContext, path: Path) -> Path:
    """``model`` (a PyTorch module with the reference's inputs/outputs) as simplified ONNX at ``path``."""
    import torch

    onnx, onnxsim = _import_onnx()
    spec = ctx.spec
    dynamic_batch = spec.task != "detect"
    batch = 2 if dynamic_batch else 1
    sample = torch.from_numpy(ctx.sample_input(batch).transpose(0, 3, 1, 2).copy())
    model = model.float().cpu().eval()
    out_names = [o.name for o in spec.outputs]
    dynamic_axes = {"input": {0: "batch"}, **{n: {0: "batch"} for n in out_names}} if dynamic_batch else None
    raw = path.with_name(path.stem + ".raw.onnx")
    with torch.no_grad():
        torch.onnx.export(
            model,
            (sample,),
            str(raw),
            opset_version=OPSET,
            dynamo=False,
            input_names=["input"],
            output_names=out_names,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    proto = onnx.load(str(raw))
    simplified, ok = onnxsim.simplify(proto)
    if not ok:
        log.warning("onnxsim could not validate the simplified graph; keeping the unsimplified one")
        simplified = proto
    onnx.checker.check_model(simplified)
    onnx.save(simplified, str(path))
    raw.unlink(missing_ok=True)
    return path


def fp32_onnx(ctx: ExportContext) -> Path:
    """The simplified FP32 ONNX of the reference's PyTorch module (made once per export run)."""
    path = ctx.work_dir / "fp32.onnx"
    if path.is_file():
        return path
    return export_onnx(ctx.ref.torch_model, ctx, path)


def embed_metadata(path: Path, text: str) -> None:
    onnx, _ = _import_onnx()
    model = onnx.load(str(path))
    for prop in list(model.metadata_props):
        if prop.key == METADATA_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = text
    model.producer_name = "gfn-edge"
    onnx.save(model, str(path))


def _dims(value_info) -> list[int | str]:
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    return dims


_ELEM = {1: "float32", 3: "int8", 2: "uint8", 10: "float16", 7: "int64", 6: "int32"}


def tensor_specs(path: Path, layout: str = "NCHW") -> tuple[list[TensorSpec], list[TensorSpec]]:
    onnx, _ = _import_onnx()
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    ins = [
        TensorSpec(name="input", tensor=v.name, shape=_dims(v), dtype=_ELEM.get(v.type.tensor_type.elem_type, "float32"), layout=layout)
        for v in model.graph.input
        if v.name not in inits
    ]
    outs = [TensorSpec(name=v.name, tensor=v.name, shape=_dims(v), dtype=_ELEM.get(v.type.tensor_type.elem_type, "float32")) for v in model.graph.output]
    return ins, outs


def export(ctx: ExportContext, info: TargetInfo) -> Artifact:
    src = fp32_onnx(ctx)
    dst = ctx.bundle_dir / "model.onnx"
    shutil.copyfile(src, dst)
    rewritten = decompose_prelu(dst)  # the file onnxruntime runs (fp32_onnx stays as OpenVINO converts it)
    inputs, outputs = tensor_specs(dst)
    embed_metadata(dst, ctx.embedded_manifest(info, inputs, outputs))
    return Artifact(
        files={"model": dst.name},
        inputs=inputs,
        outputs=outputs,
        tools=versions("torch", "onnx", "onnxsim"),
        notes={
            "opset": OPSET,
            "exporter": "torch.onnx (TorchScript, dynamo=False) + onnxsim",
            **({"prelu_as_relu_min_mul": rewritten} if rewritten else {}),
        },
    )
