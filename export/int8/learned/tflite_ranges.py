"""Carry a learned quantisation into TFLite's full-integer quantiser: weights on their levels,
learned ranges as the calibrated model's min/max.

TFLite's quantiser takes each activation's (min, max) from the calibrated model
(:func:`...targets.tflite_int8.calibrated_model`) and makes an int8 scale (max - min)/255 and zero
point -128 + round(-min/scale): the learned uint8 grid shifted by 128. Each tensor of the
calibrated model is matched to the twin node that computes the same values (NHWC against NCHW,
on calibration inputs, the twin's weights int8 and activations float), and the twin's learned
range is written over its calibrated one. Tensors without a twin counterpart (the branches of the
PReLU decomposition, :mod:`..tf_layers`) keep their calibrated range; the weights need no
carrying, each channel's largest weight sitting on +-127 so TFLite's per-channel rule
(max|w|/127) re-derives the learned scale and integers (:mod:`.onnx_qdq` does the same for ONNX).
"""

from __future__ import annotations

import logging

import numpy as np

from .quantizers import on_grid
from .reconstruct import LearnedQuantisation
from .tensors import match_to_twin

log = logging.getLogger(__name__)


def match_tensors(calibrated: bytes, learned: LearnedQuantisation, feed_nhwc: np.ndarray, rtol: float = 1e-3) -> dict[int, str]:
    """Tensor index of the calibrated TFLite model -> twin node computing the same values."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    inp = it.get_input_details()[0]["index"]
    details = [d for d in it.get_tensor_details() if d["dtype"] == np.float32 and len(d["shape"]) >= 2]
    per_sample: dict[int, list[np.ndarray]] = {d["index"]: [] for d in details}
    for sample in feed_nhwc:
        it.set_tensor(inp, sample[None].astype(np.float32))
        it.invoke()
        for d in details:
            if d["index"] not in per_sample:
                continue
            try:
                per_sample[d["index"]].append(it.get_tensor(d["index"]).copy())
            except ValueError:  # a constant without data at this point
                del per_sample[d["index"]]
    values = {index: np.concatenate(parts) for index, parts in per_sample.items()}  # each has every sample's
    return match_to_twin(values, learned.twin, feed_nhwc, channels_last=True, rtol=rtol)


def with_learned_ranges(calibrated: bytes, learned: LearnedQuantisation, mapping: dict[int, str]) -> tuple[bytes, dict[str, int]]:
    """``calibrated`` with the learned (lo, hi) of every tensor ``mapping`` (:func:`match_tensors`)
    matches as its min/max, and counts."""
    from tensorflow.lite.tools import flatbuffer_utils

    ranges = learned.ranges()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    tensors = model.subgraphs[0].tensors
    ranged = written = 0
    for index, t in enumerate(tensors):
        q = t.quantization
        if q is None or q.min is None or q.max is None or len(q.min) != 1:
            continue
        ranged += 1
        node = mapping.get(index)
        if node in ranges:
            lo, hi = ranges[node]
            q.min, q.max = [float(lo)], [float(hi)]
            written += 1
    stats = {"tensors": ranged, "learned_ranges": written, "matched": len(mapping)}
    log.info("learned INT8 -> TFLite: %d of %d calibrated tensors take a learned range (%d matched to the twin)", written, ranged, len(mapping))
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), stats


def carried(quantized: bytes, learned: LearnedQuantisation, calibrated: bytes, mapping: dict[int, str]) -> dict[str, int]:
    """How the quantised model's int8 activations hold the learned ranges (tensors matched to the
    twin on the calibrated model by ``mapping``, then by name, which the quantiser keeps): ``exact``, the scale
    and zero point of the tensor's own learned range; ``concat_shared``, those of the
    concatenation it feeds (TFLite's int8 CONCATENATION takes its inputs on its output's scale,
    so the twin's separate quantisers there cannot all be carried)."""
    from ai_edge_litert.interpreter import Interpreter

    names = {int(d["index"]): d["name"] for d in Interpreter(model_content=calibrated).get_tensor_details()}
    by_name = {names[i]: node for i, node in mapping.items()}
    ranges = learned.ranges()
    it = Interpreter(model_content=quantized)
    details = {int(d["index"]): d for d in it.get_tensor_details()}
    concat_output = {}
    for op in it._get_ops_details():
        if op["op_name"] == "CONCATENATION":
            for i in op["inputs"]:
                concat_output[int(i)] = int(op["outputs"][0])

    def holds(d: dict, node: str | None) -> bool:
        scale, zero = d["quantization"]
        return node in ranges and on_grid(scale, zero + 128, *ranges[node])

    counts = {"quantisers": 0, "exact": 0, "concat_shared": 0}
    for index, d in details.items():
        node = by_name.get(d["name"])
        if node not in ranges or d["dtype"] != np.int8 or not d["quantization"][0]:
            continue
        counts["quantisers"] += 1
        if holds(d, node):
            counts["exact"] += 1
        elif index in concat_output and holds(d, by_name.get(details[concat_output[index]]["name"])):
            counts["concat_shared"] += 1
    return counts
