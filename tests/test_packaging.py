"""The wheel a user installs: every subpackage under the gfn_edge namespace, nothing else, light imports.

Top-level folders (``runtimes/``, ``export/``, ``calib/``) are published as ``gfn_edge.runtimes``,
``gfn_edge.export`` and ``gfn_edge.calib`` through ``package-dir``; a subpackage missing from
pyproject's list would be left out of the wheel while the editable install still finds it. So
the wheel is built, installed with ``--no-deps`` (plus numpy and OpenCV, the device side's only
dependencies) into a fresh venv without site packages, and inspected there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow

NAMESPACES = {"gfn_edge": ROOT / "gfn_edge", "gfn_edge.runtimes": ROOT / "runtimes", "gfn_edge.export": ROOT / "export", "gfn_edge.calib": ROOT / "calib"}
SCRIPTS = sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
STRAY_TOP_LEVEL = ["export", "runtimes", "calib", "tests", "apps", "benchmarks"]
HEAVY = ["torch", "tensorflow", "tf_keras", "onnx", "litert_torch", "openvino", "nncf"]


def source_packages() -> list[str]:
    """Every importable package in the source tree, by its published name."""
    names = []
    for prefix, folder in NAMESPACES.items():
        for init in sorted(folder.rglob("__init__.py")):
            rel = init.parent.relative_to(folder)
            if "__pycache__" in rel.parts:
                continue
            names.append(".".join([prefix, *rel.parts]) if rel.parts else prefix)
    return names


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # no build isolation: the dev environment has setuptools and wheel, and CI need not fetch them again
    cmd = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)]
    subprocess.run(cmd, check=True, cwd=out, capture_output=True, text=True)
    (path,) = out.glob("gfn_edge-*.whl")
    return path


@pytest.fixture(scope="module")
def fresh_venv(wheel, tmp_path_factory) -> Path:
    """A venv without site packages holding the wheel, numpy and opencv-python-headless only."""
    root = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(root)
    python = root / "bin" / "python"
    cmd = [str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    cmd = [str(python), "-m", "pip", "install", "-q", "numpy", "opencv-python-headless"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"could not install numpy and opencv-python-headless into the fresh venv:\n{result.stderr[-2000:]}")
    return root


def _probe(python: Path, cwd: Path) -> dict:
    """Import names in ``python`` (from a neutral folder, so the checkout itself is not on sys.path)."""
    code = f"""
import importlib.util, json, sys
import gfn_edge, gfn_edge.runtimes
report = {{
    "file": gfn_edge.__file__,
    "found": {{n: importlib.util.find_spec(n) is not None for n in {source_packages()!r}}},
    "stray": {{n: list(s.submodule_search_locations or [s.origin]) for n in {STRAY_TOP_LEVEL!r} if (s := importlib.util.find_spec(n))}},
    "heavy_loaded": [m for m in {HEAVY!r} if m in sys.modules],
    "backends_module": gfn_edge.runtimes.__name__,
}}
print(json.dumps(report))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_wheel_holds_every_package_and_nothing_else(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"gfn_edge", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, tops
    packaged = {os.path.dirname(n).replace("/", ".") for n in names if n.endswith("/__init__.py")}
    missing = sorted(set(source_packages()) - packaged)
    assert not missing, f"subpackages left out of the wheel (add them to [tool.setuptools] packages): {missing}"
    assert not [n for n in names if n.endswith((".pth", ".h5", ".onnx", ".tflite", ".npz", ".jpg"))], "no weights or photos"
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Requires-Dist: numpy" in metadata and "Requires-Dist: opencv-python-headless" in metadata
    assert "Provides-Extra: export" in metadata
    assert "gfn-edge" in metadata.split("\n\n", 1)[1][:500], "the README is the long description"
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert {"gfn-export", "gfn-edge", "gfn-eval", "gfn-calib"} <= set(SCRIPTS)
    for script in SCRIPTS:
        assert f"{script} = gfn_edge." in entry_points


def test_fresh_install_imports_the_namespace_without_heavy_packages(fresh_venv, tmp_path):
    report = _probe(fresh_venv / "bin" / "python", tmp_path)
    assert Path(report["file"]).is_relative_to(fresh_venv), report["file"]
    assert all(report["found"].values()), {k: v for k, v in report["found"].items() if not v}
    assert report["stray"] == {}, "only gfn_edge is installed at the top level"
    assert report["heavy_loaded"] == [], "the device side must import without training frameworks"
    for script in SCRIPTS:
        assert (fresh_venv / "bin" / script).is_file(), script


def test_fresh_install_runs_the_light_commands(fresh_venv, tmp_path):
    """gfn-edge and gfn-export --list need neither PyTorch nor TensorFlow."""
    bin_dir = fresh_venv / "bin"
    version = subprocess.run([str(bin_dir / "gfn-edge"), "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == "gfn-edge 0.1.0", version.stderr
    listing = subprocess.run([str(bin_dir / "gfn-export"), "--list"], capture_output=True, text=True, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr[-2000:]
    assert "retinaface-mnet025" in listing.stdout and "tflite-fp16" in listing.stdout


def test_editable_install_imports_the_same_names(tmp_path):
    report = _probe(Path(sys.executable), tmp_path)
    assert Path(report["file"]).is_relative_to(ROOT), "the dev environment imports the checkout"
    assert all(report["found"].values()), {k: v for k, v in report["found"].items() if not v}
    # other packages in a dev environment may ship a top-level ``tests`` (one of litert-torch's
    # dependencies does); none of ours may leak. The environment may live inside the checkout
    # (CI's .venv), so what is installed in it does not count as the checkout's.
    env = Path(sys.prefix).resolve()

    def from_checkout(path: str) -> bool:
        p = Path(path).resolve()
        return p.is_relative_to(ROOT) and not p.is_relative_to(env)

    ours = {name: where for name, where in report["stray"].items() if any(from_checkout(p) for p in where)}
    assert ours == {}, f"checkout folders importable at the top level: {ours}"
