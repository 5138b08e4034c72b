"""A checkpoint given as a file is described as that file, not as the registry release it resembles.

A user's w0.5 GhostFaceNets .h5 used to ship bundles whose manifest said "width 1.3, stem stride 2,
(official release)" with HamadYA's download address and licence; a fine-tuned RetinaFace carried the
WIDER FACE checkpoint's. The registry's own file given by path keeps the registry's facts.
"""

from __future__ import annotations

import shutil

import pytest
from conftest import shared_path

from gfn_edge.export.checkpoints import checkpoint_spec
from gfn_edge.export.hub import sha256_file
from gfn_edge.export.reference import resolve_spec
from gfn_edge.manifest_schema import validate_spec
from gfn_edge.registry import get_spec

STUDENT = ("models", "ghostfacenets", "ghostnetv1_w0.5_s2_basic_vn_big_epoch_16_0.711309.h5")
DETECTOR = ("models", "retinaface", "mobilenet0.25_Final.pth")


def test_a_keras_file_is_described_by_its_own_graph_and_digest():
    path = shared_path(*STUDENT)
    spec, found = resolve_spec(str(path))
    assert found == path and spec.name == path.stem
    assert spec.arch == {"from_checkpoint": True}, "the .h5 holds its own architecture; the registry's w1.3 one is not it"
    assert path.name in spec.description and "1.3" not in spec.description and "official" not in spec.description
    assert spec.weights.sha256 == sha256_file(path) and spec.weights.url is None and spec.weights.mirror_path is None
    assert spec.weights.licence.startswith("unknown") and spec.int8_recipes == {} and spec.params is None
    assert spec.tags == ("arch:from-checkpoint",)
    validate_spec(spec.to_dict())


def test_the_registry_file_by_path_keeps_the_registry_facts_and_a_changed_one_does_not(tmp_path):
    path = shared_path(*DETECTOR)
    registry = get_spec("retinaface-mnet025")
    spec, _ = resolve_spec(str(path))
    assert (spec.weights, spec.description, spec.arch) == (registry.weights, registry.description, registry.arch)
    assert "arch:retinaface-mnet025" in spec.tags
    # the same architecture, other weights: the user's file, the architecture still the registry's
    mine = tmp_path / "door_finetune.pth"
    shutil.copyfile(path, mine)
    with mine.open("ab") as f:  # a different digest is all that tells the two apart here
        f.write(b"\0")
    other = checkpoint_spec(registry, mine, sha256_file(mine))
    assert other.arch == registry.arch and other.params == registry.params and other.preprocess == registry.preprocess
    assert other.weights.sha256 == sha256_file(mine) != registry.weights.sha256 and other.weights.url is None
    assert "door_finetune.pth" in other.description and "WIDER FACE" not in other.description
    assert other.tags == ("arch:retinaface-mnet025",)
    validate_spec(other.to_dict())


def test_int8_recipes_stay_with_the_weights_they_were_found_for():
    """A registry recipe is a fact about the registry weights: kept for that file, dropped for any other."""
    path = shared_path(*STUDENT)
    student = get_spec("ghostfacenet-dsitweed-w0.5-e16")
    assert student.int8_recipes, "the test needs a registry entry with recipes"
    assert checkpoint_spec(student, path, student.weights.sha256).int8_recipes == student.int8_recipes
    assert checkpoint_spec(student, path, "0" * 64).int8_recipes == {}


@pytest.mark.parametrize(("file", "name"), [("my model (v2).h5", "my-model-v2"), ("...h5", "model"), (".hidden.h5", "hidden"), ("ü.h5", "model")])
def test_odd_file_names_give_safe_model_names(tmp_path, file, name):
    """The name becomes the bundle's folder name: no spaces, no leading dot, never '.' or '..'."""
    assert checkpoint_spec(get_spec("ghostfacenet-v1-w1.3-s2"), tmp_path / file, "0" * 64).name == name


@pytest.fixture
def read(monkeypatch) -> list[str]:
    """The files the export side hashes from now on, in order (each a full read of the file)."""
    from gfn_edge.export import hub, reference

    files: list[str] = []

    def counted(path):
        files.append(str(path))
        return sha256_file(path)

    monkeypatch.setattr(reference, "sha256_file", counted)
    monkeypatch.setattr(hub, "sha256_file", counted)
    return files


@pytest.mark.parametrize("model", [DETECTOR, "retinaface-mnet025"])
def test_a_checkpoint_is_read_for_its_digest_once(model, read):
    """resolve_spec hashes the file (the user's, or the mirror's release it checks); the reference
    records that digest instead of reading the file again (up to hundreds of MB on a board's SD card)."""
    from gfn_edge.export import reference

    ref = reference.load_reference(str(shared_path(*model)) if isinstance(model, tuple) else model)
    path = shared_path(*DETECTOR)
    assert read == [str(path)]
    assert ref.source["sha256"] == sha256_file(path) == get_spec("retinaface-mnet025").weights.sha256


@pytest.mark.slow
def test_checking_bundles_again_reads_the_users_checkpoint_once(bundles, faces_dir, tmp_path, read):
    """arm64_verify_bundles.py --checkpoint: the digest that names the file is the one checked against
    the manifest and handed to the reference (it read the file three times); another file is refused."""
    from gfn_edge.errors import CheckpointError
    from gfn_edge.export.verify_on import verify_existing
    from gfn_edge.manifest import read_manifest

    path = shared_path(*STUDENT)
    bundle = bundles.get(str(path), "onnx")
    read.clear()  # the export's own reads
    rows = verify_existing([bundle], [], verify_images=faces_dir, max_images=4, write=False, checkpoints=[path])
    assert read.count(str(path)) == 1  # (the pictures' face finder reads the registry detector's file)
    assert [r["host"]["passed"] for r in rows] == [True] and rows[0]["model"] == path.stem
    other = tmp_path / bundle.name  # the same bundle, as if exported from another file of that name
    shutil.copytree(bundle, other)
    m = read_manifest(other)
    m.source["sha256"] = "0" * 64
    m.write(other)
    with pytest.raises(CheckpointError, match="sha256 differs"):
        verify_existing([other], [], verify_images=faces_dir, max_images=4, write=False, checkpoints=[path])


def test_one_rule_names_folders_after_what_the_user_chose():
    """Checkpoint bundles and gfn-eval's plot and prediction folders share it."""
    from gfn_edge.export.file_names import safe_name

    assert safe_name("pairs.csv", "pairs") == "pairs.csv"
    assert safe_name("../../etc", "x") == "etc" and safe_name("..", "x") == "x" and safe_name(".hidden", "x") == "hidden"
    assert safe_name("my model (v2)", "x") == "my-model-v2" and safe_name("gesicht_ü", "x") == "gesicht_"


def test_a_users_recogniser_gets_the_threshold_its_reference_measures_on_the_pairs(faces_dir):
    """Not the registry's 0.3 (the official release's), at which this student calls 97 % of the
    different-person pairs the same person; without labelled pairs, none (the device then asks)."""
    import numpy as np

    from gfn_edge.export.api import measured_threshold
    from gfn_edge.export.reference import reference_for
    from gfn_edge.export.verify import pair_scores
    from gfn_edge.export.verify_data import build_verification_set

    spec, path = resolve_spec(str(shared_path(*STUDENT)))
    assert spec.default_threshold is None
    vset = build_verification_set(spec, faces_dir / "pairs", max_images=48)
    assert len(vset.pairs) >= 300
    ref_out = reference_for(spec, path).run(vset.inputs)
    measured = measured_threshold(spec, ref_out, vset)
    scores, same = pair_scores(ref_out["embedding"], vset)
    same = same.astype(bool)
    t = measured.default_threshold
    assert 0.6 < t < 0.9 and "labelled pairs" in measured.description, (t, measured.description)
    accuracy = np.mean((scores >= t) == same)
    assert accuracy > 0.8 and accuracy > np.mean((scores >= 0.3) == same) + 0.5, accuracy
    vset.pairs = []
    assert measured_threshold(spec, ref_out, vset).default_threshold is None
    registry = get_spec("ghostfacenet-dsitweed-w0.5-e16")  # a registry model keeps its own
    assert measured_threshold(registry, ref_out, vset).default_threshold == registry.default_threshold


@pytest.mark.slow
def test_the_exported_manifest_carries_the_measured_threshold_and_the_files_provenance(faces_dir, tmp_path):
    """End to end: what a user's bundle says about itself, read back by the device side."""
    from gfn_edge.export.api import export_model
    from gfn_edge.manifest import read_manifest

    path = shared_path("models", "ghostfacenets", "ghostnetv1_w0.5_s2_basic_vn_big_epoch_6_0.695095.h5")
    (result,) = export_model(str(path), ["onnx"], tmp_path / "out", verify_images=faces_dir / "pairs")
    assert result.passed, result.failures
    spec = read_manifest(result.bundle).spec
    assert spec["default_threshold"] == round(result.metrics["pair_threshold_ref"], 4) > 0.6
    assert spec["weights"]["sha256"] == sha256_file(path) and spec["weights"]["url"] is None
    assert spec["arch"] == {"from_checkpoint": True} and path.name in spec["description"]
