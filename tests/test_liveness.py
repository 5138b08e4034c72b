"""Liveness: MiniFASNet checkpoints, the shared patch geometry, export + verification, device verdicts.

The three Silent-Face sample photos are the ground truth: upstream's demo calls image_T1 a real
face and image_F1 / image_F2 fakes (its published result images print 0.99 real, 0.73 and 0.82
fake). Here the face box comes from our RetinaFace reference instead of upstream's Caffe
detector; the verdicts must not change. Scores are printed (run with -s to see them).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import shared_path

from gfn_edge.errors import CheckpointError, ImageError, ManifestError
from gfn_edge.liveness import Liveness, crop_box, crop_face, liveness_crop, liveness_input, softmax
from gfn_edge.registry import get_spec

MODELS = {"minifasnet-v2-2.7": "2.7_80x80_MiniFASNetV2.pth", "minifasnet-v1se-4.0": "4_0_0_80x80_MiniFASNetV1SE.pth"}
PHOTOS = {"image_T1.jpg": True, "image_F1.jpg": False, "image_F2.jpg": False}  # live?
FP32 = ["onnx", "openvino", "tflite"]
FP16 = ["openvino-fp16", "tflite-fp16"]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def liveness_dir():
    return shared_path("faces", "liveness")


@pytest.fixture(scope="module")
def photos(liveness_dir, mirror):
    """name -> (upright BGR picture, largest face box from the reference RetinaFace)."""
    from gfn_edge.export.liveness_data import find_face_boxes
    from gfn_edge.image import read_image

    paths = [liveness_dir / n for n in PHOTOS]
    faces, skipped = find_face_boxes(paths, liveness_dir, mirror=mirror)
    assert not skipped, skipped
    out = {}
    for name in PHOTOS:
        boxes = [f.box for f in faces if f.image == name]
        largest = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        out[name] = (read_image(liveness_dir / name), np.asarray(largest))
    return out


@pytest.fixture(scope="module")
def references(mirror):
    from gfn_edge.export.reference import load_reference

    return {name: load_reference(name, mirror=mirror) for name in MODELS}


@pytest.fixture(scope="module")
def reference_scores(photos, references):
    """name -> (averaged real probability, argmax label, per-model real probability) from PyTorch."""
    out = {}
    for name, (image, box) in photos.items():
        probs = {}
        for model, ref in references.items():
            x = liveness_input(image, box, ref.spec.preprocess)
            probs[model] = softmax(ref.run(x)["logits"])[0]
        total = sum(probs.values())
        out[name] = (float(total[1] / len(probs)), int(np.argmax(total)), {m: float(p[1]) for m, p in probs.items()})
    return out


def _raw_state(file: str) -> dict:
    return torch.load(shared_path("models", "antispoof", file), map_location="cpu", weights_only=True)


# ----------------------------------------------------------------------------- architecture


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("prefix", ["module.", ""])
def test_checkpoint_loads_strictly(model, prefix, tmp_path):
    from gfn_edge.export.checkpoints import detect_architecture, load_state_dict, load_strict
    from gfn_edge.export.reference import build_torch_model

    raw = _raw_state(MODELS[model])
    assert all(k.startswith("module.") for k in raw)  # the released files carry DataParallel's prefix
    state = {prefix + k[len("module.") :]: v for k, v in raw.items()}
    path = tmp_path / MODELS[model]
    torch.save(state, path)
    assert detect_architecture(path).name == model
    net = build_torch_model(get_spec(model))
    load_strict(net, load_state_dict(path), path.name)
    net.load_state_dict(load_state_dict(path), strict=True)  # PyTorch's own strict check agrees


def test_mismatching_checkpoint_names_the_tensors():
    from gfn_edge.export.checkpoints import load_strict
    from gfn_edge.export.models.minifasnet import build_minifasnet

    v2 = {k[len("module.") :]: v for k, v in _raw_state(MODELS["minifasnet-v2-2.7"]).items()}
    with pytest.raises(CheckpointError, match=r"missing \d+: conv_3\.model\.3\.se_module"):
        load_strict(build_minifasnet("MiniFASNetV2SE"), v2, "V2 weights")
    with pytest.raises(CheckpointError, match=r"shape mismatch .*conv_3\.model\.1\.conv\.conv\.weight \(13, 64, 1, 1\) vs \(26, 64, 1, 1\)"):
        load_strict(build_minifasnet("MiniFASNetV1"), v2, "V2 weights")
    with pytest.raises(CheckpointError, match=r"conv_6_dw\.conv\.weight \(512, 1, 5, 5\) vs \(512, 1, 7, 7\)"):
        load_strict(build_minifasnet("MiniFASNetV2", (112, 112)), v2, "V2 weights")


@pytest.mark.parametrize("variant, params", [("MiniFASNetV1", 414_354), ("MiniFASNetV2", 434_560), ("MiniFASNetV1SE", 433_586), ("MiniFASNetV2SE", 453_792)])
def test_parameter_counts(variant, params):
    from gfn_edge.export.models.minifasnet import build_minifasnet

    net = build_minifasnet(variant).eval()
    assert sum(p.numel() for p in net.parameters()) == params
    with torch.no_grad():
        assert net(torch.zeros(2, 3, 80, 80)).shape == (2, 3)


def test_conv6_kernel_follows_input_size():
    from gfn_edge.export.models.minifasnet import build_minifasnet, conv6_kernel

    assert conv6_kernel((80, 80)) == (5, 5)
    assert conv6_kernel((128, 96)) == (8, 6)
    net = build_minifasnet("MiniFASNetV1SE", (128, 96)).eval()
    assert tuple(net.conv_6_dw.conv.kernel_size) == (8, 6)
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 128, 96)).shape == (1, 3)
    with pytest.raises(ValueError, match="unknown MiniFASNet variant"):
        build_minifasnet("MiniFASNetV3")


def test_registry_parameter_counts(references):
    for name, ref in references.items():
        params = sum(p.numel() for p in ref.torch_model.parameters())
        assert params == {"minifasnet-v2-2.7": 434_560, "minifasnet-v1se-4.0": 433_586}[name]
        assert get_spec(name).params == params


# ----------------------------------------------------------------------------- patch geometry


def test_crop_box_follows_upstream():
    # centred face: box (100,100)-(199,199) is upstream's (100, 100, 100, 100); x2.7 -> 270 px
    assert crop_box((640, 480), (100, 100, 199, 199), 2.7) == (15, 15, 285, 285)
    # near the top-left corner the patch is shifted inside, not clipped
    assert crop_box((640, 480), (0, 10, 99, 109), 2.7) == (0, 0, 270, 270)
    # near the bottom-right corner likewise (inclusive corners end at size - 1)
    assert crop_box((640, 480), (590, 430, 639, 479), 4.0) == (439, 279, 639, 479)
    # the scale is capped so the patch fits: a 200 px box at x4 in a 480 px tall picture
    left, top, right, bottom = crop_box((640, 480), (200, 100, 399, 299), 4.0)
    assert (top, bottom) == (0, 479) and right - left == 479
    # a box partly outside is allowed (truncation toward zero, as upstream's int())
    assert crop_box((640, 480), (-20.5, -30.2, 80, 90), 1.0) == (0, 0, 101, 121)
    patch = crop_face(np.zeros((480, 640, 3), np.uint8), (100, 100, 199, 199), 2.7)
    assert patch.shape == (80, 80, 3) and patch.dtype == np.uint8


def test_liveness_set_uses_the_device_crops(liveness_dir, mirror, photos):
    from gfn_edge.export.liveness_data import liveness_set

    for model in MODELS:
        spec = get_spec(model)
        vset = liveness_set(spec, liveness_dir, mirror=mirror)
        assert vset.task == "liveness" and vset.inputs.shape == (3, 80, 80, 3) and vset.inputs.dtype == np.float32
        assert sorted(n.split("#")[0] for n in vset.names) == sorted(PHOTOS)
        assert vset.description["liveness_images"] == 3
        for i, name in enumerate(vset.names):
            image, box = photos[name.split("#")[0]]
            np.testing.assert_array_equal(vset.raw[i], liveness_crop(image, box, spec.preprocess))
            np.testing.assert_array_equal(vset.inputs[i], vset.raw[i].astype(np.float32))  # BGR 0..255, mean 0, std 1


# ----------------------------------------------------------------------------- reference verdicts


def test_reference_classifies_upstream_samples(reference_scores, photos):
    print("\nPyTorch reference (MiniFASNetV2 x2.7 + MiniFASNetV1SE x4.0, RetinaFace-mnet0.25 box):")
    for name, (score, label, per_model) in reference_scores.items():
        box = np.round(photos[name][1], 1).tolist()
        print(f"  {name}: real={score:.4f} label={label} per-model={ {m: round(p, 4) for m, p in per_model.items()} } box={box}")
    for name, live in PHOTOS.items():
        score, label, _ = reference_scores[name]
        assert (label == 1) == live, f"{name}: upstream's argmax verdict differs (label {label})"
        assert (score >= 0.5) == live, f"{name}: real-face probability {score:.4f}"


# ----------------------------------------------------------------------------- export and device


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_export_and_verify(bundles, model):
    from gfn_edge.manifest import read_manifest

    results = bundles.results_for(model, FP32 + FP16)
    for target, r in results.items():
        assert r.passed, f"{model} {target}: {r.failures or r.error}"
        m = read_manifest(r.bundle)
        assert m.task == "liveness" and m.spec["liveness"]["real_class"] == 1
        assert m.verification["data"]["liveness_images"] == 3
        assert r.metrics["decision_agree"] == 1.0
        assert r.metrics["prob_err"] <= (1e-4 if target in FP32 else 1e-2)
        shape = m.inputs[0].shape
        assert (shape[1:3] if m.inputs[0].layout == "NHWC" else shape[2:4]) == [80, 80]
        if target == "onnx":
            assert not isinstance(shape[0], int)  # dynamic batch


def _device(bundles, target: str, backend: str) -> Liveness:
    paths = [bundles.results_for(model, [target])[target].bundle for model in MODELS]
    return Liveness(paths, backend=backend)


@pytest.mark.slow
@pytest.mark.parametrize(
    "target, backend",
    [("onnx", "onnxruntime"), ("onnx", "openvino"), ("openvino", "openvino"), ("tflite", "tflite"), ("openvino-fp16", "openvino"), ("tflite-fp16", "tflite")],
)
def test_device_verdicts(bundles, photos, reference_scores, target, backend):
    live = _device(bundles, target, backend)
    tol = 1e-4 if target in FP32 else 1e-2
    print(f"\n{target} on {backend}:")
    for name, expected in PHOTOS.items():
        image, box = photos[name]
        result = live.predict(image, box)
        ref_score, ref_label, ref_per_model = reference_scores[name]
        print(
            f"  {name}: real={result.score:.4f} (reference {ref_score:.4f}) label={result.label} live={result.live} per-model={ {m: round(p, 4) for m, p in result.per_model.items()} }"
        )
        assert result.live == expected and live.is_live(image, box) == expected
        assert (result.label == 1) == expected and result.label == ref_label
        assert abs(result.score - ref_score) <= tol
        for model, p in result.per_model.items():
            assert abs(p - ref_per_model[model]) <= tol
        assert result.probabilities.shape == (3,) and abs(result.probabilities.sum() - 1) < 1e-6
        assert live.score(image, box) == pytest.approx(result.score)


# ----------------------------------------------------------------------------- bad input


def test_verification_judges_the_real_face_probability_and_verdict():
    """Two crops measured on MiniFASNetV2 (FP32 against plain min/max onnx-int8): a printed photo
    whose two spoof classes trade probability while its real-face probability barely moves (no
    error for the device), and a face near the threshold that INT8 turns live (a changed verdict)."""
    from gfn_edge.export.verify import liveness_metrics

    def logits(p):
        return np.log(np.asarray(p, dtype=np.float64))

    photo_ref, photo_int8 = [0.087, 0.013, 0.900], [0.441, 0.027, 0.532]
    face_ref, face_int8 = [0.003, 0.421, 0.576], [0.004, 0.612, 0.384]
    m = liveness_metrics(logits([photo_ref]), logits([photo_int8]), real_class=1)
    assert m["prob_err"] == pytest.approx(0.014, abs=1e-3) and m["decision_agree"] == 1.0
    assert m["class_prob_err"] == pytest.approx(0.368, abs=1e-3)  # all classes: kept, not judged
    m = liveness_metrics(logits([photo_ref, face_ref]), logits([photo_int8, face_int8]), real_class=1)
    assert m["prob_err"] == pytest.approx(0.191, abs=1e-3) and m["decision_agree"] == 0.5 and m["crops"] == 2
    assert m["decision_flips"] == [[pytest.approx(0.421, abs=1e-3), pytest.approx(0.612, abs=1e-3)]]  # which verdict, from where
    from gfn_edge.export.report import _fidelity

    assert "decisions agree 0.500 (changed: 0.421 -> 0.612)" in _fidelity(m)  # gfn-export --report says which
    # the real class comes from the model's spec: another index reads another column
    assert liveness_metrics(logits([photo_ref]), logits([photo_int8]), real_class=2)["prob_err"] == pytest.approx(0.368, abs=1e-3)


def test_verification_reads_int8_against_the_reference_under_one_grey_level_of_noise():
    """The reference's own move on crops with one grey level of noise is reported beside the INT8
    error, and a changed verdict on a crop that noise already tips counts as fragile; one on a crop
    the noise leaves alone does not. The noise itself is -1..+1 per pixel, seeded, uint8."""
    from gfn_edge.export.liveness_data import grey_level_noise
    from gfn_edge.export.verify import liveness_metrics

    def logits(live):  # three classes with the real face (class 1) at ``live``
        live = np.asarray(live, dtype=np.float64)
        return np.log(np.stack([(1 - live) / 2, live, (1 - live) / 2], axis=1))

    ref, int8 = logits([0.49, 0.30, 0.90]), logits([0.55, 0.60, 0.88])
    noise = np.stack([logits([0.52, 0.31, 0.80]), logits([0.47, 0.29, 0.91])])  # crop 0 tips under noise, crop 1 does not
    m = liveness_metrics(ref, int8, real_class=1, ref_noise=noise)
    assert m["decision_flips"] == [[0.49, 0.55], [0.3, 0.6]]
    assert m["reference_noise"]["prob_err"] == pytest.approx(0.10, abs=1e-6)  # crop 2: 0.90 -> 0.80
    assert m["prob_err_mean"] == pytest.approx((0.06 + 0.30 + 0.02) / 3, abs=1e-4)
    assert m["reference_noise"]["fragile_crops"] == 1 and m["decision_flips_fragile"] == 1
    assert m["decision_flips_robust"] == 1  # crop 1: 0.30 -> 0.60, which the noise leaves alone
    bare = liveness_metrics(ref, int8)
    assert "reference_noise" not in bare and bare["decision_flips_robust"] == 2  # without the noise pass: every flip counts
    # the INT8 default judges the robust verdicts: the fragile flip alone passes, the robust one fails
    from gfn_edge.export.verify import default_tolerances, judge

    tolerances = default_tolerances("liveness", "int8")
    fragile_only = liveness_metrics(ref[[0, 2]], int8[[0, 2]], real_class=1, ref_noise=noise[:, [0, 2]])
    assert fragile_only["decision_flips_robust"] == 0 and not any("decision_flips_robust" in f for f in judge(fragile_only, tolerances))
    assert any("decision_flips_robust" in f for f in judge(m, tolerances))  # (decision_agree caps fragile flips: 1 of 2 here)
    from gfn_edge.export.report import _fidelity

    assert "1 crops it cannot decide, 1 of them on those; 1 changed verdicts the reference holds robustly" in _fidelity(m)
    assert "(mean 0.13)" in _fidelity(m)

    raw = np.array([[[0, 128, 255]]], np.uint8).repeat(64, axis=0)
    copies = grey_level_noise(raw, draws=2, seed=0)
    assert len(copies) == 2 and all(c.dtype == np.uint8 for c in copies)
    diff = np.stack(copies).astype(int) - raw
    assert set(np.unique(diff)) <= {-1, 0, 1} and (diff != 0).any()
    assert copies[0][:, 0, 0].min() == 0 and copies[0][:, 0, 2].max() == 255  # clipped, never wrapped
    assert all(np.array_equal(a, b) for a, b in zip(copies, grey_level_noise(raw, draws=2, seed=0)))  # seeded

    from types import SimpleNamespace

    from gfn_edge.export.liveness_data import NOISE_DRAWS, reference_noise_logits
    from gfn_edge.export.verify_data import VerificationSet

    crops = np.random.default_rng(1).integers(0, 256, (4, 80, 80, 3), dtype=np.uint8)
    seen = []

    def run(x):  # a stand-in reference: remembers what it was shown, answers with the mean pixel
        seen.append(x)
        return {"logits": np.repeat(x.mean(axis=(1, 2, 3))[:, None], 3, axis=1)}

    vset = VerificationSet("liveness", crops.astype(np.float32), [f"c{i}" for i in range(4)], raw=crops)
    noise = reference_noise_logits(SimpleNamespace(spec=get_spec("minifasnet-v2-2.7"), run=run), vset)
    assert noise.shape == (NOISE_DRAWS, 4, 3) and len(seen) == NOISE_DRAWS
    assert all(0 < np.abs(x - crops).max() <= 1 for x in seen)  # the model's own preprocessing (raw pixels) of noisy crops
    assert reference_noise_logits(SimpleNamespace(spec=get_spec("retinaface-mnet025"), run=run), vset) is None


def test_bad_boxes_and_images_are_refused():
    pre = get_spec("minifasnet-v2-2.7").preprocess
    image = np.zeros((480, 640, 3), np.uint8)
    for box in [(700, 10, 800, 100), (-200, -200, -10, -10), (10, 500, 100, 600)]:
        with pytest.raises(ValueError, match="outside"):
            liveness_input(image, box, pre)
    with pytest.raises(ValueError, match="empty"):
        liveness_input(image, (100, 100, 100, 200), pre)
    with pytest.raises(ValueError, match="NaN"):
        liveness_input(image, (np.nan, 0, 10, 10), pre)
    with pytest.raises(ValueError, match="4 numbers"):
        liveness_input(image, (1, 2, 3), pre)
    with pytest.raises(ImageError, match="empty"):
        liveness_input(np.zeros((0, 0, 3), np.uint8), (1, 1, 10, 10), pre)
    with pytest.raises(ValueError, match="face-crop"):
        liveness_input(image, (100, 100, 200, 200), get_spec("retinaface-mnet025").preprocess)
    with pytest.raises(ValueError, match="at least one"):
        Liveness([])
    with pytest.raises(ValueError, match="threshold"):
        Liveness(["unused"], threshold=1.5)


@pytest.mark.slow
def test_device_refuses_bad_input(bundles, photos, tmp_path):
    live = _device(bundles, "onnx", "auto")
    image, box = photos["image_T1.jpg"]
    with pytest.raises(ValueError, match="outside"):
        live.predict(image, (image.shape[1] + 5, 0, image.shape[1] + 90, 80))
    with pytest.raises(ImageError):
        live.score(np.zeros((0, 0, 3), np.uint8), box)
    with pytest.raises(ImageError):
        live.score(np.zeros((480, 640), np.float32), box)
    # a bundle of another task (a copy relabelled as a detector) is refused with a clear message
    other = tmp_path / "relabelled"
    shutil.copytree(live.members[0].model.manifest.path, other)
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "task": "detect"}))
    with pytest.raises(ManifestError, match="liveness"):
        Liveness([other])
    # a face at the very edge still gets a full-size patch (shifted inside, as upstream does)
    assert 0.0 <= live.score(image, (-40, -40, 60, 60)) <= 1.0


def test_device_module_imports_no_training_frameworks():
    code = "import sys, gfn_edge.liveness; bad = [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules]; assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)
