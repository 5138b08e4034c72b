#!/usr/bin/env bash
# Install gfn-edge with every extra into the current Python environment (use a virtual environment).
#
# Order matters:
#   1. torch 2.13.0 FIRST. Installed later, as a dependency, pip would resolve the default (CUDA) build
#      and its multi-GB nvidia-* wheels. With a local CPU wheel on pip's find-links (or
#      TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu) the CPU build is taken.
#   2. gfn-edge editable with all extras (tensorflow-cpu, litert-torch, openvino, onnx, ...).
#   3. tf-keras 2.21.0 with --no-deps: it requires the full `tensorflow` package, which would be
#      installed beside tensorflow-cpu; tensorflow-cpu already provides what it needs.
# Re-running is cheap (pip skips what is installed) and every step fails loudly.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python}
TORCH_VERSION=2.13.0
TF_KERAS_VERSION=2.21.0

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'setup.sh: error: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "no '$PYTHON' on PATH (set PYTHON=/path/to/python)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || die "gfn-edge needs Python >= 3.9 ($("$PYTHON" -V 2>&1))"
if [ -z "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" ]; then
    say "warning: no virtual environment is active; installing into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
fi
pip_install() { "$PYTHON" -m pip install --progress-bar off "$@"; }

installed_torch=$("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null || true)
if [[ "$installed_torch" == "$TORCH_VERSION"* ]]; then
    say "torch $installed_torch already installed"
else
    say "installing torch==$TORCH_VERSION first (CPU build)"
    pip_install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==$TORCH_VERSION" || die "could not install torch==$TORCH_VERSION"
fi

say "installing gfn-edge (editable) with all extras"
pip_install -e '.[all]' || die "could not install gfn-edge[all]"

say "installing tf-keras==$TF_KERAS_VERSION without dependencies"
pip_install --no-deps "tf-keras==$TF_KERAS_VERSION" || die "could not install tf-keras==$TF_KERAS_VERSION"

say "checking imports"
TF_CPP_MIN_LOG_LEVEL=3 TF_USE_LEGACY_KERAS=1 "$PYTHON" - <<'PY' || die "an installed package does not import (see above)"
import importlib
import sys

checks = [
    "gfn_edge", "gfn_edge.runtimes", "gfn_edge.export.api", "numpy", "cv2", "torch", "onnx", "onnxsim",
    "onnxruntime", "openvino", "nncf", "tensorflow", "tf_keras", "h5py", "litert_torch", "ai_edge_litert",
    "ai_edge_quantizer", "tqdm", "pytest",
]
failed = []
for name in checks:
    try:
        importlib.import_module(name)
    except Exception as exc:  # report every broken package, not just the first
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
import torch

if torch.version.cuda is not None:
    print(f"warning: torch {torch.__version__} is a CUDA build; the CPU build is smaller", file=sys.stderr)
from importlib import metadata

try:
    metadata.version("tensorflow")
    failed.append("the full 'tensorflow' package is installed beside tensorflow-cpu; uninstall it (pip uninstall tensorflow)")
except metadata.PackageNotFoundError:
    pass
if failed:
    print("\n".join(failed), file=sys.stderr)
    sys.exit(1)
print(f"gfn-edge ready: torch {torch.__version__}, tensorflow-cpu {metadata.version('tensorflow-cpu')}, "
      f"tf-keras {metadata.version('tf-keras')}, numpy {metadata.version('numpy')}", file=sys.stderr)
PY
say "done"
