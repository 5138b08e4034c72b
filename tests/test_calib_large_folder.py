"""A user's folder of thousands of photos: the calibration draws from it, the held-out verification is capped.

Before 2026-12-07 every picture was read before the cap chose its samples: 1,600 photos held 2.4 GB
of detector canvases for the 100 a detector set keeps, and half of them were face-searched again to
verify on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import link_photos, shared_path

from gfn_edge.calib import build_calibration_set
from gfn_edge.calib.build import PICTURES_PER_SAMPLE, draw_pictures
from gfn_edge.calib.dataset import CalibrationSet
from gfn_edge.registry import get_spec

DETECTOR = "retinaface-mnet025"


def test_draws_keep_small_lists_whole_and_cut_large_ones_the_same_way_every_run():
    files = [Path(f"p{i:04d}.jpg") for i in range(1000)]
    assert draw_pictures(files[:20], 10, seed=0) == [files[:20]]
    draws = draw_pictures(files, 10, seed=0)
    limit = PICTURES_PER_SAMPLE * 10
    assert [len(d) for d in draws] == [limit] * (1000 // limit)
    assert all(d == sorted(d) for d in draws) and sorted(p for d in draws for p in d) == files  # each picture once
    assert draw_pictures(files, 10, seed=0) == draws
    assert draw_pictures(files, 10, seed=1)[0] != draws[0]


def test_a_large_folder_is_drawn_from_and_the_rest_is_never_read(tmp_path: Path):
    """25 real scene photos, a detector set of 4 samples: 8 pictures are drawn and read, not 25."""
    scenes = sorted(shared_path("faces", "scenes").glob("*.jpg"))
    spec = get_spec(DETECTOR)
    cset = build_calibration_set(spec, link_photos(scenes, tmp_path / "photos"), num_samples=4, augment=False)
    m = cset.manifest
    assert m["pictures_found"] == 25 and m["pictures_drawn"] == PICTURES_PER_SAMPLE * 4 and len(cset) == 4
    assert len(m["sources"]) == m["pictures_drawn"] and not m["skipped"], m
    summary = CalibrationSet.load(cset.save(tmp_path / "set.npz")).summary()  # what gfn-calib inspect prints
    assert (summary["pictures_found"], summary["pictures_drawn"]) == (25, 8)
    pytest.importorskip("torch")
    from types import SimpleNamespace

    from gfn_edge.export.int8.bundle_notes import calibration_note  # what an INT8 bundle's manifest records

    note = calibration_note(SimpleNamespace(calibration=cset), "minmax")
    assert (note["pictures_found"], note["pictures_drawn"], note["source_images"]) == (25, 8, 8)
    again = build_calibration_set(spec, tmp_path / "photos", num_samples=4, augment=False)
    assert again.source_images == cset.source_images and (again.samples == cset.samples).all()
    # a folder within the limit is read whole, as before
    small = build_calibration_set(spec, link_photos(scenes[:6], tmp_path / "few"), num_samples=4, augment=False)
    assert small.manifest["pictures_found"] == 6 and small.manifest["pictures_drawn"] is None and len(small.manifest["sources"]) == 6
    assert "pictures_drawn" not in calibration_note(SimpleNamespace(calibration=small), "minmax")  # manifests of small folders as before


def test_a_folder_mostly_without_usable_pictures_is_drawn_again_until_the_cap(tmp_path: Path):
    """A camera roll where most files are no use (here 30 damaged files beside 25 photos): further
    draws are read while the samples are fewer than the cap; each read file is used or named."""
    scenes = sorted(shared_path("faces", "scenes").glob("*.jpg"))
    folder = link_photos(scenes, tmp_path / "photos")
    for i in range(30):
        (folder / f"damaged_{i:02d}.jpg").write_text(f"not a photo ({i})")  # each its own bytes: no duplicates
    cset = build_calibration_set(get_spec(DETECTOR), folder, num_samples=4, augment=False)
    m = cset.manifest
    assert len(cset) == 4 and m["pictures_found"] == 55
    limit = PICTURES_PER_SAMPLE * 4
    assert m["pictures_drawn"] % limit == 0 or m["pictures_drawn"] == 55
    assert len(m["sources"]) + len(m["skipped"]) == m["pictures_drawn"] < 55, m  # the last draws never read
    assert len(m["sources"]) - 4 < limit  # no draw read once the cap was met
    assert {Path(rel).name for rel, _ in m["skipped"]} <= {f"damaged_{i:02d}.jpg" for i in range(30)}


def test_a_large_folder_holds_out_at_most_hold_out_max_pictures(tmp_path: Path, monkeypatch):
    pytest.importorskip("torch")
    from gfn_edge.calib import ENV_CALIB
    from gfn_edge.export.held_out import HOLD_OUT_MAX, held_out_verification
    from gfn_edge.export.verification_set import ENV_VERIFY

    monkeypatch.delenv(ENV_VERIFY, raising=False)
    monkeypatch.delenv(ENV_CALIB, raising=False)
    photo = sorted(shared_path("faces", "portraits").glob("*.jpg"))[0]
    folder = tmp_path / "photos"
    folder.mkdir()
    total = 2 * HOLD_OUT_MAX + 100
    for i in range(total):
        (folder / f"p{i:04d}.jpg").symlink_to(photo)
    held = held_out_verification(folder, None)
    assert held is not None and len(held.names) == HOLD_OUT_MAX and held.pictures == total
    assert held.names.isdisjoint(held.others) and len(held.names | held.others) == total
    few = tmp_path / "few"
    few.mkdir()
    for i in range(40):
        (few / f"p{i:04d}.jpg").symlink_to(photo)
    small = held_out_verification(few, None)
    assert small is not None and len(small.names) == 20 and len(small.others) == 20  # half, as before


def test_channel_statistics_match_numpy_on_the_whole_set_without_holding_it_as_float():
    """``gfn-calib build`` printed them from the whole set as float64 at once: 2.4 GB for a
    150-sample detector set (0.35 GB now)."""
    samples = np.random.default_rng(0).integers(0, 256, (21, 40, 30, 3)).astype(np.uint8)
    mean, std = CalibrationSet(samples, {}).channel_statistics(chunk=4)
    flat = samples.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(mean, flat.mean(0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(std, flat.std(0), rtol=0, atol=1e-9)
    assert CalibrationSet(samples[:0], {}).channel_statistics() == (None, None)


def test_a_large_recogniser_verification_folder_is_drawn_labelled_pairs_first():
    """``--verify-images`` given a folder of thousands of photos: a recogniser reads at most
    MAX_FACE_PICTURES of them, both pictures of as many labelled pairs as fit first."""
    pytest.importorskip("torch")
    from gfn_edge.export import verify_data
    from gfn_edge.image import list_images

    pairs_dir = shared_path("faces", "pairs", "pairs.csv").parent
    files = list_images(pairs_dir)
    chosen = verify_data.face_pictures(files, pairs_dir, verify_data.labelled_pairs(pairs_dir), limit=20)
    assert len(chosen) == 20 and chosen == sorted(chosen, key=files.index)  # folder order
    assert (
        verify_data.face_pictures(files, pairs_dir, verify_data.labelled_pairs(pairs_dir), limit=20) == chosen
        and verify_data.face_pictures(files, pairs_dir, verify_data.labelled_pairs(pairs_dir), limit=500) == files
    )
    names = {p.name for p in chosen}
    rows = verify_data.read_pairs_csv(pairs_dir / "pairs.csv")
    whole = sum(a in names and b in names for a, b, _ in rows)
    # pairs drawn whole: 154 of them in 20 pictures, each picture in one; 200 random draws of 20 held 9 on average, 29 at most
    assert whole >= 100, whole
    assert all(any(p.name in (a, b) and a in names and b in names for a, b, _ in rows) for p in chosen)


@pytest.mark.slow
def test_a_drawn_recogniser_verification_set_says_what_it_left_out(monkeypatch, mirror):
    pytest.importorskip("torch")
    from gfn_edge.export import verify_data
    from gfn_edge.image import list_images

    pairs_dir = shared_path("faces", "pairs", "pairs.csv").parent
    files = list_images(pairs_dir)
    names = {p.name for p in verify_data.face_pictures(files, pairs_dir, verify_data.labelled_pairs(pairs_dir), limit=20)}
    rows = verify_data.read_pairs_csv(pairs_dir / "pairs.csv")
    whole = sum(a in names and b in names for a, b, _ in rows)
    monkeypatch.setattr(verify_data, "MAX_FACE_PICTURES", 20)
    vset = verify_data.face_set(get_spec("ghostfacenet-dsitweed-w0.5-e16"), pairs_dir, mirror=mirror)
    d = vset.description
    assert d["images"] == 20 and d["pictures_found"] == len(files) and d["pairs"] + d["pairs_without_face"] == whole
    assert d["pairs_not_drawn"] == len(rows) - whole
