"""Packing a .tflite flatbuffer again (export/tflite_flatbuffer.py) keeps what the model computes,
and writes each distinct zero-point vector once."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="asset missing: tensorflow (the training side: pip install 'gfn-edge[export]')")
pytest.importorskip("ai_edge_litert", reason="asset missing: ai-edge-litert")

from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from gfn_edge.export.tflite_flatbuffer import pack, unpack

RNG = np.random.default_rng(11)
CHANNELS = (24, 24, 40)


def _full_integer_model() -> bytes:
    """Three per-channel int8 convolutions (24, 24 and 40 output channels), int8 in and out."""
    from gfn_edge.export.targets.tflite_int8 import _tf  # TF_USE_LEGACY_KERAS set before the import

    tf = _tf()
    kernels, depth = [], 3
    for c in CHANNELS:
        kernels.append(tf.constant(RNG.normal(size=(3, 3, depth, c)).astype(np.float32) * 0.2))
        depth = c

    @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)])
    def fn(x):
        for k in kernels:
            x = tf.nn.relu(tf.nn.conv2d(x, k, 1, "SAME"))
        return x

    def samples():
        for _ in range(8):
            yield [RNG.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def _zero_point_vectors(content: bytes) -> tuple[list[np.ndarray], set[int]]:
    """Every tensor's zero points and where in the file their vectors start."""
    model = schema.Model.GetRootAsModel(bytearray(content), 0)
    graph = model.Subgraphs(0)
    values, starts = [], set()
    for i in range(graph.TensorsLength()):
        q = graph.Tensors(i).Quantization()
        if q is not None and q.ZeroPointLength():
            values.append(q.ZeroPointAsNumpy().copy())
            starts.add(q._tab.Vector(q._tab.Offset(10)))  # field 10: zero_point (TFLite's schema)
    return values, starts


def _outputs(content: bytes, x: np.ndarray) -> np.ndarray:
    it = Interpreter(model_content=content, num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


def test_each_distinct_zero_point_vector_is_written_once_and_the_model_computes_the_same():
    content = _full_integer_model()
    packed = pack(unpack(content), len(content))
    before, before_starts = _zero_point_vectors(content)
    after, after_starts = _zero_point_vectors(packed)
    # the same zero points, tensor by tensor: each weight and bias has one per output channel
    assert len(before) == len(after) and all(np.array_equal(a, b) for a, b in zip(before, after))
    assert sum(len(v) == c for v in after for c in CHANNELS) >= 2 * len(CHANNELS)
    distinct = {(len(v), v.tobytes()) for v in after}
    assert len(before_starts) == len(before) and len(after_starts) == len(distinct) < len(after)
    saved = sum(len(v) for v in before) - sum(n for n, _ in distinct)
    assert len(content) - len(packed) >= 8 * saved - 512  # int64 each, less the converter's padding
    x = RNG.integers(-128, 128, (1, 16, 16, 3)).astype(np.int8)
    np.testing.assert_array_equal(_outputs(packed, x), _outputs(content, x))
    assert len(pack(unpack(packed), len(packed))) == len(packed)  # nothing more to share
