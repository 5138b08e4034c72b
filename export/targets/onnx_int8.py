"""ONNX INT8: ONNX Runtime static quantisation (QDQ, per-channel int8 weights, uint8 activations).

The graph quantised is the INT8-prepared one (BatchNorm folded, channels equalised), exported
the same way as the FP32 target; calibration reads the calibration set, never verification data.

Weights use the full 8-bit grid (levels -127..127 per channel, the grid of tflite-int8 and of the
int8 simulation behind the remedies), stored as uint8 with zero point 128 wherever they feed an
integer kernel (:mod:`..int8.unsigned_weights`). On x86 without VNNI (AVX2, the CPUs of many edge
boxes and of this project's CI) onnxruntime's u8s8 kernels multiply with VPMADDUBSW, whose int16
pair sums saturate once uint8 activations and int8 weights both span their ranges, which channel
equalisation makes them do (the INT8 debugger measured the GhostFaceNets w0.5 stem convolution at
12.6 dB SQNR where exact QDQ arithmetic gives 33 dB). Its u8u8 kernels widen both operands first
and are exact on every CPU; depthwise weights stay int8 (that kernel sums in int32). Where the
u8s8 kernels are exact (x86 with VNNI) the device loads the weights back on int8, the faster kernels
there (``gfn_edge.runtimes.onnx_signed_weights``); the file is the same everywhere. Until
2026-12-04 the way out was 7-bit weights (``reduce_range``, :data:`SEVEN_BIT_QMAX`), openvino-int8's
grid until 2026-12-06 (its runtime now runs full 8-bit IR on integer kernels only where VNNI makes
them exact, ``gfn_edge.runtimes.openvino_backend``).
"""

from __future__ import annotations

import logging
import shutil
from functools import partial
from pathlib import Path

import numpy as np

from gfn_edge.errors import MissingDependencyError

from ..context import ExportContext
from ..int8.attempt import Attempt
from ..int8.candidates import int8_model
from ..int8.float_outputs import drop_output_quantisers, onnx_output_chain
from ..int8.onnx_half_weights import store_float_weights_fp16
from ..int8.onnx_names import float_graph_names, shorten_added_names
from ..int8.onnx_weight_only import compress_float_weights
from ..int8.ort_calibration import CalibrationReader
from ..int8.ort_entropy import entropy_thresholds
from ..int8.prepare import names_in_groups, onnx_name_patterns
from ..int8.quantiser import Quantiser
from ..int8.search import run_search
from ..int8.unsigned_weights import store_weights_unsigned
from ..onnx_prelu import decompose_prelu
from ..target_info import Artifact, TargetInfo
from ..tools import versions
from .onnx_fp32 import OPSET, embed_metadata, export_onnx, fp32_onnx, tensor_specs

log = logging.getLogger(__name__)

WEIGHT_QMAX = 127
"""onnx-int8's weight grid: full 8 bits, exact in onnxruntime's u8u8 kernels (module docstring)."""
SEVEN_BIT_QMAX = 64
"""The 7-bit grid of ``reduce_range`` int8 (levels -64..64, scale max|w|/64: onnxruntime's, not
-63..63), for kernels that saturate on x86 without VNNI (openvino-int8's QDQ route until
2026-12-06); depthwise weights keep 127 there too (:mod:`..int8.weight_grid`)."""
_METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}
# Histogram settings per method. quantize_static cannot pass bin counts through, and with its
# default of 128 bins quantised to 128 the entropy threshold is the full range (= minmax).
_CALIB_OPTIONS = {
    "minmax": {},
    "percentile": {"num_bins": 2048, "percentile": 99.999, "symmetric": True},
    # 1024 bins: onnxruntime's threshold search is quadratic in the bins and pure Python; with 2048
    # it took 492 s of a 786 s export of the w0.5 student (228 samples), with 1024 about a quarter.
    # The search now runs as int8/ort_entropy.py's NumPy version (same thresholds, ~4x faster).
    "entropy": {"num_bins": 1024, "num_quantized_bins": 255},
}


def qdq_settings(q, model_path: Path | None = None, weight_qmax: int = WEIGHT_QMAX) -> dict:
    """quantize_static's settings for the weight grid ``weight_qmax`` (``q``: onnxruntime.quantization):
    QDQ, per-channel symmetric int8 weights, uint8 activations. On the 7-bit grid
    (:data:`SEVEN_BIT_QMAX`) with ``model_path``, that model's depthwise convolution weights keep the
    full 8 bits (:func:`depthwise_weights`). The full grid's int8 weights are stored as uint8
    afterwards (:func:`quantize_qdq`)."""
    if weight_qmax not in (WEIGHT_QMAX, SEVEN_BIT_QMAX):
        raise ValueError(f"no onnxruntime weight grid with {weight_qmax} levels a side (127 or 64)")
    seven_bit = weight_qmax == SEVEN_BIT_QMAX
    settings = {
        "quant_format": q.QuantFormat.QDQ,
        "per_channel": True,
        "activation_type": q.QuantType.QUInt8,
        "weight_type": q.QuantType.QInt8,
        "reduce_range": seven_bit,
    }
    full = depthwise_weights(model_path) if seven_bit and model_path is not None else []
    if full:
        settings["extra_options"] = {"TensorQuantOverrides": {name: [{"axis": 0, "reduce_range": False}] for name in full}}
    return settings


def depthwise_weights(model_path: Path) -> list[str]:
    """The weight initializers of the depthwise convolutions in an ONNX model: the layers whose
    weights keep the full 8-bit grid under ``reduce_range`` (:mod:`..int8.weight_grid`)."""
    import onnx

    from ..int8.weight_grid import is_depthwise

    graph = onnx.load(str(model_path), load_external_data=False).graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    names = []
    for node in graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in shapes:
            continue
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        if is_depthwise(shapes[node.input[1]], groups):
            names.append(node.input[1])
    return names


def _ort_quant():
    try:
        from onnxruntime import quantization
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "export", "ONNX INT8 quantisation") from exc
    return quantization


def prepared_onnx(ctx: ExportContext, attempt: Attempt | None = None, weight_qmax: int = WEIGHT_QMAX) -> Path:
    """The model ``attempt`` quantises (the INT8-prepared one by default, its bias-corrected or
    distillation-tuned copy for ``weight_qmax``) as ONNX, shape-inferred for the quantiser (made once per run)."""
    attempt = attempt or Attempt("minmax")
    stem = attempt.model_key(weight_qmax)
    path = ctx.work_dir / f"{stem}.onnx"
    if not path.is_file():
        raw = ctx.work_dir / f"{stem}-raw.onnx"
        export_onnx(int8_model(ctx, attempt, weight_qmax), ctx, raw)
        q = _ort_quant()
        q.shape_inference.quant_pre_process(str(raw), str(path), skip_symbolic_shape=True)
    return path


def _fp32_onnx_files(ctx: ExportContext, folder: Path) -> Artifact:
    shutil.copyfile(fp32_onnx(ctx), folder / "model.onnx")
    decompose_prelu(folder / "model.onnx")  # as the onnx target ships it: the INT8 one is timed against that
    ins, outs = tensor_specs(folder / "model.onnx")
    return Artifact({"model": "model.onnx"}, ins, outs)


def calibration_cache(ctx: ExportContext, src: Path, method: str) -> Path | None:
    """Tensor ranges for one calibration method, computed once and reused by every attempt.

    Calibration runs apart from quantisation (onnxruntime's calibrator, our bin settings) and is
    handed to quantize_static as a cache. Returns None on onnxruntime versions without
    ``calibration_cache_path``; quantize_static then calibrates with its own defaults.
    """
    import inspect

    q = _ort_quant()
    if "calibration_cache_path" not in inspect.signature(q.quantize_static).parameters:
        return None
    from onnxruntime.quantization import calibrate

    # the bias-corrected models of different float groups differ by small bias shifts: one
    # calibration (the first one's) serves them all, where a histogram method takes minutes each
    family = src.stem.rsplit("-", 1)[0] if src.stem.startswith("int8-biascorrected") else src.stem
    path = ctx.work_dir / f"ort-ranges-{family}-{method}.json"
    if not path.is_file():
        augmented = ctx.work_dir / f"ort-augmented-{src.stem}-{method}.onnx"
        calibrator = calibrate.create_calibrator(
            src,
            None,
            augmented_model_path=str(augmented),
            calibrate_method=getattr(q.CalibrationMethod, _METHODS[method]),
            extra_options=_CALIB_OPTIONS[method],
        )
        calibrator.collect_data(CalibrationReader(ctx.calibration.inputs(), "input"))
        if method == "entropy":  # onnxruntime's thresholds, computed in NumPy (minutes -> seconds)
            histograms = calibrator.collector.histogram_dict
            data = calibrate.TensorsData(q.CalibrationMethod.Entropy, entropy_thresholds(histograms, _CALIB_OPTIONS["entropy"]["num_quantized_bins"]))
        else:
            data = calibrator.compute_data()
        _widen_small_tensors(data, src)
        calibrate.save_tensors_data(data, path)
        del calibrator
        augmented.unlink(missing_ok=True)
    return path


def _widen_small_tensors(data, model_path: Path) -> None:
    """The ranges of tensors with few positions per channel widened in place (:mod:`..int8.headroom`),
    as the int8 simulation the remedies are chosen on widens them."""
    import onnx

    from ..flops import static_shapes
    from ..int8 import headroom

    shapes = static_shapes(onnx.load(str(model_path)))
    for name in list(data.keys()):
        shape = shapes.get(name)
        f = headroom.factor(headroom.positions(shape) if shape else None)
        if f != 1.0:
            entry = data[name]
            entry.lowest, entry.highest = (np.asarray(v) * np.asarray(f, dtype=np.asarray(v).dtype) for v in (entry.lowest, entry.highest))


def quantize_qdq(ctx: ExportContext, attempt: Attempt, dst: Path, weight_qmax: int = WEIGHT_QMAX, unsigned_weights: bool = True) -> int:
    """onnxruntime's QDQ quantisation of the model ``attempt`` quantises, on the weight grid
    ``weight_qmax``, written to ``dst``; returns how many nodes stayed in float (their weights stored
    as int8 where ``attempt.int8_weights``). Full 8-bit weights are stored as uint8 for onnxruntime's
    u8u8 kernels unless ``unsigned_weights`` is False.

    Also the OpenVINO target's remedy route (:mod:`.openvino_int8`): the same quantiser, ranges and
    grid, its weights left int8 (OpenVINO's kernels take them as they are), compiled by OpenVINO.
    """
    import onnx

    q = _ort_quant()
    src = prepared_onnx(ctx, attempt, weight_qmax)
    names_key = "onnx-int8-node-names"
    if names_key not in ctx.shared:  # node names, and which nodes hand the outputs over, do not depend on the attempt
        graph = onnx.load(str(prepared_onnx(ctx)), load_external_data=False).graph
        ctx.shared[names_key] = ([n.name for n in graph.node], onnx_output_chain(graph))
    names, handing_over = ctx.shared[names_key]
    groups = list(attempt.float_groups)
    exclude = names_in_groups(names, groups, onnx_name_patterns(groups), "ONNX node")
    # the outputs are handed over in float (int8/float_outputs.py), as the int8 simulation has them
    outputs = [n for n in handing_over if n not in exclude]
    cache = calibration_cache(ctx, src, attempt.method)
    q.quantize_static(
        str(src),
        str(dst),
        None if cache else CalibrationReader(ctx.calibration.inputs(), "input"),
        **qdq_settings(q, src, weight_qmax),
        calibrate_method=getattr(q.CalibrationMethod, _METHODS[attempt.method]),
        nodes_to_exclude=exclude + outputs,
        **({"calibration_cache_path": str(cache)} if cache else {}),
    )
    model = onnx.load(str(dst))
    if drop_output_quantisers(model):  # the output layers' results handed over unrequantised (int8/float_outputs.py)
        onnx.save(model, str(dst))
    if weight_qmax == WEIGHT_QMAX and unsigned_weights:  # full 8 bits: the u8u8 kernels, exact without VNNI too
        store_weights_unsigned(dst)
    if exclude and attempt.int8_weights:  # the float layers' weights stored as int8: see int8/onnx_weight_only.py
        compress_float_weights(dst)
    # last: the quantiser's long names made short, the float graph's kept (int8/onnx_names.py)
    shorten_added_names(dst, float_graph_names(onnx.load(str(src), load_external_data=False).graph))
    return len(exclude)


def export(ctx: ExportContext, info: TargetInfo) -> Artifact:
    def build(attempt: Attempt, folder: Path) -> Artifact:
        dst = folder / "model.onnx"
        in_float = quantize_qdq(ctx, attempt, dst)
        halved = store_float_weights_fp16(dst) if attempt.half_weights else 0
        rewritten = decompose_prelu(dst)  # onnxruntime's file only: OpenVINO's route converts quantize_qdq's graph
        inputs, outputs = tensor_specs(dst)
        embed_metadata(dst, ctx.embedded_manifest(info, inputs, outputs))
        return Artifact(
            files={"model": dst.name},
            inputs=inputs,
            outputs=outputs,
            tools=versions("torch", "onnx", "onnxsim", "onnxruntime"),
            notes={
                "route": "INT8-prepared PyTorch -> ONNX -> onnxruntime quantize_static (QDQ)",
                "opset": OPSET,
                "activations": "uint8 per tensor; the output layers' results handed over in float",
                "weights": "int8 levels per channel (full 8-bit grid), stored as uint8 with zero point 128 for onnxruntime's "
                "u8u8 kernels (no u8s8 saturation on x86 without VNNI); depthwise int8",
                "nodes_in_float": in_float,
                **(
                    {
                        "weights_of_nodes_in_float": "int8 per channel, weight-only (dequantised, computed in float)"
                        + ("; the smaller ones float16 (cast to FP32 when the model loads)" if halved else "")
                        if attempt.int8_weights
                        else "float16 (cast to FP32 when the model loads)"
                        if halved
                        else "FP32"
                    }
                    if in_float
                    else {}
                ),
                **({"weights_stored_fp16": halved} if attempt.half_weights else {}),
                **({"prelu_as_relu_min_mul": rewritten} if rewritten else {}),
                "distilled": attempt.distilled,
                **({"learned_rounding": True} if attempt.rounded else {}),
                "bias_corrected": attempt.bias_corrected,
            },
        )

    return run_search(
        ctx,
        info,
        Quantiser(
            build,
            tuple(_METHODS),
            partial(_fp32_onnx_files, ctx),
            weight_qmax=WEIGHT_QMAX,
            corrects_biases=True,
            int8_float_group_weights=True,
            half_float_weights=True,
        ),
    )
