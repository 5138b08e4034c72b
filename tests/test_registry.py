"""The registry is the one place preprocessing is written down: every entry must be self-consistent.

A wrong mean, colour order, anchor set or template here silently degrades every exported
artifact, so each field is checked against what its model family's original code uses, and the
parameter counts against the architecture fixtures made from the original definitions.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import ROOT, shared_path

from gfn_edge.errors import GfnEdgeError, UnknownModelError
from gfn_edge.registry import ARCFACE_112_TEMPLATE, REGISTRY, Anchors, ModelSpec, Preprocess, get_spec, list_models

REQUIRED = {
    "retinaface-mnet025": ("detect", {"backbone": "mobilenet0.25"}),
    "retinaface-ghostnet": ("detect", {"backbone": "ghostnet", "se_ratio": 0.0}),
    "retinaface-ghostnet-se025": ("detect", {"backbone": "ghostnet", "se_ratio": 0.25}),
    "retinaface-mobilenetv3": ("detect", {"backbone": "mobilenetv3"}),
    "retinaface-resnet50": ("detect", {"backbone": "resnet50"}),
    "ghostfacenet-v1-w1.3-s1": ("embed", {"version": 1, "width": 1.3, "stride": 1}),
    "ghostfacenet-v1-w1.3-s2": ("embed", {"version": 1, "width": 1.3, "stride": 2}),
    "ghostfacenet-v2-w1.3-s2": ("embed", {"version": 2, "width": 1.3, "stride": 2}),
    "ghostfacenet-dsitweed-w0.5-e16": ("embed", {"version": 1, "from_checkpoint": True}),
    "ghostfacenet-dsitweed-w0.5-e6": ("embed", {"version": 1, "from_checkpoint": True}),
    "ghostfacenet-dsitweed-w1.3-e1": ("embed", {"version": 1, "from_checkpoint": True}),
    "minifasnet-v2-2.7": ("liveness", {"variant": "MiniFASNetV2", "input": [80, 80], "num_classes": 3}),
    "minifasnet-v1se-4.0": ("liveness", {"variant": "MiniFASNetV1SE", "input": [80, 80], "num_classes": 3}),
}
# fixture NAME (shared/fixtures/retinaface) -> registry entry it pins
FIXTURES = {
    "retinaface_mnet025": "retinaface-mnet025",
    "retinaface_ghostnet_se0": "retinaface-ghostnet",
    "retinaface_ghostnet_se025": "retinaface-ghostnet-se025",
    "retinaface_mobilev3": "retinaface-mobilenetv3",
}
FAMILY = {"detect": "retinaface", "embed": "ghostfacenet", "liveness": "minifasnet"}
WEIGHT_FORMAT = {"retinaface": ("pytorch", ".pth"), "minifasnet": ("pytorch", ".pth"), "ghostfacenet": ("keras-h5", ".h5")}
OUTPUTS = {"detect": ["loc", "conf", "landms"], "embed": ["embedding"], "liveness": ["logits"]}
ALL = sorted(REGISTRY)


def test_required_entries_exist_with_their_architecture():
    for name, (task, arch) in REQUIRED.items():
        spec = get_spec(name)
        assert spec.name == name and spec.task == task, name
        assert spec.arch == arch, f"{name}: arch {spec.arch}"
    assert set(list_models("detect")) >= {n for n, (t, _) in REQUIRED.items() if t == "detect"}
    assert set(list_models()) == set(REGISTRY)
    for task in ("detect", "embed", "liveness"):
        assert all(REGISTRY[n].task == task for n in list_models(task))


@pytest.mark.parametrize("name", ALL)
def test_preprocessing_outputs_and_extras_fit_the_family(name):
    spec = REGISTRY[name]
    pre = spec.preprocess
    assert spec.family == FAMILY[spec.task]
    assert [o.name for o in spec.outputs] == OUTPUTS[spec.task]
    assert pre.color in ("BGR", "RGB") and len(pre.mean) == 3 and len(pre.std) == 3 and all(s > 0 for s in pre.std)
    if spec.task == "detect":
        # Pytorch_Retinaface: BGR minus (104, 117, 123), letterboxed; sizes divisible by the largest stride
        assert (pre.color, pre.mean, pre.std, pre.resize) == ("BGR", (104.0, 117.0, 123.0), (1.0, 1.0, 1.0), "letterbox")
        assert all(v % max(spec.anchors.steps) == 0 for v in pre.input_size)
        assert spec.anchors == Anchors(((16, 32), (64, 128), (256, 512)), (8, 16, 32), (0.1, 0.2), clip=False)
        assert spec.alignment is None and spec.liveness is None
        assert 0 < spec.default_threshold < 1
    elif spec.task == "embed":
        # GhostFaceNets: 112x112 RGB, (x - 127.5) / 128, ArcFace five-point alignment
        assert (pre.input_size, pre.color, pre.mean, pre.std, pre.resize) == ((112, 112), "RGB", (127.5,) * 3, (128.0,) * 3, "aligned")
        assert spec.anchors is None and spec.liveness is None
        assert spec.alignment["template"] == "arcface-112" and spec.alignment["size"] == [112, 112]
        assert spec.alignment["points"] == [list(p) for p in ARCFACE_112_TEMPLATE]
        assert -1 < spec.default_threshold < 1
    else:
        # Silent-Face: BGR 0..255 patches around the face box scaled by the model's factor
        assert (pre.input_size, pre.color, pre.mean, pre.std, pre.resize) == ((80, 80), "BGR", (0.0,) * 3, (1.0,) * 3, "face-crop")
        assert pre.crop_scale == spec.liveness["crop_scale"] and str(pre.crop_scale) in name
        assert spec.liveness["real_class"] == 1 and spec.anchors is None and spec.alignment is None


@pytest.mark.parametrize("name", ALL)
def test_weight_source_is_complete(name):
    spec = REGISTRY[name]
    src = spec.weights
    if src is None:
        assert not spec.has_release_weights and "real-weights" not in spec.tags
        return
    fmt, suffix = WEIGHT_FORMAT[spec.family]
    assert src.format == fmt and src.mirror_path.endswith(suffix), (src.format, src.mirror_path)
    assert src.licence in ("MIT", "Apache-2.0"), src.licence
    assert src.upstream, "every checkpoint names where it comes from"
    assert src.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", src.sha256)
    assert src.url is None or src.url.startswith("https://")
    if "real-weights" in spec.tags:
        assert src.sha256 and src.url and spec.params, f"{name}: real weights need a hash, a URL and a parameter count"


@pytest.mark.parametrize("name", [n for n in ALL if "real-weights" in REGISTRY[n].tags])
def test_mirrored_checkpoints_have_the_registered_hash(name):
    from gfn_edge.digest import sha256_file

    src = REGISTRY[name].weights
    assert sha256_file(shared_path("models", src.mirror_path)) == src.sha256


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_parameter_counts_match_the_architecture_fixtures(fixture):
    data = json.loads(shared_path("fixtures", "retinaface", f"{fixture}.json").read_text())
    assert REGISTRY[FIXTURES[fixture]].params == data["params"]


def test_spec_round_trips_through_json():
    """A bundle manifest stores ``to_dict()``; the runtime rebuilds Preprocess and Anchors from it."""
    for spec in REGISTRY.values():
        data = json.loads(json.dumps(spec.to_dict()))
        assert Preprocess.from_dict(data["preprocess"]) == spec.preprocess
        assert (Anchors.from_dict(data["anchors"]) if data["anchors"] else None) == spec.anchors
        assert data["name"] == spec.name and data["task"] == spec.task


def test_with_input_size_changes_only_the_size():
    spec = get_spec("retinaface-mnet025")
    other = spec.with_input_size((320, 256))
    assert other.preprocess.input_size == (320, 256) and spec.preprocess.input_size == (640, 480)
    assert other.preprocess.mean == spec.preprocess.mean and other.anchors == spec.anchors


@pytest.mark.parametrize(
    "typo,expected",
    [("retinaface-mnet25", "retinaface-mnet025"), ("ghostfacenet-v1-w13-s2", "ghostfacenet-v1-w1.3-s2"), ("minifasnet-v2", "minifasnet-v2-2.7")],
)
def test_unknown_names_get_the_closest_suggested(typo, expected):
    with pytest.raises(UnknownModelError) as info:
        get_spec(typo)
    message = str(info.value)
    assert f"unknown model {typo!r}" in message
    assert expected in message.split("did you mean", 1)[1].split("?")[0]
    assert isinstance(info.value, KeyError) and isinstance(info.value, GfnEdgeError)


def test_nonsense_name_lists_the_known_ones():
    with pytest.raises(UnknownModelError) as info:
        get_spec("zzzz")
    assert "did you mean" not in str(info.value) and "retinaface-mnet025" in str(info.value)


def test_model_spec_is_immutable():
    spec = get_spec("retinaface-mnet025")
    assert isinstance(spec, ModelSpec)
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]


# ----------------------------------------------------------------------------- README model table

TABLE_BEGIN, TABLE_END = "<!-- models:begin -->", "<!-- models:end -->"


def _availability(spec: ModelSpec) -> str:
    src = spec.weights
    if src is None:
        return "none released: your own checkpoint, or `--random-weights`"
    if src.url and src.sha256:
        return "mirror or download, sha256 pinned"
    if src.url:
        return "mirror or download, hash recorded on first download"
    return "mirror, or pass the file's path (no public URL)"


def model_table() -> str:
    """The README's model table, generated from the registry (``python tests/test_registry.py`` prints it)."""
    lines = ["| model | task | params | source | licence | weights |", "|---|---|---|---|---|---|"]
    for spec in REGISTRY.values():
        params = f"{spec.params:,}" if spec.params else "-"
        source = spec.weights.upstream if spec.weights else "-"
        licence = spec.weights.licence if spec.weights else "-"
        lines.append(f"| `{spec.name}` | {spec.task} | {params} | {source} | {licence} | {_availability(spec)} |")
    return "\n".join(lines)


def test_readme_model_table_is_the_registry():
    text = (ROOT / "README.md").read_text()
    assert TABLE_BEGIN in text and TABLE_END in text, "README.md lost its model-table markers"
    table = text.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0].strip()
    assert table == model_table(), "README model table is stale: paste the output of `python tests/test_registry.py`"


if __name__ == "__main__":
    print(model_table())


STUDENTS = [name for name in REQUIRED if name.startswith("ghostfacenet-dsitweed-")]


@pytest.mark.slow
@pytest.mark.parametrize("name", STUDENTS)
def test_a_students_threshold_is_the_one_its_reference_measures_on_the_pairs(name, faces_dir, mirror):
    """The same rule gfn-export applies to a user's own checkpoint: the reference's best pair accuracy.
    The official release's 0.3, which the students carried until 2026-12-06, accepts most of the
    different-person pairs (w0.5-e16: 97 %, accuracy 23.5 % against the best 85.7 %)."""
    import numpy as np

    from gfn_edge.export.reference import reference_for, resolve_spec, resolved_digest
    from gfn_edge.export.verify import pair_scores
    from gfn_edge.export.verify_data import build_verification_set
    from gfn_edge.metrics import accuracy_at, best_threshold_accuracy

    spec, path = resolve_spec(name, mirror=str(mirror))
    vset = build_verification_set(spec, faces_dir / "pairs", max_images=48)  # what gfn-export verifies on
    assert len(vset.pairs) >= 300
    scores, same = pair_scores(reference_for(spec, path, digest=resolved_digest(spec, path)).run(vset.inputs)["embedding"], vset)
    same = same.astype(bool)
    best, measured = best_threshold_accuracy(scores, same)
    assert spec.default_threshold == pytest.approx(measured, abs=5e-4), (spec.default_threshold, measured)
    assert accuracy_at(scores, same, spec.default_threshold) >= best - 1e-9
    assert np.mean(scores[~same] >= spec.default_threshold) < 0.25, "a threshold that accepts most strangers"
