"""RetinaFace references against fixtures made by the original PyTorch definitions.

A model whose state_dict has the same names and shapes as the original loads the original's
checkpoints with ``strict=True``; with the same weights it must produce the same numbers. The
real MobileNet-0.25 checkpoint must also find the six faces of insightface's t1.jpg through the
project's own decoder and NMS. ResNet-50 is checked against torchvision's parameter names (the
names Pytorch_Retinaface's Resnet50_Final.pth uses) without torchvision being installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from gfn_edge.image import read_image
from gfn_edge.preprocess import normalize
from gfn_edge.registry import get_spec
from gfn_edge.retinaface_decode import postprocess

torch = pytest.importorskip("torch")

from gfn_edge.export.checkpoints import detect_architecture, load_state_dict, load_strict  # noqa: E402
from gfn_edge.export.reference import build_torch_model  # noqa: E402

FIXTURES = {
    "retinaface_mnet025": "retinaface-mnet025",
    "retinaface_ghostnet_se0": "retinaface-ghostnet",
    "retinaface_ghostnet_se025": "retinaface-ghostnet-se025",
    "retinaface_mobilev3": "retinaface-mobilenetv3",
}
WITH_WEIGHTS = [n for n in FIXTURES if n != "retinaface_mnet025"]
TOL = {"loc": 1e-4, "landms": 1e-4, "conf": 1e-5}
REAL = "retinaface/mobilenet0.25_Final.pth"


def _fixture(name: str, suffix: str) -> Path:
    return shared_path("fixtures", "retinaface", name + suffix)


def _run(model, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        loc, conf, landms = model(torch.from_numpy(x_nchw))
    return {"loc": loc.numpy(), "conf": conf.numpy(), "landms": landms.numpy()}


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _assert_matches_golden(out: dict[str, np.ndarray], golden) -> None:
    for key, tol in TOL.items():
        assert out[key].shape == golden[key].shape, key
        err = float(np.abs(out[key] - golden[key]).max())
        assert err <= tol, f"{key}: max abs error {err:.3g} > {tol:g}"


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_state_dict_matches_the_original_key_for_key(fixture):
    data = json.loads(_fixture(fixture, ".json").read_text())
    spec = get_spec(FIXTURES[fixture])
    model = build_torch_model(spec).eval()
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    theirs = [[k, list(shape)] for k, shape in data["state_dict"]]
    missing = sorted({k for k, _ in theirs} - {k for k, _ in ours})
    extra = sorted({k for k, _ in ours} - {k for k, _ in theirs})
    assert not missing and not extra, f"missing {missing[:5]}, extra {extra[:5]}"
    assert ours == theirs, "same names, but shapes or order differ"
    assert _count(model) == data["params"] == spec.params
    # output shapes of a 640x480 input (the fixtures' golden size)
    out = _run(model, np.zeros((1, 3, 480, 640), np.float32))
    expected = {k.split("(")[0]: v for k, v in data["outputs"].items()}
    assert {k: list(v.shape) for k, v in out.items()} == expected


@pytest.mark.parametrize("fixture", WITH_WEIGHTS)
def test_fixture_weights_reproduce_the_golden_outputs(fixture):
    spec = get_spec(FIXTURES[fixture])
    weights = _fixture(fixture, ".weights.npz")
    assert detect_architecture(weights).name == spec.name, "a checkpoint's architecture is recognised from its keys"
    model = build_torch_model(spec)
    load_strict(model, load_state_dict(weights), weights.name)
    model.eval()
    with np.load(_fixture(fixture, ".golden.npz")) as golden:
        out = _run(model, golden["input"])
        _assert_matches_golden(out, golden)
        # the weights matter: the untrained model is far from the golden outputs
        fresh = _run(build_torch_model(spec).eval(), golden["input"])
        assert np.abs(fresh["loc"] - golden["loc"]).max() > 100 * TOL["loc"]


@pytest.fixture(scope="module")
def real_state(mirror) -> dict:
    state = torch.load(mirror / REAL, map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in state), "the mirrored file has no DataParallel prefix"
    return state


@pytest.fixture(scope="module")
def golden_real():
    with np.load(_fixture("retinaface_mnet025_real", ".golden.npz")) as data:
        return {k: data[k] for k in data.files}


def _real_model(path: Path):
    model = build_torch_model(get_spec("retinaface-mnet025"))
    load_strict(model, load_state_dict(path), path.name)
    return model.eval()


@pytest.mark.parametrize("layout", ["plain", "module-prefix", "wrapped-prefix"])
def test_real_checkpoint_loads_strict_and_reproduces_its_golden(real_state, golden_real, tmp_path, layout):
    if layout == "plain":
        path = shared_path("models", REAL)
    else:
        prefixed = {"module." + k: v for k, v in real_state.items()}
        path = tmp_path / f"{layout}.pth"
        torch.save({"state_dict": prefixed} if layout == "wrapped-prefix" else prefixed, path)
    model = _real_model(path)
    # strict in the torch sense too: nothing missing, nothing unexpected
    result = model.load_state_dict(load_state_dict(path), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    _assert_matches_golden(_run(model, golden_real["input"]), golden_real)


def test_golden_input_is_our_preprocessing_of_the_picture(golden_real):
    """The fixture's input is t1.jpg at full size, BGR minus (104, 117, 123): what gfn_edge computes."""
    image = read_image(shared_path("faces", "scenes", "insightface_t1.jpg"))
    ours = normalize(image, get_spec("retinaface-mnet025").preprocess)[0].transpose(2, 0, 1)
    assert ours.shape == golden_real["input"].shape[1:]
    assert float(np.abs(ours - golden_real["input"][0]).max()) <= 1.0, "JPEG decoders may differ by one level at most"


def test_real_checkpoint_finds_the_six_faces_of_t1(golden_real):
    spec = get_spec("retinaface-mnet025")
    model = _real_model(shared_path("models", REAL))
    out = _run(model, golden_real["input"])
    h, w = golden_real["input"].shape[2:]
    dets = postprocess(out["loc"], out["conf"], out["landms"], spec.anchors, (w, h), 1.0, spec.default_threshold, 0.4)
    assert len(dets) == 6, f"found {len(dets)} faces, scores {np.round(dets.scores, 3).tolist()}"
    assert dets.scores.min() > 0.9
    # boxes are inside the picture, faces are distinct, landmarks sit inside their boxes
    assert (dets.boxes[:, :2] >= -5).all() and (dets.boxes[:, 2] <= w + 5).all() and (dets.boxes[:, 3] <= h + 5).all()
    centres = (dets.boxes[:, :2] + dets.boxes[:, 2:]) / 2
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(6) * 1e9
    assert gaps.min() > 50
    inside = (dets.landmarks >= dets.boxes[:, None, :2] - 2) & (dets.landmarks <= dets.boxes[:, None, 2:] + 2)
    assert inside.all()
    # the golden outputs decode to the same faces
    ref = postprocess(golden_real["loc"], golden_real["conf"], golden_real["landms"], spec.anchors, (w, h), 1.0, 0.5, 0.4)
    assert len(ref) == 6 and np.abs(np.sort(ref.boxes, axis=0) - np.sort(dets.boxes, axis=0)).max() < 0.5


def test_resnet50_uses_torchvision_parameter_names():
    spec = get_spec("retinaface-resnet50")
    model = build_torch_model(spec)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    known = {
        # torchvision.models.resnet50 names under RetinaFace's ``body``
        "body.conv1.weight": (64, 3, 7, 7),
        "body.bn1.running_var": (64,),
        "body.layer1.0.conv1.weight": (64, 64, 1, 1),
        "body.layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "body.layer1.0.downsample.1.num_batches_tracked": (),
        "body.layer2.3.conv2.weight": (128, 128, 3, 3),
        "body.layer3.5.bn3.weight": (1024,),
        "body.layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
        "body.layer4.2.conv3.weight": (2048, 512, 1, 1),
        # Pytorch_Retinaface's pyramid and heads on layer2/3/4 (512, 1024, 2048 channels -> 256)
        "fpn.output1.0.weight": (256, 512, 1, 1),
        "fpn.output3.0.weight": (256, 2048, 1, 1),
        "ssh1.conv3X3.0.weight": (128, 256, 3, 3),
        "ClassHead.0.conv1x1.weight": (4, 256, 1, 1),
        "BboxHead.2.conv1x1.weight": (8, 256, 1, 1),
        "LandmarkHead.1.conv1x1.weight": (20, 256, 1, 1),
    }
    for name, shape in known.items():
        assert shapes.get(name) == shape, f"{name}: {shapes.get(name)} != {shape}"
    assert not any(k.startswith("body.fc.") or k.startswith("body.avgpool") for k in shapes)
    # torchvision resnet50 has 25,557,032 parameters, 2,049,000 of them in fc
    body = sum(p.numel() for n, p in model.named_parameters() if n.startswith("body."))
    assert body == 25_557_032 - 2_049_000
    assert _count(model) == spec.params == 27_293_600
    # and a checkpoint with these keys is recognised as ResNet-50
    assert any(k.startswith("body.layer1.") for k in shapes)


@pytest.mark.parametrize("size_in,size_out", [((8, 10), (15, 20)), ((15, 20), (30, 40)), ((23, 17), (45, 33)), ((4, 5), (7, 9))])
def test_nearest_resize_is_pytorch_nearest(size_in, size_out):
    import torch
    import torch.nn.functional as F

    from gfn_edge.export.models.retinaface_parts import nearest_resize

    x = torch.randn(2, 3, *size_in)
    assert torch.equal(nearest_resize(x, size_out), F.interpolate(x, size=list(size_out), mode="nearest"))
