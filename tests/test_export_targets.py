"""gfn-export end to end: every real checkpoint to every float target, verified, and self-describing.

Each model is exported once per session through the ``bundles`` fixture (all its targets in one
run). A bundle must carry everything a device and an auditor need (manifest fields, hashes,
tool versions, the verification report) and meet the default tolerances; a lone model file must
describe itself. Architectures without released weights export with the fixtures' weights or
seeded random weights. A damaged artifact, a wrong colour order and an unmeetable tolerance must
each fail, naming the check: a verification that cannot fail proves nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from gfn_edge.digest import sha256_file
from gfn_edge.manifest import MANIFEST_NAME, Manifest, read_manifest
from gfn_edge.registry import get_spec

pytest.importorskip("torch")
pytest.importorskip("onnx")

from gfn_edge.export.api import ExportResult, verify_artifact
from gfn_edge.export.report import format_results
from gfn_edge.export.targets import TARGETS
from gfn_edge.export.tools import version
from gfn_edge.export.verify import default_tolerances

pytestmark = pytest.mark.slow

REAL = ["retinaface-mnet025", "ghostfacenet-dsitweed-w0.5-e16", "ghostfacenet-dsitweed-w0.5-e6", "ghostfacenet-dsitweed-w1.3-e1"]
FLOAT_TARGETS = ["onnx", "openvino", "openvino-fp16", "tflite", "tflite-fp16"]
# architectures without released weights: fixture weights (as a checkpoint path) or seeded random ones
FIXTURE_WEIGHTS = {
    "retinaface-ghostnet": "retinaface_ghostnet_se0",
    "retinaface-ghostnet-se025": "retinaface_ghostnet_se025",
    "retinaface-mobilenetv3": "retinaface_mobilev3",
}
RANDOM = ["retinaface-resnet50", "ghostfacenet-v1-w1.3-s1", "ghostfacenet-v1-w1.3-s2", "ghostfacenet-v2-w1.3-s2"]
# Detectors without trained weights fire everywhere: 750 boxes (keep_top_k) on every picture, so
# near-tied scores at that cut and in NMS decide a few boxes either way. What shows the artifact
# computes the same function is the per-level output error, kept at the FP32 limit (1e-3);
# matching is relaxed to 99.9% and box offsets are not judged. Fewer pictures (and a smaller
# input for ResNet-50) keep these exports within CI's time budget.
UNTRAINED_DETECTOR = {"tolerances": ["recall=0.999", "precision=0.999", "box_err_px=100", "landmark_err_px=100"], "max_verify_images": 16}
INPUT_SIZE = {"retinaface-resnet50": (320, 256)}
TOOLS = {
    "onnx": {"torch", "onnx", "onnxsim"},
    "openvino": {"torch", "onnx", "openvino"},
    "tflite": {"torch", "litert-torch", "ai-edge-litert"},
}
LAYOUT = {"onnx": "NCHW", "openvino": "NCHW", "tflite": "NHWC"}
LIMITS = {  # the acceptance thresholds, written out independently of export/verify.py
    ("embed", "fp32"): {"cos_min": (">=", 0.9999)},
    ("embed", "fp16"): {"cos_min": (">=", 0.999)},
    ("detect", "fp32"): {"recall": (">=", 1.0), "precision": (">=", 1.0), "box_err_px": ("<=", 0.5), "landmark_err_px": ("<=", 0.5)},
    ("detect", "fp16"): {"recall": (">=", 0.995), "precision": (">=", 0.995)},
}


def _results(bundles, model: str) -> dict[str, object]:
    return bundles.results_for(model, FLOAT_TARGETS)


def _bundle(bundles, model: str, target: str) -> Path:
    result = _results(bundles, model)[target]
    assert result.bundle is not None, f"{model} {target} was not kept: {result.failures}"
    return result.bundle


def _meets_limits(metrics: dict, task: str, precision: str) -> None:
    for key, (op, limit) in LIMITS[(task, precision)].items():
        value = metrics[key]
        assert value >= limit if op == ">=" else value <= limit, f"{key} = {value} misses {op} {limit}"


# ----------------------------------------------------------------------------- real checkpoints


@pytest.mark.parametrize("target", FLOAT_TARGETS)
@pytest.mark.parametrize("model", REAL)
def test_bundle_manifest_is_complete_and_verified(bundles, mirror, model, target):
    bundle = _bundle(bundles, model, target)
    spec = get_spec(model)
    info = TARGETS[target]
    raw = json.loads((bundle / MANIFEST_NAME).read_text())
    m = read_manifest(bundle)  # checks every file against its recorded sha256
    assert (m.model, m.task, m.target, m.precision) == (model, spec.task, target, info.precision)
    assert raw["format"] == "gfn-edge-bundle" and raw["format_version"] == 1
    # files and their hashes
    expected_files = {"model", "weights"} if target.startswith("openvino") else {"model"}
    assert set(m.files) == expected_files
    for name in m.files.values():
        assert m.sha256[name] == sha256_file(bundle / name)
    assert m.source["sha256"] == sha256_file(mirror / spec.weights.mirror_path) == spec.weights.sha256
    assert m.source["weights"] == "checkpoint"
    # the registry entry travels with the bundle
    assert m.spec == json.loads(json.dumps(spec.to_dict()))
    assert m.preprocess == spec.preprocess and m.anchors == spec.anchors
    # tensors
    assert [t.name for t in m.inputs] == ["input"] and m.inputs[0].layout == LAYOUT[target.split("-")[0]]
    assert [t.name for t in m.outputs] == [o.name for o in spec.outputs]
    for tensor in raw["inputs"] + raw["outputs"]:
        assert "quantization" in tensor and tensor["quantization"] is None, "float artifacts have no quantisation"
        assert tensor["dtype"] == "float32"
    # tool versions, as installed
    for tool in TOOLS[target.split("-")[0]] | {"gfn-edge", "numpy"} | ({"ai-edge-quantizer"} if target == "tflite-fp16" else set()):
        assert m.tools.get(tool) == version(tool), tool
    # verification: reference framework and device, data, metrics, tolerances
    v = m.verification
    assert v["passed"] is True and v["failures"] == []
    framework = v["reference"]["framework"]
    assert framework.startswith("pytorch" if spec.task == "detect" else "tf-keras"), framework
    assert v["reference"]["device"] == "cpu" and v["reference"]["weights"] == "checkpoint"
    assert v["data"]["synthetic"] is False
    assert v["tolerances"] == {k: f"{op} {val:g}" for k, (op, val) in default_tolerances(spec.task, info.precision).items()}
    metrics = v["metrics"]
    if spec.task == "embed":
        assert metrics["faces"] >= 200 and metrics["pairs"] > 300
    else:
        assert metrics["images"] >= 40 and metrics["faces_reference"] > 50
    _meets_limits(metrics, spec.task, info.precision)


@pytest.mark.parametrize("target", FLOAT_TARGETS)
@pytest.mark.parametrize("model", REAL)
def test_lone_model_file_describes_itself(bundles, model, target, tmp_path):
    from gfn_edge.runtimes import open_model

    bundle = _bundle(bundles, model, target)
    m = read_manifest(bundle)
    lone_dir = tmp_path / "lone"
    lone_dir.mkdir()
    for name in m.files.values():  # the model file alone (OpenVINO: with its .bin), no manifest
        shutil.copy(bundle / name, lone_dir / name)
    lone = open_model(lone_dir / m.files["model"])
    meta = lone.manifest
    assert (meta.model, meta.task, meta.target, meta.precision) == (m.model, m.task, m.target, m.precision)
    assert meta.spec == m.spec and meta.source == m.source
    assert [t.to_dict() for t in meta.inputs] == [t.to_dict() for t in m.inputs]
    assert [t.to_dict() for t in meta.outputs] == [t.to_dict() for t in m.outputs]
    # and it runs like the bundle
    w, h = m.preprocess.input_size
    x = np.random.default_rng(0).normal(0, 1, (1, h, w, 3)).astype(np.float32)
    ours, theirs = lone.run(x), open_model(bundle).run(x)
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name])


def test_qvga_detector_matches_reference_on_every_backend(bundles):
    """320x240 has a fractional upsampling step between pyramid levels (8 -> 15 rows): a converter
    lowering nearest resize with other rounding moved boxes by 10 px before it was made explicit."""
    targets = ["onnx", "openvino", "tflite"]
    results = bundles.results_for("retinaface-mnet025", targets, input_size=(320, 240))
    for target in targets:
        r = results[target]
        assert r.passed, (target, r.failures)
        m = read_manifest(r.bundle)
        assert m.preprocess.input_size == (320, 240)
        assert r.metrics["box_err_px"] <= 0.01 and r.metrics["recall"] == 1.0, (target, r.metrics)


# ----------------------------------------------------------------------------- no released weights


@pytest.mark.parametrize("model", sorted(FIXTURE_WEIGHTS))
def test_fixture_weights_export_and_verify(bundles, model):
    path = shared_path("fixtures", "retinaface", FIXTURE_WEIGHTS[model] + ".weights.npz")
    result = bundles.results_for(str(path), ["onnx"], arch=model, **UNTRAINED_DETECTOR)["onnx"]
    assert result.passed and result.bundle is not None, result.failures
    m = read_manifest(result.bundle)
    assert f"arch:{model}" in m.spec["tags"] and m.spec["arch"] == get_spec(model).arch
    assert m.source["sha256"] == sha256_file(path) and m.verification["data"]["synthetic"] is False
    _untrained_detector_agrees(m.verification["metrics"])


def _untrained_detector_agrees(metrics: dict) -> None:
    """The raw outputs agree to 1e-3 (scores among them); after NMS an untrained detector's dense,
    near-equal overlapping boxes may keep a neighbouring anchor instead, so the matched scores are
    held loosely (2026-12-05, an Intel AMX CPU, RetinaFace-GhostNet-SE fixture: raw outputs 7e-6
    apart, one of 34,500 boxes swapped, its score 0.034 from the reference's; the AMD one: < 0.01)."""
    assert metrics["images"] == 16 and metrics["faces_reference"] > 0
    assert metrics["output_rel_err"] <= 1e-3 and metrics["score_err_max"] <= 0.1
    assert metrics["recall"] >= 0.999 and metrics["precision"] >= 0.999


@pytest.mark.parametrize("model", RANDOM)
def test_random_weight_architectures_export_and_verify(bundles, model):
    spec = get_spec(model)
    options = UNTRAINED_DETECTOR if spec.task == "detect" else {}
    if model in INPUT_SIZE:
        options = {**options, "input_size": INPUT_SIZE[model]}
    result = bundles.results_for(model, ["onnx"], random_weights=True, **options)["onnx"]
    assert result.passed and result.bundle is not None, result.failures
    m = read_manifest(result.bundle)
    assert m.source["weights"].startswith("random (seed 0")
    metrics = m.verification["metrics"]
    if spec.task == "detect":
        assert "BatchNorm re-estimated on real photos" in m.source["weights"]
        assert m.preprocess.input_size == INPUT_SIZE.get(model, spec.preprocess.input_size)
        _untrained_detector_agrees(metrics)
    else:
        _meets_limits(metrics, spec.task, "fp32")
        assert m.source["format"] == "keras-h5" and m.verification["reference"]["framework"].startswith("tf-keras")
        assert metrics["faces"] >= 200


# ----------------------------------------------------------------------------- checks that must fail


@pytest.fixture(scope="module")
def detector_check(mirror, faces_dir):
    """Reference outputs of the real RetinaFace on 16 real pictures, for re-verifying edited bundles."""
    from gfn_edge.export.reference import reference_for
    from gfn_edge.export.verify_data import build_verification_set

    spec = get_spec("retinaface-mnet025")
    vset = build_verification_set(spec, faces_dir, mirror=mirror, max_images=16)
    ref = reference_for(spec, mirror / spec.weights.mirror_path)
    return vset, ref, ref.run(vset.inputs)


def _copy_bundle(bundle: Path, dest: Path) -> Path:
    shutil.copytree(bundle, dest)
    return dest


def _rewrite_manifest(bundle: Path, edit) -> None:
    m = read_manifest(bundle, verify_files=False)
    edit(m)
    m.write(bundle)


def _failed_checks(report) -> list[str]:
    return [f.split(" ", 1)[0].rstrip(":") for f in report.failures]


def test_untouched_bundle_passes_the_same_check(bundles, detector_check):
    """The control for the two tests below: the same verification passes the bundle as exported."""
    vset, ref, ref_out = detector_check
    report = verify_artifact(_bundle(bundles, "retinaface-mnet025", "onnx"), vset, ref_out, ref, "fp32")
    assert report.passed, report.failures


def test_perturbed_onnx_weights_fail_verification(bundles, detector_check, tmp_path):
    import onnx
    from onnx import numpy_helper

    from gfn_edge.errors import ArtifactError

    vset, ref, ref_out = detector_check
    bundle = _copy_bundle(_bundle(bundles, "retinaface-mnet025", "onnx"), tmp_path / "damaged")
    model = onnx.load(str(bundle / "model.onnx"))
    target = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)) if len(t.dims) == 4 else 0)
    weights = numpy_helper.to_array(target)
    noise = np.random.default_rng(0).normal(0, 0.02 * float(np.abs(weights).std()), weights.shape).astype(weights.dtype)
    target.CopyFrom(numpy_helper.from_array(weights + noise, target.name))
    onnx.save(model, str(bundle / "model.onnx"))
    # the bundle's own check: the file no longer has its recorded hash
    with pytest.raises(ArtifactError, match="sha256"):
        read_manifest(bundle)
    # re-recorded hash (a consistent but wrong bundle): verification against the reference fails
    _rewrite_manifest(bundle, lambda m: m.sha256.update({"model.onnx": sha256_file(bundle / "model.onnx")}))
    report = verify_artifact(bundle, vset, ref_out, ref, "fp32")
    assert not report.passed
    assert "output_rel_err" in _failed_checks(report), report.failures
    assert all("off by" in f for f in report.failures), report.failures


def test_wrong_colour_order_in_the_manifest_fails_verification(bundles, detector_check, tmp_path):
    vset, ref, ref_out = detector_check
    bundle = _copy_bundle(_bundle(bundles, "retinaface-mnet025", "onnx"), tmp_path / "swapped")
    assert read_manifest(bundle).preprocess.color == "BGR"
    _rewrite_manifest(bundle, lambda m: m.spec["preprocess"].update({"color": "RGB"}))
    report = verify_artifact(bundle, vset, ref_out, ref, "fp32")
    assert not report.passed
    assert report.failures[0].startswith("preprocess: the manifest says color RGB (reference BGR)")
    # fed as the manifest says, the model's outputs really are off
    assert "output_rel_err" in _failed_checks(report) and report.metrics["output_rel_err"] > 1e-3


def test_recogniser_with_bgr_claimed_fails_on_cosine(bundles, mirror, faces_dir, tmp_path):
    """GhostFaceNets expect RGB; a manifest saying BGR makes a device feed swapped channels."""
    from gfn_edge.export.reference import reference_for
    from gfn_edge.export.verify_data import build_verification_set

    model = "ghostfacenet-dsitweed-w0.5-e6"
    spec = get_spec(model)
    bundle = _copy_bundle(_bundle(bundles, model, "onnx"), tmp_path / "bgr")
    _rewrite_manifest(bundle, lambda m: m.spec["preprocess"].update({"color": "BGR"}))
    vset = build_verification_set(spec, faces_dir, mirror=mirror)
    ref = reference_for(spec, mirror / spec.weights.mirror_path)
    report = verify_artifact(bundle, vset, ref.run(vset.inputs), ref, "fp32")
    assert not report.passed and "cos_min" in _failed_checks(report), report.failures
    assert report.metrics["cos_min"] < 0.999


def _cli(args: list[str], capsys) -> tuple[int, str]:
    from gfn_edge.export.cli import main

    code = main(args)
    return code, capsys.readouterr().err


def test_unmeetable_tolerance_fails_and_keeps_nothing_unless_forced(mirror, faces_dir, tmp_path, capsys):
    common = ["--model", "retinaface-mnet025", "--target", "onnx", "--tolerance", "recall=1.01"]
    common += ["--verify-images", str(faces_dir), "--mirror", str(mirror), "--max-verify-images", "8"]
    out = tmp_path / "strict"
    code, err = _cli(common + ["--out", str(out)], capsys)
    assert code == 1
    assert "FAILED retinaface-mnet025 onnx (not kept): recall = 1 < 1.01 (off by 0.01)" in err
    assert not (out / "retinaface-mnet025-onnx").exists()
    assert not list(out.rglob("*.onnx")) and not [p for p in out.iterdir() if p.is_dir()], "nothing half-made is left"
    report = json.loads((out / "retinaface-mnet025-onnx.failed.json").read_text())
    assert report["verification"]["passed"] is False

    forced = tmp_path / "forced"
    code, err = _cli(common + ["--out", str(forced), "--force"], capsys)
    assert code == 1 and "FAILED retinaface-mnet025 onnx (kept: --force)" in err
    m = read_manifest(forced / "retinaface-mnet025-onnx")
    assert m.verification["passed"] is False
    assert m.verification["failures"] == ["recall = 1 < 1.01 (off by 0.01)"]
    assert m.verification["tolerances"]["recall"] == ">= 1.01"


# ----------------------------------------------------------------------------- the table


def _row(bundle: Path) -> ExportResult:
    m: Manifest = read_manifest(bundle)
    v = m.verification
    return ExportResult(
        model=m.model,
        target=m.target,
        precision=m.precision,
        passed=bool(v.get("passed")),
        bundle=bundle,
        metrics=v.get("metrics", {}),
        failures=v.get("failures", []),
        tolerances=v.get("tolerances", {}),
        size_bytes=m.export.get("size_bytes", 0),
        seconds=m.export.get("seconds", {}),
    )


def test_print_verification_table(bundles, capsys):
    rows = [_row(_bundle(bundles, model, target)) for model in REAL for target in FLOAT_TARGETS]
    table = format_results(rows)
    assert all(r.passed for r in rows)
    assert table.count("| PASS ") == len(rows) and "FAIL" not in table
    (bundles.root / "verification-table.md").write_text(table)
    with capsys.disabled():
        print("\n" + table)
