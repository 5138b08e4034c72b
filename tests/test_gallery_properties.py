"""Property tests (hypothesis) of what the gallery stores: vector checks, the stored encoding,
the template checksum and argument validation. Each property holds for every input hypothesis
can think of, not just the hand-picked ones in test_gallery.py. Most are about the codec alone;
the round trip through a gallery runs against both stores (``gallery_store``: SQLite, PostgreSQL)."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gfn_edge.gallery import Gallery, GalleryValueError, normalize_embeddings
from gfn_edge.gallery.codec import (
    DTYPE,
    check_margin,
    check_name,
    check_threshold,
    decode,
    encode,
    invalid_rows,
    template_checksum,
)
from gfn_edge.gallery.integrity import verify_rows

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
DIMS = st.integers(1, 48)
names = st.text(st.characters(min_codepoint=32, blacklist_categories=("Cs",), blacklist_characters="\x7f"), min_size=1, max_size=40).filter(
    lambda s: s == s.strip() and s.strip() != ""
)


def arrays(dtype=np.float32, elements=None):
    return DIMS.flatmap(lambda d: hnp.arrays(dtype, st.tuples(st.integers(1, 6), st.just(d)), elements=elements))


@SETTINGS
@given(arrays(np.float32, st.floats(-1e6, 1e6, width=32)))
def test_normalized_rows_are_finite_unit_and_keep_their_direction(arr):
    norms = np.linalg.norm(arr.astype(np.float64), axis=1)
    if (norms < 1e-6).any():
        with pytest.raises(GalleryValueError, match="zero"):
            normalize_embeddings(arr)
        return
    out = normalize_embeddings(arr)
    assert out.dtype == DTYPE and out.shape == arr.shape and out.flags.c_contiguous
    assert len(invalid_rows(out, 2e-6 * math.sqrt(arr.shape[1]) + 1e-6)) == 0
    cos = np.einsum("ij,ij->i", out.astype(np.float64), arr.astype(np.float64)) / norms
    np.testing.assert_allclose(cos, 1.0, atol=1e-5)
    again = normalize_embeddings(out)  # unit input is kept bit-exact: what was stored is what is read
    assert again.tobytes() == out.tobytes()


@SETTINGS
@given(arrays(np.float32, st.floats(-1e3, 1e3, width=32)), st.sampled_from([np.nan, np.inf, -np.inf]), st.data())
def test_non_finite_rows_are_always_refused(arr, bad, data):
    arr[data.draw(st.integers(0, arr.shape[0] - 1)), data.draw(st.integers(0, arr.shape[1] - 1))] = bad
    with pytest.raises(GalleryValueError, match="NaN or Inf"):
        normalize_embeddings(arr)


@SETTINGS
@given(st.one_of(arrays(np.float64, st.floats(allow_nan=True, allow_infinity=True)), arrays(np.int64, st.integers(-(2**62), 2**62))))
def test_any_real_array_is_normalised_or_refused_with_a_gallery_error(arr):
    try:
        out = normalize_embeddings(arr)
    except GalleryValueError:
        return
    assert np.isfinite(out).all() and len(invalid_rows(out, 1e-4)) == 0


@SETTINGS
@given(hnp.arrays(np.float32, st.tuples(st.integers(0, 5), DIMS)))
def test_encoding_round_trips_bit_exactly(arr):
    blobs = [encode(row) for row in arr]
    assert all(len(b) == arr.shape[1] * 4 for b in blobs)
    back = decode(blobs, arr.shape[1]) if len(arr) else np.zeros((0, arr.shape[1]), np.float32)
    assert back.tobytes() == arr.astype("<f4").tobytes() and back.flags.writeable


@SETTINGS
@given(names, st.binary(min_size=4, max_size=256), st.data())
def test_checksum_catches_every_single_bit_flip_of_the_vector(name, blob, data):
    crc = template_checksum(name, blob)
    assert 0 <= crc < 2**32 and crc == zlib.crc32(name.encode() + b"\x00" + blob)
    bit = data.draw(st.integers(0, len(blob) * 8 - 1))
    flipped = bytearray(blob)
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert template_checksum(name, bytes(flipped)) != crc


@SETTINGS
@given(names, st.binary(min_size=4, max_size=64), st.data())
def test_checksum_catches_a_changed_identity_name(name, blob, data):
    i = data.draw(st.integers(0, len(name) - 1))
    other = data.draw(st.characters(min_codepoint=32, blacklist_categories=("Cs",)).filter(lambda c: c != name[i]))
    renamed = name[:i] + other + name[i + 1 :]
    assume(len(renamed.encode()) == len(name.encode()))  # same length: a change within 4 bytes, always caught
    assert template_checksum(renamed, blob) != template_checksum(name, blob)


@SETTINGS
@given(st.integers(2, 24), st.integers(1, 5), st.data())
def test_verify_rows_never_passes_a_flipped_template(dim, n, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    vecs = normalize_embeddings(rng.standard_normal((n, dim)))
    rows = [(i + 1, "ann", encode(v), template_checksum("ann", encode(v))) for i, v in enumerate(vecs)]
    victim = data.draw(st.integers(0, n - 1))
    what = data.draw(st.sampled_from(["vector", "checksum"]))
    tid, name, blob, crc = rows[victim]
    if what == "vector":
        bit = data.draw(st.integers(0, dim * 32 - 1))
        b = bytearray(blob)
        b[bit // 8] ^= 1 << (bit % 8)
        rows[victim] = (tid, name, bytes(b), crc)
    else:
        rows[victim] = (tid, name, blob, crc ^ (1 << data.draw(st.integers(0, 31))))
    keep, kept, damaged = verify_rows(rows, dim, "test")
    assert victim not in keep and [d.template_id for d in damaged] == [victim + 1]
    assert kept.tobytes() == np.delete(vecs, victim, axis=0).tobytes()


@SETTINGS
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5), st.booleans(), st.text(max_size=3), st.none()))
def test_thresholds_and_margins_are_finite_and_in_range_or_refused(value):
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    ok_threshold = number is not None and math.isfinite(number) and -1 <= number <= 1
    ok_margin = number is not None and math.isfinite(number) and 0 <= number <= 2
    for check, ok in ((check_threshold, ok_threshold), (check_margin, ok_margin)):
        if ok:
            assert check(value) == float(value)
        else:
            with pytest.raises(GalleryValueError):
                check(value)


@SETTINGS
@given(st.text(max_size=300))
def test_names_are_accepted_or_refused_with_a_gallery_error(text):
    try:
        assert check_name(text) == text
    except GalleryValueError:
        return
    assert text.strip() == text and 0 < len(text) <= 256 and text.encode("utf-8")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names, arrays(np.float32, st.floats(-100, 100, width=32)))
def test_what_is_enrolled_is_what_is_read_back(gallery_store, name, arr):
    assume((np.linalg.norm(arr.astype(np.float64), axis=1) > 1e-3).all())
    dim = arr.shape[1]
    path = gallery_store.new()  # a fresh gallery per example
    with Gallery(path, signature="sig", dim=dim) as g:
        g.enroll(name, arr)
    with Gallery(path, signature="sig", dim=dim) as g:
        stored = g.embeddings(name)
        assert stored.tobytes() == normalize_embeddings(arr).tobytes() and g.damaged == []
        assert g.search(stored[0], k=1)[0].identity == name
