"""Embedder on real aligned faces: unit vectors, preprocessing from the manifest, flip, signature."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import shared_path

from gfn_edge.align import align_batch
from gfn_edge.detector import Detector
from gfn_edge.embedder import Embedder, cosine_similarity
from gfn_edge.errors import ImageError, ManifestError
from gfn_edge.image import read_image
from gfn_edge.metrics import l2_normalize
from gfn_edge.preprocess import normalize
from gfn_edge.registry import get_spec

pytestmark = pytest.mark.device

DET = "retinaface-mnet025"
REC = "ghostfacenet-dsitweed-w0.5-e16"
TARGETS = ["onnx", "openvino", "tflite", "openvino-fp16", "tflite-fp16"]


@pytest.fixture(scope="module")
def detector(bundles) -> Detector:
    return Detector(bundles.get(DET, "onnx"))


@pytest.fixture(scope="module")
def crops(detector) -> np.ndarray:
    """The six aligned faces of insightface_t1.jpg."""
    image = read_image(shared_path("faces", "scenes", "insightface_t1.jpg"))
    dets = detector.detect(image)
    assert len(dets) == 6
    return align_batch(image, dets.landmarks)


@pytest.fixture(scope="module")
def embedders(bundles):
    cache: dict[tuple[str, bool], Embedder] = {}

    def get(target: str = "onnx", flip: bool = False) -> Embedder:
        if (target, flip) not in cache:
            cache[(target, flip)] = Embedder(bundles.get(REC, target), flip=flip)
        return cache[(target, flip)]

    return get


@pytest.mark.numerics
@pytest.mark.parametrize("target", TARGETS)
def test_unit_vectors_for_a_batch(embedders, crops, target):
    emb = embedders(target).embed(crops)
    assert emb.shape == (6, 512) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # six different people: no two embeddings are the same vector
    sims = emb @ emb.T
    assert sims[~np.eye(6, dtype=bool)].max() < 0.95


def test_preprocessing_is_the_manifests(embedders, crops):
    """The exact composition: manifest colour order and mean/std, the model, L2 normalisation."""
    e = embedders()
    pre = e.manifest.preprocess
    assert pre.color == "RGB" and pre.mean == (127.5, 127.5, 127.5) and pre.std == (128.0, 128.0, 128.0)
    manual = l2_normalize(e.model.run(normalize(crops, pre))["embedding"])
    np.testing.assert_allclose(e.embed(crops), manual, atol=1e-6)
    # and colour order matters to this model: feeding RGB as if it were BGR gives other vectors
    swapped = e.embed(np.ascontiguousarray(crops[..., ::-1]))
    assert np.min(np.sum(swapped * manual, axis=1)) < 0.999


def test_one_crop_a_list_and_an_empty_batch(embedders, crops):
    e = embedders()
    batch = e.embed(crops)
    one = e.embed(crops[2])
    assert one.shape == (1, 512)
    np.testing.assert_allclose(one[0], batch[2], atol=1e-5)
    np.testing.assert_allclose(e.embed_one(crops[3]), batch[3], atol=1e-5)
    np.testing.assert_allclose(e.embed(list(crops[:3])), batch[:3], atol=1e-5)
    empty = e.embed(np.zeros((0, 112, 112, 3), np.uint8))
    assert empty.shape == (0, 512) and empty.dtype == np.float32


def test_grayscale_crops_are_accepted(embedders, crops):
    import cv2

    e = embedders()
    gray = np.stack([cv2.cvtColor(c, cv2.COLOR_BGR2GRAY) for c in crops])
    as_bgr = np.stack([cv2.cvtColor(g, cv2.COLOR_GRAY2BGR) for g in gray])
    np.testing.assert_allclose(e.embed(gray[..., None]), e.embed(as_bgr), atol=1e-6)
    np.testing.assert_allclose(e.embed(gray[0]), e.embed(as_bgr[:1]), atol=1e-6)


def test_flip_averages_the_mirrored_crop(embedders, crops):
    plain, flipped = embedders(), embedders(flip=True)
    pre = plain.manifest.preprocess
    raw = plain.model.run(normalize(crops, pre))["embedding"]
    raw_mirror = plain.model.run(normalize(np.ascontiguousarray(crops[:, :, ::-1]), pre))["embedding"]
    expected = l2_normalize(raw + raw_mirror)
    got = flipped.embed(crops)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # a flip-averaged embedding cannot tell a face from its mirror image
    mirror = flipped.embed(np.ascontiguousarray(crops[:, :, ::-1]))
    assert np.min(np.sum(got * mirror, axis=1)) > 0.99999
    assert np.min(np.sum(plain.embed(crops) * plain.embed(np.ascontiguousarray(crops[:, :, ::-1])), axis=1)) < 0.9999


def test_signature_names_the_model_and_its_weights(embedders, bundles):
    sigs = {embedders(t).signature for t in TARGETS}
    assert len(sigs) == 1, f"one model on every backend and precision, got {sigs}"
    sig = sigs.pop()
    src = embedders().manifest.source["sha256"]
    assert sig == f"{REC}:{src[:16]}"
    assert embedders().default_threshold == get_spec(REC).default_threshold == 0.7544  # the registry's, measured for this student


def test_same_people_are_closer_than_strangers(embedders, detector):
    """Real pairs: the weak student still ranks most same-person pairs above different ones."""
    folder = shared_path("faces", "pairs")
    rows = [r for r in csv.DictReader(open(folder / "pairs.csv")) if r["source"] == "deepface"]
    same = [r for r in rows if r["same"] == "1"][:10]
    diff = [r for r in rows if r["same"] == "0"][:10]
    e = embedders("openvino")
    cache: dict[str, np.ndarray] = {}

    def emb(name: str) -> np.ndarray:
        if name not in cache:
            img = read_image(folder / name)
            d = detector.detect(img, max_faces=1)
            assert len(d) == 1, name
            cache[name] = e.embed(align_batch(img, d.landmarks))[0]
        return cache[name]

    s_same = np.array([cosine_similarity(emb(r["image_a"]), emb(r["image_b"])) for r in same])
    s_diff = np.array([cosine_similarity(emb(r["image_a"]), emb(r["image_b"])) for r in diff])
    assert s_same.mean() > s_diff.mean() + 0.2, (s_same.mean(), s_diff.mean())
    # AUC of the 100 (same, different) combinations
    assert (s_same[:, None] > s_diff[None, :]).mean() > 0.8


@pytest.mark.parametrize(
    "bad,words",
    [
        (np.zeros((2, 100, 100, 3), np.uint8), ["112x112", "(2, 100, 100, 3)"]),
        (np.zeros((100, 100, 3), np.uint8), ["112x112"]),
        (np.zeros((2, 112, 112, 3), np.float32), ["float32"]),
        (np.zeros((2, 112, 112, 2), np.uint8), ["(112, 112, 2)"]),
        ("face.jpg", ["str"]),
    ],
    ids=["batch-size", "crop-size", "float", "channels", "path"],
)
def test_bad_crops_are_refused(embedders, bad, words):
    with pytest.raises(ImageError) as info:
        embedders().embed(bad)
    for w in words:
        assert w in str(info.value), f"{w!r} not in {info.value}"


def test_refuses_a_detector_bundle(bundles):
    with pytest.raises(ManifestError, match="face detector.*recogniser"):
        Embedder(bundles.get(DET, "onnx"))


def test_cosine_similarity_checks_sizes():
    assert cosine_similarity(np.array([3.0, 4.0]), np.array([6.0, 8.0])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="512 vs 256"):
        cosine_similarity(np.ones(512), np.ones(256))
