"""Parameters and multiply-accumulates (MACs) counted from a model file's own graph, at export time.

Training side: gfn-export records the counts in each bundle's manifest (``export.flops``), so
the device and the benchmark read them there and never import ``onnx``; benchmark peers get the
same counts from :mod:`gfn_edge.export.peer_graphs`. Why count from the artifact and not quote a paper: the number that matters on a board is what
the shipped graph computes at the shipped input size (a 320x240 detector does a quarter of the
work of the 640x480 one; onnxsim folds BatchNorm into convolutions). Only convolution and
matrix-product ops are counted, the ones that dominate these CNNs; FLOPs are reported as
2 x MACs. ONNX graphs need the ``onnx`` package (shape inference); TFLite flatbuffers are read
with the schema that ships with ai-edge-litert. Neither imports a training framework.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_CONV = ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose")
_MATMUL = ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul")
# weight tensor position among a node's inputs
_WEIGHT_INPUT = {"Conv": 1, "ConvInteger": 1, "ConvTranspose": 1, "QLinearConv": 3, "Gemm": 1, "MatMul": 1, "MatMulInteger": 1, "QLinearMatMul": 3}
_PARAM_DTYPES = {1, 2, 3, 10, 11, 16}  # ONNX FLOAT, UINT8, INT8, FLOAT16, DOUBLE, BFLOAT16: weights, not shapes


@dataclass(frozen=True)
class Complexity:
    """What a graph computes for one input: parameters stored and MACs per inference."""

    params: int
    macs: int
    counted_ops: int  # conv / matmul nodes that entered ``macs``
    source: str  # "onnx" | "tflite"
    uncounted_ops: int = 0  # conv / matmul nodes without static shapes (a dynamic input size): ``macs`` is partial

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        out = {"params": self.params, "macs": self.macs, "flops": self.flops, "counted_ops": self.counted_ops, "source": self.source}
        return dict(out, uncounted_ops=self.uncounted_ops) if self.uncounted_ops else out


# ----------------------------------------------------------------------------------- ONNX


def _dims(value_info) -> list[int] | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    out = []
    for d in t.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append(int(d.dim_value))
        else:
            return None
    return out


def _fix_batch(model, batch: int) -> None:
    """Give every graph input a concrete batch so shape inference can size every tensor."""
    inits = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        if len(dims) and not (dims[0].HasField("dim_value") and dims[0].dim_value > 0):
            dims[0].dim_value = batch


def static_shapes(model, batch: int = 1) -> dict[str, list[int] | None]:
    """Shape of every graph input, intermediate value and output of the ONNX ``model`` by shape
    inference, the batch fixed to ``batch`` (in place); None where a dimension is not static."""
    from onnx import shape_inference

    _fix_batch(model, batch)
    graph = shape_inference.infer_shapes(model).graph
    return {vi.name: _dims(vi) for vi in [*graph.input, *graph.value_info, *graph.output]}


def onnx_complexity(path: str | Path, batch: int = 1) -> Complexity:
    """Parameters and MACs of an ONNX model for a batch of ``batch`` inputs.

    Convolution MACs = output elements x (input channels / groups) x kernel area; a matrix
    product's = output elements x the reduced dimension. Shapes come from ONNX shape inference
    after the batch is fixed; spatial sizes must be static (they are in exported bundles).
    """
    import onnx

    model = onnx.load(str(path))
    shapes = static_shapes(model, batch)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    for name, init in inits.items():
        shapes[name] = [int(d) for d in init.dims]

    macs = 0
    counted = uncounted = 0
    for node in graph.node:
        op = node.op_type
        if op not in _CONV and op not in _MATMUL:
            continue
        widx = _WEIGHT_INPUT[op]
        if len(node.input) <= widx or not node.output:
            continue
        w = shapes.get(node.input[widx])
        y = shapes.get(node.output[0])
        if not w or not y:
            log.debug("%s: no static shape for %s node %s; its MACs are not counted", path, op, node.name)
            uncounted += 1
            continue
        if op in _CONV:
            # weight (M, C/group, k...) for Conv; (C, M/group, k...) for ConvTranspose
            if op == "ConvTranspose":
                x = shapes.get(node.input[0])
                if not x:
                    continue
                macs += math.prod(x) * math.prod(w[1:])  # every input element scatters into M/group x kernel outputs
            else:
                macs += math.prod(y) * math.prod(w[1:])
        else:
            a = shapes.get(node.input[0])
            trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0) if op == "Gemm" else 0
            if not a:
                continue
            k = a[-2] if trans_a else a[-1]
            macs += math.prod(y) * k
        counted += 1
    params = 0
    for init in graph.initializer:
        if init.data_type in _PARAM_DTYPES:
            params += math.prod(init.dims) if len(init.dims) else 1
    for node in graph.node:  # weights some exporters keep in Constant nodes
        if node.op_type == "Constant":
            for at in node.attribute:
                if at.name == "value" and at.t.data_type in _PARAM_DTYPES and len(at.t.dims):
                    params += math.prod(at.t.dims)
    if uncounted:
        log.info("%s: %d conv/matmul nodes have no static shape (dynamic input size?); their MACs are not counted", path, uncounted)
    return Complexity(params=int(params), macs=int(macs), counted_ops=counted, source="onnx", uncounted_ops=uncounted)


# ---------------------------------------------------------------------------------- TFLite

_TFL_CONV = "CONV_2D"
_TFL_DW = "DEPTHWISE_CONV_2D"
_TFL_FC = "FULLY_CONNECTED"
_TFL_TCONV = "TRANSPOSE_CONV"
_TFL_BMM = "BATCH_MATMUL"


def _tflite_schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            from tflite_runtime import schema_py_generated as schema  # type: ignore[import-not-found]
        except ImportError:
            return None
    return schema


def _external_size(buf) -> int:
    """Bytes of a buffer stored after the flatbuffer (models over 2 GB, some converters)."""
    try:
        return int(buf.Size())
    except AttributeError:
        return 0


def tflite_complexity(path: str | Path) -> Complexity | None:
    """Parameters and MACs of a TFLite flatbuffer (static shapes, batch as stored); None without a schema reader.

    CONV_2D filters are (out, kh, kw, in): MACs = output elements x kh x kw x in.
    DEPTHWISE_CONV_2D filters are (1, kh, kw, out): MACs = output elements x kh x kw.
    FULLY_CONNECTED weights are (out, in): MACs = output elements x in.
    Parameters are the elements of constant tensors (those backed by a non-empty buffer), float
    or integer, excluding int32/int64 shape tensors.
    """
    schema = _tflite_schema()
    if schema is None:
        return None
    data = Path(path).read_bytes()
    model = schema.Model.GetRootAsModel(data, 0)
    names = {v: k for k, v in schema.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    ttype = {v: k for k, v in schema.TensorType.__dict__.items() if not k.startswith("_")}
    macs = counted = params = 0
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)

        def shape(i: int) -> list[int]:
            return [int(d) for d in sg.Tensors(i).ShapeAsNumpy()] if i >= 0 and sg.Tensors(i).ShapeLength() else []  # noqa: B023 (called within this iteration)

        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            code = model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = names.get(builtin, "")
            if name not in (_TFL_CONV, _TFL_DW, _TFL_FC, _TFL_TCONV, _TFL_BMM):
                continue
            ins = op.InputsAsNumpy()
            out = shape(int(op.OutputsAsNumpy()[0]))
            if name == _TFL_TCONV:  # inputs: output_shape, weights, input
                w, x = shape(int(ins[1])), shape(int(ins[2]))
                if w and x:
                    macs += math.prod(x) * w[0] * w[1] * w[2]
                    counted += 1
                continue
            w = shape(int(ins[1]))
            if not w or not out:
                continue
            if name == _TFL_CONV:
                macs += math.prod(out) * w[1] * w[2] * w[3]
            elif name == _TFL_DW:
                macs += math.prod(out) * w[1] * w[2]
            elif name == _TFL_FC:
                macs += math.prod(out) * w[-1]
            else:  # BATCH_MATMUL: reduce over lhs's last dim
                a = shape(int(ins[0]))
                macs += math.prod(out) * (a[-1] if a else 0)
            counted += 1
        for t in range(sg.TensorsLength()):
            tensor = sg.Tensors(t)
            buf = model.Buffers(tensor.Buffer())
            has_data = buf is not None and (buf.DataLength() > 0 or _external_size(buf) > 0)
            if has_data and ttype.get(tensor.Type()) not in ("INT32", "INT64", "STRING", "BOOL"):
                dims = [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
                params += math.prod(dims) if dims else 1
    return Complexity(params=int(params), macs=int(macs), counted_ops=counted, source="tflite")


def complexity(path: str | Path) -> tuple[Complexity | None, str | None]:
    """(counts, None) for a .onnx or .tflite file, or (None, why not)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".onnx":
            if importlib.util.find_spec("onnx") is None:
                return None, "install the onnx package to count MACs of ONNX graphs"
            return onnx_complexity(path), None
        if suffix == ".tflite":
            c = tflite_complexity(path)
            return (c, None) if c is not None else (None, "no TFLite schema reader (ai-edge-litert) installed")
    except Exception as exc:  # a graph the counter does not understand must not stop a benchmark
        log.warning("cannot count MACs of %s: %s", path, exc)
        return None, f"counter failed: {type(exc).__name__}: {exc}"
    return None, f"no MAC counter for {suffix} files (counts come from the ONNX or TFLite twin)"


def manifest_flops(bundle_dir: str | Path, files: Mapping[str, str], work_dir: str | Path | None = None) -> dict[str, Any]:
    """The ``export.flops`` entry of a bundle's manifest: counts of its model file, or why there are none.

    An OpenVINO IR has no counter of its own: it is counted from the FP32 ONNX it was converted
    from (``work_dir/fp32.onnx``, written once per export run), which computes the same MACs.
    Never raises: a graph the counter does not understand leaves ``{"note": why}``, and the
    benchmark then reports FLOPs as unknown.
    """
    model = Path(bundle_dir) / files.get("model", "")
    source = model
    if model.suffix.lower() == ".xml" and work_dir is not None and (Path(work_dir) / "fp32.onnx").is_file():
        source = Path(work_dir) / "fp32.onnx"
    counts, why = complexity(source)
    if counts is None:
        return {"note": why or "not counted"}
    if counts.uncounted_ops:
        return {"note": f"{counts.uncounted_ops} conv/matmul nodes have no static shape (a dynamic input size): MACs depend on the picture"}
    out = counts.to_dict()
    if source != model:
        out["counted_from"] = "fp32.onnx (the graph this IR was converted from)"
    return out
