"""FaceAnalyzer end to end on real photos, quality gates, and identity decisions against the reference."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os

import cv2
import numpy as np
import pytest
from conftest import shared_path

from gfn_edge.align import align
from gfn_edge.analyzer import Face, FaceAnalyzer, largest_face
from gfn_edge.detector import Detector
from gfn_edge.embedder import Embedder
from gfn_edge.errors import ImageError
from gfn_edge.image import read_image
from gfn_edge.metrics import accuracy_at, best_threshold_accuracy
from gfn_edge.quality import Quality, QualityGates, pose
from gfn_edge.registry import ARCFACE_112_TEMPLATE
from gfn_edge.retinaface_decode import iou_matrix

pytestmark = pytest.mark.device

DET = "retinaface-mnet025"
REC = "ghostfacenet-dsitweed-w0.5-e16"
# issue 12's INT8 pipeline, as a user makes it: each checkpoint from its file, default options, the
# detector calibrated on the pairs photos and verified on the scenes, the recogniser calibrated on
# the portraits and verified on the pairs photos
DET_FILE = ("models", "retinaface", "mobilenet0.25_Final.pth")
REC_FILE = ("models", "ghostfacenets", "ghostnetv1_w0.5_s2_basic_vn_big_epoch_16_0.711309.h5")


def pipeline_bundles(bundles, target: str):
    """(detector, recogniser) bundles of a pipeline test: the suite's for float targets; for INT8
    the ones issue 12 names (:data:`DET_FILE`, :data:`REC_FILE`). The suite's own INT8 bundles (the
    registry's recipe, calibrated on portraits and scenes with --calib-augment) drew 4 of 349
    changed decisions on LiteRT on 2026-12-07, 1 and 0 on onnxruntime and OpenVINO."""
    if not target.endswith("-int8"):
        return bundles.get(DET, target), bundles.get(REC, target)
    pairs, scenes, portraits = (shared_path("faces", d) for d in ("pairs", "scenes", "portraits"))
    return (
        bundles.as_a_user(shared_path(*DET_FILE), target, calib=pairs, verify_images=scenes),
        bundles.as_a_user(shared_path(*REC_FILE), target, calib=portraits, verify_images=pairs),
    )


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    return read_image(shared_path("faces", "scenes", "insightface_t1.jpg"))


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """One large frontal face (580 px)."""
    return read_image(shared_path("faces", "pairs", "deepface_img1.jpg"))


@pytest.fixture(scope="module")
def analyzer(bundles) -> FaceAnalyzer:
    return FaceAnalyzer(bundles.get(DET, "onnx"), bundles.get(REC, "onnx"))


@pytest.fixture(scope="module")
def t1_faces(analyzer, t1) -> list[Face]:
    return analyzer.analyze(t1)


# --- the pipeline ------------------------------------------------------------------------------
def test_analyze_measures_every_face(analyzer, t1, t1_faces):
    assert len(t1_faces) == 6
    dets = analyzer.detector.detect(t1)
    np.testing.assert_allclose(np.stack([f.box for f in t1_faces]), dets.boxes)
    for face, pts in zip(t1_faces, dets.landmarks):
        assert face.embedding.shape == (512,)
        assert abs(np.linalg.norm(face.embedding) - 1) < 1e-5
        assert face.crop.shape == (112, 112, 3) and face.crop.dtype == np.uint8
        # the embedding is the recogniser's on the ArcFace-aligned crop of those landmarks
        expected = analyzer.recognizer.embed(align(t1, pts))[0]
        assert float(face.embedding @ expected) > 0.99999
        q = face.quality
        assert q is not None and all(math.isfinite(v) for v in (q.face_size, q.blur, q.yaw, q.pitch, q.roll))
        assert q.face_size == pytest.approx(face.size)
        assert face.liveness is None
        assert face.passed == (not face.rejected_reasons)
    # a posed group photo: all big and sharp; the one man looking sideways fails the yaw gate
    assert all(f.quality.face_size > 80 and f.quality.blur > 100 for f in t1_faces)
    turned = [f for f in t1_faces if not f.passed]
    assert [f.rejected_reasons for f in turned] == [["yaw"]]
    assert abs(turned[0].quality.yaw) > 0.5


def test_to_dict_is_json(t1_faces):
    for face in t1_faces:
        data = json.loads(json.dumps(face.to_dict()))
        assert set(data) >= {"box", "score", "landmarks", "embedding", "quality", "liveness", "passed", "rejected_reasons"}
        assert len(data["box"]) == 4 and np.array(data["landmarks"]).shape == (5, 2)
        assert len(data["embedding"]) == 512
        assert abs(np.linalg.norm(data["embedding"]) - 1) < 1e-4
        np.testing.assert_allclose(data["box"], face.box, atol=0.01)
        assert set(data["quality"]) == {"face_size", "blur", "yaw", "pitch", "roll"}
        assert "embedding" not in face.to_dict(embedding=False)


def test_paths_or_instances(bundles, t1, t1_faces):
    det = Detector(bundles.get(DET, "onnx"))
    rec = Embedder(bundles.get(REC, "onnx"))
    faces = FaceAnalyzer(det, rec).analyze(t1)
    assert len(faces) == 6
    for a, b in zip(faces, t1_faces):
        np.testing.assert_allclose(a.box, b.box)
        np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-6)
    no_rec = FaceAnalyzer(det).analyze(t1)
    assert len(no_rec) == 6 and all(f.embedding is None and f.quality is not None for f in no_rec)
    with pytest.raises(ValueError, match="recognizer"):
        no_rec[0].similarity(no_rec[1])


def test_gates_mark_but_never_drop(analyzer, t1):
    strict = FaceAnalyzer(analyzer.detector, analyzer.recognizer, gates=QualityGates(min_face_size=1000))
    faces = strict.analyze(t1)
    assert len(faces) == 6
    assert all("face_size" in f.rejected_reasons and not f.passed for f in faces)
    assert all(f.embedding is not None for f in faces)
    relaxed = FaceAnalyzer(analyzer.detector, analyzer.recognizer, gates=QualityGates.off())
    assert all(f.passed for f in relaxed.analyze(t1))


def test_limits_pass_through_to_the_detector(analyzer, t1, t1_faces):
    two = FaceAnalyzer(analyzer.detector, analyzer.recognizer, max_faces=2).analyze(t1)
    areas = sorted(f.area for f in t1_faces)
    assert sorted(f.area for f in two) == pytest.approx(areas[-2:])
    cut = float(np.median([f.size for f in t1_faces]))
    big = FaceAnalyzer(analyzer.detector, analyzer.recognizer, min_face_size=cut).analyze(t1)
    assert len(big) == sum(f.size >= cut for f in t1_faces)
    assert largest_face(t1_faces).area == max(areas)
    assert largest_face([]) is None


def test_liveness_scorer_is_called_per_face(analyzer, t1):
    class Recorder:
        def __init__(self):
            self.calls = []

        def score(self, image, box):
            self.calls.append((image.shape, np.asarray(box).copy()))
            return float(box[0]) / 1000.0  # a number we can trace back to the face

    rec = Recorder()
    faces = FaceAnalyzer(analyzer.detector, analyzer.recognizer, liveness=rec).analyze(t1)
    assert len(rec.calls) == 6
    assert all(shape == t1.shape for shape, _ in rec.calls)
    for face in faces:
        assert face.liveness == pytest.approx(face.box[0] / 1000.0)
        assert face.to_dict()["liveness"] == pytest.approx(face.box[0] / 1000.0, abs=1e-5)
    with pytest.raises(TypeError, match="score"):
        FaceAnalyzer(analyzer.detector, liveness=object())


def test_bad_picture_and_no_face(analyzer):
    with pytest.raises(ImageError, match="float64"):
        analyzer.analyze(np.zeros((100, 100, 3)))
    assert analyzer.analyze(np.full((240, 320, 3), 90, np.uint8)) == []


def test_threshold_and_signature_come_from_the_recogniser(analyzer):
    assert analyzer.threshold == analyzer.recognizer.manifest.spec["default_threshold"]
    assert analyzer.signature == analyzer.recognizer.signature


# --- quality on real pictures ------------------------------------------------------------------
def test_roll_follows_picture_rotation(analyzer, portrait):
    base = largest_face(analyzer.analyze(portrait))
    h, w = portrait.shape[:2]
    centre = ((base.box[0] + base.box[2]) / 2, (base.box[1] + base.box[3]) / 2)
    for angle in (-15, 15, 30):  # OpenCV: positive = counter-clockwise, the eye line's angle falls
        turned = cv2.warpAffine(portrait, cv2.getRotationMatrix2D(centre, angle, 1.0), (w, h))
        face = largest_face(analyzer.analyze(turned))
        delta = face.quality.roll - base.quality.roll
        assert abs(delta + angle) < 5.0, f"rotated {angle}: roll changed by {delta:.1f}"
        assert abs(face.quality.yaw) < 0.15  # rotation in the picture plane is not yaw


def test_yaw_changes_sign_in_the_mirror(analyzer, t1, t1_faces):
    turned = max(t1_faces, key=lambda f: abs(f.quality.yaw))
    mirrored = analyzer.analyze(np.ascontiguousarray(t1[:, ::-1]))
    w = t1.shape[1]
    x_centre = w - (turned.box[0] + turned.box[2]) / 2
    twin = min(mirrored, key=lambda f: abs((f.box[0] + f.box[2]) / 2 - x_centre))
    assert np.sign(twin.quality.yaw) == -np.sign(turned.quality.yaw)
    assert abs(twin.quality.yaw + turned.quality.yaw) < 0.1
    assert abs(twin.quality.roll + turned.quality.roll) < 3.0


def test_blur_and_size_gates_on_real_faces(analyzer, portrait):
    sharp = largest_face(analyzer.analyze(portrait))
    assert sharp.passed, sharp.rejected_reasons
    sigma = 5.0 * sharp.size / 112  # about 5 px once the face is scaled to the 112 px crop
    blurred = largest_face(analyzer.analyze(cv2.GaussianBlur(portrait, (0, 0), sigma)))
    assert blurred.quality.blur < sharp.quality.blur / 10
    assert "blur" in blurred.rejected_reasons
    k = 30.0 / sharp.size
    small = largest_face(analyzer.analyze(cv2.resize(portrait, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)))
    assert small is not None and small.size == pytest.approx(30, abs=3)
    assert "face_size" in small.rejected_reasons


def test_pose_proxies_on_known_geometry():
    tpl = np.asarray(ARCFACE_112_TEMPLATE, np.float64)
    yaw, pitch, roll = pose(tpl)
    assert abs(yaw) < 0.01 and abs(pitch) < 1e-9 and abs(roll) < 0.5
    iod = np.linalg.norm(tpl[1] - tpl[0])
    right = tpl.copy()
    right[2, 0] += 0.2 * iod  # nose towards the picture's right
    assert pose(right)[0] == pytest.approx(pose(tpl)[0] + 0.2, abs=1e-3)  # template eye line tilts 0.3 deg
    down = tpl.copy()
    down[2, 1] += 5.0  # nose lower: head bowed
    assert pose(down)[1] > 0.1
    # scale, translation and in-plane rotation change roll only
    a = math.radians(25)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    moved = (tpl - tpl.mean(0)) @ rot.T * 3.0 + 500
    y2, p2, r2 = pose(moved)
    assert y2 == pytest.approx(yaw, abs=1e-6) and p2 == pytest.approx(pitch, abs=1e-6)
    assert r2 == pytest.approx(roll + 25, abs=1e-6)
    nan = pose(np.zeros((5, 2)))
    assert math.isnan(nan[0]) and math.isnan(nan[1])


def test_gate_check_names_each_failure():
    gates = QualityGates()
    good = Quality(face_size=120, blur=400, yaw=0.05, pitch=0.05, roll=3)
    assert gates.check(good) == []
    bad = Quality(face_size=20, blur=5, yaw=-0.8, pitch=0.5, roll=60)
    assert gates.check(bad) == ["face_size", "blur", "yaw", "pitch", "roll"]
    assert gates.check(Quality(120, float("nan"), 0.0, 0.0, 0.0)) == ["blur"]  # unmeasured fails
    assert QualityGates.off().check(bad) == []
    assert QualityGates(max_yaw=None).check(Quality(120, 400, 3.0, 0.0, 0.0)) == []


# --- identity decisions against the reference pipeline (slow) --------------------------------------
PAIR_CASES = [
    ("onnx", "onnxruntime"),
    ("onnx", "openvino"),
    ("openvino", "openvino"),
    ("tflite", "tflite"),
    ("openvino-fp16", "openvino"),
    ("tflite-fp16", "tflite"),
    ("onnx-int8", "onnxruntime"),
    ("openvino-int8", "openvino"),
    ("tflite-int8", "tflite"),
]
PAIR_PARAMS = [pytest.param(t, b, id=f"{t}@{b}", marks=[pytest.mark.int8_export] if t.endswith("-int8") else []) for t, b in PAIR_CASES]
# A pair whose reference similarity is this close to the threshold may flip: FP32 artifacts moved
# pair similarities by <= 1.3e-4 and FP16 ones by <= 6.1e-3 in our runs (15x and 3x margin).
# INT8 artifacts pass at cos_min >= 0.97 per face, so a pair's similarity may move by several
# hundredths: decisions may flip within 0.1 of the threshold, accuracy still within 1 point.
DECISION_BAND = {"fp32": 0.002, "fp16": 0.02, "int8": 0.1}
# Accuracy may differ by the pairs inside the band and no more than 1 point (3.5 of 349 pairs).
ACCURACY_TOLERANCE = 0.01
# Issue 12: the INT8 pipeline changes at most 1 % of the reference pipeline's decisions (3 of 349);
# accuracy alone would let changes that cancel out pass.
CHANGED_DECISIONS = 0.01


def _pairs(folder) -> tuple[list[str], list[tuple[str, str]], np.ndarray]:
    rows = list(csv.DictReader(open(folder / "pairs.csv", newline="")))
    names = sorted({r["image_a"] for r in rows} | {r["image_b"] for r in rows})
    return names, [(r["image_a"], r["image_b"]) for r in rows], np.array([r["same"].strip() == "1" for r in rows])


def _reference_embeddings(folder, names: list[str], mirror) -> dict[str, np.ndarray]:
    """The device pipeline run in the original frameworks: PyTorch RetinaFace on the same letterboxed
    input, the same decode and alignment, then the Keras GhostFaceNets model. Cached in the
    gfn-edge cache (a fresh folder per CI session), keyed by weights and pictures."""
    from gfn_edge.export.hub import cache_dir, sha256_file
    from gfn_edge.export.reference import load_reference, resolve_spec
    from gfn_edge.metrics import l2_normalize
    from gfn_edge.preprocess import detector_input, normalize
    from gfn_edge.retinaface_decode import postprocess

    digest = hashlib.sha256(b"v2")  # v2: alignment shrinks big faces by area first (gfn_edge.align)
    for model in (DET, REC):  # the checkpoints' bytes, without loading PyTorch or TensorFlow
        digest.update(sha256_file(resolve_spec(model, mirror=mirror)[1]).encode())
    for n in names:
        st = (folder / n).stat()
        digest.update(f"{n}:{st.st_size}:{int(st.st_mtime)}".encode())
    cache = cache_dir() / "device-tests" / f"reference-pairs-{digest.hexdigest()[:20]}.npz"
    if cache.is_file():
        with np.load(cache) as data:
            return {n: data[n] for n in data.files}
    det = load_reference(DET, mirror=mirror)
    rec = load_reference(REC, mirror=mirror)
    spec = det.spec
    crops, kept = [], []
    for n in names:
        image = read_image(folder / n)
        x, box = detector_input(image, spec.preprocess, spec.preprocess.input_size)
        out = det.run(x)
        dets = postprocess(out["loc"], out["conf"], out["landms"], spec.anchors, (box.width, box.height), box.scale, spec.default_threshold, 0.4)
        if len(dets):
            area = (dets.boxes[:, 2] - dets.boxes[:, 0]) * (dets.boxes[:, 3] - dets.boxes[:, 1])
            crops.append(align(image, dets.landmarks[int(np.argmax(area))]))
            kept.append(n)
    emb = l2_normalize(rec.run(normalize(np.stack(crops), rec.spec.preprocess))["embedding"]).astype(np.float32)
    result = dict(zip(kept, emb))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.stem + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **result)
    os.replace(tmp, cache)
    return result


@pytest.fixture(scope="module")
def pair_data(mirror):
    folder = shared_path("faces", "pairs", "pairs.csv").parent
    names, pairs, same = _pairs(folder)
    ref = _reference_embeddings(folder, names, mirror)
    usable = np.array([a in ref and b in ref for a, b in pairs])
    assert usable.mean() > 0.98, "the reference found no face in too many photos"
    sims = np.array([float(ref[a] @ ref[b]) if ok else np.nan for (a, b), ok in zip(pairs, usable)])
    acc, thr = best_threshold_accuracy(sims[usable], same[usable])
    print(f"\nreference pipeline (PyTorch RetinaFace + Keras GhostFaceNets): pair accuracy {acc:.4f} at its best threshold {thr:.4f}")
    images = {n: read_image(folder / n) for n in names}
    return {"pairs": pairs, "same": same, "usable": usable, "sims": sims, "acc": acc, "thr": thr, "images": images}


@pytest.mark.numerics
@pytest.mark.slow
@pytest.mark.parametrize("target,backend", PAIR_PARAMS)
def test_identity_decisions_match_the_reference(bundles, pair_data, target, backend):
    analyzer = FaceAnalyzer(*pipeline_bundles(bundles, target), backend=backend)
    precision = analyzer.recognizer.manifest.precision
    emb: dict[str, np.ndarray] = {}
    for name, image in pair_data["images"].items():
        face = largest_face(analyzer.analyze(image))
        if face is not None:
            emb[name] = face.embedding
    usable = pair_data["usable"] & np.array([a in emb and b in emb for a, b in pair_data["pairs"]])
    assert usable.sum() == pair_data["usable"].sum(), "the device found no face where the reference did"
    sims = np.array([float(emb[a] @ emb[b]) if ok else np.nan for (a, b), ok in zip(pair_data["pairs"], usable)])
    ref, same, thr = pair_data["sims"][usable], pair_data["same"][usable], pair_data["thr"]
    ours = sims[usable]
    acc = accuracy_at(ours, same, thr)
    differ = (ours >= thr) != (ref >= thr)
    band = DECISION_BAND[precision]
    print(
        f"\n{target} on {backend} ({precision}): pair accuracy {acc:.4f} at the reference threshold {thr:.4f} "
        f"(reference {pair_data['acc']:.4f}); {int(differ.sum())}/{len(ours)} decisions differ; "
        f"max |similarity change| {np.abs(ours - ref).max():.2e}"
    )
    outside = differ & (np.abs(ref - thr) > band)
    assert not outside.any(), f"{int(outside.sum())} decisions differ on pairs further than {band} from the threshold"
    assert abs(acc - pair_data["acc"]) <= ACCURACY_TOLERANCE
    assert differ.sum() <= CHANGED_DECISIONS * len(ours), f"{int(differ.sum())} of {len(ours)} decisions differ (at most {CHANGED_DECISIONS:.0%})"


FLOAT_TARGET = {"onnxruntime": "onnx", "openvino": "openvino", "tflite": "tflite"}
LANDMARK_DRAWS = 12


@pytest.mark.numerics
@pytest.mark.slow
@pytest.mark.parametrize("target,backend", [p for p in PAIR_PARAMS if p.values[0].endswith("-int8")])
def test_int8_decisions_change_under_1_percent_whatever_the_landmarks_draw(bundles, pair_data, target, backend):
    """The issue's 1 % as an expected rate, not one draw of it.

    14 of the reference's 349 pair scores lie within 0.02 of its threshold, and which of them an
    INT8 recogniser (pair scores moved ~0.007 on average) turns depends on sub-pixel landmark
    differences: the same LiteRT recogniser changed 0 to 6 decisions behind INT8 detectors whose
    landmark error no metric tells apart (2026-12-06). Here the FP32 detector's landmarks plus
    Gaussian noise of the INT8 detector's own size on these faces, 11 draws and the INT8
    detector's own landmarks, each aligned and embedded by the INT8 recogniser (noise in face
    sizes: one landmark 5 px off on a 320 px face weighs what 1 px does on a 64 px one)."""
    int8_det_bundle, int8_rec_bundle = pipeline_bundles(bundles, target)
    int8_det = Detector(int8_det_bundle, backend=backend)
    fp32_det = Detector(bundles.get(DET, FLOAT_TARGET[backend]), backend=backend)
    rec = Embedder(int8_rec_bundle, backend=backend)
    fp32_rec = Embedder(bundles.get(REC, FLOAT_TARGET[backend]), backend=backend)
    names, found, moved, sizes = [], [], [], []
    for name, image in pair_data["images"].items():
        a, b = int8_det.detect(image, max_faces=1), fp32_det.detect(image, max_faces=1)  # the face the pipeline recognises
        if len(a) and len(b):
            assert iou_matrix(a.boxes, b.boxes)[0, 0] > 0.5, f"{name}: the INT8 detector's largest face is another one"
            names.append(name)
            found.append(b.landmarks[0])
            moved.append(a.landmarks[0] - b.landmarks[0])
            sizes.append(np.sqrt(np.prod(b.boxes[0, 2:] - b.boxes[0, :2])))
    # the INT8 detector's landmark error in face sizes (pictures here are 250 to 2400 px wide)
    size = np.array(sizes)[:, None, None]
    sigma = float(np.sqrt(np.mean((np.stack(moved) / size) ** 2)))
    rng = np.random.default_rng(0)
    draws = [np.stack(found) + np.stack(moved)] + [np.stack(found) + rng.normal(0, sigma, size=(len(names), 5, 2)) * size for _ in range(LANDMARK_DRAWS - 1)]
    index = {n: i for i, n in enumerate(names)}
    usable = pair_data["usable"] & np.array([a in index and b in index for a, b in pair_data["pairs"]])
    assert usable.sum() == pair_data["usable"].sum(), "a detector found no face where the reference did"
    ref, thr = pair_data["sims"][usable], pair_data["thr"]
    pairs = np.array([(index[a], index[b]) for (a, b), ok in zip(pair_data["pairs"], usable) if ok])
    changed: dict[str, list[int]] = {"int8": [], "fp32": []}
    for points in draws:
        crops = np.stack([align(pair_data["images"][n], p) for n, p in zip(names, points)])
        for key, model in (("int8", rec), ("fp32", fp32_rec)):
            emb = model.embed(crops)
            sims = np.einsum("ij,ij->i", emb[pairs[:, 0]], emb[pairs[:, 1]])
            changed[key].append(int(((sims >= thr) != (ref >= thr)).sum()))
    rate = np.mean(changed["int8"]) / len(ref)
    print(
        f"\n{target} on {backend}: INT8 detector's landmarks {sigma:.5f} face sizes RMS from the FP32 detector's; "
        f"decisions changed by the INT8 recogniser {changed['int8']} (its own detector's first), mean {rate:.2%}; "
        f"by the FP32 recogniser on the same landmarks {changed['fp32']}"
    )
    assert rate <= CHANGED_DECISIONS, f"the INT8 pipeline changes {rate:.2%} of {len(ref)} decisions on average (at most {CHANGED_DECISIONS:.0%})"
