"""One pipeline: every consumer gets its detector tensors and detections from FaceAnalyzer's own code.

A real picture at an odd size (insightface_t1 scaled to 627x459) goes through a detector with a
dynamic spatial input (the exported RetinaFace-mnet0.25 ONNX viewed as dynamic, as in
test_detector.py; the picture pads to that artifact's 640x480) via FaceAnalyzer.detect, the door's
DoorLoop, and gfn-eval's bundle and reference runners, and through the fixed-size detector via
calibration-set building and export verification: every path must build the same tensor and find
the same faces.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, shared_path
from test_detector import _DynamicView

from gfn_edge.analyzer import FaceAnalyzer
from gfn_edge.detector import Detector
from gfn_edge.embedder import Embedder
from gfn_edge.gallery import Gallery
from gfn_edge.image import read_image
from gfn_edge.registry import get_spec
from gfn_edge.retinaface_decode import Detections, postprocess
from gfn_edge.threads import apply_threads
from gfn_edge.tracker import IoUTracker

sys.path.insert(0, str(ROOT / "apps"))

from door.decision import DecisionEngine
from door.pipeline import DoorLoop
from door.sources import Frame

DET = "retinaface-mnet025"
REC = "ghostfacenet-dsitweed-w0.5-e16"
ODD_SIZE = (627, 459)  # w, h: not a multiple of any anchor stride; pads to 640x480


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    t1 = read_image(shared_path("faces", "scenes", "insightface_t1.jpg"))
    return cv2.resize(t1, ODD_SIZE, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def fixed(bundles) -> Detector:
    return Detector(bundles.get(DET, "onnx"), backend="onnxruntime")


@pytest.fixture(scope="module")
def dynamic(fixed: Detector) -> Detector:
    detector = Detector(_DynamicView.make(fixed.model))
    assert detector.input_size is None and detector.stride == 32
    return detector


@pytest.fixture(scope="module")
def analyzer(dynamic: Detector, bundles) -> FaceAnalyzer:
    return FaceAnalyzer(dynamic, Embedder(bundles.get(REC, "onnx"), backend="onnxruntime"))


def _same(a: Detections, b: Detections) -> None:
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)


def test_the_dynamic_tensor_is_the_picture_padded_to_the_stride(dynamic: Detector, picture: np.ndarray):
    x, box = dynamic.tensor(picture)
    canvas = np.empty((480, 640, 3), np.uint8)
    canvas[...] = (104, 117, 123)  # the manifest mean: zero after normalisation
    canvas[: ODD_SIZE[1], : ODD_SIZE[0]] = picture
    expected = canvas.astype(np.float32) - np.float32([104, 117, 123])
    assert x.shape == (1, 480, 640, 3) and (box.scale, box.width, box.height) == (1.0, 640, 480)
    np.testing.assert_array_equal(x[0], expected)


def test_door_and_gfn_eval_find_what_the_analyzer_finds(analyzer: FaceAnalyzer, dynamic: Detector, picture: np.ndarray, mirror: Path, tmp_path: Path):
    from gfn_edge.export.evaluation.runners import bundle_detector, reference_detector

    dets = analyzer.detect(picture)
    assert len(dets) >= 5, f"insightface_t1 shows six faces; found {len(dets)}"
    faces = analyzer.recognize(picture, dets)
    # the door: detection and recognition through the analyzer's stages
    gallery = Gallery(tmp_path / "g.db", signature=analyzer.recognizer.signature, dim=analyzer.recognizer.dim)
    loop = DoorLoop(analyzer, gallery, 0.6, DecisionEngine(2, 10), IoUTracker(min_hits=1))
    loop.process(Frame(picture, 0, 0.0))
    tracks = loop.tracker.tracks
    np.testing.assert_array_equal(np.stack([t.box for t in tracks]), dets.boxes)
    passed = [i for i, f in enumerate(faces) if f.passed]
    assert passed and loop.recognitions == len(passed)
    for i in passed:
        np.testing.assert_array_equal(loop._embeddings[tracks[i].id], faces[i].embedding)
    gallery.close()
    # gfn-eval, a bundle: the device Detector's tensor and the same decode
    runner = bundle_detector(dynamic.model)
    x_dev, box_dev = dynamic.tensor(picture)
    x_run, box_run = runner.tensor(picture)
    np.testing.assert_array_equal(x_run, x_dev)
    assert box_run == box_dev
    _same(runner.detect(picture, dynamic.score_threshold, dynamic.nms_threshold), dets)
    # gfn-eval, the PyTorch reference at the picture's own size: padded to the stride like the device
    reference = reference_detector(DET, size="original", mirror=str(mirror))
    x_ref, box_ref = reference.tensor(picture)
    np.testing.assert_array_equal(x_ref, x_dev)
    assert box_ref == box_dev


def test_calibration_and_verification_feed_what_the_device_feeds(fixed: Detector, picture: np.ndarray, tmp_path: Path):
    from gfn_edge.calib import build_calibration_set
    from gfn_edge.errors import CalibrationError
    from gfn_edge.export.verify_data import detection_set

    folder = tmp_path / "pictures"
    folder.mkdir()
    cv2.imwrite(str(folder / "t1_odd.png"), picture)  # lossless: read back pixel for pixel
    spec = get_spec(DET)
    x_dev, box = fixed.tensor(picture)
    assert x_dev.shape == (1, 480, 640, 3) and box.scale > 1.0  # letterboxed: resized to fit 640x480
    cset = build_calibration_set(spec, folder)
    np.testing.assert_array_equal(cset.inputs()[0], x_dev[0])
    vset = detection_set(spec, folder)
    np.testing.assert_array_equal(vset.inputs[0], x_dev[0])
    assert vset.letterboxes[0] == box
    # decoding verification's tensor gives the analyzer's detections
    out = fixed.model.run(vset.inputs[:1])
    decoded = postprocess(out["loc"], out["conf"], out["landms"], fixed.anchors, (box.width, box.height), box.scale, fixed.score_threshold, fixed.nms_threshold)
    _same(decoded, FaceAnalyzer(fixed).detect(picture))
    # a set of stacked samples needs one input size: a dynamic model is refused, saying so
    with pytest.raises(CalibrationError, match="no fixed input size"):
        build_calibration_set(spec.with_input_size(None), folder)


def test_crops_follow_the_recogniser_manifest(analyzer: FaceAnalyzer, dynamic: Detector, picture: np.ndarray):
    dets = analyzer.detect(picture)
    crops = analyzer.align(analyzer.detector.to_bgr(picture), dets)
    size = analyzer.recognizer.crop_size
    assert crops.shape == (len(dets), size[1], size[0], 3) and crops.dtype == np.uint8
    assert analyzer.geometry.size == size[0]
    bare = FaceAnalyzer(dynamic)  # no recogniser: the registry's crop
    spec = get_spec(REC)
    assert bare.align(picture, dets).shape[1:3] == tuple(spec.preprocess.input_size)[::-1]
    np.testing.assert_allclose(bare.geometry.template, np.asarray(spec.alignment["points"], np.float32))


def test_threads_size_opencv_too(fixed: Detector):
    before = cv2.getNumThreads()
    try:
        FaceAnalyzer(fixed, threads=1)
        assert cv2.getNumThreads() == 1
        FaceAnalyzer(fixed, threads=2)
        assert cv2.getNumThreads() == 2
        FaceAnalyzer(fixed)  # None: what was set stays
        assert cv2.getNumThreads() == 2
        for bad in (-1, 1.5, "2", True):
            with pytest.raises(ValueError, match="threads"):
                apply_threads(bad)
    finally:
        cv2.setNumThreads(before)


def test_the_door_applies_its_configured_threads(bundles):
    from door.config import Config
    from door.models import open_analyzer

    cfg = Config()
    cfg.models.detector = bundles.get(DET, "onnx")
    cfg.models.recognizer = bundles.get(REC, "onnx")
    cfg.models.threads = 1
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(3)
        analyzer = open_analyzer(cfg)
        assert cv2.getNumThreads() == 1 and analyzer.threads == 1
        assert analyzer.detector.model.threads == 1
    finally:
        cv2.setNumThreads(before)


def test_calibration_never_imports_the_export_side():
    code = "import sys, gfn_edge.calib, gfn_edge.calib.build, gfn_edge.calib.cli, gfn_edge.calib.faces; print(sorted(m for m in sys.modules if m.startswith('gfn_edge.export')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]"
    for path in sorted((ROOT / "calib").glob("*.py")):  # function-level imports included
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith("gfn_edge.export") for n in names), f"{path.name} imports {names}"
