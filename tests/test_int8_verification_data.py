"""What an INT8 export is verified on when the user names no verification folder.

``gfn-export --model my.h5 --target onnx-int8 --calib photos/`` (no ``--verify-images``, no
``$GFN_EDGE_VERIFY_IMAGES``) used to verify the INT8 artifact on synthetic noise and PASS; now half
of the calibration folder is held out of the calibration and verifies every artifact of the run.
"""

from __future__ import annotations

import json

import pytest
from conftest import link_photos, shared_path

from gfn_edge.calib import ENV_CALIB, build_calibration_set
from gfn_edge.errors import InvalidArgumentError
from gfn_edge.image import list_images
from gfn_edge.registry import get_spec

pytest.importorskip("torch")

from gfn_edge.export.api import export_model
from gfn_edge.export.faces import ReferenceFaces
from gfn_edge.export.held_out import held_out_verification
from gfn_edge.export.verification_set import ENV_VERIFY

E6 = "ghostfacenets/ghostnetv1_w0.5_s2_basic_vn_big_epoch_6_0.695095.h5"


@pytest.fixture
def no_verification_folder(monkeypatch):
    monkeypatch.delenv(ENV_VERIFY, raising=False)
    monkeypatch.delenv(ENV_CALIB, raising=False)


def test_half_of_the_calibration_folder_is_held_out_the_same_way_every_run(tmp_path, no_verification_folder, monkeypatch):
    folder = link_photos(sorted(shared_path("faces", "pairs", "pairs.csv").parent.glob("*.jpg")), tmp_path / "photos")
    held = held_out_verification(str(folder), None)
    names = [p.name for p in list_images(folder)]
    assert held is not None and held.folder == folder and held.pictures == len(names)
    assert len(held.names) == len(names) // 2 and held.names <= set(names)
    assert held_out_verification(folder, None) == held  # a fixed draw
    # drawn, not alternating: the pairs folder's pairs are neighbours; drawn, 129 of its 349 survive
    pairs = [line.split(",")[:2] for line in shared_path("faces", "pairs", "pairs.csv").read_text().splitlines()[1:]]
    both = sum(a in held.names and b in held.names for a, b in pairs)
    assert 0.2 * len(pairs) < both < 0.5 * len(pairs), (both, len(pairs))
    monkeypatch.setenv(ENV_CALIB, str(folder))
    assert held_out_verification(None, None) == held  # the calibration folder from the environment
    # nothing is held out where verification pictures are named, or where there is no folder to split
    assert held_out_verification(folder, tmp_path) is None
    monkeypatch.setenv(ENV_VERIFY, str(tmp_path))
    assert held_out_verification(folder, None) is None
    monkeypatch.delenv(ENV_VERIFY)
    saved = tmp_path / "set.npz"
    saved.write_bytes(b"")
    assert held_out_verification(saved, None) is None


def test_a_folder_too_small_to_split_is_refused_saying_why(tmp_path, mirror, no_verification_folder):
    folder = link_photos(sorted(shared_path("faces", "portraits").glob("*.jpg"))[:8], tmp_path / "photos")
    with pytest.raises(InvalidArgumentError, match=r"No --verify-images was given, so half of --calib's pictures \(at most 300\) were held out to verify on"):
        export_model("ghostfacenet-dsitweed-w0.5-e16", "tflite-int8", tmp_path / "out", mirror=mirror, calib=folder)
    # a saved set (gfn-calib build) has no pictures at hand to split: refused rather than synthetic
    saved = build_calibration_set(get_spec("ghostfacenet-dsitweed-w0.5-e16"), folder, faces=ReferenceFaces(mirror=mirror)).save(tmp_path / "set.npz")
    with pytest.raises(InvalidArgumentError, match=r"no verification folder is given .* nor a calibration folder to hold some out of"):
        export_model("ghostfacenet-dsitweed-w0.5-e16", "tflite-int8", tmp_path / "out", mirror=mirror, calib=saved)
    assert not (tmp_path / "out").exists() or not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


@pytest.mark.slow
def test_int8_from_a_checkpoint_and_one_folder_is_verified_on_its_held_out_half(tmp_path, mirror, no_verification_folder):
    """The user's command with one folder of photos: the calibration uses half of it, every artifact
    is verified on real faces of the other half (labelled pairs included where both are held out)."""
    checkpoint = shared_path("models", *E6.split("/"))
    folder = link_photos(sorted(shared_path("faces", "pairs", "pairs.csv").parent.iterdir()), tmp_path / "photos")
    (result,) = export_model(str(checkpoint), "onnx-int8", tmp_path / "out", mirror=mirror, calib=folder)
    assert result.error is None and result.bundle is not None, result.failures
    manifest = json.loads((result.bundle / "manifest.json").read_text())
    data = manifest["verification"]["data"]
    held = held_out_verification(folder, None)
    assert data["folder"] == str(folder) and data["synthetic"] is False
    assert data["held_out_of_calibration"] == len(held.names) and data["calibration_folder_pictures"] == held.pictures
    calibration = manifest["export"]["notes"]["calibration"]
    assert calibration["source_images"] <= held.pictures - len(held.names)  # only the other half calibrated
    assert data["images"] == len(held.names)  # the held-out half verified, nothing else of the folder
    assert data["faces"] >= 50 and data["pairs"] >= 40, data
    assert result.passed, result.failures
