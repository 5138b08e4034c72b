"""What a user sees when a bundle, a picture or a backend is wrong: the right exception and a message
that says what to do. Bundles are copied to tmp_path before being damaged; the originals are
checked byte for byte afterwards."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from gfn_edge.analyzer import FaceAnalyzer
from gfn_edge.detector import Detector
from gfn_edge.embedder import Embedder
from gfn_edge.errors import ArtifactError, GfnEdgeError, ImageError, ManifestError, MissingDependencyError

pytestmark = pytest.mark.device

DET = "retinaface-mnet025"
REC = "ghostfacenet-dsitweed-w0.5-e16"
USED = [(DET, "onnx"), (DET, "openvino"), (DET, "tflite"), (REC, "onnx"), (REC, "openvino"), (REC, "tflite")]


def _fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def originals(bundles) -> dict[tuple[str, str], Path]:
    paths = {key: bundles.get(*key) for key in USED}
    before = {key: _fingerprint(p) for key, p in paths.items()}
    yield paths
    after = {key: _fingerprint(p) for key, p in paths.items()}
    assert after == before, "a test modified a user's bundle"


@pytest.fixture
def copy_of(originals, tmp_path):
    def make(model: str, target: str) -> Path:
        dst = tmp_path / f"{model}-{target}"
        shutil.copytree(originals[(model, target)], dst)
        return dst

    return make


# --- bundles ---------------------------------------------------------------------------------------
def test_missing_bundle_folder(tmp_path):
    missing = tmp_path / "no-such-bundle"
    for build in (Detector, Embedder, FaceAnalyzer):
        with pytest.raises(ArtifactError, match="does not exist"):
            build(missing)
    with pytest.raises(ArtifactError, match="does not exist"):
        FaceAnalyzer(tmp_path / "also-missing", recognizer=missing)


def test_missing_manifest(copy_of):
    bundle = copy_of(DET, "onnx")
    (bundle / "manifest.json").unlink()
    with pytest.raises(ManifestError, match="no manifest.json"):
        Detector(bundle)


@pytest.mark.parametrize(
    "damage,words",
    [
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: "", "not valid JSON"),
        (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "spec"}), "lacks spec"),
        (lambda text: json.dumps({**json.loads(text), "format": "something-else"}), "format 'something-else'"),
        (lambda text: json.dumps({**json.loads(text), "format_version": 99}), "upgrade gfn-edge"),
        (lambda text: "[1, 2, 3]", "not a JSON object"),
    ],
    ids=["truncated", "empty", "no-spec", "foreign-format", "future-version", "not-an-object"],
)
def test_damaged_manifest(copy_of, damage, words):
    bundle = copy_of(REC, "onnx")
    manifest = bundle / "manifest.json"
    manifest.write_text(damage(manifest.read_text()))
    with pytest.raises(ManifestError, match=words):
        Embedder(bundle)


@pytest.mark.parametrize("target,file", [("onnx", "model.onnx"), ("openvino", "model.bin"), ("tflite", "model.tflite")])
def test_truncated_model_file(copy_of, target, file):
    bundle = copy_of(DET, target)
    data = (bundle / file).read_bytes()
    (bundle / file).write_bytes(data[: len(data) // 3])
    with pytest.raises(ArtifactError, match=r"sha256.*corrupt, truncated or replaced") as info:
        Detector(bundle)
    assert file in str(info.value)


def test_missing_model_file(copy_of):
    bundle = copy_of(REC, "openvino")
    (bundle / "model.bin").unlink()
    with pytest.raises(ArtifactError, match="model.bin is missing"):
        Embedder(bundle)


def test_bundles_of_the_other_kind(originals):
    det, rec = originals[(DET, "onnx")], originals[(REC, "onnx")]
    with pytest.raises(ManifestError, match="a face recogniser.*but a face detector") as info:
        Detector(rec)
    assert REC in str(info.value)
    with pytest.raises(ManifestError, match="a face detector.*but a face recogniser") as info:
        Embedder(det)
    assert DET in str(info.value)
    with pytest.raises(ManifestError, match="swapped"):
        FaceAnalyzer(rec, det)
    # an already opened model of the wrong kind is refused too
    with pytest.raises(ManifestError, match="a face recogniser.*but a face detector"):
        Detector(Embedder(rec).model)


def test_model_file_of_another_model_under_a_matching_manifest(copy_of, originals):
    """A detector bundle whose model file was replaced by the recogniser's, hashes updated: the
    artifact itself must be refused, not produce garbage detections."""
    bundle = copy_of(DET, "tflite")
    src = originals[(REC, "tflite")] / "model.tflite"
    shutil.copy(src, bundle / "model.tflite")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["sha256"]["model.tflite"] = hashlib.sha256(src.read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="not in the model"):
        Detector(bundle)


def test_unknown_or_unsuitable_backend(originals):
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        Detector(originals[(DET, "onnx")], backend="cuda")
    with pytest.raises(ValueError, match="cannot run onnx"):
        Detector(originals[(DET, "onnx")], backend="tflite")


# --- pictures ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad,words",
    [
        (np.zeros((64, 64, 3), np.float64), "float64"),
        (np.zeros((64, 64, 3), bool), "bool"),
        (np.zeros((64, 64, 5), np.uint8), "(64, 64, 5)"),
        (np.zeros((64,), np.uint8), "empty"),
        (np.zeros((0, 64, 3), np.uint8), "empty"),
        (b"\xff\xd8\xff", "bytes"),
    ],
    ids=["float64", "bool", "5-channel", "1-d", "no-rows", "bytes"],
)
def test_wrong_picture_types(originals, bad, words):
    analyzer = FaceAnalyzer(originals[(DET, "onnx")], originals[(REC, "onnx")])
    with pytest.raises(ImageError) as info:
        analyzer.analyze(bad)
    assert words in str(info.value)
    assert isinstance(info.value, GfnEdgeError) and isinstance(info.value, ValueError)


def test_unreadable_picture_file(tmp_path):
    from gfn_edge.image import read_image

    fake = tmp_path / "photo.jpg"
    fake.write_text("not a picture")
    with pytest.raises(ImageError, match="cannot decode"):
        read_image(fake)


# --- backends that are not installed --------------------------------------------------------------
def _block(monkeypatch, *modules: str) -> None:
    """Make ``import name`` fail for each module, as on a board without that package."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_missing_onnxruntime_names_the_extra(monkeypatch, originals):
    _block(monkeypatch, "onnxruntime")
    with pytest.raises(MissingDependencyError, match=r"gfn-edge\[onnx\]") as info:
        Detector(originals[(DET, "onnx")], backend="onnxruntime")
    assert isinstance(info.value, ImportError) and info.value.extra == "onnx"
    # with auto, the ONNX file still runs where OpenVINO is installed ...
    assert Detector(originals[(DET, "onnx")]).model.backend == "openvino"
    # ... and without either, the message names the preferred runtime's extra
    _block(monkeypatch, "openvino")
    with pytest.raises(MissingDependencyError, match=r"pip install 'gfn-edge\[onnx\]'"):
        Embedder(originals[(REC, "onnx")])


def test_missing_openvino_names_the_extra(monkeypatch, originals):
    import gfn_edge.runtimes.openvino_backend as ov

    monkeypatch.setattr(ov, "_CORE", None)  # a board without OpenVINO never created a Core
    _block(monkeypatch, "openvino")
    with pytest.raises(MissingDependencyError, match=r"gfn-edge\[openvino\]"):
        Detector(originals[(DET, "openvino")])


def test_missing_litert_names_the_extra(monkeypatch, originals):
    _block(monkeypatch, "ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter", "tensorflow")
    with pytest.raises(MissingDependencyError, match=r"gfn-edge\[tflite\]"):
        FaceAnalyzer(originals[(DET, "tflite")])
