"""Verification on the target ISA: the case files, the device-side verifier, the platform records,
the OpenVINO precision pin, and scripts/arm64.sh's refusal without its host tools.

The verifier is checked on this machine with a real bundle on real pictures; emulated aarch64 runs
of the same code are the ARM block of .ci/run (scripts/arm64_tests.sh) and the last test here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, load_script, shared_path

from gfn_edge.errors import ArtifactError, GfnEdgeError
from gfn_edge.manifest import read_manifest

DET = "retinaface-mnet025"
REC = "ghostfacenet-dsitweed-w0.5-e16"
SCRIPT = ROOT / "scripts" / "arm64.sh"


@pytest.fixture(scope="module")
def detector_case(bundles, tmp_path_factory):
    """A verification case whose reference outputs are the ONNX bundle's own on three real pictures."""
    from gfn_edge.export.verify import default_tolerances
    from gfn_edge.export.verify_data import detection_set
    from gfn_edge.export.verify_on import write_case
    from gfn_edge.runtimes import open_model

    bundle = bundles.get(DET, "onnx")
    manifest = read_manifest(bundle)
    spec_dict = manifest.spec
    spec = manifest.model_spec
    vset = detection_set(spec, shared_path("faces", "scenes"), max_images=3)
    ref_out = open_model(bundle).run(vset.inputs)
    folder = write_case(tmp_path_factory.mktemp("case"), vset, ref_out, spec_dict, default_tolerances("detect", "fp32"))
    return folder, bundle, ref_out


def test_the_verifier_passes_a_bundle_against_its_own_outputs(detector_case):
    from gfn_edge.export.verify_device import verify_here

    folder, bundle, _ = detector_case
    result = verify_here(folder, bundle)
    assert result["passed"], result["failures"]
    assert result["metrics"]["images"] == 3 and result["metrics"]["faces_reference"] > 0
    assert result["metrics"]["box_err_px"] < 1e-3 and result["metrics"]["output_rel_err"] < 1e-5
    assert result["machine"] and result["cpu"] and result["runtime"].startswith("onnxruntime ")
    assert result["inference_precision"] == "fp32"


def test_the_verifier_fails_a_bundle_whose_outputs_moved(detector_case, tmp_path):
    """Reference boxes shifted by a few pixels: the bundle must now be failed, naming the box error."""
    from gfn_edge.export.verify_device import REFERENCE, verify_here

    folder, bundle, ref_out = detector_case
    moved = tmp_path / "case"
    shutil.copytree(folder, moved)
    shifted = {k: v.copy() for k, v in ref_out.items()}
    shifted["loc"][..., :2] += 0.05  # prior-relative offsets: several pixels at every level
    np.savez(moved / REFERENCE, **shifted)
    result = verify_here(moved, bundle)
    assert not result["passed"]
    assert any(f.startswith(("box_err_px", "output_rel_err")) for f in result["failures"]), result["failures"]


def test_a_liveness_case_carries_the_reference_under_noise(tmp_path):
    """The reference's logits on the noisy crops travel with the case, so an emulated board reports
    the same noise floor as the host (verify.liveness_metrics)."""
    from gfn_edge.export.verify import default_tolerances
    from gfn_edge.export.verify_data import VerificationSet
    from gfn_edge.export.verify_device import load_case
    from gfn_edge.export.verify_on import write_case
    from gfn_edge.registry import get_spec

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (4, 80, 80, 3), dtype=np.uint8)
    noise = rng.normal(size=(3, 4, 3)).astype(np.float32)
    vset = VerificationSet("liveness", raw.astype(np.float32), [f"c{i}" for i in range(4)], raw=raw, reference_noise=noise)
    spec = get_spec("minifasnet-v2-2.7")
    write_case(tmp_path / "case", vset, {"logits": noise[0]}, spec.to_dict(), default_tolerances("liveness", "int8"))
    loaded, ref_out, _, _, _ = load_case(tmp_path / "case")
    np.testing.assert_array_equal(loaded.reference_noise, noise)
    vset.reference_noise = None
    write_case(tmp_path / "plain", vset, {"logits": noise[0]}, spec.to_dict(), default_tolerances("liveness", "int8"))
    assert load_case(tmp_path / "plain")[0].reference_noise is None


def test_a_damaged_case_is_refused_with_its_folder(tmp_path):
    from gfn_edge.export.verify_device import load_case

    (tmp_path / "case.json").write_text("{}")
    with pytest.raises(GfnEdgeError, match=str(tmp_path)):
        load_case(tmp_path)


def test_platform_names_are_checked():
    from gfn_edge.export.verify_on import parse_platforms

    assert parse_platforms("cortex-a72, Cortex-A76,cortex-a72") == ["cortex-a72", "cortex-a76"]
    assert parse_platforms(["cortex-a76", "cortex-a72,cortex-a76"]) == ["cortex-a76", "cortex-a72"]  # the flag repeated
    with pytest.raises(GfnEdgeError, match="unknown CPU cortex-a99.*cortex-a72"):
        parse_platforms("cortex-a72,cortex-a99")


def test_info_shows_where_a_bundle_was_verified(bundles, tmp_path, capsys):
    from gfn_edge.cli import main

    bundle = tmp_path / "det"
    shutil.copytree(bundles.get(DET, "onnx"), bundle)
    manifest = read_manifest(bundle)
    manifest.verification["platforms"] = [
        {"platform": "host", "machine": "x86_64", "cpu": "x86", "runtime": "onnxruntime 1.0", "inference_precision": "fp32", "passed": True},
        {
            "platform": "cortex-a72",
            "machine": "aarch64",
            "cpu": "Cortex-A72",
            "runtime": "onnxruntime 1.0",
            "inference_precision": "fp32",
            "passed": False,
            "metrics": {"box_err_px": 19.9},
            "failures": ["box_err_px = 19.9 > 0.5"],
        },
    ]
    manifest.write(bundle)
    assert main(["info", str(bundle)]) == 0
    out, err = capsys.readouterr()
    info = json.loads(out.strip().splitlines()[-1])
    assert info["model"] == DET and info["verified"] is True
    assert [p["platform"] for p in info["verified_on"]] == ["host", "cortex-a72"]
    assert info["verified_on"][1]["failures"] == ["box_err_px = 19.9 > 0.5"]
    assert "cortex-a72 (Cortex-A72, onnxruntime 1.0, fp32): FAILED" in err

    plain = tmp_path / "plain"
    shutil.copytree(bundles.get(DET, "onnx"), plain)
    m = read_manifest(plain)
    m.verification.pop("platforms", None)
    m.write(plain)
    assert main(["info", str(plain)]) == 0
    assert "export machine only" in capsys.readouterr().err


def test_openvino_precision_is_pinned_and_reported(bundles):
    pytest.importorskip("openvino")
    from gfn_edge.runtimes import open_model

    fp32 = open_model(bundles.get(DET, "openvino"))
    assert fp32.describe()["precision_hint"] == "f32" and fp32.describe()["inference_precision"] == "f32"
    fp16 = open_model(bundles.get(REC, "openvino-fp16"))  # f16 weights, computed in f32 as verified on x86
    assert fp16.describe()["precision_hint"] == "f32" and fp16.describe()["inference_precision"] == "f32"
    assert open_model(bundles.get(REC, "openvino-fp16"), precision="f16").describe()["precision_hint"] == "f16"
    chosen = open_model(bundles.get(DET, "openvino"), precision="bf16")
    assert chosen.describe()["precision_hint"] == "bf16"
    with pytest.raises(ArtifactError, match="f64"):
        open_model(bundles.get(DET, "openvino"), precision="f64")


def test_the_host_entry_says_how_openvino_and_onnxruntime_ran_int8(bundles):
    from dataclasses import replace

    from gfn_edge.export.verify_on import host_platform_entry
    from gfn_edge.runtimes.onnx_signed_weights import u8s8_kernels_exact
    from gfn_edge.runtimes.openvino_backend import int8_kernels_hold

    fp32 = read_manifest(bundles.get(DET, "openvino"))
    assert "int8_kernels" not in host_platform_entry(fp32)
    int8 = replace(fp32, target="openvino-int8", precision="int8")
    assert host_platform_entry(int8)["int8_kernels"] is int8_kernels_hold()
    onnx_int8 = replace(fp32, target="onnx-int8", precision="int8")
    assert host_platform_entry(onnx_int8)["int8_kernels"] == ("u8s8" if u8s8_kernels_exact() else "u8u8")


def test_arm64_sh_names_the_debian_packages_it_needs(tmp_path):
    """Without qemu-user-static and mmdebstrap on PATH the script stops before doing anything."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("dirname",):
        (tools / tool).symlink_to(shutil.which(tool))
    proc = subprocess.run(
        ["/bin/bash", str(SCRIPT), "python", "-c", "1"],
        capture_output=True,
        text=True,
        env={"PATH": str(tools), "HOME": str(tmp_path)},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "qemu-user-static" in proc.stderr and "mmdebstrap" in proc.stderr and "apt-get install" in proc.stderr


def test_arm64_sh_refuses_unknown_cpus_and_suites(tmp_path):
    for args, words in ((["--cpu", "cortex-a99"], "unknown CPU"), (["--suite", "jessie"], "unknown Debian suite")):
        proc = subprocess.run(["bash", str(SCRIPT), *args, "python", "-c", "1"], capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr


def _collected_ids(selection: list[str]) -> list[str]:
    """The test ids pytest collects on this host for a selection (what arm64_tests.sh hands each CPU)."""
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *selection],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    ).stdout
    return [line for line in collected.splitlines() if "::" in line]


def test_arm64_tests_shard_runs_numerics_on_every_cpu_and_splits_the_rest(tmp_path):
    """CI's plan for the two emulated CPUs: every selected test runs, numerics ones on both, the others once."""
    selection = ["-m", "device and not slow", "tests/test_embedder.py", "tests/test_tracker.py"]

    def run(*args: str) -> str:
        proc = subprocess.run(["bash", *args], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    plan: dict[str, list[str]] = {}
    for line in run(str(ROOT / "scripts" / "arm64_tests.sh"), "--work", str(tmp_path), "--shard", "--plan", *selection).splitlines():
        if line.startswith("# "):
            cpu = line[2:]
            plan[cpu] = []
        else:
            plan[cpu].append(line)
    assert list(plan) == ["cortex-a72", "cortex-a76"]
    everything = _collected_ids(selection)
    numerics = [t for t in everything if "test_unit_vectors_for_a_batch[" in t]
    assert len(numerics) == 5 and len(everything) > 20
    a72, a76 = plan["cortex-a72"], plan["cortex-a76"]
    assert all(t in a72 and t in a76 for t in numerics)
    others = [t for t in everything if t not in numerics]
    assert sorted(t for t in a72 + a76 if t not in numerics) == sorted(others)  # each exactly once
    assert abs(len(a72) - len(a76)) <= 1


def _readme_commands():
    """scripts/readme_commands.py, the one parser of README blocks .ci/run uses too."""
    return load_script(ROOT / "scripts" / "readme_commands.py", "readme_commands")


def _arm64_ci_commands() -> list[list[str]]:
    """The commands .ci/run's ARM block runs: README's <!-- arm64:begin --> ... <!-- arm64:end --> lines."""
    import shlex

    return [shlex.split(line) for line in _readme_commands().block_commands("arm64")]


def test_readme_blocks_are_read_the_way_ci_runs_them(tmp_path):
    """.ci/run takes its commands from scripts/readme_commands.py: a block's commands, no fences or
    comments; a missing, empty or repeated block is exit 2 with a line naming it (CI then stops)."""
    readme = tmp_path / "README.md"
    readme.write_text(
        "x\n<!-- demo:begin -->\n```bash\n# a comment\n  gfn-export --list  \n\npytest -q\n```\n<!-- demo:end -->\n<!-- empty:begin -->\n```\n```\n<!-- empty:end -->\n"
        "<!-- twice:begin -->\nls\n<!-- twice:end -->\n<!-- twice:begin -->\npwd\n<!-- twice:end -->\n"
    )
    script = ROOT / "scripts" / "readme_commands.py"

    def run(*args):
        return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=60, check=False)

    ok = run("demo", str(readme))
    assert ok.returncode == 0 and ok.stdout.splitlines() == ["gfn-export --list", "pytest -q"], ok
    for block, says in (
        ("absent", "no <!-- absent:begin -->"),
        ("empty", "no commands between the empty markers"),
        ("../x", "a block name is"),
        ("twice", "has 2 <!-- twice:begin --> blocks"),
    ):
        bad = run(block, str(readme))
        assert bad.returncode == 2 and says in bad.stderr and not bad.stdout, bad
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/readme_commands.py quickstart" in ci and 'scripts/readme_commands.py "$name"' in ci
    assert "run_block arm64 " in ci and "run_block int8 " in ci
    assert "re.search" not in ci, ".ci/run parses the README itself again"


def test_ci_int8_block_is_the_headline_export_of_a_checkpoint_file():
    """README's <!-- int8:begin --> block, which CI runs: gfn-export --target tflite-int8 on a real
    checkpoint given as a file (no registry name), plain photo folders, default options, then
    verified on an emulated Cortex-A72. Read with gfn-export's own parser, so a flag it does not know
    fails here, not half an hour into CI; an option beyond those a user must give fails too."""
    import shlex

    from gfn_edge.export.cli import build_parser

    (line,) = _readme_commands().block_commands("int8")
    argv = shlex.split(line)
    assert argv[0] == "gfn-export"
    args = build_parser().parse_args(argv[1:])
    given = {a.split("=")[0] for a in argv[1:] if a.startswith("--")}
    assert given == {"--model", "--target", "--calib", "--verify-images", "--verify-on", "--out"}, given
    assert args.target == ["tflite-int8"] and args.verify_on == ["cortex-a72"]
    checkpoint = (ROOT / args.model).resolve()
    assert checkpoint.suffix == ".h5" and checkpoint.parent.name == "ghostfacenets", args.model
    for path in (checkpoint, (ROOT / args.calib).resolve(), (ROOT / args.verify_images).resolve()):
        if not path.exists():
            pytest.skip(f"asset missing: {path}")
    assert (ROOT / args.verify_images / "pairs.csv").is_file(), "verification needs the labelled pairs"


def test_ci_runs_the_door_end_to_end_alone_on_emulated_arm():
    """Issue 13: the door's end-to-end video test is in CI's emulated run, on one CPU with both host cores,
    reporting under its own name; the selection really collects it (and, for the hour, nothing else
    of the door's: the rest of the file runs by hand, README)."""
    (door,) = [c for c in _arm64_ci_commands() if "--name" in c]
    assert "--shard" not in door and door[door.index("--cpus") + 1] in ("cortex-a72", "cortex-a76")
    selection = door[door.index("--name") + 2 :]
    names = {test_id.split("::")[-1] for test_id in _collected_ids(selection)}
    assert names == {"test_end_to_end_video_grants_enrolled_people_only"}, names


def test_ci_shards_hold_every_device_file_of_the_library(tmp_path):
    """The shards' selection keeps every device test file outside the apps but backend parity (README:
    by hand): a new file of device tests that is not added there fails here. The device files are
    arm64_tests.sh's own default selection (its --plan without test arguments)."""
    (shards,) = [c for c in _arm64_ci_commands() if "--shard" in c]
    listed = {a for a in shards if a.startswith("tests/")}
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "arm64_tests.sh"), "--work", str(tmp_path), "--cpus", "cortex-a72", "--plan"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    device_files = {a for a in proc.stdout.split() if a.startswith("tests/")}
    assert "tests/test_gallery.py" in device_files, proc.stdout
    by_hand = {"tests/test_backend_parity.py", "tests/test_apps_door.py", "tests/test_apps_annotate.py"}
    assert listed == device_files - by_hand, sorted(listed ^ (device_files - by_hand))


def test_arm64_tests_refuses_a_report_name_that_is_not_a_plain_word(tmp_path):
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "arm64_tests.sh"), "--work", str(tmp_path), "--name", "../door", "--plan", "tests/test_tracker.py"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 2 and "--name takes letters" in proc.stderr, proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("GFN_EDGE_ARM64_TESTS") or not (shutil.which("qemu-aarch64-static") and shutil.which("mmdebstrap")),
    reason="emulated aarch64 run (builds a rootfs, minutes under qemu): set GFN_EDGE_ARM64_TESTS=1 with "
    "qemu-user-static and mmdebstrap installed (scripts/arm64_tests.sh runs the device suite the same way)",
)
def test_the_same_case_verifies_on_emulated_cortex_a72(detector_case, tmp_path):
    """The device-side verifier in the emulated aarch64 Python: the FP32 bundle passes the FP32 tolerances."""
    from gfn_edge.export.verify_on import run_on_platform

    folder, bundle, _ = detector_case
    env_cache = os.environ.get("GFN_EDGE_ARM64_CACHE")
    result = run_on_platform(folder, bundle, "cortex-a72")
    assert result["machine"] == "aarch64" and result["cpu"] == "Cortex-A72", (result, env_cache)
    assert result["passed"], result["failures"]
    assert result["metrics"]["box_err_px"] <= 0.5
