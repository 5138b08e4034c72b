"""OpenVINO INT8: the onnx-int8 target's QDQ model, converted by OpenVINO (one quantisation, two runtimes).

Each attempt of the search is quantised once, by onnxruntime (``onnx_int8.quantize_qdq``: the same
ranges, integer weights and float groups as the onnx-int8 artifact of that attempt), and
``openvino.convert_model`` turns its QuantizeLinear/DequantizeLinear pairs into FakeQuantize
nodes; the CPU plugin runs those on its integer kernels on x86 and simulates them in f32 on ARM
(see gfn_edge.runtimes.openvino_backend). The artifact is still verified on OpenVINO itself.

Measured on the w0.5-e16 student (the same onnx-int8 QDQ, 64 calibration faces): embeddings from
OpenVINO against onnxruntime's, cosine mean 0.9975 (worst 0.9961); each against FP32 alike (mean
0.9962 / 0.9961). The earlier route, NNCF quantising the IR with its own ranges, failed that
student (cos_min 0.9639 where onnx-int8 passed with 0.9703) and took longer than both others.
The weights keep the 7-bit range (``reduce_range``): the x86 u8s8 kernels without VNNI saturate
their int16 pair sums otherwise, on OpenVINO as on onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

from gfn_edge.errors import MissingDependencyError

from ..context import ExportContext
from ..int8.search import Attempt, run_search
from ..target_info import Artifact, TargetInfo
from ..tools import versions
from .onnx_int8 import WEIGHT_QMAX, quantize_qdq
from .openvino_ir import save_ir


def _ov():
    try:
        import openvino as ov
    except ImportError as exc:
        raise MissingDependencyError("openvino", "export", "OpenVINO INT8 export") from exc
    return ov


def _fp32_ir_files(ctx: ExportContext, folder: Path) -> Artifact:
    from ..target_info import TARGETS
    from .onnx_fp32 import fp32_onnx

    sibling_ctx = ExportContext(ctx.ref, folder, ctx.work_dir, ctx.metadata)
    return save_ir(_ov().convert_model(str(fp32_onnx(ctx))), sibling_ctx, TARGETS["openvino"], compress_to_fp16=False)


def export(ctx: ExportContext, info: TargetInfo) -> Artifact:
    ov = _ov()

    def build(attempt: Attempt, folder: Path) -> Artifact:
        qdq = folder / "qdq.onnx"
        in_float = quantize_qdq(ctx, attempt, qdq)
        try:
            model = ov.convert_model(str(qdq))
        finally:
            qdq.unlink(missing_ok=True)
        artifact = save_ir(
            model,
            ExportContext(ctx.ref, folder, ctx.work_dir, ctx.metadata),
            info,
            compress_to_fp16=False,
            extra={
                "route": "INT8-prepared PyTorch -> ONNX -> onnxruntime quantize_static (QDQ) -> openvino.convert_model (FakeQuantize)",
                "weights": "int8 per channel (symmetric), 7-bit range (no u8s8 saturation on x86 without VNNI)",
                "activations": "uint8 per tensor (asymmetric)",
                "nodes_in_float": in_float,
                "distilled": attempt.distilled,
                "same_quantisation_as": "onnx-int8 (the same attempt's QDQ model)",
            },
        )
        artifact.tools = versions("torch", "onnx", "onnxruntime", "openvino")
        return artifact

    return run_search(ctx, info, build, ["minmax", "percentile", "entropy"], lambda folder: _fp32_ir_files(ctx, folder), weight_qmax=WEIGHT_QMAX)
