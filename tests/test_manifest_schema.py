"""Manifests are checked against a schema on load, and against the model file when a backend opens it.

Every case starts from a real exported bundle and damages one key of its manifest.json (updating
the recorded hashes where a case swaps files, so only the case's own damage is under test).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import resource
import shutil
from pathlib import Path
from typing import Any

import pytest

from gfn_edge import Detector, Embedder, get_spec
from gfn_edge.errors import GfnEdgeError, ManifestError, OptionError
from gfn_edge.manifest import Manifest, read_manifest
from gfn_edge.manifest_schema import MAX_SIDE, REQUIRED, validate_manifest, validate_spec
from gfn_edge.model_spec import ModelSpec
from gfn_edge.registry import REGISTRY
from gfn_edge.runtimes import open_model

DET = "retinaface-mnet025"
REC = "ghostfacenet-dsitweed-w0.5-e16"
TARGETS = ("onnx", "openvino", "tflite")
BACKEND = {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "tflite"}
MODEL_FILE = {"onnx": "model.onnx", "openvino": "model.xml", "tflite": "model.tflite"}


@pytest.fixture(scope="module")
def originals(bundles) -> dict[tuple[str, str], Path]:
    return {(m, t): bundles.get(m, t) for m in (DET, REC) for t in TARGETS}


@pytest.fixture
def copy_of(originals, tmp_path):
    def make(model: str, target: str) -> Path:
        dst = tmp_path / f"{model}-{target}"
        shutil.copytree(originals[(model, target)], dst)
        return dst

    return make


def _raw(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "manifest.json").read_text())


def _write(bundle: Path, data: dict[str, Any]) -> None:
    (bundle / "manifest.json").write_text(json.dumps(data))


def _set(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``data`` with the key at ``dotted`` ("spec.preprocess.std", "inputs.0.shape") set, or removed for _DROP."""
    out = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value is _DROP:
        del node[key]
    else:
        node[key] = value
    return out


_DROP = object()


# --- the registry and real bundles pass, typed ----------------------------------------------------
@pytest.mark.parametrize("name", list(REGISTRY))
def test_model_spec_round_trips_through_json(name):
    spec = get_spec(name)
    again = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert again.to_dict() == spec.to_dict()


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registry_spec_passes_the_schema(name):
    """Detectors with anchors, recognisers with alignment, liveness models with crop scale and real class."""
    assert validate_spec(get_spec(name).to_dict()) == get_spec(name).to_dict()


@pytest.mark.parametrize("model", [DET, REC])
@pytest.mark.parametrize("target", TARGETS)
def test_exported_manifests_pass_and_give_the_registry_spec(originals, model, target):
    bundle = originals[(model, target)]
    validate_manifest(_raw(bundle))
    manifest = read_manifest(bundle)
    assert manifest.model_spec == get_spec(model)
    assert manifest.preprocess == get_spec(model).preprocess
    assert manifest.backend == BACKEND[target]


# --- required keys --------------------------------------------------------------------------------
@pytest.mark.parametrize("key", REQUIRED)
def test_every_required_key_missing_is_named(originals, key):
    data = _set(_raw(originals[(REC, "onnx")]), key, _DROP)
    with pytest.raises(ManifestError, match=rf"lacks {key}; re-export"):
        Manifest.from_dict(data)


@pytest.mark.parametrize(
    "key,named",
    [
        ("spec.preprocess", "spec.preprocess is missing"),
        ("spec.name", "spec.name is missing"),
        ("spec.task", "spec.task is missing"),
        ("spec.preprocess.std", "spec.preprocess.std is missing"),
        ("spec.preprocess.mean", "spec.preprocess.mean is missing"),
        ("spec.preprocess.color", "spec.preprocess.color is missing"),
        ("spec.preprocess.resize", "spec.preprocess.resize is missing"),
        ("inputs.0.shape", r"inputs\[0\].shape is missing"),
        ("outputs.0.name", r"outputs\[0\].name is missing"),
        ("files.model", "files.model is missing"),
    ],
)
def test_missing_nested_keys_are_named_not_keyerrors(copy_of, key, named):
    bundle = copy_of(REC, "onnx")
    _write(bundle, _set(_raw(bundle), key, _DROP))
    with pytest.raises(ManifestError, match=named) as info:
        Embedder(bundle)
    assert "re-export the bundle" in str(info.value) and str(bundle) in str(info.value)


def test_detector_manifest_without_anchors(originals):
    data = _set(_raw(originals[(DET, "onnx")]), "spec.anchors", None)
    with pytest.raises(ManifestError, match="spec.anchors is missing; a detector needs its prior boxes"):
        Manifest.from_dict(data)


# --- wrong types and values -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "key,value,words",
    [
        ("format_version", "1", "format_version must be an integer"),
        ("model", 7, "model must be a non-empty string"),
        ("task", "classify", "task is 'classify', expected one of detect, embed, liveness"),
        ("target", "coreml", "target is 'coreml', whose format is none of"),
        ("precision", "int4", "precision is 'int4'"),
        ("files", ["model.onnx"], "files must be a JSON object"),
        ("files.model", "../../etc/passwd", "plain file name inside the bundle"),
        ("sha256", {"model.onnx": "not-a-hash"}, "not a lowercase hex sha256"),
        ("spec", "ghostfacenet", "spec must be a JSON object"),
        ("spec.preprocess.std", "128", "spec.preprocess.std must be a list"),
        ("spec.preprocess.std", [128.0, 128.0], "spec.preprocess.std has 2 items, expected 3"),
        ("spec.preprocess.mean", [127.5, "x", 127.5], r"spec.preprocess.mean\[1\] must be a number"),
        ("spec.preprocess.mean", [127.5, True, 127.5], r"spec.preprocess.mean\[1\] must be a number"),
        ("spec.preprocess.color", "YUV", "spec.preprocess.color is 'YUV', expected one of BGR, RGB"),
        ("spec.preprocess.resize", "stretch", "spec.preprocess.resize is 'stretch'"),
        ("spec.preprocess.input_size", [112, "112"], r"spec.preprocess.input_size\[1\] must be an integer"),
        ("spec.default_threshold", "0.3", "spec.default_threshold must be a number"),
        ("spec.alignment.points", [[38.3, 51.7]], "spec.alignment.points has 1 items, expected 5"),
        ("inputs", {"name": "input"}, "inputs must be a list"),
        ("inputs", [], "inputs has 0 items, expected at least 1"),
        ("outputs.0.shape", "N,512", r"outputs\[0\].shape must be a list"),
        ("outputs.0.dtype", "complex64", r"outputs\[0\].dtype is 'complex64'"),
        ("inputs.0.layout", "CHWN", r"inputs\[0\].layout is 'CHWN'"),
        ("inputs.0.shape", [1, 112, 112], r"inputs\[0\].shape is .*an image input has 4 dimensions"),
        ("inputs.0.quantization", {"scale": 0.0, "zero_point": 0}, r"inputs\[0\].quantization.scale is 0.0; it must be greater than 0"),
        ("spec.task", "detect", "spec.task is 'detect' but task is 'embed'"),
        ("spec.name", DET, f"spec.name is '{DET}' but model is '{REC}'"),
        ("source.sha256", True, "source.sha256 must be a non-empty string"),  # found by test_fuzz_manifest
        ("source.sha256", "", "source.sha256 must be a non-empty string"),
    ],
)
def test_wrong_types_and_values_name_the_key(originals, key, value, words):
    data = _set(_raw(originals[(REC, "onnx")]), key, value)
    with pytest.raises(ManifestError, match=words):
        Manifest.from_dict(data)


def test_weights_without_a_digest_give_the_model_name_as_signature(originals):
    """Random weights (shape and speed checks) have no source digest: null, or no key at all."""
    for damage in (None, _DROP):
        manifest = Manifest.from_dict(_set(_raw(originals[(REC, "onnx")]), "source.sha256", damage))
        assert manifest.signature == REC


@pytest.mark.parametrize("std", [[0.0, 128.0, 128.0], [128.0, -1.0, 128.0], [math.nan, 128.0, 128.0], [128.0, 128.0, math.inf]])
def test_zero_negative_or_non_finite_std_is_refused(copy_of, std):
    """std 0 used to give NaN embeddings without any error."""
    bundle = copy_of(REC, "onnx")
    _write(bundle, _set(_raw(bundle), "spec.preprocess.std", std))  # json writes NaN/Infinity, and reads them back
    with pytest.raises(ManifestError, match=r"spec.preprocess.std\[\d\] is (0.0|-1.0|nan|inf)"):
        Embedder(bundle)


@pytest.mark.parametrize("mean", [[math.nan, 127.5, 127.5], [127.5, -math.inf, 127.5]])
def test_non_finite_mean_is_refused(originals, mean):
    with pytest.raises(ManifestError, match=r"spec.preprocess.mean\[\d\] is .*not a finite number"):
        Manifest.from_dict(_set(_raw(originals[(REC, "onnx")]), "spec.preprocess.mean", mean))


# --- absurd sizes ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key,value,words",
    [
        ("spec.preprocess.input_size", [100000, 100000], r"input_size\[0\] is 100000, outside the sane range 1..16384"),
        ("spec.preprocess.input_size", [0, 112], r"input_size\[0\] is 0, outside the sane range"),
        ("spec.preprocess.input_size", [-112, 112], r"input_size\[0\] is -112, outside the sane range"),
        ("inputs.0.shape", [1, 3, 0, 112], r"inputs\[0\].shape\[2\] is 0, outside the sane range"),
        ("inputs.0.shape", [100000, 3, 112, 112], r"inputs\[0\].shape\[0\] is 100000, outside the sane range 1..4096"),
        ("outputs.0.shape", ["batch", 10**12], r"outputs\[0\].shape\[1\] is 1000000000000, outside the sane range"),
        ("outputs.0.shape", ["batch", 1 << 20], r"outputs\[embedding\].shape\[-1\] is 1048576, outside the sane range 2..8192"),
        ("outputs.0.shape", ["batch", 8192, 8192, 8], r"holds 536,870,912 elements per sample, above the sane limit"),
        ("spec.preprocess.crop_scale", 1e9, "crop_scale is 1000000000.0, above the sane limit"),
    ],
)
def test_absurd_sizes_are_refused(originals, key, value, words):
    with pytest.raises(ManifestError, match=words):
        Manifest.from_dict(_set(_raw(originals[(REC, "onnx")]), key, value))


def test_input_size_must_agree_with_the_input_tensor(originals):
    data = _set(_raw(originals[(DET, "onnx")]), "spec.preprocess.input_size", [1280, 960])
    with pytest.raises(ManifestError, match=r"input_size is 1280x960 but inputs\[0\].shape \[1, 3, 480, 640\] takes 640x480"):
        Manifest.from_dict(data)


def _claim_input(data: dict[str, Any], target: str, width: int, height: int) -> dict[str, Any]:
    """The manifest claiming a ``width`` x ``height`` input, consistently in spec and tensor."""
    out = copy.deepcopy(data)
    shape = out["inputs"][0]["shape"]
    if out["inputs"][0].get("layout") == "NHWC":
        shape[1], shape[2] = height, width
    else:
        shape[2], shape[3] = height, width
    out["spec"]["preprocess"]["input_size"] = [width, height]
    return out


@pytest.mark.parametrize("target", TARGETS)
def test_huge_input_claim_is_refused_before_any_allocation(copy_of, target):
    """A 100000x100000 input once made the TFLite backend allocate 18.7 GB; now the manifest is refused on load."""
    bundle = copy_of(DET, target)
    _write(bundle, _claim_input(_raw(bundle), target, 100000, 100000))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ManifestError, match=rf"input_size\[0\] is 100000, outside the sane range 1..{MAX_SIDE}"):
        Detector(bundle, backend=BACKEND[target])
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 512 * 1024  # KiB: nothing big was allocated


# --- the manifest against the model file, per backend ---------------------------------------------
@pytest.mark.parametrize("target", TARGETS)
def test_input_shape_that_the_model_does_not_have_is_refused_at_open(copy_of, target):
    """Sane but wrong: the manifest claims 1280x960, the model file was exported at 640x480."""
    bundle = copy_of(DET, target)
    _write(bundle, _claim_input(_raw(bundle), target, 1280, 960))
    with pytest.raises(ManifestError, match=r"inputs\[0\].shape .* does not match the model file's") as info:
        open_model(bundle, backend=BACKEND[target])
    assert "re-export the bundle" in str(info.value)


@pytest.mark.parametrize("target", TARGETS)
def test_output_dimension_that_the_model_does_not_have_is_refused_at_open(copy_of, target):
    """The recogniser makes 512-d embeddings; a manifest saying 256 (or 10^12) must not be believed."""
    bundle = copy_of(REC, target)
    data = _raw(bundle)
    data["outputs"][0]["shape"][-1] = 256
    _write(bundle, data)
    with pytest.raises(ManifestError, match=r"outputs\[0\] \(embedding\).shape .*256.* does not match the model file's .*512"):
        open_model(bundle, backend=BACKEND[target])
    data["outputs"][0]["shape"][-1] = 10**12
    _write(bundle, data)
    with pytest.raises(ManifestError, match="outside the sane range"):
        Embedder(bundle, backend=BACKEND[target])


@pytest.mark.parametrize("target", TARGETS)
def test_another_models_manifest_on_a_model_file_is_refused(copy_of, originals, target):
    """The recogniser's manifest (hashes updated) in front of the detector's model file."""
    bundle = copy_of(DET, target)
    data = _raw(originals[(REC, target)])
    for name in data["files"].values():
        data["sha256"][name] = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    _write(bundle, data)
    with pytest.raises(GfnEdgeError, match="does not match the model file's|not in the model"):
        open_model(bundle, backend=BACKEND[target])


def test_lone_model_file_with_a_damaged_embedded_manifest_is_refused(copy_of, tmp_path):
    """The manifest embedded in a lone .onnx goes through the same schema as manifest.json."""
    import onnx

    from gfn_edge.manifest import METADATA_KEY

    src = copy_of(REC, "onnx") / MODEL_FILE["onnx"]
    model = onnx.load(str(src))
    entry = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    embedded = json.loads(entry.value)
    assert read_manifest(src.parent).model == embedded["model"]
    entry.value = json.dumps(_set(embedded, "spec.preprocess.std", [0.0, 0.0, 0.0]))
    lone = tmp_path / "lone.onnx"
    onnx.save(model, str(lone))
    with pytest.raises(ManifestError, match=r"spec.preprocess.std\[0\] is 0.0"):
        Embedder(lone)


# --- tolerance keys -------------------------------------------------------------------------------
def test_unknown_tolerance_key_is_refused_naming_the_valid_ones(tmp_path, capsys, mirror):
    from gfn_edge.export.cli import main

    code = main(["--model", DET, "--target", "onnx", "--out", str(tmp_path / "out"), "--mirror", str(mirror), "--tolerance", "UNKNOWN_KEY=1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "UNKNOWN_KEY" in err and "valid keys:" in err and "recall" in err and "landmark_nme" in err
    assert not list((tmp_path / "out").glob("*/manifest.json")), "nothing was exported"


@pytest.mark.parametrize(
    "items,words",
    [
        (["UNKNOWN_KEY=1"], "no such tolerance for embed models; valid keys: cos_mean"),
        (["recall=0.9"], "no such tolerance for embed models"),  # a detector's key
        (["cos_min"], "expects KEY=VALUE"),
        (["cos_min=high"], "must be a number"),
        (["cos_min=nan"], "must be a finite number"),
    ],
)
def test_tolerance_overrides_are_checked_before_export(tmp_path, mirror, items, words):
    from gfn_edge.export.api import export_model

    with pytest.raises(OptionError, match=words):
        export_model(REC, "onnx", tmp_path / "out", mirror=mirror, tolerances=items)


def test_bundles_are_found_through_linked_folders_at_any_depth(tmp_path, caplog):
    """A folder of links to folders of bundles (how exports of several models get collected) is
    searched through; a link back up is entered once; dot folders are not entered; a root with no
    bundle is said. Until 2026-12-07 links two levels down were skipped and gfn-bench measured the
    other bundles without a word."""
    from gfn_edge.manifest import find_bundles

    store = tmp_path / "store"
    for rel in ("m1/m1-onnx", "m1/m1-tflite-int8", "m2/deeper/m2-openvino", ".trash/old-onnx"):
        (store / rel).mkdir(parents=True)
        (store / rel / "manifest.json").write_text("{}")
    collected = tmp_path / "collected"
    collected.mkdir()
    (collected / "first").symlink_to(store / "m1", target_is_directory=True)
    (collected / "second").symlink_to(store / "m2", target_is_directory=True)
    (collected / "second-again").symlink_to(store / "m2", target_is_directory=True)
    (store / "m1" / "loop").symlink_to(collected, target_is_directory=True)  # a link back up
    found = find_bundles([collected])
    assert sorted(p.name for p in found) == ["m1-onnx", "m1-tflite-int8", "m2-openvino"], found  # each once
    assert all(collected in p.parents for p in found)
    assert find_bundles([store / "m1" / "m1-onnx"]) == [store / "m1" / "m1-onnx"]  # a bundle itself
    with caplog.at_level("WARNING", logger="gfn_edge.manifest"):
        assert len(find_bundles([store, store / "m1"])) == 3  # a root inside another: no bundle twice
    assert "no bundle" not in caplog.text, "a root whose bundles another root also holds is not empty"
    empty = tmp_path / "empty"
    empty.mkdir()
    with caplog.at_level("WARNING", logger="gfn_edge.manifest"):
        assert find_bundles([empty, tmp_path / "absent"]) == []
    assert "no bundle (a folder holding manifest.json) under" in caplog.text and "does not exist" in caplog.text
