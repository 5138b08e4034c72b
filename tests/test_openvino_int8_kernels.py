"""OpenVINO INT8 IR computes its own quantisation on this CPU, x86 or ARM.

The graph is the pattern where OpenVINO 2026.4 goes wrong on aarch64: a FakeQuantize'd input into
a 1x1 convolution with int8 weights (Convert, Multiply: how an INT8 IR stores them), FakeQuantize,
PReLU with negative slopes, FakeQuantize, and a 4-channel depthwise 3x3, as in a GhostFaceNets
ghost module, with a dynamic batch as gfn-export writes. Emulated on Cortex-A72 and A76, the CPU
plugin's integer kernels miss the exact answer by 0.029 (on the real students: a compile error on
the A72, garbage on the A76), and with them off its fused subgraphs ("snippets") on the dynamic
batch by 6.5; the backend therefore runs INT8 IR on ARM with the integer kernels off and on static
shapes. Weights use the grids the exporters write (the 1x1 convolution's on the full 8 bits, as
since 2026-12-06, or on the 7-bit range before; the depthwise one's on the full 8 bits) and zero
points are integers, so whichever way the backend computes them here (integer kernels where they
are exact: 7-bit weights, or VNNI) must give the exact answer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bare_bundles import int8_manifest

from gfn_edge.errors import ArtifactError

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


def dequantized(q: np.ndarray, scale: np.ndarray):
    """Int8 weights as an INT8 IR stores them: a Convert of the integers and a Multiply by the scales."""
    import openvino.opset13 as ops

    return ops.multiply(ops.convert(ops.constant(q), np.float32), ops.constant(scale))


@pytest.fixture(scope="module", params=[7, 8], ids=["7-bit", "8-bit"])
def int8_ir(request, tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray, int]:
    """The IR on disk, two input pictures (NHWC), the exact output of its quantised arithmetic
    (NCHW), and the grid of its 1x1 convolution's weights: 7 bits (openvino-int8 until 2026-12-06)
    or the full 8 (since: the runtime uses the integer kernels only where VNNI makes them exact)."""
    import openvino.opset13 as ops

    bits = request.param
    rng = np.random.default_rng(0)
    q1, s1 = int8_weights(rng.normal(size=(CHANNELS, CHANNELS_IN, 1, 1)).astype(np.float32) * 0.3, 64 if bits == 7 else 127)
    bias = (rng.normal(size=(1, CHANNELS, 1, 1)) * 0.1).astype(np.float32)
    slope = rng.uniform(-4, 4, size=(CHANNELS, 1, 1)).astype(np.float32)  # GhostFaceNets' PReLU slopes span -16..16
    qd, sd = int8_weights(rng.normal(size=(CHANNELS, 1, 1, 3, 3)).astype(np.float32) * 0.3, 127)  # depthwise: 8 bits

    def fq(node, lo, hi):
        return ops.fake_quantize(node, np.float32(lo), np.float32(hi), np.float32(lo), np.float32(hi), 256)

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
    return path, picture, expected, bits


def open_ir(path: Path, bits: int = 7, shape: tuple[int, ...] = (1, CHANNELS_IN, SIZE, SIZE), **options):
    from gfn_edge.runtimes import open_model_file

    notes = {"notes": {"int8_weight_bits": bits}} if bits != 7 else {}  # 7: a bundle from before the field
    manifest = int8_manifest(path, "openvino-int8", "input", shape, "output", export=notes)
    return open_model_file(path, manifest, backend="openvino", threads=1, **options)


@pytest.mark.numerics
def test_the_default_computes_the_quantised_arithmetic_on_this_cpu(int8_ir):
    from gfn_edge.runtimes.openvino_backend import int8_kernels_hold

    path, picture, expected, bits = int8_ir
    model = open_ir(path, bits)
    assert model.describe()["int8_kernels"] is int8_kernels_hold(weight_bits=bits)
    got = model.run(picture)["embedding"]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=2e-5, err_msg=f"INT8 IR on OpenVINO {model.describe()}")


@pytest.mark.numerics
def test_the_f32_simulation_is_exact_everywhere_and_the_choice_is_checked(int8_ir):
    path, picture, expected, bits = int8_ir
    simulated = open_ir(path, bits, int8_kernels=False)
    assert simulated.describe()["int8_kernels"] is False
    np.testing.assert_allclose(simulated.run(picture)["embedding"], expected, atol=2e-5)
    with pytest.raises(ArtifactError, match="int8_kernels"):
        open_ir(path, bits, int8_kernels="yes")


def test_the_rule_names_the_isas():
    from gfn_edge.runtimes.openvino_backend import int8_kernels_hold

    assert int8_kernels_hold("x86_64") and int8_kernels_hold("AMD64")
    assert not int8_kernels_hold("aarch64") and not int8_kernels_hold("arm64")
    # full 8-bit weights saturate u8s8 pair sums on x86 without VNNI: simulated there
    assert int8_kernels_hold("x86_64", 8, vnni=True) and not int8_kernels_hold("x86_64", 8, vnni=False)
    assert int8_kernels_hold("x86_64", 7, vnni=False) and not int8_kernels_hold("aarch64", 8, vnni=True)


def test_vnni_is_read_from_the_cpu_flags(tmp_path):
    from gfn_edge.runtimes.base import cpu_has_vnni

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    assert cpu_has_vnni(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")  # Zen 3, Skylake: AVX2 without VNNI
    assert not cpu_has_vnni(info)
    info.write_text("flags\t\t: avx2 avx_vnni\n")  # Alder Lake N: AVX-VNNI
    assert cpu_has_vnni(info)
    assert not cpu_has_vnni(tmp_path / "absent")  # unreadable: the safe side


@pytest.mark.numerics
def test_full_8_bit_weights_at_their_worst_are_exact_the_way_the_rule_runs_them(tmp_path):
    """Every input at the top of its range and every weight at +127 over 32 channels: the int16 pair
    sums of u8s8 kernels without VNNI would stop near 32,767 (the answer about halved). The
    backend's automatic choice for an 8-bit bundle (integer kernels with VNNI, f32 simulation
    without, or on ARM) gives the exact answer."""
    import openvino.opset13 as ops

    channels, size = 32, 4
    lo, hi = 0.0, 255 / 127.5
    x = ops.parameter([1, CHANNELS_IN, size, size], np.float32, name="input")
    spread = ops.constant(np.full((channels, CHANNELS_IN, 1, 1), 1 / CHANNELS_IN, np.float32))  # in float: the mean of the three
    h = ops.convolution(x, spread, [1, 1], [0, 0], [0, 0], [1, 1])
    h = ops.fake_quantize(h, np.float32(lo), np.float32(hi), np.float32(lo), np.float32(hi), 256)
    q = np.full((8, channels, 1, 1), 127, np.int8)
    q[1::2] = -127
    out = ops.result(ops.convolution(h, dequantized(q, np.full((8, 1, 1, 1), 1 / 127, np.float32)), [1, 1], [0, 0], [0, 0], [1, 1]))
    out.output(0).get_tensor().set_names({"output"})
    path = tmp_path / "model.xml"
    ov.save_model(ov.Model([out], [x], "worst_case"), str(path), compress_to_fp16=False)
    model = open_ir(path, 8, shape=(1, CHANNELS_IN, size, size))
    got = model.run(np.full((1, size, size, CHANNELS_IN), hi, np.float32))["embedding"]
    expected = np.where(np.arange(8) % 2 == 0, 1, -1).reshape(1, 8, 1, 1) * channels * hi
    np.testing.assert_allclose(got, np.broadcast_to(expected, got.shape), rtol=1e-5, err_msg=f"{model.describe()}")
