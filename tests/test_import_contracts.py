"""The layers hold: import-linter's contracts in pyproject.toml pass, and they do catch a violation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "lint_imports.py"
sys.path.insert(0, str(SCRIPT.parent))

import lint_imports  # noqa: E402


def _lint(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    lint = shutil.which("lint-imports")
    assert lint, "lint-imports is missing: pip install import-linter (a dev dependency)"
    return subprocess.run([lint, str(ROOT / "pyproject.toml"), "--no-cache", "--no-logo"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout
    for contract in ("device side imports no training-side code", "calib does not import export", "No import circles"):
        assert contract in proc.stdout and "KEPT" in proc.stdout


def test_the_tree_holds_every_installed_package(tmp_path):
    folders = lint_imports.package_folders(ROOT / "pyproject.toml")
    assert folders["gfn_edge.runtimes"] == ROOT / "runtimes" and folders["gfn_edge.export.int8"] == ROOT / "export" / "int8"
    lint_imports.build_tree(tmp_path, folders)
    assert (tmp_path / "gfn_edge" / "export" / "targets" / "onnx_fp32.py").resolve() == ROOT / "export" / "targets" / "onnx_fp32.py"
    assert (tmp_path / "gfn_edge" / "calib" / "__init__.py").is_file()


def test_a_device_module_importing_the_training_side_breaks_the_contracts(tmp_path):
    lint_imports.build_tree(tmp_path, lint_imports.package_folders(ROOT / "pyproject.toml"))
    (tmp_path / "gfn_edge" / "zz_probe.py").write_text("import torch\nfrom gfn_edge.export import api\n")
    (tmp_path / "gfn_edge" / "runtimes" / "zz_probe.py").write_text("import gfn_edge.calib\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = _lint(tmp_path, env)
    assert proc.returncode == 1, proc.stdout[-4000:]
    for line in ("gfn_edge.zz_probe -> torch", "gfn_edge.zz_probe -> gfn_edge.export.api", "gfn_edge.runtimes.zz_probe -> gfn_edge.calib"):
        assert line in proc.stdout, proc.stdout[-4000:]


def test_a_circle_breaks_the_contracts(tmp_path):
    lint_imports.build_tree(tmp_path, lint_imports.package_folders(ROOT / "pyproject.toml"))
    (tmp_path / "gfn_edge" / "export" / "int8" / "zz_probe.py").write_text("from gfn_edge.export.targets import TARGETS\n")
    proc = _lint(tmp_path, dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert proc.returncode == 1 and "No import circles" in proc.stdout and "BROKEN" in proc.stdout, proc.stdout[-4000:]


def test_every_package_folder_is_installed():
    """A sub-folder with __init__.py missing from pyproject's packages is left out of the wheel (and of the contracts)."""
    folders = lint_imports.package_folders(ROOT / "pyproject.toml")
    listed = {path.resolve() for path in folders.values()}
    roots = {ROOT / "gfn_edge", ROOT / "runtimes", ROOT / "export", ROOT / "calib"}
    found = {init.parent.resolve() for root in roots for init in root.rglob("__init__.py") if "__pycache__" not in init.parts}
    assert found - listed == set(), f"not in [tool.setuptools] packages: {sorted(str(p.relative_to(ROOT)) for p in found - listed)}"
