"""``gfn-export --verify-on cortex-a72,cortex-a76``: verify each artifact again on the target ISA.

The x86 verification ran x86 kernels; a board runs onnxruntime's NEON kernels, XNNPACK's ARM
int8/fp16 paths, OpenVINO's ARM plugin. So the artifact is verified a second time on each named
CPU, emulated with qemu-user by ``scripts/arm64.sh`` (the project's wheel with the runtimes
installed as a board's pip gets them): same pictures, same tolerances, against the same reference
outputs. The case goes to the emulated Python as files (:func:`write_case`), the device-side
verifier (:mod:`gfn_edge.export.verify_device`) computes the metrics there with the same code, and
each platform's result is recorded in the manifest under ``verification.platforms``. A bundle
that misses a tolerance on a platform is failed for that platform.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gfn_edge.arg_types import names_given
from gfn_edge.errors import GfnEdgeError
from gfn_edge.manifest import Manifest

from .verify import Tolerances, VerificationReport
from .verify_data import VerificationSet
from .verify_device import CASE_JSON, INPUTS, RAW, REFERENCE, REFERENCE_NOISE

log = logging.getLogger(__name__)

PLATFORMS = {
    "cortex-a72": "Raspberry Pi 4, RK3399 big cores",
    "cortex-a76": "Raspberry Pi 5",
    "cortex-a53": "Raspberry Pi 3, RK3399 little cores",
}
ENV_SCRIPT = "GFN_EDGE_ARM64_SCRIPT"
ENV_SUITE = "GFN_EDGE_VERIFY_ON_SUITE"
TIMEOUT_S = 3600


def parse_platforms(text: str | list[str] | None) -> list[str]:
    """``"cortex-a72,cortex-a76"`` (or a list of such, from the flag repeated) -> the list, each a
    CPU the emulator knows."""
    names = list(dict.fromkeys(n.lower() for n in names_given(text)))
    unknown = [n for n in names if n not in PLATFORMS]
    if unknown:
        known = ", ".join(f"{k} ({v})" for k, v in PLATFORMS.items())
        raise GfnEdgeError(f"--verify-on: unknown CPU {', '.join(unknown)}; known: {known}")
    return names


def arm64_script() -> Path:
    """scripts/arm64.sh of the checkout this package runs from, or ``GFN_EDGE_ARM64_SCRIPT``."""
    chosen = os.environ.get(ENV_SCRIPT)
    path = Path(chosen) if chosen else Path(__file__).resolve().parents[1] / "scripts" / "arm64.sh"
    if not path.is_file():
        raise GfnEdgeError(
            f"--verify-on needs scripts/arm64.sh (not found at {path}): run gfn-export from a gfn-edge checkout or point {ENV_SCRIPT} at the script"
        )
    return path


def write_case(
    folder: Path, vset: VerificationSet, ref_out: dict[str, np.ndarray], spec: dict[str, Any], tolerances: Tolerances, backend: str = "auto"
) -> Path:
    """The verification case as files the emulated Python reads (no pickles: plain npy/npz/JSON)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / INPUTS, np.ascontiguousarray(vset.inputs, dtype=np.float32))
    if vset.raw is not None:
        np.save(folder / RAW, np.ascontiguousarray(vset.raw))
    np.savez(folder / REFERENCE, **{k: np.asarray(v) for k, v in ref_out.items()})
    if vset.reference_noise is not None:
        np.save(folder / REFERENCE_NOISE, np.ascontiguousarray(vset.reference_noise))
    meta = {
        "task": vset.task,
        "names": list(vset.names),
        "letterboxes": [[b.scale, b.width, b.height] for b in vset.letterboxes],
        "pairs": [[int(a), int(b), bool(s)] for a, b, s in vset.pairs],
        "judged": None if vset.judged is None else [bool(j) for j in vset.judged],
        "spec": spec,
        "tolerances": {k: [op, float(v)] for k, (op, v) in tolerances.items()},
        "backend": backend,
    }
    (folder / CASE_JSON).write_text(json.dumps(meta, default=_plain))
    return folder


def run_on_platform(case: Path, bundle: Path, cpu: str, suite: str | None = None) -> dict[str, Any]:
    """Verify ``bundle`` on emulated ``cpu``; the platform entry for the manifest."""
    script = arm64_script()
    suite = suite or os.environ.get(ENV_SUITE) or "bookworm"
    with tempfile.TemporaryDirectory(prefix="gfn-verify-on-") as tmp:
        out = Path(tmp) / "result.json"
        # absolute paths: the emulated verifier runs in the temporary folder, not the caller's directory
        args = [str(Path(case).resolve()), str(Path(bundle).resolve()), str(out)]
        cmd = ["bash", str(script), "--suite", suite, "--cpu", cpu, "--", "python", "-m", "gfn_edge.export.verify_device", *args]
        log.info("verifying %s on emulated %s (%s)", bundle.name, cpu, suite)
        try:
            proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=tmp)
        except subprocess.TimeoutExpired:
            return _failed(cpu, suite, f"timed out after {TIMEOUT_S} s")
        if proc.returncode != 0 or not out.is_file():
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            if proc.returncode == 2 and "arm64.sh:" in tail:
                raise GfnEdgeError(f"--verify-on {cpu}: the emulated environment is not available:\n{tail}")
            return _failed(cpu, suite, f"the emulated verifier exited {proc.returncode}: {tail}")
        result = json.loads(out.read_text())
    result["platform"] = cpu
    result["suite"] = suite
    return result


def run_on_platforms(case: Path, bundle: Path, platforms: list[str]) -> list[dict[str, Any]]:
    """``run_on_platform`` for each CPU at once (each is one emulated process), results in ``platforms``' order."""
    if len(platforms) < 2:
        return [run_on_platform(case, bundle, cpu) for cpu in platforms]
    with ThreadPoolExecutor(max_workers=len(platforms)) as pool:
        return list(pool.map(lambda cpu: run_on_platform(case, bundle, cpu), platforms))


def verify_on_platforms(
    bundle: Path, vset: VerificationSet, ref_out: dict[str, np.ndarray], spec: dict[str, Any], tolerances: Tolerances, platforms: list[str], work_dir: Path
) -> list[dict[str, Any]]:
    """Each platform's verification of ``bundle``, in order; logged as it goes."""
    case = write_case(Path(tempfile.mkdtemp(prefix="verify-on-case-", dir=work_dir)), vset, ref_out, spec, tolerances)
    try:
        results = run_on_platforms(case, bundle, platforms)
        for cpu, entry in zip(platforms, results):
            if entry["passed"]:
                log.info("%s verified on %s (%s, %s)", bundle.name, cpu, entry.get("runtime"), entry.get("inference_precision"))
            else:
                log.error("%s FAILED verification on %s: %s", bundle.name, cpu, "; ".join(entry.get("failures", [])))
        return results
    finally:
        shutil.rmtree(case, ignore_errors=True)


def record_platforms(
    manifest: Manifest,
    bundle: Path,
    vset: VerificationSet,
    ref_out: dict[str, np.ndarray],
    report: VerificationReport,
    platforms: list[str],
    work_dir: Path,
    emulated: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Verify ``bundle`` on each platform and write where it was verified into ``manifest.verification``.

    The host's own verification is the first entry (its metrics stay in ``verification.metrics``);
    the manifest is rewritten in the bundle folder. ``emulated``: the platforms' results for the
    same model files, already computed (the INT8 search verifies its candidates there).
    """
    if emulated is None or [e.get("platform") for e in emulated] != platforms:
        emulated = verify_on_platforms(bundle, vset, ref_out, manifest.spec, report.tolerances, platforms, work_dir)
    host = {**host_platform_entry(manifest), "passed": report.passed, "metrics": "verification.metrics"}
    manifest.verification["platforms"] = [host, *emulated]
    manifest.write(bundle)
    return emulated


def platform_failures(platforms: list[dict[str, Any]]) -> list[str]:
    """``"on cortex-a72: box_err_px = 19.9 > 0.5"`` for every failed check of every platform."""
    return [f"on {p['platform']}: {f}" for p in platforms if not p.get("passed") for f in (p.get("failures") or ["failed"])]


def host_platform_entry(manifest: Manifest) -> dict[str, Any]:
    """Where the export's own verification ran (recorded beside the emulated ones)."""
    from gfn_edge.runtimes.onnx_signed_weights import u8s8_kernels_exact
    from gfn_edge.runtimes.openvino_backend import int8_kernels_hold, int8_weight_bits, pinned_precision

    from .verify_device import describe_platform, runtime_version

    backend = manifest.backend
    precision = pinned_precision(manifest) if backend == "openvino" else manifest.precision
    entry = {**describe_platform(), "platform": "host", "backend": backend, "runtime": runtime_version(backend), "inference_precision": precision}
    if backend == "openvino" and manifest.precision == "int8":
        entry["int8_kernels"] = int8_kernels_hold(weight_bits=int8_weight_bits(manifest))  # as the verification opened it (OpenVINOModel's rule)
    if backend == "onnxruntime" and manifest.precision == "int8":
        entry["int8_kernels"] = "u8s8" if u8s8_kernels_exact() else "u8u8"  # the weights as OnnxRuntimeModel loads them here
    return entry


def verify_existing(
    bundles: list[Path],
    platforms: list[str],
    verify_images: str | os.PathLike[str] | None = None,
    mirror: str | os.PathLike[str] | None = None,
    max_images: int | None = 48,
    exclude: set[str] | None = None,
    write: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    checkpoints: list[Path] | None = None,
) -> list[dict[str, Any]]:
    """Verify bundles that already exist on this machine and on each platform, against a fresh reference run.

    Bundles of a user's own checkpoint name the file, not where it is: pass it in ``checkpoints``
    (matched to bundles by the name the export gave it, and refused when its sha256 is not the
    one the bundle records).

    One verification case per model (the reference model runs once for all of its bundles); each
    bundle is judged here and on every platform on exactly the same pictures. ``exclude`` names
    pictures to leave out (an INT8 bundle's calibration set). With ``write`` the results replace
    ``verification.platforms`` in each manifest. Returns one row per bundle: model, target,
    precision, host entry, platform entries; ``on_row`` sees each as soon as it is done.
    """
    from gfn_edge.errors import CheckpointError
    from gfn_edge.manifest import read_manifest

    from .liveness_data import reference_noise_logits
    from .reference import reference_for, resolve_spec, resolved_digest
    from .verify import default_tolerances
    from .verify_data import build_verification_set
    from .verify_device import verify_here

    manifests = [read_manifest(b) for b in bundles]
    rows: list[dict[str, Any]] = []
    by_model: dict[tuple[str, tuple[int, ...] | None], list[Manifest]] = {}
    for m in manifests:
        size = tuple(m.preprocess.input_size) if m.task == "detect" else None  # only detectors take another size
        by_model.setdefault((m.model, size), []).append(m)
    with tempfile.TemporaryDirectory(prefix="gfn-verify-existing-") as work:
        # each file read once: resolve_spec hashes it to name it, and that digest is the one to check
        given = {spec.name: (spec, path) for spec, path in (resolve_spec(str(c), None, None, False, mirror) for c in checkpoints or [])}
        for (model, size), group in by_model.items():
            if model in given:
                spec, checkpoint = given[model]
                recorded = group[0].source.get("sha256")
                if recorded and resolved_digest(spec, checkpoint) != recorded:
                    raise CheckpointError(f"{checkpoint} is not the checkpoint {model}'s bundles were exported from (sha256 differs from the manifest's)")
                spec = spec.with_input_size(size) if size is not None else spec
            else:
                spec, checkpoint = resolve_spec(model, None, size, False, mirror)
            vset = build_verification_set(spec, verify_images, mirror=mirror, exclude=exclude, max_images=max_images)
            ref = reference_for(spec, checkpoint, digest=resolved_digest(spec, checkpoint))
            ref_out = ref.run(vset.inputs)
            vset.reference_noise = reference_noise_logits(ref, vset)  # as gfn-export's own reference pass
            for m in group:
                tol = default_tolerances(spec.task, m.precision)
                case = write_case(Path(tempfile.mkdtemp(dir=work)), vset, ref_out, spec.to_dict(), tol)
                host = {**host_platform_entry(m), **verify_here(case, m.path), "platform": "host"}
                emulated = run_on_platforms(case, m.path, platforms)
                shutil.rmtree(case, ignore_errors=True)
                rows.append(
                    {
                        "model": m.model,
                        "target": m.target,
                        "precision": m.precision,
                        "bundle": str(m.path),
                        "pictures": len(vset),
                        "host": host,
                        "platforms": emulated,
                    }
                )
                if write:
                    m.verification["platforms"] = [host, *emulated]
                    m.write(m.path)
                if on_row:
                    on_row(rows[-1])
    return rows


_KEY_METRICS = {
    "embed": ("cos_mean", "cos_min", "pair_acc_delta", "pair_decisions_agree", "pair_decisions_expected_agree"),
    "detect": ("recall", "precision", "box_err_px", "landmark_err_px", "landmark_nme", "landmark_nme_large", "output_rel_err"),
    "liveness": ("prob_err", "prob_err_mean", "decision_agree", "decision_flips_robust"),
}


def format_platforms(results: list) -> str:
    """Bundle x platform: verdict, runtime, precision that ran, and the metrics the tolerances judge."""
    rows = [["model", "target", "platform", "cpu", "runtime", "ran", "result", "metrics"]]
    for r in results:
        for p in getattr(r, "platforms", None) or []:
            task = "embed" if "cos_min" in p.get("metrics", {}) else "detect" if "recall" in p.get("metrics", {}) else "liveness"
            metrics = ", ".join(f"{k} {_short(p['metrics'][k])}" for k in _KEY_METRICS[task] if k in p.get("metrics", {}))
            rows.append(
                [
                    r.model,
                    r.target,
                    p["platform"],
                    str(p.get("cpu", "-")),
                    str(p.get("runtime", "-")),
                    str(p.get("inference_precision", "-")),
                    "PASS" if p.get("passed") else "FAIL",
                    metrics or "; ".join(p.get("failures", [])),
                ]
            )
    if len(rows) == 1:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3e}" if value != 0 and abs(value) < 1e-3 else f"{value:.6g}"
    return str(value)


def _failed(cpu: str, suite: str, why: str) -> dict[str, Any]:
    return {"platform": cpu, "suite": suite, "machine": "aarch64", "cpu": cpu, "passed": False, "metrics": {}, "failures": [why]}


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} into a verification case")
