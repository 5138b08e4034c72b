"""gfn-export's failures: each one stops early with a message that names the problem and the fix.

Problems found before any artifact exists (names, checkpoints, output folder, missing packages)
raise from ``export_model`` and make the CLI exit with status 2 and one line on stderr.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from conftest import link_photos, shared_path

from gfn_edge.errors import CheckpointError, GfnEdgeError, InvalidArgumentError, MissingDependencyError, UnknownModelError

torch = pytest.importorskip("torch")

from gfn_edge.export.api import export_model  # noqa: E402
from gfn_edge.export.checkpoints import load_state_dict, load_strict  # noqa: E402
from gfn_edge.export.cli import build_parser, main  # noqa: E402
from gfn_edge.export.reference import build_torch_model  # noqa: E402
from gfn_edge.registry import get_spec  # noqa: E402

MNET = "retinaface-mnet025"


@pytest.fixture(scope="module")
def few_photos(tmp_path_factory) -> Path:
    """Three real photos: enough to get past verification-data building quickly."""
    folder = tmp_path_factory.mktemp("few-photos")
    for path in sorted(shared_path("faces", "liveness").iterdir()):
        (folder / path.name).write_bytes(path.read_bytes())
    return folder


def _cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def _nothing_written(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


# ----------------------------------------------------------------------------- names


def test_unknown_model_suggests_the_closest(tmp_path, capsys):
    with pytest.raises(UnknownModelError, match=r"unknown model 'retinaface-mnet25'; did you mean retinaface-mnet025"):
        export_model("retinaface-mnet25", "onnx", tmp_path / "out")
    code, err = _cli(["--model", "ghostfacenet-v1-w13-s1", "--out", str(tmp_path / "cli")], capsys)
    assert code == 2 and "did you mean ghostfacenet-v1-w1.3-s1" in err and err.startswith("gfn-export: error:")
    assert _nothing_written(tmp_path / "cli")


def test_unknown_target_suggests_the_closest(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"unknown target 'tflte'; did you mean tflite"):
        export_model(MNET, "onnx,tflte", tmp_path / "out")
    assert _nothing_written(tmp_path / "out"), "targets are checked before anything is written"
    code, err = _cli(["--model", MNET, "--target", "openvino-f16", "--out", str(tmp_path / "cli")], capsys)
    assert code == 2 and "did you mean openvino-fp16" in err


def test_every_repeated_target_flag_counts(tmp_path, capsys):
    """``--target tflte --target onnx``: the first flag is read too (it used to be dropped silently,
    the last flag winning, so a user asking for two targets got one)."""
    code, err = _cli(["--model", MNET, "--target", "tflte", "--target", "onnx", "--out", str(tmp_path / "cli")], capsys)
    assert code == 2 and "unknown target 'tflte'; did you mean tflite" in err
    assert _nothing_written(tmp_path / "cli")
    assert build_parser().parse_args(["--model", MNET, "--target", "onnx,tflite", "--target", "all"]).target == ["onnx,tflite", "all"]


@pytest.mark.parametrize(
    "value, says", [("-5", "outside 0 .. 86400"), ("1e9", "outside 0 .. 86400"), ("soon", "is not a number of seconds"), ("nan", "outside 0 .. 86400")]
)
def test_absurd_distillation_time_is_refused(tmp_path, capsys, value, says):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--model", MNET, "--target", "tflite-int8", "--int8-distill-seconds", value, "--out", str(tmp_path / "cli")])
    assert exc.value.code == 2 and says in capsys.readouterr().err
    assert _nothing_written(tmp_path / "cli")


# ----------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def real_pth(mirror) -> Path:
    return mirror / "retinaface" / "mobilenet0.25_Final.pth"


def test_truncated_checkpoint_is_named(real_pth, tmp_path, capsys):
    data = real_pth.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cannot read .*truncated\.pth as a PyTorch checkpoint .*may be truncated"):
        export_model(truncated, "onnx", tmp_path / "out", arch=MNET)
    code, err = _cli(["--model", str(truncated), "--out", str(tmp_path / "cli")], capsys)
    assert code == 2 and "truncated.pth" in err and "may be truncated" in err


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("empty.pth", b"", "is empty"),
        ("garbage.pth", b"this is not a checkpoint at all" * 10, "cannot read"),
        ("garbage.npz", b"PK\x03\x04 not really a zip", "cannot read"),
    ],
)
def test_unreadable_checkpoints_are_named(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        export_model(path, "onnx", tmp_path / "out", arch=MNET)
    assert str(path) in str(info.value) and message in str(info.value)


def test_truncated_keras_file_is_named(mirror, tmp_path, few_photos):
    h5 = mirror / "ghostfacenets" / "ghostnetv1_w0.5_s2_basic_vn_big_epoch_6_0.695095.h5"
    data = h5.read_bytes()
    truncated = tmp_path / "student.h5"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match=r"cannot read .*student\.h5 as a Keras \.h5 file .*truncated"):
        export_model(truncated, "onnx", tmp_path / "out", verify_images=few_photos, mirror=mirror)


def test_tensors_that_do_not_fit_are_named(real_pth):
    state = load_state_dict(real_pth)
    state.pop("body.stage1.0.0.weight")
    state["body.stage1.0.1.weight"] = torch.zeros(3)
    state["extra.head.weight"] = torch.zeros(1)
    model = build_torch_model(get_spec(MNET))
    with pytest.raises(CheckpointError) as info:
        load_strict(model, state, "checkpoint edited.pth")
    message = str(info.value)
    assert message.startswith("checkpoint edited.pth does not fit the architecture")
    assert "missing 1: body.stage1.0.0.weight" in message
    assert "unexpected 1: extra.head.weight" in message
    assert "shape mismatch 1: body.stage1.0.1.weight (3,) vs (8,)" in message


def test_checkpoint_of_another_architecture_is_refused_naming_tensors(tmp_path, few_photos, mirror):
    ghostnet = shared_path("fixtures", "retinaface", "retinaface_ghostnet_se0.weights.npz")
    with pytest.raises(CheckpointError) as info:
        export_model(ghostnet, "onnx", tmp_path / "out", arch="retinaface-ghostnet-se025", verify_images=few_photos, mirror=mirror)
    message = str(info.value)
    assert "retinaface_ghostnet_se0.weights.npz does not fit the architecture" in message
    assert "missing" in message and ".se.conv_reduce." in message, "names the squeeze-excite tensors the file lacks"
    assert not list((tmp_path / "out").glob("*-onnx")), "no bundle is written"


# ----------------------------------------------------------------------------- environment


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "artifacts"
    with pytest.raises(GfnEdgeError, match=r"output folder .*a-file/artifacts is not writable"):
        export_model(MNET, "onnx", out)
    code, err = _cli(["--model", MNET, "--out", str(out)], capsys)
    assert code == 2 and "is not writable" in err


@pytest.mark.parametrize(
    "module,target,package",
    [("litert_torch", "tflite", "litert-torch"), ("onnxsim", "onnx", "onnx and onnxsim"), ("openvino", "openvino", "openvino")],
)
def test_missing_optional_dependency_names_the_extra(monkeypatch, tmp_path, few_photos, mirror, capsys, module, target, package):
    monkeypatch.setitem(sys.modules, module, None)  # ``import module`` now raises ImportError
    with pytest.raises(MissingDependencyError) as info:
        export_model(MNET, target, tmp_path / "out", verify_images=few_photos, mirror=mirror)
    assert str(info.value).startswith(f"{package} is needed")
    assert "pip install 'gfn-edge[export]'" in str(info.value)
    assert not list((tmp_path / "out").iterdir()), "the failed target leaves nothing behind"
    code, err = _cli(["--model", MNET, "--target", target, "--out", str(tmp_path / "cli"), "--verify-images", str(few_photos)], capsys)
    assert code == 2 and "gfn-edge[export]" in err


def test_missing_tf_keras_says_how_to_install_it(monkeypatch):
    from gfn_edge.export.keras_reference import import_tf_keras

    monkeypatch.setitem(sys.modules, "tf_keras", None)
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps tf-keras==2\.21\.0.*gfn-edge\[export\]"):
        import_tf_keras()


def test_no_verification_images_warns_loudly_and_verifies_on_synthetic(monkeypatch, tmp_path, caplog, mirror):
    monkeypatch.delenv("GFN_EDGE_VERIFY_IMAGES", raising=False)
    with caplog.at_level(logging.WARNING):
        (result,) = export_model(MNET, "onnx", tmp_path / "out", mirror=mirror)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "NO VERIFICATION IMAGES" in r.getMessage()]
    assert warnings, "a loud warning is logged"
    assert "SYNTHETIC" in warnings[0].getMessage() and "--verify-images" in warnings[0].getMessage()
    assert result.passed and result.bundle is not None
    from gfn_edge.manifest import read_manifest

    v = read_manifest(result.bundle).verification
    assert v["data"]["synthetic"] is True and v["metrics"]["images"] == 8
    assert v["metrics"]["output_rel_err"] <= 1e-3, "the artifact was still compared with the reference"


def test_int8_verified_on_its_own_calibration_folder_is_refused_naming_what_is_left(tmp_path, mirror, capsys):
    """One folder given to --calib and --verify-images: the calibration takes most of its faces, and
    an INT8 recogniser used to PASS on the few it had turned down (7 faces, no pair). Now the export
    stops before quantising, says how many are left and what to give it; nothing is written."""
    folder = link_photos(sorted(shared_path("faces", "portraits").glob("*.jpg"))[:8], tmp_path / "photos")
    out = tmp_path / "out"
    with pytest.raises(
        InvalidArgumentError,
        match=r"only (\d|[1-4]\d) faces, 0 labelled pairs in .*photos are left to verify INT8 on after leaving out the \d+ pictures the INT8 calibration used; INT8 needs at least 50 faces",
    ) as info:
        export_model("ghostfacenet-dsitweed-w0.5-e16", "tflite-int8", out, mirror=mirror, verify_images=folder, calib=folder)
    assert "Give --verify-images a folder apart from --calib" in str(info.value)
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()], "nothing is exported"
    code, err = _cli(["--model", MNET, "--target", "onnx-int8", "--calib", str(folder), "--verify-images", str(folder), "--out", str(tmp_path / "cli")], capsys)
    assert code == 2 and "only 0 pictures in" in err and "at least 8 pictures" in err, err  # the detector: every picture went to calibration
    code, err = _cli(
        ["--model", "minifasnet-v2-2.7", "--target", "tflite-int8", "--calib", str(folder), "--verify-images", str(folder), "--out", str(tmp_path / "cli")],
        capsys,
    )
    assert code == 2 and "only 0 face crops in" in err and "at least 30 face crops" in err, err  # not "no face found"


def test_thin_int8_verification_goes_on_with_force_and_says_so(caplog):
    import numpy as np

    from gfn_edge.export.verification_floor import MIN_INT8_VERIFICATION, check_int8_verification
    from gfn_edge.export.verify_data import VerificationSet

    def faces(n: int, folder: str | None = "photos") -> VerificationSet:
        return VerificationSet(
            "embed", np.zeros((n, 112, 112, 3), np.float32), [str(i) for i in range(n)], description={"folder": folder, "faces": n, "synthetic": folder is None}
        )

    check_int8_verification(faces(MIN_INT8_VERIFICATION["embed"]), None)  # enough
    with pytest.raises(InvalidArgumentError, match=r"INT8 is judged on real pictures, and no verification folder is given"):
        check_int8_verification(faces(64, folder=None), None)  # synthetic pictures, however many
    with pytest.raises(InvalidArgumentError, match=r"only 49 faces, 0 labelled pairs in photos are left to verify INT8 on; INT8 needs at least 50"):
        check_int8_verification(faces(49), None)
    with caplog.at_level(logging.WARNING, logger="gfn_edge"):
        check_int8_verification(faces(49), None, force=True)
    assert any("only 49 faces" in r.getMessage() and "--force" in r.getMessage() for r in caplog.records)
