"""The installed ``gfn-edge`` command on real photos: JSON on stdout, messages and exit codes on errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import hang_guard, shared_path

from gfn_edge.analyzer import FaceAnalyzer, largest_face
from gfn_edge.image import read_image
from gfn_edge.registry import get_spec

pytestmark = pytest.mark.device

DET = "retinaface-mnet025"
REC = "ghostfacenet-dsitweed-w0.5-e16"


def _command() -> list[str]:
    script = Path(sys.executable).parent / "gfn-edge"
    if script.is_file():
        return [str(script)]
    found = shutil.which("gfn-edge")
    assert found, "the gfn-edge console script is not installed (pip install -e .)"
    return [found]


def gfn_edge(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(_command() + [str(a) for a in args], capture_output=True, text=True, timeout=hang_guard(300), env=env)


def _lines(proc: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def det(bundles) -> Path:
    return bundles.get(DET, "onnx")


@pytest.fixture(scope="module")
def rec(bundles) -> Path:
    return bundles.get(REC, "onnx")


@pytest.fixture(scope="module")
def photos() -> dict[str, Path]:
    return {
        "t1": shared_path("faces", "scenes", "insightface_t1.jpg"),
        "a": shared_path("faces", "pairs", "deepface_img20.jpg"),
        "a2": shared_path("faces", "pairs", "deepface_img21.jpg"),  # the same person (pairs.csv)
    }


def test_analyze_prints_one_json_line_per_picture(det, rec, photos):
    proc = gfn_edge("analyze", "--detector", det, "--recognizer", rec, photos["t1"], photos["a"])
    assert proc.returncode == 0, proc.stderr
    lines = _lines(proc)
    assert [line["image"] for line in lines] == [str(photos["t1"]), str(photos["a"])]
    assert len(lines[0]["faces"]) == 6 and len(lines[1]["faces"]) == 1
    # the same numbers as the library
    lib = FaceAnalyzer(det, rec).analyze(read_image(photos["t1"]))
    for face, ref in zip(lines[0]["faces"], lib):
        assert len(face["box"]) == 4 and np.array(face["landmarks"]).shape == (5, 2)
        assert isinstance(face["score"], float) and face["score"] >= 0.5
        np.testing.assert_allclose(face["box"], ref.box, atol=0.01)
        emb = np.asarray(face["embedding"])
        assert emb.shape == (512,) and float(emb @ ref.embedding) > 0.9999


def test_analyze_options(det, photos):
    proc = gfn_edge("analyze", "--detector", det, "--backend", "openvino", "--threads", "1", "--max-faces", "2", photos["t1"])
    assert proc.returncode == 0, proc.stderr
    faces = _lines(proc)[0]["faces"]
    assert len(faces) == 2
    assert all(f["embedding"] is None for f in faces)  # no recogniser given


def test_compare_same_and_different_people(det, rec, photos):
    same = gfn_edge("compare", "--detector", det, "--recognizer", rec, photos["a"], photos["a2"])
    assert same.returncode == 0, same.stderr
    result = _lines(same)[0]
    assert set(result) >= {"similarity", "same", "threshold"}
    assert result["threshold"] == get_spec(REC).default_threshold == 0.7544  # the manifest's: the student's own (not 0.3)
    analyzer = FaceAnalyzer(det, rec)
    fa = largest_face(analyzer.analyze(read_image(photos["a"])))
    fb = largest_face(analyzer.analyze(read_image(photos["a2"])))
    assert result["similarity"] == pytest.approx(fa.similarity(fb), abs=1e-5)
    assert result["same"] is True
    # a threshold above the similarity flips the decision
    strict = _lines(gfn_edge("compare", "--detector", det, "--recognizer", rec, "--threshold", "0.99", photos["a"], photos["a2"]))[0]
    assert strict == {**strict, "same": False, "threshold": 0.99}
    # the group photo's largest face is another person
    other = _lines(gfn_edge("compare", "--detector", det, "--recognizer", rec, photos["a"], photos["t1"]))[0]
    assert other["similarity"] < result["similarity"] - 0.3


def test_unreadable_picture(det, rec, photos, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    proc = gfn_edge("analyze", "--detector", det, "--recognizer", rec, bad, photos["a"])
    assert proc.returncode == 1
    assert "cannot decode" in proc.stderr and str(bad) in proc.stderr
    lines = _lines(proc)  # the good picture is still analysed
    assert "error" in lines[0] and len(lines[1]["faces"]) == 1
    missing = gfn_edge("compare", "--detector", det, "--recognizer", rec, tmp_path / "nope.jpg", photos["a"])
    assert missing.returncode == 1 and "does not exist" in missing.stderr and missing.stdout == ""


def test_no_face_to_compare(det, rec, photos, tmp_path):
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 200, np.uint8))
    proc = gfn_edge("compare", "--detector", det, "--recognizer", rec, photos["a"], blank)
    assert proc.returncode == 1
    assert f"no face found in {blank}" in proc.stderr
    assert proc.stdout == ""
    # analysing it is not an error: the answer is "no faces"
    ok = gfn_edge("analyze", "--detector", det, blank)
    assert ok.returncode == 0 and _lines(ok) == [{"image": str(blank), "faces": []}]


def test_wrong_bundles(det, rec, photos, tmp_path):
    swapped = gfn_edge("compare", "--detector", rec, "--recognizer", det, photos["a"], photos["a2"])
    assert swapped.returncode == 1
    assert "swapped" in swapped.stderr and "Traceback" not in swapped.stderr
    missing = gfn_edge("analyze", "--detector", tmp_path / "no-bundle", photos["a"])
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    wrong_backend = gfn_edge("analyze", "--detector", det, "--backend", "tflite", photos["a"])
    assert wrong_backend.returncode == 1 and "cannot run onnx" in wrong_backend.stderr


def test_command_line_mistakes_exit_2(det, photos):
    assert gfn_edge().returncode == 2
    no_rec = gfn_edge("compare", "--detector", det, photos["a"], photos["a2"])
    assert no_rec.returncode == 2 and "--recognizer" in no_rec.stderr
    bad_threads = gfn_edge("analyze", "--detector", det, "--threads", "0", photos["a"])
    assert bad_threads.returncode == 2 and "positive integer" in bad_threads.stderr
    version = gfn_edge("--version")
    assert version.returncode == 0 and version.stdout.startswith("gfn-edge ")
