"""The float-vs-INT8 debugger (``gfn-export --int8-debug``): where a quantised model departs from FP32.

Kept beside :mod:`gfn_edge.export.int8`, not inside it: the debugger opens the targets' artifacts,
and the targets build on ``int8``, so living inside would make an import circle.
"""

from .debugger import FP32_TWIN_ONNX, debug_export, debug_onnx, debug_tflite, onnx_points, tflite_points

__all__ = ["FP32_TWIN_ONNX", "debug_export", "debug_onnx", "debug_tflite", "onnx_points", "tflite_points"]
