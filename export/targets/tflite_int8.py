"""TFLite full-integer INT8 (int8 weights and activations; float or ``--int8-io`` int8 I/O).

Route: INT8-prepared PyTorch model -> NHWC TensorFlow function (:mod:`..int8.tf_graph`) ->
``tf.lite.TFLiteConverter`` with the calibration set as representative dataset. The translation
writes PReLU as two ReLU-fused 1x1 depthwise convs and a subtraction, and pushes ReLUs into the
convolutions before concatenations, because XNNPACK runs neither an int8 PRELU nor a standalone
int8 RELU: with them every block left the delegate and INT8 ran 2x slower than FP32 here, with
them the whole graph is one XNNPACK partition. Layer groups kept in float use the converter's
selective quantisation (the denylist of its MLIR quantiser, which the QuantizationDebugger uses); the
ranges of small tensors get the headroom every backend gives them (:mod:`..int8.headroom`). The
output layers and the reshapes and concatenations after them are on that denylist too, so their
results are handed over in float as on the other backends (:mod:`..int8.float_outputs`), except
where ``--int8-io`` asks for integer outputs.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from gfn_edge.errors import MissingDependencyError
from gfn_edge.manifest import TensorSpec

from ..context import ExportContext
from ..int8.attempt import Attempt
from ..int8.candidates import int8_model
from ..int8.float_outputs import tflite_output_chain
from ..int8.prepare import names_in_groups, tf_name_patterns
from ..int8.quantiser import Quantiser
from ..int8.search import run_search
from ..int8.tflite_float_weights import store_float_weights
from ..int8.tflite_uniform_scales import per_tensor_where_uniform
from ..target_info import Artifact, TargetInfo
from ..tools import versions
from .tflite_fp import embed_metadata, fp32_tflite

log = logging.getLogger(__name__)


def _tf():
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise MissingDependencyError("tensorflow-cpu", "export", "TFLite INT8 conversion") from exc
    return tf


WEIGHT_QMAX = 127  # int8 per-channel symmetric weights


def tf_function_of(model, input_hw: tuple[int, int]):
    """The NHWC TensorFlow function the TFLite converter quantises, for a PyTorch model (H, W input)."""
    import torch
    from torch.fx.passes.shape_prop import ShapeProp

    from ..int8.graph import symbolic_trace
    from ..int8.tf_graph import tf_function_for

    gm = symbolic_trace(model.eval())
    ShapeProp(gm).propagate(torch.zeros(1, 3, *input_hw))
    return tf_function_for(gm, input_hw, prelu="decompose")


def _tf_function(ctx: ExportContext, attempt: Attempt | None = None):
    """The TensorFlow function of the model ``attempt`` quantises (the prepared one by default), once per run and model."""
    attempt = attempt or Attempt("minmax")
    key = "tflite-int8-function:" + attempt.model_key(WEIGHT_QMAX)
    if key not in ctx.shared:
        w, h = ctx.spec.preprocess.input_size
        ctx.shared[key] = tf_function_of(int8_model(ctx, attempt, WEIGHT_QMAX), (h, w))
    return ctx.shared[key]


def int8_converter(fn, calib: np.ndarray, int8_io: bool = False):
    """The full-integer converter of ``fn``, its ranges from the NHWC ``calib`` inputs (min/max)."""
    tf = _tf()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv


def calibrated_model(conv) -> bytes:
    """The float model with the calibration's ranges recorded, small tensors widened as the int8
    simulation widens them (:mod:`..int8.headroom`), ready for the quantiser."""
    from tensorflow.lite.tools import flatbuffer_utils

    from ..int8 import headroom

    conv._experimental_calibrate_only = True  # the QuantizationDebugger's route: ranges, no quantisation
    model = flatbuffer_utils.convert_bytearray_to_object(conv.convert())
    for graph in model.subgraphs:
        for t in graph.tensors:
            q = t.quantization
            if q is None or q.min is None or q.max is None or len(q.min) != 1 or t.shape is None:
                continue
            count = headroom.positions([int(d) for d in t.shape], channels_last=True)
            lo, hi = headroom.widened(float(q.min[0]), float(q.max[0]), count)
            q.min, q.max = [lo], [hi]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def quantized_model(conv, int8_io: bool = False, denylist: list[str] | None = None) -> bytes:
    """Full-integer model from ``conv`` (see :func:`int8_converter`), the tensors in ``denylist`` left
    in float: calibration, the headroom, then TFLite's quantiser, as ``conv.convert()`` does it."""
    return quantize_calibrated(calibrated_model(conv), int8_io, denylist)


def quantize_calibrated(calibrated: bytes, int8_io: bool = False, denylist: list[str] | None = None) -> bytes:
    """TFLite's quantiser on a calibrated model (:func:`calibrated_model`, its ranges possibly
    replaced, as :mod:`..int8.learned.tflite_ranges` does)."""
    tf = _tf()
    from tensorflow.lite.python import convert

    io = tf.int8 if int8_io else tf.float32
    return convert.mlir_quantize(
        calibrated,
        disable_per_channel=False,
        input_data_type=io,
        output_data_type=io,
        denylisted_nodes=denylist or None,
    )


def float_twin(ctx: ExportContext, attempt: Attempt | None = None) -> bytes:
    """The float TFLite conversion of the function ``attempt``'s INT8 model is converted from (same
    tensor names; the plain prepared model by default): the INT8 debugger's reference. Made once
    per run and model."""
    attempt = attempt or Attempt("minmax")
    key = "tflite-int8-float-twin:" + attempt.model_key(WEIGHT_QMAX)
    if key not in ctx.shared:
        fn = _tf_function(ctx, attempt)
        ctx.shared[key] = _tf().lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert()
    return ctx.shared[key]


def _float_tensor_names(ctx: ExportContext, fn, groups: list[str]) -> list[str]:
    """Names of the converted model's tensors that belong to ``groups`` (for the denylist)."""
    if not groups:
        return []
    key = "tflite-int8-float-names"
    if key not in ctx.shared:
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_content=float_twin(ctx))
        ctx.shared[key] = [d["name"] for d in it.get_tensor_details()]
    return names_in_groups(ctx.shared[key], groups, tf_name_patterns(groups), "TFLite tensor")


def _output_chain_names(ctx: ExportContext) -> list[str]:
    """Names of the tensors from the output layers on, handed over in float as the other backends
    do (:mod:`..int8.float_outputs`); found in the float twin, whose tensor names the INT8 model keeps."""
    key = "tflite-int8-output-chain"
    if key not in ctx.shared:
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_content=float_twin(ctx))
        outputs = [int(d["index"]) for d in it.get_output_details()]
        ctx.shared[key] = tflite_output_chain(it._get_ops_details(), it.get_tensor_details(), outputs)
    return ctx.shared[key]


def _output_shapes(ctx: ExportContext) -> list[tuple[int, ...]]:
    """Shapes of the model's outputs in canonical order (from the FP32 reference on one sample)."""
    key = "tflite-int8-output-shapes"
    if key not in ctx.shared:
        out = ctx.ref.run(ctx.sample_input(1))
        ctx.shared[key] = [tuple(out[o.name].shape) for o in ctx.spec.outputs]
    return ctx.shared[key]


def _tensor_specs(path: Path, canonical: list[str], shapes: list[tuple[int, ...]]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Tensor specs, outputs matched to canonical names by signature key, else by unique shape, else order."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    ind = it.get_input_details()[0]
    outs = it.get_output_details()
    signatures = it._get_full_signature_list()
    by_key = {}
    if len(signatures) == 1:
        index_of = next(iter(signatures.values()))["outputs"]
        by_key = {k: next(d for d in outs if d["index"] == idx) for k, idx in index_of.items()}

    def spec(name: str, d, layout=None) -> TensorSpec:
        scale, zp = d.get("quantization", (0.0, 0))
        dtype = np.dtype(d["dtype"]).name
        q = {"scale": float(scale), "zero_point": int(zp)} if scale and dtype != "float32" else None
        return TensorSpec(name, d["name"], [int(v) for v in d["shape"]], dtype, layout=layout, quantization=q)

    chosen = []
    for i, (name, shape) in enumerate(zip(canonical, shapes)):
        d = by_key.get(f"output_{i}")
        if d is None:
            same = [o for o in outs if tuple(o["shape"]) == tuple(shape)]
            d = same[0] if len(same) == 1 else outs[i]
        if tuple(d["shape"]) != tuple(shape):
            raise RuntimeError(f"converted output for {name} has shape {tuple(d['shape'])}, expected {shape}")
        chosen.append(spec(name, d))
    return [spec("input", ind, "NHWC")], chosen


def _fp32_tflite_files(ctx: ExportContext, folder: Path) -> Artifact:
    from .tflite_fp import tensor_specs

    shutil.copyfile(fp32_tflite(ctx), folder / "model.tflite")
    ins, outs = tensor_specs(folder / "model.tflite", [o.name for o in ctx.spec.outputs])
    return Artifact({"model": "model.tflite"}, ins, outs)


def export(ctx: ExportContext, info: TargetInfo) -> Artifact:
    _tf()  # a clear error before any work when tensorflow is missing
    fn = _tf_function(ctx)
    calib = ctx.calibration.inputs().astype(np.float32)
    int8_io = bool(ctx.options.get("int8_io"))
    canonical = [o.name for o in ctx.spec.outputs]
    shapes = _output_shapes(ctx)

    def build(attempt: Attempt, folder: Path) -> Artifact:
        denylist = _float_tensor_names(ctx, fn, list(attempt.float_groups))
        if not int8_io:  # integer outputs asked for: the output layers stay integer too
            denylist = denylist + [n for n in _output_chain_names(ctx) if n not in denylist]
        content = quantized_model(int8_converter(_tf_function(ctx, attempt), calib, int8_io), int8_io, denylist)
        content, uniform = per_tensor_where_uniform(content)  # the same model in fewer bytes (int8/tflite_uniform_scales.py)
        # the float ops' weights stored smaller (int8/tflite_float_weights.py)
        stored_int8 = stored_fp16 = 0
        if attempt.int8_weights:
            content, stored_int8 = store_float_weights(content, "int8")
        if attempt.half_weights:  # after int8: the weights it left FP32
            content, stored_fp16 = store_float_weights(content, "float16")
        dst = folder / "model.tflite"
        dst.write_bytes(content)
        inputs, outputs = _tensor_specs(dst, canonical, shapes)
        embed_metadata(dst, ctx.embedded_manifest(info, inputs, outputs))
        return Artifact(
            files={"model": dst.name},
            inputs=inputs,
            outputs=outputs,
            tools=versions("torch", "tensorflow", "ai-edge-litert"),
            notes={
                "route": "INT8-prepared PyTorch -> NHWC TensorFlow function -> TFLiteConverter (full integer)",
                "io": "int8" if int8_io else "float32",
                "prelu": "relu(x) - a*relu(-x) as ReLU-fused 1x1 depthwise convs (XNNPACK int8)",
                "tensors_in_float": len(denylist),
                "per_channel_scales_written_per_tensor": uniform,
                **({"weights_stored_int8": stored_int8} if attempt.int8_weights else {}),
                **({"weights_stored_fp16": stored_fp16} if attempt.half_weights else {}),
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
            ("minmax",),
            lambda folder: _fp32_tflite_files(ctx, folder),
            weight_qmax=WEIGHT_QMAX,
            corrects_biases=True,
            int8_float_group_weights=True,
            int8_output_layer_weights=True,  # the output layers are computed in float here (the denylist)
            half_float_weights=True,
        ),
    )


__all__ = ["export"]
