"""ONNX INT8: ONNX Runtime static quantisation (QDQ, per-channel int8 weights, uint8 activations).

The graph quantised is the INT8-prepared one (BatchNorm folded, channels equalised), exported
the same way as the FP32 target; calibration reads the calibration set, never verification data.

Weights use the 7-bit range (``reduce_range``). On x86 without AVX-512 VNNI (AVX2, the CPUs of
many edge boxes and of this project's CI) onnxruntime's u8s8 kernels multiply with VPMADDUBSW,
whose int16 pair sums saturate once uint8 activations and int8 weights both span their ranges —
which channel equalisation makes them do. The INT8 debugger measured it on the GhostFaceNets
w0.5 student (plain min/max): the stem convolution at 12.6 dB SQNR where exact QDQ arithmetic
gives 33 dB, the embedding at cosine 0.910; with 7-bit weights the kernels match exact QDQ
arithmetic and the embedding is at 0.962 (S8S8 is no way out: onnxruntime turns it into u8s8 on
x86, 0.948). The cost on CPUs that never saturate is one bit of weight precision (embedding
SQNR 11.9 -> 11.5 dB under exact arithmetic), and one artifact stays right on every CPU.
Depthwise convolutions keep the full 8-bit grid: onnxruntime's depthwise kernel sums in int32 and
never saturates (:mod:`..int8.weight_grid`).
"""

from __future__ import annotations

import logging
import shutil
from functools import partial
from pathlib import Path

import numpy as np

from gfn_edge.errors import MissingDependencyError

from ..context import ExportContext
from ..int8.onnx_weight_only import compress_float_weights
from ..int8.ort_calibration import CalibrationReader
from ..int8.ort_entropy import entropy_thresholds
from ..int8.prepare import names_in_groups, onnx_name_patterns
from ..int8.search import Attempt, int8_model, run_search
from ..target_info import Artifact, TargetInfo
from ..tools import versions
from .onnx_fp32 import OPSET, embed_metadata, export_onnx, fp32_onnx, tensor_specs

log = logging.getLogger(__name__)

REDUCE_RANGE = True  # 7-bit weights: see the module docstring
# the weight grid the int8 simulation (ranking, bias correction, distillation) must reproduce:
# onnxruntime's reduce_range int8 is levels -64..64 with scale max|w|/64, not -63..63 (the
# simulation used 63 before 2026-12-03; every exported model's largest weight integer is 64)
WEIGHT_QMAX = 64 if REDUCE_RANGE else 127
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


def qdq_settings(q, model_path: Path | None = None) -> dict:
    """quantize_static's settings of this target (``q``: onnxruntime.quantization): QDQ, per-channel
    int8 weights on the 7-bit range, uint8 activations; with ``model_path``, the full 8-bit grid for
    that model's depthwise convolution weights (:func:`depthwise_weights`)."""
    settings = {
        "quant_format": q.QuantFormat.QDQ,
        "per_channel": True,
        "activation_type": q.QuantType.QUInt8,
        "weight_type": q.QuantType.QInt8,
        "reduce_range": REDUCE_RANGE,
    }
    full = depthwise_weights(model_path) if REDUCE_RANGE and model_path is not None else []
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


def quantize_qdq(ctx: ExportContext, attempt: Attempt, dst: Path) -> int:
    """onnxruntime's QDQ quantisation of the model ``attempt`` quantises, written to ``dst``;
    returns how many nodes stayed in float (their weights stored as int8 where ``attempt.int8_weights``).

    Also the OpenVINO target's remedy route (:mod:`.openvino_int8`): the same QDQ graph, compiled by
    OpenVINO, so both backends run one quantisation.
    """
    import onnx

    q = _ort_quant()
    src = prepared_onnx(ctx, attempt)
    names_key = "onnx-int8-node-names"
    if names_key not in ctx.shared:  # node names do not depend on the attempt
        ctx.shared[names_key] = [n.name for n in onnx.load(str(prepared_onnx(ctx)), load_external_data=False).graph.node]
    groups = list(attempt.float_groups)
    exclude = names_in_groups(ctx.shared[names_key], groups, onnx_name_patterns(groups), "ONNX node")
    cache = calibration_cache(ctx, src, attempt.method)
    q.quantize_static(
        str(src),
        str(dst),
        None if cache else CalibrationReader(ctx.calibration.inputs(), "input"),
        **qdq_settings(q, src),
        calibrate_method=getattr(q.CalibrationMethod, _METHODS[attempt.method]),
        nodes_to_exclude=exclude,
        **({"calibration_cache_path": str(cache)} if cache else {}),
    )
    if exclude and attempt.int8_weights:  # the float layers' weights stored as int8: see int8/onnx_weight_only.py
        compress_float_weights(dst)
    return len(exclude)


def export(ctx: ExportContext, info: TargetInfo) -> Artifact:
    def build(attempt: Attempt, folder: Path) -> Artifact:
        dst = folder / "model.onnx"
        in_float = quantize_qdq(ctx, attempt, dst)
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
                "activations": "uint8 per tensor",
                "weights": "int8 per channel, 7-bit range (no u8s8 saturation on x86 without VNNI), depthwise 8-bit" if REDUCE_RANGE else "int8 per channel",
                "nodes_in_float": in_float,
                **(
                    {"weights_of_nodes_in_float": "int8 per channel, weight-only (dequantised, computed in float)" if attempt.int8_weights else "FP32"}
                    if in_float
                    else {}
                ),
                "distilled": attempt.distilled,
                "bias_corrected": attempt.bias_corrected,
            },
        )

    return run_search(
        ctx, info, build, list(_METHODS), partial(_fp32_onnx_files, ctx), weight_qmax=WEIGHT_QMAX, corrects_biases=True, int8_float_group_weights=True
    )
