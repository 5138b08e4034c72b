"""apps/annotate.py: annotated copies of pictures and videos, identities from a gallery, bad inputs.

Runs the app as a user would (a subprocess) on the shared photos; ``-s`` shows its output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import hang_guard, shared_path

pytestmark = pytest.mark.device

ROOT = Path(__file__).resolve().parents[1]
ANNOTATE = ROOT / "apps" / "annotate.py"
DET = "retinaface-mnet025"
REC = "ghostfacenet-dsitweed-w0.5-e16"
LIVE = ("minifasnet-v2-2.7", "minifasnet-v1se-4.0")


@pytest.fixture(scope="module")
def models(bundles) -> dict:
    return {
        "detector": str(bundles.get(DET, "onnx")),
        "recognizer": str(bundles.get(REC, "onnx")),
        "liveness": [str(bundles.get(name, "onnx")) for name in LIVE],
    }


def annotate(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("GFN_DOOR_CONFIG", None)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(ANNOTATE), *map(str, args)], capture_output=True, text=True, timeout=hang_guard(timeout), env=env)
    print(f"\n$ annotate.py {' '.join(map(str, args))}   # rc {proc.returncode}, {time.monotonic() - t0:.1f} s")
    print(proc.stderr, end="")
    return proc


def records(proc: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def changed_pixels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2) > 60


def test_pictures_get_boxes_landmarks_scores_and_quality(models, tmp_path: Path):
    scene = shared_path("faces", "scenes", "insightface_t1.jpg")
    out = tmp_path / "out"
    proc = annotate("--detector", models["detector"], "--recognizer", models["recognizer"], "--out", out, "--json", scene)
    assert proc.returncode == 0, proc.stderr
    (rec,) = records(proc)
    faces = rec["faces"]
    assert len(faces) == 6 and rec["output"] == str(out / "insightface_t1.annotated.jpg")
    assert [f["rejected_reasons"] for f in faces if not f["passed"]] == [["yaw"]]  # the man looking sideways
    original, drawn = cv2.imread(str(scene)), cv2.imread(rec["output"])
    assert drawn.shape == original.shape
    changed = changed_pixels(original, drawn)
    for f in faces:  # every box edge was drawn, inside stays mostly the photo
        x1, y1, x2, y2 = (int(round(v)) for v in f["box"])
        assert changed[y2, x1 + 3 : x2 - 3].mean() > 0.5 and changed[y1 + 10 : y2 - 10, x2].mean() > 0.5
        lx, ly = (int(round(v)) for v in f["landmarks"][2])
        assert changed[ly, lx]  # the nose landmark dot
    assert changed.mean() < 0.2
    assert scene.read_bytes() == shared_path("faces", "scenes", "insightface_t1.jpg").read_bytes()  # input untouched


def test_identities_from_a_gallery_and_liveness(models, tmp_path: Path):
    from gfn_edge import FaceAnalyzer, Gallery, read_image

    pairs, live = shared_path("faces", "pairs"), shared_path("faces", "liveness")
    analyzer = FaceAnalyzer(models["detector"], models["recognizer"])
    gallery = tmp_path / "gallery.db"
    with Gallery(gallery, signature=analyzer.recognizer.signature, dim=analyzer.recognizer.dim) as g:
        for name, photo in (("p16", pairs / "deepface_img16.jpg"), ("alice", live / "image_T1.jpg")):
            faces = analyzer.analyze(read_image(photo))
            g.enroll(name, max(faces, key=lambda f: f.area).embedding)
    proc = annotate(
        "--detector",
        models["detector"],
        "--recognizer",
        models["recognizer"],
        "--gallery",
        gallery,
        "--threshold",
        0.7,
        "--liveness",
        *models["liveness"],
        "--max-faces",
        1,
        "--out",
        tmp_path / "out",
        "--json",
        pairs / "deepface_img17.jpg",
        pairs / "deepface_img22.jpg",
        live / "image_T1.jpg",
        live / "image_F1.jpg",
    )
    assert proc.returncode == 0, proc.stderr
    got = {Path(r["input"]).name: r["faces"][0] for r in records(proc)}
    for name, f in got.items():
        print(f"{name}: identity {f['identity']} (nearest {f['nearest']} {f['similarity']:.3f}), liveness {f['liveness']:.3f}")
    assert got["deepface_img17.jpg"]["identity"] == "p16" and got["deepface_img17.jpg"]["similarity"] > 0.7
    assert got["deepface_img22.jpg"]["identity"] is None and got["deepface_img22.jpg"]["similarity"] < 0.7
    assert got["image_T1.jpg"]["identity"] == "alice" and got["image_T1.jpg"]["liveness"] > 0.5
    assert got["image_F1.jpg"]["liveness"] < 0.5  # a printed photo
    assert all((tmp_path / "out" / f"{Path(n).stem}.annotated.jpg").is_file() for n in got)


def test_video_gets_an_annotated_copy_and_bad_inputs_do_not_stop_the_rest(models, tmp_path: Path):
    photo = cv2.imread(str(shared_path("faces", "pairs", "deepface_img20.jpg")))
    frame = cv2.resize(photo, (480, 480))
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (480, 480))
    for i in range(6):
        writer.write(frame if i % 2 == 0 else np.zeros_like(frame))  # faces on even frames only
    writer.release()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(os.urandom(5000))
    missing = tmp_path / "missing.jpg"
    out = tmp_path / "out"
    proc = annotate("--detector", models["detector"], "--recognizer", models["recognizer"], "--out", out, "--json", broken, video, missing)
    assert proc.returncode == 1  # some inputs failed...
    assert f"{broken}: cannot open video" in proc.stderr and f"{missing}: image file {missing} does not exist" in proc.stderr
    frames = [r for r in records(proc) if r["input"] == str(video)]  # ...the others were still written
    assert [len(r["faces"]) for r in frames] == [1, 0, 1, 0, 1, 0]
    cap = cv2.VideoCapture(str(out / "clip.annotated.mp4"))
    n = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        assert img.shape == (480, 480, 3)
        n += 1
    assert n == 6
    assert not (out / "broken.annotated.mp4").exists()


def test_setup_errors_are_one_line(tmp_path: Path):
    proc = annotate("--detector", tmp_path / "nope", "--out", tmp_path / "out", tmp_path)
    assert proc.returncode == 1 and "detector bundle" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_annotate_imports_no_training_framework(models, tmp_path: Path):
    scene = shared_path("faces", "scenes", "insightface_t1.jpg")
    code = textwrap.dedent(f"""
        import json, runpy, sys
        sys.argv = ["annotate.py", "--detector", {models['detector']!r}, "--recognizer", {models['recognizer']!r},
                    "--liveness", *{models['liveness']!r}, "--out", {str(tmp_path)!r}, {str(scene)!r}]
        try:
            runpy.run_path({str(ANNOTATE)!r}, run_name="__main__")
        except SystemExit as exc:
            code = exc.code
        heavy = ("torch", "tensorflow", "tf_keras", "keras", "jax", "h5py", "onnx")
        bad = sorted(m for m in sys.modules if m.split(".")[0] in heavy or m.startswith(("gfn_edge.export", "gfn_edge.calib")))
        print(json.dumps({{"code": code, "bad": bad}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=hang_guard(300))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"code": 0, "bad": []}
