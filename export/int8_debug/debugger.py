"""The float-vs-INT8 debugger: where in the network a quantised model departs from FP32.

``gfn-export ... --target onnx-int8|tflite-int8|openvino-int8 --int8-debug`` runs the chosen INT8
artifact and its FP32 twin (the same graph before quantisation) on the verification faces (never
the calibration faces) with every quantised tensor exposed, and writes a table, a summary and a
plot (:mod:`.report`) to ``OUT/<model>-<target>-int8-debug/``.

- ONNX QDQ: the FP32 model gets its tensors as outputs; the QDQ model gets the integer outputs of
  its QuantizeLinear nodes (exposing those keeps onnxruntime's fused integer kernels, exposing a
  DequantizeLinear output would not), dequantised here with their scale and zero point. The QDQ
  model also runs once more with graph optimisation off (exact QDQ arithmetic in float): the
  difference is the kernels' own error (``kernel_db``), e.g. u8s8 saturation without VNNI.
- TFLite: the float and the full-integer conversion of the same TensorFlow function, run with
  LiteRT's ``experimental_preserve_all_tensors``; tensors are matched by name.
- OpenVINO: the NNCF model's FakeQuantize outputs against the FP32 IR's tensors at the same place
  (:mod:`.openvino_points`).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gfn_edge.errors import GfnEdgeError

from .report import ErrorStats, TensorPoint, summarise, write_report

log = logging.getLogger(__name__)

_BATCH = 16
FP32_TWIN_ONNX = "fp32-twin.onnx"


def _batches(x: np.ndarray, size: int = _BATCH) -> Iterator[np.ndarray]:
    for i in range(0, len(x), size):
        yield np.ascontiguousarray(x[i : i + size], dtype=np.float32)


# ----------------------------------------------------------------------------- ONNX (QDQ)


def _upstream_points(producers: dict[str, Any], names: set[str]) -> Callable[[str], tuple[str, ...]]:
    """For a tensor, the nearest compared tensors it is computed from (through float-only ops)."""

    def find(tensor: str) -> tuple[str, ...]:
        seen, found, stack = set(), [], list(producers[tensor].input) if tensor in producers else []
        while stack:
            t = stack.pop()
            if t in seen or not t:
                continue
            seen.add(t)
            if t in names:
                found.append(t)
            elif t in producers:
                stack.extend(producers[t].input)
        return tuple(sorted(found))

    return find


def onnx_points(fp32_path: Path, qdq_path: Path) -> tuple[list[TensorPoint], dict[str, str]]:
    """The compared tensors of an FP32 ONNX model and its QDQ quantisation, in graph order, and
    for each the QDQ model's tensor to read (a QuantizeLinear output, or the same float tensor)."""
    import onnx
    from onnx import numpy_helper

    fp = onnx.load(str(fp32_path), load_external_data=False)
    qm = onnx.load(str(qdq_path), load_external_data=False)
    consts = {i.name: numpy_helper.to_array(i) for i in qm.graph.initializer}
    for n in qm.graph.node:
        if n.op_type == "Constant" and n.attribute:
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    quantizers = {n.input[0]: n for n in qm.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in consts}
    producers = {o: n for n in fp.graph.node for o in n.output}
    fp_inits = {i.name for i in fp.graph.initializer}
    graph_inputs = [i.name for i in fp.graph.input if i.name not in fp_inits]
    outputs = [o.name for o in fp.graph.output]
    order = graph_inputs + [o for n in fp.graph.node for o in n.output if o]
    wanted = [t for t in order if t in quantizers or t in outputs]
    upstream = _upstream_points(producers, set(wanted))
    points, read = [], {}
    for t in wanted:
        node = producers.get(t)
        op, layer = (node.op_type, node.name or t) if node is not None else ("Input", t)
        q = quantizers.get(t)
        if q is not None:
            scale = consts[q.input[1]]
            zp = consts[q.input[2]] if len(q.input) > 2 and q.input[2] else np.zeros((), np.uint8)
            if scale.size != 1:
                log.debug("INT8 debug: %s has per-channel activation scales; compared as float", t)
                q = None
        if q is not None and t not in outputs:
            info = np.iinfo(zp.dtype)
            points.append(TensorPoint(t, op, layer, upstream(t), float(scale.reshape(-1)[0]), int(zp.reshape(-1)[0]), int(info.min), int(info.max)))
            read[t] = q.output[0]
        else:
            points.append(TensorPoint(t, op, layer, upstream(t)))
            read[t] = t
    return points, read


def _with_outputs(path: Path, names: list[str], dst: Path) -> Path:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    onnx.save(model, str(dst))
    return dst


def _session(path: Path, optimised: bool):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if not optimised:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def debug_onnx(fp32_onnx: Path, qdq_onnx: Path, inputs: np.ndarray, work_dir: Path, kernel_check: bool = True) -> list[dict[str, Any]]:
    """Per-tensor error rows of ``qdq_onnx`` against ``fp32_onnx`` on ``inputs`` (the model's
    own layout and normalisation). ``kernel_check`` adds the fused-kernel-vs-exact-QDQ columns.

    The model outputs' rows come from the unmodified QDQ model (what a device runs); their
    ``instrumented_db`` says how close the run with tensors exposed came to it. onnxruntime can
    pick other kernels once a tensor is exposed (on x86 it turns S8S8 into U8S8 only where the
    int8 tensor stays internal), so a low value means the inner rows describe a different run.
    """
    points, read = onnx_points(fp32_onnx, qdq_onnx)
    if not points:
        raise GfnEdgeError(f"{qdq_onnx}: no quantised tensor found to compare (is it a QDQ model from {fp32_onnx}?)")
    work_dir.mkdir(parents=True, exist_ok=True)
    fp_sess = _session(_with_outputs(fp32_onnx, [p.name for p in points], work_dir / "debug-fp32.onnx"), True)
    q_path = _with_outputs(qdq_onnx, [read[p.name] for p in points], work_dir / "debug-int8.onnx")
    q_sess = _session(q_path, True)
    exact_sess = _session(q_path, False) if kernel_check else None
    deployed = _session(qdq_onnx, True)
    outputs = [o.name for o in deployed.get_outputs()]
    input_name = fp_sess.get_inputs()[0].name
    stats = ErrorStats(points)
    agreement = ErrorStats([p for p in points if p.name in outputs])
    fp_names, q_names = [p.name for p in points], [read[p.name] for p in points]
    batch = fp_sess.get_inputs()[0].shape[0]  # a detector's graph is exported for one picture at a time
    for x in _batches(inputs, batch if isinstance(batch, int) and batch > 0 else _BATCH):
        fp_out = fp_sess.run(fp_names, {input_name: x})
        q_out = q_sess.run(q_names, {input_name: x})
        ex_out = exact_sess.run(q_names, {input_name: x}) if exact_sess is not None else [None] * len(points)
        dep_out = dict(zip(outputs, deployed.run(outputs, {input_name: x})))
        for p, a, b, e in zip(points, fp_out, q_out, ex_out):
            b = _dequantise(p, b)
            if p.name in dep_out:
                agreement.add(p, dep_out[p.name], b)
                b = dep_out[p.name]
            stats.add(p, a, b, None if e is None else _dequantise(p, e))
    rows = stats.rows()
    instrumented = {r["tensor"]: r["sqnr_db"] for r in agreement.rows()}
    for r in rows:
        r["instrumented_db"] = instrumented.get(r["tensor"])
    return rows


def _dequantise(p: TensorPoint, values: np.ndarray) -> np.ndarray:
    if p.scale is None or values.dtype.kind == "f":
        return values.astype(np.float32)
    return (values.astype(np.float32) - p.zero_point) * p.scale


# ----------------------------------------------------------------------------- TFLite


def tflite_points(fp32_content: bytes, int8_content: bytes) -> tuple[list[TensorPoint], dict[str, int], dict[str, int]]:
    """Compared tensors of a float and a full-integer TFLite model of the same function: every
    tensor an op of the INT8 model writes whose name the float model also has, in op order; and
    the tensor index of each in both models."""
    from ai_edge_litert.interpreter import Interpreter

    fp = Interpreter(model_content=fp32_content)
    q = Interpreter(model_content=int8_content)
    fp_index = {d["name"]: d["index"] for d in fp.get_tensor_details()}
    q_details = {d["index"]: d for d in q.get_tensor_details()}
    ops = q._get_ops_details()
    producer_of = {t: op for op in ops for t in op["outputs"]}
    q_index, names, points = {}, set(), []
    for op in ops:
        for t in op["outputs"]:
            d = q_details.get(t)
            if d is None or d["name"] not in fp_index or op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
                continue
            q_index[d["name"]] = t
            names.add(t)
    for op in ops:
        for t in op["outputs"]:
            if t not in names:
                continue
            d = q_details[t]
            upstream, stack, seen = [], list(op["inputs"]), set()
            while stack:
                s = stack.pop()
                if s < 0 or s in seen:
                    continue
                seen.add(s)
                if s in names:
                    upstream.append(q_details[s]["name"])
                elif s in producer_of:
                    stack.extend(producer_of[s]["inputs"])
            scale, zp = d["quantization"]
            kind = np.dtype(d["dtype"])
            if scale and kind.kind in "iu":
                info = np.iinfo(kind)
                point = TensorPoint(
                    d["name"], op["op_name"], _tflite_layer(d["name"]), tuple(sorted(upstream)), float(scale), int(zp), int(info.min), int(info.max)
                )
            else:
                point = TensorPoint(d["name"], op["op_name"], _tflite_layer(d["name"]), tuple(sorted(upstream)))
            points.append(point)
    return points, {p.name: fp_index[p.name] for p in points}, q_index


def _tflite_layer(tensor: str) -> str:
    """The converter names a fused op's output after everything fused into it ("a/BiasAdd;a/Conv2D;
    a/Const"): its first part names the layer."""
    return tensor.split(";")[0]


def debug_tflite(fp32_content: bytes, int8_content: bytes, inputs: np.ndarray) -> list[dict[str, Any]]:
    """Per-tensor error rows of a full-integer TFLite model against its float twin on ``inputs``
    (NHWC, normalised; int8 model inputs are quantised here as a device would).

    Inner tensors come from LiteRT runs that preserve every tensor (which keeps them off the
    XNNPACK delegate); the model's outputs, which close the table, from an ordinary run as the
    device makes it (dequantised), and their ``instrumented_db`` says how close the two came.
    """
    from ai_edge_litert.interpreter import Interpreter

    inner, fp_idx, q_idx = tflite_points(fp32_content, int8_content)
    if not inner:
        raise GfnEdgeError("no tensor of the INT8 TFLite model matches one of its float twin by name: nothing to compare")
    fp = Interpreter(model_content=fp32_content, experimental_preserve_all_tensors=True)
    q = Interpreter(model_content=int8_content, experimental_preserve_all_tensors=True)
    deployed = Interpreter(model_content=int8_content)
    outputs = _tflite_output_points(Interpreter(model_content=int8_content), inner)  # before allocation: XNNPACK rewrites the op list
    for it in (fp, q, deployed):
        it.allocate_tensors()
    fp_in, q_in = fp.get_input_details()[0], q.get_input_details()[0]
    stats = ErrorStats(inner + [p for p, _, _ in outputs])
    agreement = ErrorStats([p for p, _, _ in outputs])
    fp_outs = fp.get_output_details()
    for x in _batches(inputs, 1):
        fp.set_tensor(fp_in["index"], x)
        q.set_tensor(q_in["index"], _quantise_input(x, q_in))
        deployed.set_tensor(q_in["index"], _quantise_input(x, q_in))
        for it in (fp, q, deployed):
            it.invoke()
        for p in inner:
            stats.add(p, fp.get_tensor(fp_idx[p.name]), _dequantise(p, q.get_tensor(q_idx[p.name])))
        for (p, q_index, quant), fd in zip(outputs, fp_outs):
            preserved, out = (it.get_tensor(q_index).astype(np.float32) for it in (q, deployed))
            if quant is not None:
                preserved, out = ((v - quant[1]) * quant[0] for v in (preserved, out))
            agreement.add(p, out, preserved)
            stats.add(p, fp.get_tensor(fd["index"]), out)
    rows = stats.rows()
    instrumented = {r["tensor"]: r["sqnr_db"] for r in agreement.rows()}
    for r in rows:
        r["instrumented_db"] = instrumented.get(r["tensor"])
    return rows


def _quantise_input(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    kind = np.dtype(detail["dtype"])
    if kind.kind == "f":
        return x.astype(kind)
    scale, zp = detail["quantization"]
    info = np.iinfo(kind)
    return np.clip(np.round(x / scale) + zp, info.min, info.max).astype(kind)


def _tflite_output_points(q: Any, inner: list[TensorPoint]) -> list[tuple[TensorPoint, int, tuple[float, int] | None]]:
    """A point per model output (with its tensor index and, for int8 outputs, scale and zero
    point), each after the last compared tensor it is read from (through DEQUANTIZE/RESHAPE)."""
    names = {p.name for p in inner}
    details = {d["index"]: d["name"] for d in q.get_tensor_details()}
    feeds = {t: op["inputs"] for op in q._get_ops_details() for t in op["outputs"]}
    out = []
    for i, d in enumerate(q.get_output_details()):
        index = d["index"]
        while details.get(index) not in names and index in feeds and len(feeds[index]):
            index = int(feeds[index][0])
        source = (details[index],) if details.get(index) in names else ()
        scale, zp = d["quantization"]
        quant = (float(scale), int(zp)) if np.dtype(d["dtype"]).kind in "iu" and scale else None
        out.append((TensorPoint(f"output:{i}", "Output", d["name"], source), d["index"], quant))
    return out


# ----------------------------------------------------------------------------- one export's artifact


def debug_export(
    target: str, ctx: Any, bundle: Path, inputs: np.ndarray, out_dir: Path, vset: Any = None, ref_out: dict[str, np.ndarray] | None = None
) -> dict[str, Any]:
    """Debug the INT8 artifact the search chose for ``target`` (in ``bundle``) on ``inputs`` (the
    judged verification faces, NHWC normalised); writes the report to ``out_dir`` and returns its
    summary (for the manifest's notes). With the verification set and the reference's outputs on
    it, the report also says whether weights or activations cause the error (:mod:`.error_sources`)."""
    if target == "onnx-int8":
        from ..int8.attempt import chosen_attempt
        from ..targets.onnx_int8 import prepared_onnx

        fp32 = prepared_onnx(ctx, chosen_attempt(ctx, target))
        x = inputs.transpose(0, 3, 1, 2) if _onnx_is_nchw(fp32) else inputs
        rows = debug_onnx(fp32, bundle / "model.onnx", x, ctx.work_dir / "int8-debug")
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fp32, out_dir / FP32_TWIN_ONNX)  # to recompute the table after editing the QDQ model
        twin = f"the FP32 ONNX the chosen attempt quantised (BatchNorm folded, channels equalised), saved as {FP32_TWIN_ONNX}"
    elif target == "tflite-int8":
        from ..int8.attempt import chosen_attempt
        from ..targets.tflite_int8 import float_twin

        rows = debug_tflite(float_twin(ctx, chosen_attempt(ctx, target)), (bundle / "model.tflite").read_bytes(), inputs)
        twin = "the float TFLite conversion of the same TensorFlow function"
    elif target == "openvino-int8":
        from .openvino_points import debug_openvino

        rows, twin = debug_openvino(ctx, bundle, inputs)
    else:
        raise GfnEdgeError(f"--int8-debug: {target} is not an INT8 target (onnx-int8, openvino-int8, tflite-int8)")
    summary = summarise(rows, artifact=f"{ctx.spec.name} {target}", fp32_twin=twin, faces=len(inputs), data="verification faces (never calibration)")
    if vset is not None and ref_out is not None:
        summary["error_sources"] = _error_sources(target, ctx, vset, ref_out)
    paths = write_report(rows, summary, out_dir)
    log.info("INT8 debug for %s: %s (worst: %s)", target, paths["md"], ", ".join(w["layer"] for w in summary["worst"][:3]))
    return {"folder": str(out_dir), **{k: v for k, v in summary.items() if k != "worst"}, "worst": [w["layer"] for w in summary["worst"]]}


def _error_sources(target: str, ctx: Any, vset: Any, ref_out: dict[str, np.ndarray]) -> dict[str, Any]:
    """:func:`.error_sources.error_sources` of the chosen attempt's model on the target's weight grid;
    a failure is recorded, never loses the per-tensor table."""
    from ..int8.attempt import chosen_attempt
    from ..int8.candidates import int8_model
    from ..targets import onnx_int8, openvino_int8, tflite_int8
    from .error_sources import error_sources

    try:
        qmax = {"onnx-int8": onnx_int8, "openvino-int8": openvino_int8, "tflite-int8": tflite_int8}[target].WEIGHT_QMAX
        attempt = chosen_attempt(ctx, target)
        model = int8_model(ctx, attempt, qmax)
        return error_sources(model, ctx.calibration.inputs(), vset, ref_out, ctx.spec, attempt.float_groups, qmax)
    except Exception as exc:
        log.exception("%s: the INT8 error sources could not be simulated", target)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _onnx_is_nchw(path: Path) -> bool:
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return len(dims) == 4 and dims[1].dim_value in (1, 3)


__all__ = ["FP32_TWIN_ONNX", "debug_export", "debug_onnx", "debug_tflite", "onnx_points", "tflite_points"]
