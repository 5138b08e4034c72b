"""FP16 storage for the weights of the ops an INT8 OpenVINO model computes in float.

Why this and not ``save_model(compress_to_fp16=True)``: OpenVINO leaves a model with
FakeQuantize ops uncompressed (measured on the INT8 detector: the same 1.37 MB .bin either way),
and its ONNX frontend folds a float16 initializer's Cast back into an FP32 constant. So the float
ops' weight constants are replaced here by a float16 constant and a Convert, which the CPU plugin
folds when it compiles the model: the same FP32 kernels on weights rounded to 11 significant bits
(RetinaFace-mnet025 openvino-int8, 16 groups in float: 1.37 -> 0.75 MB .bin, no slower; scenes
landmark NME 0.00977 -> 0.00985). See :mod:`.onnx_half_weights` for the same on ONNX.
"""

from __future__ import annotations

import logging

import numpy as np

from .half_weights import storable

log = logging.getLogger(__name__)

_WEIGHT_USERS = {"Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul"}


def store_float_weights_fp16(model) -> int:
    """Replace, in place, the FP32 weight constants of ``model``'s float convolutions and matmuls
    (used by that op alone) with float16 constants and a Convert to f32; returns how many."""
    import openvino as ov
    import openvino.opset13 as ops

    converted = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Constant" or op.get_output_element_type(0) != ov.Type.f32:
            continue
        users = list(op.output(0).get_target_inputs())
        if len(users) != 1 or users[0].get_index() != 1 or users[0].get_node().get_type_name() not in _WEIGHT_USERS:
            continue
        w = op.get_data()
        if not storable(w):
            continue
        half = ops.convert(ops.constant(w.astype(np.float16)), ov.Type.f32)
        half.set_friendly_name(f"{op.get_friendly_name()}/fp16")
        users[0].replace_source_output(half.output(0))
        converted += 1
    if converted:
        log.info("INT8: %d float ops' weights stored as float16 (computed in FP32)", converted)
    return converted
