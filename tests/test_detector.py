"""Detector on real pictures and every artifact kind: counts, coordinates, picture types, refusals."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
from conftest import shared_path

from gfn_edge.detector import Detector
from gfn_edge.errors import ImageError, ManifestError
from gfn_edge.image import read_image
from gfn_edge.metrics import match_detections
from gfn_edge.retinaface_decode import Detections, postprocess

pytestmark = pytest.mark.device

DET = "retinaface-mnet025"
REC = "ghostfacenet-dsitweed-w0.5-e16"
# (bundle target, backend): the ONNX file also runs on OpenVINO's ONNX frontend
CASES = [
    ("onnx", "onnxruntime"),
    ("onnx", "openvino"),
    ("openvino", "openvino"),
    ("tflite", "tflite"),
    ("openvino-fp16", "openvino"),
    ("tflite-fp16", "tflite"),
]
IDS = [f"{t}@{b}" for t, b in CASES]


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    return read_image(shared_path("faces", "scenes", "insightface_t1.jpg"))


@pytest.fixture(scope="module")
def detectors(bundles):
    cache: dict[tuple[str, str], Detector] = {}

    def get(target: str = "onnx", backend: str = "onnxruntime") -> Detector:
        if (target, backend) not in cache:
            cache[(target, backend)] = Detector(bundles.get(DET, target), backend=backend)
        return cache[(target, backend)]

    return get


@pytest.fixture(scope="module")
def t1_reference(detectors, t1) -> Detections:
    return detectors("onnx", "onnxruntime").detect(t1)


def _assert_same_faces(a: Detections, b: Detections, box_px: float, points_px: float | None = None) -> None:
    assert len(a) == len(b), f"{len(a)} vs {len(b)} faces"
    m = match_detections(a, b, iou_threshold=0.5)
    assert len(m.ref_index) == len(a), "some faces have no counterpart"
    box_err = float(np.abs(a.boxes[m.ref_index] - b.boxes[m.art_index]).max())
    assert box_err <= box_px, f"boxes differ by {box_err:.3f} px (allowed {box_px})"
    if points_px is not None:
        pt_err = float(np.linalg.norm(a.landmarks[m.ref_index] - b.landmarks[m.art_index], axis=-1).max())
        assert pt_err <= points_px, f"landmarks differ by {pt_err:.3f} px (allowed {points_px})"


def _assert_same_places(ref: Detections, other: Detections) -> None:
    """Every face of ``ref`` found in ``other`` at the same place, up to the model's own scale jitter.

    Seen at another scale the model moves box edges by up to ~10% of the face (measured: 11 px on
    100 px faces); a mapping error (wrong scale, offset or axis) is tens to hundreds of pixels.
    """
    m = match_detections(ref, other, iou_threshold=0.6)
    assert len(m.ref_index) == len(ref), f"{len(ref) - len(m.ref_index)} faces not found again"
    a, b = ref.boxes[m.ref_index], other.boxes[m.art_index]
    size = np.minimum(a[:, 2] - a[:, 0], a[:, 3] - a[:, 1])
    centre_err = np.linalg.norm((a[:, :2] + a[:, 2:]) / 2 - (b[:, :2] + b[:, 2:]) / 2, axis=1)
    point_err = np.linalg.norm(ref.landmarks[m.ref_index] - other.landmarks[m.art_index], axis=-1).mean(axis=1)
    assert np.all(centre_err < 0.12 * size), (centre_err, size)
    assert np.all(point_err < 0.1 * size), (point_err, size)


@pytest.mark.numerics
@pytest.mark.parametrize("target,backend", CASES, ids=IDS)
def test_finds_the_six_faces_on_every_artifact(detectors, t1, t1_reference, target, backend):
    det = detectors(target, backend)
    assert det.model.backend == backend
    dets = det.detect(t1)
    assert len(dets) == 6, f"{target} on {backend} found {len(dets)} faces, the picture has 6"
    assert dets.boxes.shape == (6, 4) and dets.landmarks.shape == (6, 5, 2) and dets.scores.shape == (6,)
    assert np.all(np.diff(dets.scores) <= 0), "not sorted best first"
    assert np.all(dets.scores >= det.score_threshold)
    h, w = t1.shape[:2]
    assert np.all(dets.boxes[:, :2] >= -2) and np.all(dets.boxes[:, 2] <= w + 2) and np.all(dets.boxes[:, 3] <= h + 2)
    x, y = dets.landmarks[..., 0], dets.landmarks[..., 1]
    inside = (x >= dets.boxes[:, None, 0]) & (x <= dets.boxes[:, None, 2]) & (y >= dets.boxes[:, None, 1]) & (y <= dets.boxes[:, None, 3])
    assert inside.all(), "a landmark lies outside its face box"
    # FP32 artifacts agree with onnxruntime within the export tolerance; FP16 within rounding of half floats
    tol = 0.5 if "fp16" not in target else 1.5
    _assert_same_faces(t1_reference, dets, box_px=tol, points_px=tol)


def test_matches_the_pytorch_golden_at_full_resolution(detectors, t1, fixtures_dir):
    """Independent check of the coordinate mapping: PyTorch outputs at 1280x886, decoded by the same
    postprocess, against our 640x480 letterboxed detections mapped back to picture pixels."""
    golden = np.load(fixtures_dir / "retinaface_mnet025_real.golden.npz")
    det = detectors()
    h, w = golden["input"].shape[2:]
    assert (w, h) == (t1.shape[1], t1.shape[0])
    ref = postprocess(golden["loc"], golden["conf"], golden["landms"], det.anchors, (w, h), 1.0, 0.5, 0.4)
    ours = det.detect(t1)
    assert len(ref) == 6
    _assert_same_places(ref, ours)


def test_coordinates_follow_the_picture(detectors, t1, t1_reference):
    det = detectors()
    # twice the size: the letterboxed input is nearly the same, so every coordinate doubles
    big = cv2.resize(t1, (t1.shape[1] * 2, t1.shape[0] * 2), interpolation=cv2.INTER_CUBIC)
    doubled = det.detect(big)
    half = Detections(doubled.boxes / 2, doubled.scores, doubled.landmarks / 2)
    _assert_same_faces(t1_reference, half, box_px=1.5, points_px=1.5)
    # the left half, letterboxed height-limited instead of width-limited: faces there keep their place
    left = np.ascontiguousarray(t1[:, :640])
    crop = det.detect(left)
    whole = t1_reference.select(np.flatnonzero(t1_reference.boxes[:, 2] < 620))
    assert len(whole) >= 2
    _assert_same_places(whole, crop)


def test_picture_types_are_converted(detectors, t1, t1_reference):
    det = detectors()
    # 16-bit and RGBA hold the same picture: identical detections
    as16 = t1.astype(np.uint16) * 257
    _assert_same_faces(t1_reference, det.detect(as16), box_px=1e-3)
    rgba = cv2.cvtColor(t1, cv2.COLOR_BGR2BGRA)
    rgba[..., 3] = 128
    _assert_same_faces(t1_reference, det.detect(rgba), box_px=1e-3)
    # an RGB array with color="RGB" is the same picture
    rgb_det = Detector(det.model, color="RGB")
    _assert_same_faces(t1_reference, rgb_det.detect(np.ascontiguousarray(t1[..., ::-1])), box_px=1e-3)
    # grayscale loses colour, not faces: the same six within a few pixels
    gray = cv2.cvtColor(t1, cv2.COLOR_BGR2GRAY)
    for g in (gray, gray[..., None]):
        _assert_same_faces(t1_reference, det.detect(g), box_px=6.0)


@pytest.mark.parametrize(
    "bad,words",
    [
        (np.zeros((480, 640, 3), np.float32), ["float32", "uint8"]),
        (np.zeros((480, 640, 2), np.uint8), ["(480, 640, 2)"]),
        (np.zeros((0, 0, 3), np.uint8), ["empty"]),
        (np.zeros((480, 640, 3, 1), np.uint8), ["(480, 640, 3, 1)"]),
        (None, ["None"]),
        ([[1, 2], [3, 4]], ["list"]),
    ],
    ids=["float", "2-channel", "empty", "4-d", "none", "list"],
)
def test_bad_pictures_are_refused_with_what_was_given(detectors, bad, words):
    with pytest.raises(ImageError) as info:
        detectors().detect(bad)
    for w in words:
        assert w in str(info.value), f"{w!r} not in {info.value}"


def test_refuses_a_recogniser_bundle(bundles):
    with pytest.raises(ManifestError, match="face recogniser.*detector"):
        Detector(bundles.get(REC, "onnx"))


def test_threshold_defaults_to_the_manifest(detectors, t1, t1_reference):
    det = detectors()
    assert det.score_threshold == det.manifest.spec["default_threshold"]
    assert det.nms_threshold == 0.4
    strict = Detector(det.model, score_threshold=float(np.sort(t1_reference.scores)[2]) + 1e-6)
    assert len(strict.detect(t1)) == 3  # the three best scores are above the median one
    with pytest.raises(ValueError, match="within 0..1"):
        Detector(det.model, score_threshold=1.5)


def test_max_faces_keeps_the_largest_and_min_size_drops_small(detectors, t1, t1_reference):
    det = detectors()
    area = (t1_reference.boxes[:, 2] - t1_reference.boxes[:, 0]) * (t1_reference.boxes[:, 3] - t1_reference.boxes[:, 1])
    two = det.detect(t1, max_faces=2)
    assert len(two) == 2
    expected = np.sort(area)[-2:]
    got = np.sort((two.boxes[:, 2] - two.boxes[:, 0]) * (two.boxes[:, 3] - two.boxes[:, 1]))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert np.all(np.diff(two.scores) <= 0)
    assert len(det.detect(t1, max_faces=0)) == 0
    sizes = np.minimum(t1_reference.boxes[:, 2] - t1_reference.boxes[:, 0], t1_reference.boxes[:, 3] - t1_reference.boxes[:, 1])
    cut = float(np.median(sizes))
    kept = det.detect(t1, min_face_size=cut)
    assert len(kept) == int((sizes >= cut).sum()) and 0 < len(kept) < 6


def test_no_faces_gives_empty_detections(detectors, t1):
    det = detectors()
    flat = np.full((300, 400, 3), 127, np.uint8)
    sky = np.ascontiguousarray(t1[:120, :300])  # the wall above the group: no face
    for pic in (flat, sky):
        dets = det.detect(pic)
        assert len(dets) == 0
        assert dets.boxes.shape == (0, 4) and dets.landmarks.shape == (0, 5, 2)


def test_input_size_is_fixed_by_the_artifact(detectors):
    det = detectors()
    assert det.input_size == (640, 480)
    with pytest.raises(ValueError, match="--input-size"):
        Detector(det.model, input_size=(320, 320))


def test_detector_without_anchors_is_refused(detectors, monkeypatch):
    det = detectors()
    monkeypatch.setitem(det.model.manifest.spec, "anchors", None)
    with pytest.raises(ManifestError, match="no anchors"):
        Detector(det.model)


def test_threads_share_one_detector(detectors, t1, t1_reference):
    det = detectors("openvino", "openvino")
    results: list[Detections] = []

    def work():
        for _ in range(3):
            results.append(det.detect(t1))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 9
    for r in results:
        _assert_same_faces(t1_reference, r, box_px=0.5)


class _DynamicView:
    """Wraps a fixed-size detector artifact as if its spatial input were dynamic (none is exported
    that way), so the pad-to-stride path runs a real model on a picture that pads to 640x480."""

    @staticmethod
    def make(inner):
        import copy

        from gfn_edge.runtimes import InferenceModel

        class Dynamic(InferenceModel):
            backend = "dynamic-view"

            def _infer(self, x):
                return inner._infer(x)

        manifest = copy.deepcopy(inner.manifest)
        manifest.inputs[0].shape = [1, 3, "height", "width"]
        manifest.spec["preprocess"]["input_size"] = None
        return Dynamic(inner.path, manifest, threads=1)


def test_dynamic_input_pads_to_the_stride(detectors, t1, t1_reference):
    fixed = detectors()
    dynamic = Detector(_DynamicView.make(fixed.model))
    assert dynamic.input_size is None
    pic = cv2.resize(t1, (620, 460), interpolation=cv2.INTER_AREA)  # pads to 640x480, never resized
    canvas = np.empty((480, 640, 3), np.uint8)
    canvas[...] = (104, 117, 123)  # the manifest mean: zero after normalisation
    canvas[:460, :620] = pic
    got, expected = dynamic.detect(pic), fixed.detect(canvas)
    assert len(got) == 6
    _assert_same_faces(expected, got, box_px=1e-3, points_px=1e-3)
    # an explicit size letterboxes like a fixed artifact of that size
    sized = Detector(_DynamicView.make(fixed.model), input_size=(640, 480))
    _assert_same_faces(t1_reference, sized.detect(t1), box_px=1e-3)
    with pytest.raises(ValueError, match="multiples of 32"):
        Detector(_DynamicView.make(fixed.model), input_size=(630, 480))
