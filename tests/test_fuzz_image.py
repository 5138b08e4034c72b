"""Property tests for picture input: any array or file ends as BGR uint8 pixels or an ImageError, nothing else.

Hypothesis generates arrays of every dtype and shape, real encoded pictures of random sizes
and formats, headers of random sizes, and real photo files with random bytes damaged.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import shared_path
from crafted_images import bmp_header, gif_header, jpeg_header, png, tiff_header, webp_vp8l, webp_vp8x
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gfn_edge import ImageError, ResourceLimitError, read_image, to_bgr_uint8
from gfn_edge.image import MAX_SIDE
from gfn_edge.image_header import declared_size

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

DTYPES = st.sampled_from([np.uint8, np.uint16, np.int8, np.int16, np.int32, np.float16, np.float32, np.float64, np.bool_, np.complex64])
SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)


@FUZZ
@given(hnp.arrays(DTYPES, SHAPES), st.sampled_from(["BGR", "RGB", "HSV", None]))
def test_any_array_is_bgr_uint8_or_an_image_error(image: np.ndarray, color):
    try:
        out = to_bgr_uint8(image, color)
    except ImageError:
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3 and out.flags["C_CONTIGUOUS"]
    assert out.shape[:2] == image.shape[:2]
    assert image.dtype in (np.uint8, np.uint16) and color in ("BGR", "RGB")


@FUZZ
@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12)))
def test_grey_becomes_three_equal_channels(grey: np.ndarray):
    out = to_bgr_uint8(grey)
    assert all(np.array_equal(out[..., c], grey) for c in range(3))


@FUZZ
@given(hnp.arrays(np.uint16, hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=8).map(lambda s: (s[0], s[1], 3))))
def test_sixteen_bit_is_scaled_to_eight(image: np.ndarray):
    expected = np.round(image.astype(np.float64) * 255 / 65535)
    assert np.abs(to_bgr_uint8(image).astype(np.float64) - expected).max() <= 0.5


@FUZZ
@given(st.binary(max_size=512))
def test_header_reader_never_raises(data: bytes):
    size = declared_size(data)
    assert size is None or (len(size) == 2 and all(isinstance(v, int) and v >= 0 for v in size))


@FUZZ
@given(st.sampled_from([png, jpeg_header, bmp_header, webp_vp8x, webp_vp8l, gif_header, tiff_header]), st.integers(1, 16383), st.integers(1, 16383))
def test_declared_size_reads_each_crafted_header(make, width: int, height: int):
    assert declared_size(make(width, height)) == (width, height)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 70), st.integers(1, 70), st.sampled_from([".png", ".jpg", ".bmp", ".webp", ".tif", ".pgm"]), st.booleans())
def test_real_pictures_of_any_size_declare_it_and_read_back(tmp_path: Path, width: int, height: int, suffix: str, grey: bool):
    rng = np.random.default_rng(width * 1000 + height)
    image = rng.integers(0, 256, (height, width) if grey or suffix == ".pgm" else (height, width, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(suffix, image)
    assert ok
    data = encoded.tobytes()
    assert declared_size(data) == (width, height)
    path = tmp_path / f"p{suffix}"
    path.write_bytes(data)
    assert read_image(path).shape == (height, width, 3)


@FUZZ
@given(st.integers(1, 2 * MAX_SIDE), st.integers(1, 2 * MAX_SIDE), st.integers(1, 10**9))
def test_pixel_limit_is_applied_from_the_header_alone(tmp_path: Path, width: int, height: int, limit: int):
    path = tmp_path / "header.png"
    path.write_bytes(png(width, height))
    try:
        read_image(path, max_pixels=limit)
    except ResourceLimitError as exc:
        assert width * height > limit or max(width, height) > MAX_SIDE, exc
        assert "downscale it first" in str(exc)
    except ImageError:  # within the limits: the missing pixel data makes decoding fail cleanly
        assert width * height <= limit and max(width, height) <= MAX_SIDE
    else:
        pytest.fail("a PNG without pixel data cannot be a complete picture")


@pytest.fixture(scope="module")
def photo_bytes() -> dict[str, bytes]:
    photo = cv2.imread(str(shared_path("faces", "pairs", "deepface_img16.jpg")))
    small = cv2.resize(photo, (96, 96))
    return {s: cv2.imencode(s, small)[1].tobytes() for s in (".jpg", ".png", ".webp", ".bmp")}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from([".jpg", ".png", ".webp", ".bmp"]),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, 100),
)
def test_damaged_photo_files_read_or_fail_with_an_image_error(tmp_path: Path, photo_bytes, suffix: str, flips, cut_percent: int):
    data = bytearray(photo_bytes[suffix])
    for pos, value in flips:
        data[pos % len(data)] = value
    data = data[: max(1, len(data) * (100 - cut_percent) // 100)] if cut_percent > 50 else data
    path = tmp_path / f"damaged{suffix}"
    path.write_bytes(bytes(data))
    t0 = time.perf_counter()
    try:
        image = read_image(path)
    except ImageError as exc:
        assert "\n" not in str(exc)
    else:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assume(True)
    assert time.perf_counter() - t0 < 5
