"""OpenVINO INT8: onnx-int8's QDQ graph of the INT8-prepared model compiled by OpenVINO, or NNCF's own.

NNCF's quantisation, where the search falls back to it:

- preset MIXED (symmetric weights, asymmetric activations): a probe here saw PERFORMANCE
  (symmetric activations) collapse a recogniser to cosine 0.06 under ARM emulation while MIXED
  held, and PReLU/LeakyReLU outputs are asymmetric anyway;
- the input is fixed to a static batch before quantising (:data:`STATISTICS_BATCH` samples per
  statistics inference, then batch 1 for the artifact): with a dynamic batch NNCF placed its
  quantisers around shape sub-graphs and the GhostFaceNets student fell from cosine 0.99 to 0.78;
- calibration methods map to NNCF range estimators: minmax (global min/max), percentile
  (quantile 1e-4), entropy (histogram, quantisation-error minimising);
- layer groups kept in float go to NNCF's ignored scope by node name.

The calibration methods, bias correction and layer groups in float are tried on onnxruntime's QDQ
graph of the same model (the onnx-int8 target's quantiser, ranges and full 8-bit weight grid,
compiled by OpenVINO: one quantisation on both runtimes, the one our int8 simulation and remedies
are measured against); NNCF's own plain attempts come after them, before the learned steps
(:data:`FALLBACK_ROUTES`). Measured on the w0.5-e16 student: NNCF with 2 to 10 groups in its
ignored scope stayed at a worst cosine of 0.962-0.963, where the same groups in the simulation give
0.995. Why NNCF is the fallback and not the first try (2026-12-06, this VNNI Xeon): where its plain
min/max passed on its own (the w0.5-e6 and w1.3-e1 students exported to openvino-int8 alone), its
IR ran slower than FP32 (w1.3-e1 1.66 against 0.84 ms) and further from the reference than the QDQ
graph with onnx-int8's remedies, which the same students got when exported beside onnx-int8.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from gfn_edge.errors import MissingDependencyError

from ..context import ExportContext
from ..int8.attempt import Attempt
from ..int8.openvino_half_weights import store_float_weights_fp16
from ..int8.prepare import names_in_groups, onnx_name_patterns
from ..int8.quantiser import Quantiser
from ..int8.search import run_search
from ..int8_options import CALIBRATION_METHODS
from ..target_info import Artifact, TargetInfo
from .onnx_int8 import WEIGHT_QMAX as ONNX_WEIGHT_QMAX
from .onnx_int8 import prepared_onnx, quantize_qdq
from .openvino_ir import save_ir

log = logging.getLogger(__name__)


# Full 8-bit weights, NNCF's overflow fix off. Without VNNI (AVX2 x86, like ONNX Runtime: see
# onnx_int8's docstring) the CPU plugin's u8s8 multiplies saturate their int16 pair sums on such
# weights, so the runtime computes these bundles on integer kernels only where the CPU has VNNI and
# simulated in f32 elsewhere (gfn_edge.runtimes.openvino_backend, from INT8_WEIGHT_BITS in the
# manifest). Until 2026-12-06 the fix was 7-bit weights on every layer, one bit of precision lost
# on every CPU for a flaw of some: RetinaFace-mnet025 (42 groups in float, bias corrected) landmark
# NME 0.00878 -> 0.00604 on the scenes, largest box error 7.83 -> 1.99 px, landmark error on the
# pairs' faces 4.5x smaller (onnx-int8's); w0.5-e16 0.9971 / 0.9905 -> 0.9974 / 0.9936.
OVERFLOW_FIX = "disable"
WEIGHT_QMAX = ONNX_WEIGHT_QMAX
INT8_WEIGHT_BITS = 8
"""The remedies' grid: onnxruntime's QDQ quantiser on the full 8 bits, as onnx-int8."""

PLAIN_ROUTES = ("qdq",)
"""Whose plain attempts come first: the QDQ graph's (module docstring)."""
FALLBACK_ROUTES = ("",)
"""NNCF's plain attempts: after the QDQ graph's float groups, before the learned steps."""


def _nncf():
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise MissingDependencyError("nncf and openvino", "export", "OpenVINO INT8 quantisation") from exc
    return nncf, ov


def _range_params(method: str, bias_correction: bool = True):
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import AggregatorType, RangeEstimatorParameters, StatisticsCollectorParameters, StatisticsType

    if method == "minmax":
        est = RangeEstimatorParameters(
            min=StatisticsCollectorParameters(StatisticsType.MIN, AggregatorType.MIN),
            max=StatisticsCollectorParameters(StatisticsType.MAX, AggregatorType.MAX),
        )
    elif method == "percentile":
        est = RangeEstimatorParameters(
            min=StatisticsCollectorParameters(StatisticsType.QUANTILE, AggregatorType.MEAN, quantile_outlier_prob=1e-4),
            max=StatisticsCollectorParameters(StatisticsType.QUANTILE, AggregatorType.MEAN, quantile_outlier_prob=1e-4),
        )
    elif method == "entropy":
        est = RangeEstimatorParameters(
            min=StatisticsCollectorParameters(StatisticsType.RAW, AggregatorType.HISTOGRAM),
            max=StatisticsCollectorParameters(StatisticsType.RAW, AggregatorType.HISTOGRAM),
        )
    else:
        raise ValueError(f"unknown calibration method {method!r}")
    return AdvancedQuantizationParameters(
        activations_range_estimator_params=est, disable_bias_correction=not bias_correction, overflow_fix=OverflowFix(OVERFLOW_FIX)
    )


def _fp32_ir_files(ctx: ExportContext, folder: Path) -> Artifact:
    from ..target_info import TARGETS
    from .onnx_fp32 import fp32_onnx

    _, ov = _nncf()
    sibling_ctx = ExportContext(ctx.ref, folder, ctx.work_dir, ctx.metadata)
    return save_ir(ov.convert_model(str(fp32_onnx(ctx))), sibling_ctx, TARGETS["openvino"], compress_to_fp16=False)


# Statistics are collected this many samples per inference (a static batch; the artifact is batch
# 1): NNCF's per-sample Python bookkeeping, not inference, is most of its time. Measured on the
# w0.5 student, 224 samples: min/max 14.3 -> 7.7 s, quantile 28.6 -> 11.2 s, outputs the same
# (cosine 0.9999999 between the two artifacts).
STATISTICS_BATCH = 16
# ... and at most this many input values per batch (detector pictures are 640x640)
STATISTICS_BATCH_VALUES = 1 << 24


def statistics_batch(samples: int, values_per_sample: int) -> int:
    """The largest batch that divides ``samples`` (a static batch has no partial last one) within
    :data:`STATISTICS_BATCH` and :data:`STATISTICS_BATCH_VALUES`."""
    cap = max(1, min(STATISTICS_BATCH, STATISTICS_BATCH_VALUES // max(values_per_sample, 1), samples))
    return next(b for b in range(cap, 0, -1) if samples % b == 0)


def _runnable_batch(ov, batch_model, calib: np.ndarray, batch: int) -> int:
    """``batch`` when the model runs at that static batch, else 1: a graph may carry its batch in
    a constant (RetinaFace's FPN resizes to explicit sizes, and OpenVINO's CPU plugin refuses to
    resize the batch dimension)."""
    if batch == 1:
        return 1
    try:
        ov.Core().compile_model(batch_model(size=batch), "CPU")(calib[:batch])
    except RuntimeError as exc:
        log.info("NNCF statistics one picture at a time: the model does not run at batch %d (%s)", batch, str(exc).strip().splitlines()[-1])
        return 1
    return batch


def export(ctx: ExportContext, info: TargetInfo) -> Artifact:
    nncf, ov = _nncf()
    calib = np.ascontiguousarray(ctx.calibration.inputs().transpose(0, 3, 1, 2), dtype=np.float32)

    def batch_model(attempt: Attempt | None = None, onnx_path: Path | None = None, size: int = 1):
        # a fresh model per quantise call: NNCF may modify the one it is given. A static batch:
        # with a dynamic one NNCF placed quantisers around shape sub-graphs (module docstring)
        model = ov.convert_model(str(onnx_path or prepared_onnx(ctx, attempt, WEIGHT_QMAX)))
        shape = list(model.inputs[0].get_partial_shape())
        model.reshape([size] + [int(d.get_length()) for d in shape[1:]])
        return model

    # node names do not depend on the attempt: read them once
    names = [op.get_friendly_name() for op in batch_model().get_ordered_ops()]
    batch = _runnable_batch(ov, batch_model, calib, statistics_batch(len(calib), int(np.prod(calib.shape[1:]))))
    dataset = nncf.Dataset([calib[i : i + batch] for i in range(0, len(calib), batch)])

    def build(attempt: Attempt, folder: Path) -> Artifact:
        if attempt.route == "qdq":
            return build_from_qdq(attempt, folder)
        groups = list(attempt.float_groups)
        ignored = names_in_groups(names, groups, onnx_name_patterns(groups), "OpenVINO node")

        def quantize(bias_correction: bool):
            params = _range_params(attempt.method, bias_correction)
            params.batchwise_statistics = batch > 1
            quantized = nncf.quantize(
                batch_model(attempt, size=batch),
                dataset,
                preset=nncf.QuantizationPreset.MIXED,
                subset_size=len(calib) // batch,
                ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
                advanced_parameters=params,
            )
            shape = list(quantized.inputs[0].get_partial_shape())
            quantized.reshape([1] + [int(d.get_length()) for d in shape[1:]])
            return quantized

        if attempt.bias_corrected:
            # the model's biases are corrected for int8 already (ours, against the original FP32
            # model); NNCF's correction would pull them back toward the corrected FP32 model
            return _saved(quantize(False), attempt, len(ignored), folder, "gfn-edge's bias correction (NNCF's off)")
        bias_note = "fast bias correction"
        try:
            quantized = quantize(True)
        except ValueError as exc:
            # NNCF's fast bias correction cannot write a per-channel correction into a bias
            # constant stored broadcast as (1,1,1,1) (seen on GhostFaceNetV1-1.3): quantise without it
            log.warning("NNCF bias correction failed (%s); quantising without it", exc)
            quantized = quantize(False)
            bias_note = f"bias correction off (NNCF failed: {exc})"
        return _saved(quantized, attempt, len(ignored), folder, bias_note)

    def build_from_qdq(attempt: Attempt, folder: Path) -> Artifact:
        qdq = folder / "qdq.onnx"
        in_float = quantize_qdq(ctx, attempt, qdq, WEIGHT_QMAX, unsigned_weights=False)
        model = batch_model(onnx_path=qdq)
        artifact = _saved(model, attempt, in_float, folder, "gfn-edge's bias correction" if attempt.bias_corrected else "none")
        qdq.unlink()
        return artifact

    def _saved(quantized, attempt: Attempt, in_float: int, folder: Path, bias_note: str) -> Artifact:
        target_ctx = ExportContext(ctx.ref, folder, ctx.work_dir, ctx.metadata)
        qdq = attempt.route == "qdq"
        halved = store_float_weights_fp16(quantized) if attempt.half_weights else 0
        return save_ir(
            quantized,
            target_ctx,
            info,
            compress_to_fp16=False,
            extra={
                "route": "INT8-prepared PyTorch -> ONNX -> onnxruntime quantize_static (QDQ) -> OpenVINO (batch 1)"
                if qdq
                else f"INT8-prepared PyTorch -> ONNX -> OpenVINO -> NNCF (preset MIXED, statistics in batches of {batch}, artifact batch 1)",
                "weights": "int8 per channel (symmetric), full 8-bit grid: integer kernels on x86 with VNNI, "
                "simulated in f32 elsewhere (u8s8 saturation without VNNI; ARM)"
                + ("; the ops in float: int8 per channel, weight-only (dequantised, computed in float)" if qdq and in_float and attempt.int8_weights else "")
                + ("; their smaller weights float16 (converted to f32 when compiled)" if attempt.int8_weights and halved else ""),
                "activations": "uint8 per tensor (asymmetric)" + ("; the outputs handed over in float" if qdq else ""),
                "int8_weight_bits": INT8_WEIGHT_BITS,
                "ops_in_float": in_float,
                **({"weights_stored_fp16": halved} if attempt.half_weights else {}),
                "bias_correction": bias_note,
                "distilled": attempt.distilled,
                **({"learned_rounding": True} if attempt.rounded else {}),
                "bias_corrected": attempt.bias_corrected,
            },
        )

    # NNCF corrects biases itself: its attempts do not get ours. Measured on the w0.5 student
    # (entropy ranges): NNCF's correction 0.9870 / 0.9561, ours with NNCF's off 0.9837 / 0.9522.
    # build() still honours an NNCF attempt that asks for ours (NNCF's then off). The remedies go
    # through the QDQ graph (module docstring), which does get ours.
    return run_search(
        ctx,
        info,
        Quantiser(
            build,
            tuple(CALIBRATION_METHODS),
            lambda folder: _fp32_ir_files(ctx, folder),
            weight_qmax=WEIGHT_QMAX,
            remedy_route="qdq",
            plain_routes=PLAIN_ROUTES,
            fallback_routes=FALLBACK_ROUTES,
            int8_float_group_weights=True,  # the remedies' QDQ graph can store them as int8
            half_float_weights=True,
        ),
    )
