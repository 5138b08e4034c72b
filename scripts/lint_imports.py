#!/usr/bin/env python3
"""Run import-linter (``lint-imports``) on gfn_edge as it is installed, with every subpackage in place.

gfn_edge is assembled from several top-level folders (pyproject's ``[tool.setuptools] package-dir``:
runtimes/ -> gfn_edge.runtimes, export/ -> gfn_edge.export, calib/ -> gfn_edge.calib). An editable
install maps them with an import hook that grimp, import-linter's graph builder, cannot see: it
walks the ``gfn_edge/`` folder and would miss them. This script lays the package out as a wheel
would (a temporary tree of links to the source files), then runs ``lint-imports`` on that tree
with the contracts in pyproject.toml. Extra arguments are passed on (e.g. ``--verbose``).

Usage: python scripts/lint_imports.py [lint-imports options]; exit status is lint-imports'.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent


def package_folders(pyproject: Path) -> dict[str, Path]:
    """Dotted package name -> source folder, for every package setuptools would build."""
    config = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]
    mapping = {name: ROOT / folder for name, folder in config.get("package-dir", {}).items()}
    folders: dict[str, Path] = {}
    for package in config["packages"]:
        # the longest mapped prefix decides where a package's files live, as in setuptools
        prefix = max((p for p in mapping if package == p or package.startswith(p + ".")), key=len, default=None)
        if prefix is None:
            folders[package] = ROOT / package.replace(".", "/")
        else:
            rest = package[len(prefix) :].lstrip(".")
            folders[package] = mapping[prefix] / rest.replace(".", "/") if rest else mapping[prefix]
    return folders


def build_tree(dest: Path, folders: dict[str, Path]) -> None:
    """Links to each package's .py files under ``dest``, laid out by dotted name."""
    for package, folder in folders.items():
        if not (folder / "__init__.py").is_file():
            raise SystemExit(f"lint_imports: {package} maps to {folder}, which is not a package")
        target = dest.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for source in folder.glob("*.py"):
            (target / source.name).symlink_to(source)


def main(argv: list[str]) -> int:
    pyproject = ROOT / "pyproject.toml"
    lint = shutil.which("lint-imports")
    if lint is None:
        print("lint_imports: lint-imports is not installed (pip install import-linter)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gfn-edge-imports-") as tmp:
        build_tree(Path(tmp), package_folders(pyproject))
        env = dict(os.environ, PYTHONPATH=tmp + os.pathsep + os.environ.get("PYTHONPATH", ""))
        # lint-imports puts its working folder first on sys.path: run it in the tree, not the checkout
        return subprocess.call([lint, str(pyproject), "--no-cache", "--no-logo", *argv], cwd=tmp, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
