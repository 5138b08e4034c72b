"""Alignment: big faces are averaged down before the warp (gfn_edge/align.py, SHRINK_FIRST_BELOW).

What is checked: where the warp barely shrinks nothing changes (bit for bit the plain bilinear
warp); where it shrinks a lot the geometry is the same (a linear ramp, which averaging leaves as
it is, comes out as the plain warp has it) and the crop no longer jumps when the landmarks move by
a fraction of a source pixel (the aliasing that made big faces' embeddings follow INT8 landmark
noise). The embeddings themselves are judged by the pipeline tests on the pairs photos.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gfn_edge.align import ARCFACE_TEMPLATE, SHRINK_FIRST_BELOW, align, estimate_norm


def _landmarks(face_px: float, x: float, y: float, angle_deg: float = 0.0) -> np.ndarray:
    """The ArcFace template scaled so the crop's 112 px span ``face_px`` source pixels, turned and moved."""
    k = face_px / 112.0
    t = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return ((ARCFACE_TEMPLATE - 56.0) * k) @ rot.T + np.array([x, y])


def _plain(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    return cv2.warpAffine(image, estimate_norm(np.asarray(points, np.float32)), (112, 112), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("face_px", [60.0, 112.0, 150.0, 112.0 / SHRINK_FIRST_BELOW - 1.0])
def test_faces_near_the_crops_size_are_warped_as_before(face_px):
    image = _noise(400, 400)
    points = _landmarks(face_px, 200.0, 210.0, 7.0)
    np.testing.assert_array_equal(align(image, points), _plain(image, points))


@settings(max_examples=40, deadline=None)
@given(
    face_px=st.floats(200.0, 1500.0),
    angle=st.floats(-40.0, 40.0),
    dx=st.floats(-0.3, 0.3),
    dy=st.floats(-0.3, 0.3),
)
def test_a_shrunk_ramp_lands_where_the_plain_warp_puts_it(face_px, angle, dx, dy):
    """Averaging leaves a linear ramp as it is, so any difference from the plain warp would be the
    shrunk picture's pixel grid placed wrong (half-pixel centres, the region's corner)."""
    side = int(face_px * 2.2)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    ramp = 20.0 + 200.0 * (0.6 * xx + 0.4 * yy) / side
    image = np.repeat(np.round(ramp)[..., None], 3, axis=2).astype(np.uint8)
    points = _landmarks(face_px, side * (0.5 + dx * 0.2), side * (0.5 + dy * 0.2), angle)
    got, want = align(image, points).astype(int), _plain(image, points).astype(int)
    assert np.abs(got - want).max() <= 2, np.abs(got - want).max()


def test_big_faces_stop_following_subpixel_landmark_noise():
    """A 700 px face of fine texture: landmarks moved by 0.3 % of the face change the plain warp's
    crop by about as much as the texture's contrast, the shrunk one's by a fraction of it."""
    image = cv2.GaussianBlur(_noise(1600, 1600, 1), (0, 0), 1.0)
    points = _landmarks(700.0, 800.0, 800.0, 5.0)
    rng = np.random.default_rng(2)
    plain_change, shrunk_change = [], []
    for _ in range(6):
        moved = points + rng.normal(0.0, 0.003 * 700.0, points.shape)
        plain_change.append(np.abs(_plain(image, moved).astype(int) - _plain(image, points).astype(int)).mean())
        shrunk_change.append(np.abs(align(image, moved).astype(int) - align(image, points).astype(int)).mean())
    assert np.mean(shrunk_change) < 0.35 * np.mean(plain_change), (np.mean(shrunk_change), np.mean(plain_change))


def test_faces_partly_or_wholly_off_the_picture():
    image = _noise(500, 500)
    half_off = align(image, _landmarks(600.0, 10.0, 250.0))
    assert half_off.shape == (112, 112, 3)
    assert (half_off[:, :20] == 0).all() and half_off[:, 80:].any()  # black where the picture ends
    assert not align(image, _landmarks(600.0, -2000.0, -2000.0)).any()
