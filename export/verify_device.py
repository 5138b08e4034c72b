"""The device half of ``gfn-export --verify-on``: verify one bundle on this machine's runtime.

Runs where the bundle will run (an emulated aarch64 board, or a real one), with the device side
only: numpy, OpenCV and the bundle's runtime; never the training frameworks. The host wrote the
verification case beforehand (:mod:`gfn_edge.export.verify_on`): the same pictures, already
prepared, the reference outputs the x86 verification compared against, and the tolerances. This
script runs the bundle on those pictures, computes the same metrics with the same code, and
writes them with a description of the platform as JSON.

    python -m gfn_edge.export.verify_device CASE_DIR BUNDLE OUT.json
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from gfn_edge.errors import GfnEdgeError
from gfn_edge.model_spec import ModelSpec
from gfn_edge.preprocess import Letterbox

from .verify import Tolerances, preprocess_mismatch, verify_outputs
from .verify_data import VerificationSet

log = logging.getLogger(__name__)

CASE_JSON = "case.json"
INPUTS = "inputs.npy"
RAW = "raw.npy"
REFERENCE = "reference.npz"
REFERENCE_NOISE = "reference_noise.npy"  # liveness: the reference under one grey level of noise

# ARM "CPU part" numbers (MIDR) of the cores the boards carry
_ARM_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd41": "Cortex-A78",
}


def load_case(case_dir: Path) -> tuple[VerificationSet, dict[str, np.ndarray], ModelSpec, Tolerances, dict[str, Any]]:
    """The verification case the host wrote: pictures, reference outputs, spec, tolerances."""
    try:
        meta = json.loads((case_dir / CASE_JSON).read_text())
        inputs = np.load(case_dir / INPUTS, mmap_mode="r")
        raw = np.load(case_dir / RAW, mmap_mode="r") if (case_dir / RAW).is_file() else None
        noise = np.load(case_dir / REFERENCE_NOISE) if (case_dir / REFERENCE_NOISE).is_file() else None
        with np.load(case_dir / REFERENCE) as ref:
            ref_out = {k: ref[k] for k in ref.files}
    except (OSError, ValueError, KeyError) as exc:
        raise GfnEdgeError(f"{case_dir} is not a verification case written by gfn-export --verify-on: {exc}") from exc
    vset = VerificationSet(
        task=meta["task"],
        inputs=np.ascontiguousarray(inputs),
        names=list(meta["names"]),
        letterboxes=[Letterbox(float(s), int(w), int(h)) for s, w, h in meta.get("letterboxes", [])],
        pairs=[(int(a), int(b), bool(same)) for a, b, same in meta.get("pairs", [])],
        raw=None if raw is None else np.ascontiguousarray(raw),
        judged=None if meta.get("judged") is None else np.asarray(meta["judged"], bool),
        reference_noise=noise,
    )
    tolerances = {k: (op, float(v)) for k, (op, v) in meta["tolerances"].items()}
    return vset, ref_out, ModelSpec.from_dict(meta["spec"]), tolerances, meta


def cpu_model() -> str:
    """The CPU as the runtime sees it: the ARM core from /proc/cpuinfo, else the platform's name."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "CPU part":
                    return _ARM_PARTS.get(value.lower(), f"ARM part {value}")
                if key == "model name":
                    return value
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_platform() -> dict[str, Any]:
    libc, libc_version = platform.libc_ver()
    emulated = os.environ.get("QEMU_CPU")
    return {
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "emulated": f"qemu-user, QEMU_CPU={emulated}" if emulated else None,
        "os": os.environ.get("GFN_EDGE_ARM64_SUITE") or platform.platform(),
        "python": platform.python_version(),
        "libc": f"{libc} {libc_version}".strip(),
        "numpy": np.__version__,
    }


def runtime_version(backend: str) -> str:
    module = {"onnxruntime": "onnxruntime", "openvino": "openvino", "tflite": "ai_edge_litert"}.get(backend, backend)
    try:
        if module == "ai_edge_litert":
            from importlib.metadata import version

            return f"ai-edge-litert {version('ai-edge-litert')}"
        mod = __import__(module)
        return f"{module} {getattr(mod, '__version__', '?')}"
    except Exception:
        return module


def verify_here(case_dir: Path, bundle: Path) -> dict[str, Any]:
    """Run ``bundle`` on the case's pictures here and judge it as the x86 verification did."""
    from gfn_edge.preprocess import normalize
    from gfn_edge.runtimes import open_model

    vset, ref_out, spec, tolerances, meta = load_case(case_dir)
    model = open_model(bundle, backend=meta.get("backend", "auto"))
    mismatch = preprocess_mismatch(model.manifest.preprocess, spec.preprocess)
    inputs = normalize(vset.raw, model.manifest.preprocess) if mismatch and vset.raw is not None else vset.inputs
    report = verify_outputs(ref_out, model.run(inputs), vset, spec, tolerances)
    if mismatch:
        report.failures.insert(0, "preprocess: the manifest says " + "; ".join(mismatch))
        report.passed = False
    described = model.describe()
    return {
        **describe_platform(),
        "backend": described.get("backend"),
        "runtime": runtime_version(str(described.get("backend"))),
        "inference_precision": described.get("inference_precision", model.manifest.precision),
        **({"int8_kernels": described["int8_kernels"]} if "int8_kernels" in described else {}),
        "passed": report.passed,
        "metrics": report.metrics,
        "failures": report.failures,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m gfn_edge.export.verify_device CASE_DIR BUNDLE OUT.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    case_dir, bundle, out = Path(args[0]), Path(args[1]), Path(args[2])
    try:
        result = verify_here(case_dir, bundle)
    except GfnEdgeError as exc:
        result = {**describe_platform(), "passed": False, "metrics": {}, "failures": [f"could not run: {exc}"]}
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
