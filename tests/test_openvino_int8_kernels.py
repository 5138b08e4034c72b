"""OpenVINO INT8 IR computes its own quantisation on this CPU, x86 or ARM.

The graph is the pattern where OpenVINO 2026.4 goes wrong on aarch64: a FakeQuantize'd input into
a 1x1 convolution with int8 weights (Convert, Multiply: how an INT8 IR stores them), FakeQuantize,
PReLU with negative slopes, FakeQuantize, and a 4-channel depthwise 3x3, as in a GhostFaceNets
ghost module, with a dynamic batch as gfn-export writes. Emulated on Cortex-A72 and A76, the CPU
plugin's integer kernels miss the exact answer by 0.029 (on the real students: a compile error on
the A72, garbage on the A76), and with them off its fused subgraphs ("snippets") on the dynamic
batch by 6.5; the backend therefore runs INT8 IR on ARM with the integer kernels off and on static
shapes. Weights use the grids the exporters write (the 1x1 convolution's on the 7-bit range, no
u8s8 saturation on x86 without VNNI; the depthwise one's on the full 8 bits,
export/int8/weight_grid.py) and zero points are integers, so the x86 integer kernels must give the
exact answer too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gfn_edge.errors import ArtifactError
from gfn_edge.manifest import Manifest, TensorSpec

pytestmark = pytest.mark.device

ov = pytest.importorskip("openvino")

CHANNELS_IN, CHANNELS, SIZE = 3, 4, 16
IN_RANGE = (-128 / 127.5, 127 / 127.5)  # uint8 with zero point 128: an integer zero point, as QDQ writes
MID_RANGE = (-3 * 128 / 127.5, 3 * 127 / 127.5)


def fake_quantize(x: np.ndarray, lo: float, hi: float, levels: int = 256) -> np.ndarray:
    step = (hi - lo) / (levels - 1)
    return np.round((np.clip(x, lo, hi) - lo) / step) * step + lo


def int8_weights(w: np.ndarray, qmax: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric int8 (the 7-bit range by default), and the scales."""
    scale = (np.abs(w).reshape(w.shape[0], -1).max(1) / qmax).reshape(-1, *([1] * (w.ndim - 1))).astype(np.float32)
    return np.round(w / scale).astype(np.int8), scale


@pytest.fixture(scope="module")
def int8_ir(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """The IR on disk, two input pictures (NHWC) and the exact output of its quantised arithmetic (NCHW)."""
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    q1, s1 = int8_weights(rng.normal(size=(CHANNELS, CHANNELS_IN, 1, 1)).astype(np.float32) * 0.3)
    bias = (rng.normal(size=(1, CHANNELS, 1, 1)) * 0.1).astype(np.float32)
    slope = rng.uniform(-4, 4, size=(CHANNELS, 1, 1)).astype(np.float32)  # GhostFaceNets' PReLU slopes span -16..16
    qd, sd = int8_weights(rng.normal(size=(CHANNELS, 1, 1, 3, 3)).astype(np.float32) * 0.3, 127)  # depthwise: 8 bits

    def fq(node, lo, hi):
        return ops.fake_quantize(node, np.float32(lo), np.float32(hi), np.float32(lo), np.float32(hi), 256)

    def dequantized(q, s):
        return ops.multiply(ops.convert(ops.constant(q), np.float32), ops.constant(s))

    x = ops.parameter([-1, CHANNELS_IN, SIZE, SIZE], np.float32, name="input")  # dynamic batch, as gfn-export writes
    h = ops.convolution(fq(x, *IN_RANGE), dequantized(q1, s1), [1, 1], [0, 0], [0, 0], [1, 1])
    h = fq(ops.add(h, ops.constant(bias)), *MID_RANGE)
    h = fq(ops.prelu(h, ops.constant(slope)), *MID_RANGE)
    h = ops.group_convolution(h, dequantized(qd, sd), [1, 1], [1, 1], [1, 1], [1, 1])
    out = ops.result(h)
    out.output(0).get_tensor().set_names({"output"})
    path = tmp_path_factory.mktemp("ov_int8") / "model.xml"
    ov.save_model(ov.Model([out], [x], "int8_ghost_module"), str(path), compress_to_fp16=False)

    picture = rng.uniform(-1, 1, size=(2, SIZE, SIZE, CHANNELS_IN)).astype(np.float32)  # a batch of two
    a = fake_quantize(picture.transpose(0, 3, 1, 2).astype(np.float64), *IN_RANGE)
    a = np.einsum("oc,nchw->nohw", (q1 * s1)[:, :, 0, 0].astype(np.float64), a) + bias
    a = fake_quantize(a, *MID_RANGE)
    a = fake_quantize(np.where(a >= 0, a, a * slope[None].astype(np.float64)), *MID_RANGE)
    a = np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)))
    wd = (qd * sd)[:, 0, 0].astype(np.float64)
    expected = sum(a[:, :, i : i + SIZE, j : j + SIZE] * wd[:, i, j].reshape(1, -1, 1, 1) for i in range(3) for j in range(3))
    return path, picture, expected


def open_ir(path: Path, **options):
    from gfn_edge.runtimes import open_model_file

    manifest = Manifest(
        model="int8-ghost-module",
        task="embed",
        target="openvino-int8",
        precision="int8",
        files={"model": path.name},
        spec={},
        inputs=[TensorSpec("input", "input", [1, CHANNELS_IN, SIZE, SIZE], "float32", "NCHW")],
        outputs=[TensorSpec("embedding", "output", [])],
        sha256={},
        path=path.parent,
    )
    return open_model_file(path, manifest, backend="openvino", threads=1, **options)


@pytest.mark.numerics
def test_the_default_computes_the_quantised_arithmetic_on_this_cpu(int8_ir):
    from gfn_edge.runtimes.openvino_backend import int8_kernels_hold

    path, picture, expected = int8_ir
    model = open_ir(path)
    assert model.describe()["int8_kernels"] is int8_kernels_hold()
    got = model.run(picture)["embedding"]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=2e-5, err_msg=f"INT8 IR on OpenVINO {model.describe()}")


@pytest.mark.numerics
def test_the_f32_simulation_is_exact_everywhere_and_the_choice_is_checked(int8_ir):
    path, picture, expected = int8_ir
    simulated = open_ir(path, int8_kernels=False)
    assert simulated.describe()["int8_kernels"] is False
    np.testing.assert_allclose(simulated.run(picture)["embedding"], expected, atol=2e-5)
    with pytest.raises(ArtifactError, match="int8_kernels"):
        open_ir(path, int8_kernels="yes")


def test_the_rule_names_the_isas():
    from gfn_edge.runtimes.openvino_backend import int8_kernels_hold

    assert int8_kernels_hold("x86_64") and int8_kernels_hold("AMD64")
    assert not int8_kernels_hold("aarch64") and not int8_kernels_hold("arm64")
