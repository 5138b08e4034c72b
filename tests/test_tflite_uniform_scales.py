"""Per-channel quantisations whose channels share one scale are written per tensor
(export/int8/tflite_uniform_scales.py): fewer bytes, bit-identical outputs on LiteRT's builtin
kernels and its XNNPACK delegate, and a layer whose channels differ keeps its vector."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="asset missing: tensorflow (the training side: pip install 'gfn-edge[export]')")
pytest.importorskip("ai_edge_litert", reason="asset missing: ai-edge-litert")

from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from gfn_edge.export.int8.tflite_uniform_scales import per_tensor_where_uniform, uniform_per_channel
from gfn_edge.export.tflite_flatbuffer import unpack

RNG = np.random.default_rng(5)
CHANNELS = 24


def _prelu_model() -> bytes:
    """A convolution with channels of different magnitude, then a PReLU written as TFLite-int8 writes
    it (``relu(1*x) - relu(|a|*-x)`` as two 1x1 depthwise convolutions: the first's kernel all ones),
    quantised by the project's own full-integer route."""
    from gfn_edge.export.targets.tflite_int8 import _tf, int8_converter, quantized_model

    tf = _tf()
    kernel = RNG.normal(size=(3, 3, 3, CHANNELS)).astype(np.float32) * np.linspace(0.05, 1.0, CHANNELS, dtype=np.float32)
    slopes = RNG.uniform(0.05, 0.4, CHANNELS).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32)])
    def fn(x):
        y = tf.nn.conv2d(x, tf.constant(kernel), 1, "SAME")
        positive = tf.nn.relu(tf.nn.depthwise_conv2d(y, tf.ones((1, 1, CHANNELS, 1)), [1, 1, 1, 1], "VALID"))
        negative = tf.nn.relu(tf.nn.depthwise_conv2d(y, tf.constant(-slopes.reshape(1, 1, CHANNELS, 1)), [1, 1, 1, 1], "VALID"))
        return positive - negative

    calib = RNG.uniform(-1, 1, (16, 16, 16, 3)).astype(np.float32)
    return quantized_model(int8_converter(fn, calib))


def _outputs(content: bytes, resolver: OpResolverType) -> list[np.ndarray]:
    it = Interpreter(model_content=content, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    results = []
    for seed in range(3):
        it.set_tensor(inp["index"], np.random.default_rng(seed).uniform(-1, 1, inp["shape"]).astype(inp["dtype"]))
        it.invoke()
        results.append(it.get_tensor(out["index"]).copy())
    return results


def _per_channel(content: bytes) -> dict[str, int]:
    graph = unpack(content).subgraphs[0]
    return {
        (t.name.decode() if isinstance(t.name, bytes) else t.name): len(t.quantization.scale)
        for t in graph.tensors
        if t.quantization is not None and t.quantization.scale is not None
    }


def test_uniform_per_channel_scales_become_one_and_the_outputs_stay_bit_identical():
    content = _prelu_model()
    slim, changed = per_tensor_where_uniform(content)
    before, after = _per_channel(content), _per_channel(slim)
    uniform = [name for name, n in before.items() if n == CHANNELS and after[name] == 1]
    kept = [name for name, n in before.items() if n == CHANNELS and after[name] == CHANNELS]
    assert changed == len(uniform) >= 2  # the ones kernel and its bias at least
    assert len(kept) >= 4  # the convolution's and the slopes' weights and biases keep their vectors
    assert len(content) - len(slim) >= changed * (CHANNELS - 1) * 4  # a float32 scale per channel gone
    for resolver in (OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES, OpResolverType.AUTO):  # builtin kernels, XNNPACK
        for a, b in zip(_outputs(content, resolver), _outputs(slim, resolver)):
            np.testing.assert_array_equal(a, b)
    assert per_tensor_where_uniform(slim) == (slim, 0)


def test_only_equal_scales_and_equal_zero_points_count_as_uniform():
    def params(scales, zeros=None):
        q = schema.QuantizationParametersT()
        q.scale, q.zeroPoint = scales, zeros if zeros is not None else [0] * len(scales)
        return q

    assert uniform_per_channel(params([0.5, 0.5, 0.5]))
    assert not uniform_per_channel(params([0.5, 0.5, 0.25]))
    assert not uniform_per_channel(params([0.5, 0.5], [0, 1]))
    assert not uniform_per_channel(params([0.5]))  # per tensor already
    assert not uniform_per_channel(params([0.5, 0.5], [0]))  # a malformed vector is left to the runtime to refuse
    assert not uniform_per_channel(None)
