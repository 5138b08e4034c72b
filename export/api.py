"""``export_model``: reference -> artifacts -> verification -> bundles. The gfn-export command calls this.

For each target the artifact is built in a scratch folder, opened with the device-side runtime
(the code a board runs), compared with the reference on real data, and only then moved into
``<out>/<model>-<target>/``. An artifact outside tolerance is reported as failed and not
shipped, unless ``force=True`` keeps it with ``"passed": false`` in its manifest.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gfn_edge.errors import GfnEdgeError, VerificationError
from gfn_edge.manifest import read_manifest
from gfn_edge.metrics import best_threshold_accuracy

from .context import ExportContext
from .flops import manifest_flops
from .held_out import held_out_verification
from .int8_options import check_int8_options
from .liveness_data import reference_noise_logits
from .manifest_writer import build_manifest, manifest_header, now_utc
from .reference import Reference, reference_for, resolve_spec, resolved_digest
from .targets import TARGETS, expand_targets, run_target
from .tolerance_keys import check_tolerance_overrides
from .tools import versions
from .verification_floor import check_int8_verification
from .verify import VerificationReport, default_tolerances, pair_scores, parse_tolerance_overrides, preprocess_mismatch, verify_outputs
from .verify_data import VerificationSet, build_verification_set

log = logging.getLogger(__name__)


@dataclass
class ExportResult:
    model: str
    target: str
    precision: str
    passed: bool
    bundle: Path | None  # None when a failed artifact was not kept
    metrics: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    tolerances: dict[str, Any] = field(default_factory=dict)
    size_bytes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # the export itself broke (converter error etc.)
    notes: dict[str, Any] = field(default_factory=dict)
    platforms: list[dict[str, Any]] = field(default_factory=list)  # --verify-on: one entry per emulated CPU


class Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        log.info("%s ...", name)
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 3)
            log.info("%s done in %.1f s", name, self.seconds[name])


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as exc:
        raise GfnEdgeError(f"output folder {out} is not writable: {exc}") from exc


def _replace_dir(src: Path, dst: Path) -> None:
    """Move a finished bundle into place; an older bundle is only removed once the new one is there."""
    old = dst.with_name(dst.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    if old.exists():
        shutil.rmtree(old)


@dataclass
class _Run:
    """Everything one gfn-export run shares between its targets: the reference and its outputs."""

    spec: Any
    ref: Reference
    ref_out: dict[str, np.ndarray]
    vset: VerificationSet
    calib: Any
    out: Path
    options: dict[str, Any]
    tolerances: list[str] | None
    force: bool
    verify_on: list[str] | None
    timer: Timer
    reference_desc: dict[str, Any]
    data_desc: dict[str, Any]
    shared: dict[str, Any] = field(default_factory=dict)

    def verify(self, bundle: Path, precision: str) -> VerificationReport:
        return verify_artifact(bundle, self.vset, self.ref_out, self.ref, precision, self.tolerances)


def export_model(
    model: str | os.PathLike[str],
    targets: str | list[str] = "onnx",
    out: str | os.PathLike[str] = "artifacts",
    *,
    arch: str | None = None,
    input_size: tuple[int, int] | None = None,
    verify_images: str | os.PathLike[str] | None = None,
    tolerances: list[str] | None = None,
    force: bool = False,
    random_weights: bool = False,
    seed: int = 0,
    mirror: str | os.PathLike[str] | None = None,
    calib: Any = None,
    options: dict[str, Any] | None = None,
    max_verify_images: int | None = 48,
    verify_on: list[str] | None = None,
) -> list[ExportResult]:
    """Export ``model`` (registry name or checkpoint path) to each target and verify every artifact.

    Raises for problems before any artifact exists (unknown model or target, unreadable
    checkpoint, unwritable folder, missing package); per-target failures are returned.
    ``verify_on`` (e.g. ``["cortex-a72"]``) verifies each artifact again on those emulated CPUs
    (:mod:`gfn_edge.export.verify_on`); the results go to ``verification.platforms``.
    """
    names = expand_targets(targets)
    out = Path(out)
    _check_writable(out)
    timer = Timer()
    options = dict(options or {})
    check_int8_options(options)
    spec, checkpoint = resolve_spec(model, arch, input_size, random_weights, mirror)
    check_tolerance_overrides(tolerances, spec.task)
    int8 = any(TARGETS[n].needs_calibration for n in names)
    held = held_out_verification(calib, verify_images) if int8 else None
    if int8:
        calib = _calibration(calib, spec, mirror, options, seed, timer, exclude=set(held.names) if held else None)
    vset = _verification_data(spec, held.folder if held else verify_images, mirror, calib, max_verify_images, timer, held.others if held else None)
    if held:
        vset.description.update(held.describe())
    if int8:
        check_int8_verification(vset, calib, force=force, held_out=held is not None)
    ref, ref_out = _reference(spec, checkpoint, vset, seed, timer)
    spec = ref.spec = measured_threshold(spec, ref_out, vset)  # the manifests are written from ref.spec
    run = _Run(
        spec=spec,
        ref=ref,
        ref_out=ref_out,
        vset=vset,
        calib=calib,
        out=out,
        options=options,
        tolerances=tolerances,
        force=force,
        verify_on=verify_on,
        timer=timer,
        reference_desc={**ref.framework, "weights": ref.source.get("weights")},
        data_desc=dict(vset.description),
    )
    with tempfile.TemporaryDirectory(prefix="gfn-export-") as work:
        return [_export_target(run, name, Path(work)) for name in names]


def measured_threshold(spec: Any, ref_out: dict[str, np.ndarray], vset: VerificationSet) -> Any:
    """``spec`` with a default same-person threshold where it has none (a user's own recogniser,
    :func:`.checkpoints.checkpoint_spec`) and the verification has labelled pairs: the reference's
    best-accuracy threshold on them, said in the description. Without pairs it stays unset and the
    device asks for one (``gfn-edge compare --threshold``) rather than borrow the registry's 0.3,
    at which the w0.5-e16 student calls 97 % of the pairs folder's different-person pairs the same
    person (w0.5-e6 94 %, w1.3-e1 15 %; their best thresholds 0.754, 0.823 and 0.525)."""
    if spec.task != "embed" or spec.default_threshold is not None or not vset.pairs:
        return spec
    scores, same = pair_scores(ref_out["embedding"], vset)
    accuracy, threshold = best_threshold_accuracy(scores, same)
    note = f"default threshold: the reference's best pair accuracy ({100 * accuracy:.1f} %) on the {len(same)} labelled pairs it was verified on"
    log.info("%s: %s, %.4f", spec.name, note, threshold)
    return replace(spec, default_threshold=round(float(threshold), 4), description=f"{spec.description}; {note}")


def _calibration(calib: Any, spec: Any, mirror: Any, options: dict[str, Any], seed: int, timer: Timer, exclude: set[str] | None = None) -> Any:
    """The INT8 calibration set (given, loaded or built from photos with the reference face finder),
    without the pictures named in ``exclude`` (held out to verify on, :mod:`.held_out`)."""
    from gfn_edge.calib import resolve_calibration

    from .faces import ReferenceFaces

    with timer.stage("calibration set"):
        return resolve_calibration(
            calib,
            spec,
            faces=ReferenceFaces(mirror=mirror),
            exclude=exclude,
            num_samples=options.get("calib_samples"),
            augment=options.get("calib_augment"),
            seed=seed,
        )


def _verification_data(
    spec: Any, verify_images: Any, mirror: Any, calib: Any, max_images: int | None, timer: Timer, not_held_out: frozenset[str] | None = None
) -> VerificationSet:
    """The real pictures every artifact is judged on; calibration pictures never verify
    (INT8 ranges fitted on a picture would flatter it), nor, where verification is the
    calibration folder's held-out part (:mod:`.held_out`), the folder's ``not_held_out`` pictures."""
    with timer.stage("verification data"):
        exclude = set(calib.source_images) if calib is not None and hasattr(calib, "source_images") else set()
        exclude |= not_held_out or set()
        return build_verification_set(spec, verify_images, mirror=mirror, exclude=exclude or None, max_images=max_images)


def _reference(spec: Any, checkpoint: Any, vset: VerificationSet, seed: int, timer: Timer) -> tuple[Reference, dict[str, np.ndarray]]:
    """The model in its own framework, and its outputs on the verification data."""
    with timer.stage("load reference"):
        bn_images = None
        if checkpoint is None and spec.family != "ghostfacenet":  # random weights: BN statistics from real pictures
            bn_images = [vset.inputs[i : i + 4] for i in range(0, min(len(vset), 16), 4)]
        ref = reference_for(spec, checkpoint, seed=seed, bn_images=bn_images, digest=resolved_digest(spec, checkpoint))
    with timer.stage("reference inference"):
        ref_out = ref.run(vset.inputs)
        vset.reference_noise = reference_noise_logits(ref, vset)  # liveness: the floor an INT8 error is read against
    return ref, ref_out


def _export_target(run: _Run, name: str, work_dir: Path) -> ExportResult:
    """One target: build in a staging folder, verify, then publish (or report failed). A
    converter crash fails this target, not the whole run; the SDK's own errors propagate."""
    info = TARGETS[name]
    result = ExportResult(model=run.spec.name, target=name, precision=info.precision, passed=False, bundle=None)
    t = Timer()
    staging = Path(tempfile.mkdtemp(prefix=f".{run.spec.name}-{name}-", dir=run.out))
    try:
        manifest = _build_bundle(run, name, info, staging, work_dir, result, t)
        _verify_bundle(run, name, info, staging, work_dir, manifest, result, t)
        _publish(run, name, staging, manifest, result)
    except GfnEdgeError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except Exception as exc:  # a converter crash fails this target, not the whole run
        shutil.rmtree(staging, ignore_errors=True)
        result.error = f"{type(exc).__name__}: {exc}"
        result.failures = [f"export failed: {result.error}"]
        log.exception("%s %s: export failed", run.spec.name, name)
    result.seconds = {**run.timer.seconds, **{k.split(": ", 1)[1]: v for k, v in t.seconds.items()}}
    return result


def _build_bundle(run: _Run, name: str, info: Any, staging: Path, work_dir: Path, result: ExportResult, t: Timer) -> Any:
    """Run the target's converter into ``staging`` and write its manifest (verification follows)."""
    metadata = manifest_header(run.ref.spec, run.ref.source)
    ctx = ExportContext(
        ref=run.ref,
        bundle_dir=staging,
        work_dir=work_dir,
        metadata=metadata,
        calibration=run.calib,
        options=run.options,
        sample=run.vset.inputs,
        verify=run.verify,
        shared=run.shared,
        verify_on=_platform_check(run, work_dir) if run.verify_on and info.precision == "int8" else None,
    )
    with t.stage(f"{name}: export"):
        artifact = run_target(name, ctx)
    if run.options.get("int8_debug") and info.precision == "int8":
        with t.stage(f"{name}: int8 debug"):
            artifact.notes["int8_debug"] = _int8_debug(run, name, ctx, staging)
    result.notes = artifact.notes
    manifest = build_manifest(
        metadata,
        info,
        staging,
        artifact,
        tools={**versions("gfn-edge", "numpy"), **artifact.tools},
        export={"created": now_utc(), "notes": artifact.notes, "flops": manifest_flops(staging, artifact.files, work_dir)},
    )
    manifest.write(staging)
    result.size_bytes = artifact.size_bytes(staging)
    return manifest


def _platform_check(run: _Run, work_dir: Path) -> Callable[[Path, dict[str, tuple[str, float]]], list[dict[str, Any]]]:
    """The INT8 search's check of a candidate on the CPUs named by ``verify_on`` (the same case and
    tolerances the bundle is verified on there afterwards)."""
    from .verify_on import verify_on_platforms

    def check(folder: Path, tolerances: dict[str, tuple[str, float]]) -> list[dict[str, Any]]:
        return verify_on_platforms(folder, run.vset, run.ref_out, read_manifest(folder).spec, tolerances, run.verify_on, work_dir)

    return check


def _int8_debug(run: _Run, name: str, ctx: ExportContext, staging: Path) -> dict[str, Any]:
    """``--int8-debug``: per-layer error of the chosen INT8 artifact on the judged verification
    faces, written to ``<out>/<model>-<target>-int8-debug/`` (kept whether the artifact passes or
    not: a failing one is what it is for). A debugger error is logged, never fails the export."""
    from .int8_debug import debug_export

    judged = run.vset.judged if run.vset.judged is not None and run.vset.judged.any() else np.ones(len(run.vset), bool)
    try:
        return debug_export(name, ctx, staging, run.vset.inputs[judged], run.out / f"{run.spec.name}-{name}-int8-debug", run.vset, run.ref_out)
    except Exception as exc:  # the artifact is still verified and reported
        log.exception("%s %s: the INT8 debugger failed", run.spec.name, name)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _verify_bundle(run: _Run, name: str, info: Any, staging: Path, work_dir: Path, manifest: Any, result: ExportResult, t: Timer) -> None:
    """Judge the staged bundle on the device runtime against the reference (and on emulated ARM
    CPUs with ``verify_on``); the report goes into the result and the manifest."""
    with t.stage(f"{name}: verify"):
        report = run.verify(staging, info.precision)
    result.metrics, result.failures, result.passed = report.metrics, report.failures, report.passed
    result.tolerances = {k: f"{op} {v:g}" for k, (op, v) in report.tolerances.items()}
    manifest.verification = report.to_dict(run.reference_desc, run.data_desc)
    if run.verify_on and (report.passed or run.force):
        from .verify_on import record_platforms

        with t.stage(f"{name}: verify on {','.join(run.verify_on)}"):
            # an INT8 search verified its choice there already (the same model files): reused
            checked = run.shared.get(f"int8-platforms:{name}") if info.precision == "int8" else None
            result.platforms = record_platforms(manifest, staging, run.vset, run.ref_out, report, run.verify_on, work_dir, emulated=checked)
    manifest.export["seconds"] = {**run.timer.seconds, **{k.split(": ", 1)[1]: v for k, v in t.seconds.items()}}
    manifest.export["size_bytes"] = result.size_bytes
    manifest.write(staging)


def _publish(run: _Run, name: str, staging: Path, manifest: Any, result: ExportResult) -> None:
    """A passing (or forced) bundle moves into ``<out>/<model>-<target>/``; a failing one leaves
    only ``<model>-<target>.failed.json`` saying why."""
    if result.passed or run.force:
        target_dir = run.out / f"{run.spec.name}-{name}"
        _replace_dir(staging, target_dir)
        result.bundle = target_dir
        return
    (run.out / f"{run.spec.name}-{name}.failed.json").write_text(_json(manifest.to_dict()))
    shutil.rmtree(staging, ignore_errors=True)
    log.error("%s %s FAILED verification: %s", run.spec.name, name, "; ".join(result.failures))


def verify_artifact(
    bundle: Path,
    vset: VerificationSet,
    ref_out: dict[str, np.ndarray],
    ref: Reference,
    precision: str,
    overrides: list[str] | None = None,
    backend: str = "auto",
) -> VerificationReport:
    """Run a bundle with the device runtime on ``vset`` and judge it against the reference outputs.

    The artifact gets the pictures preprocessed as its own manifest says, as a device would feed
    it, so a manifest that misstates colour order or normalisation fails verification too.
    """
    from gfn_edge.preprocess import normalize
    from gfn_edge.runtimes import open_model

    check_tolerance_overrides(overrides, ref.spec.task)
    tol = parse_tolerance_overrides(overrides, default_tolerances(ref.spec.task, precision))
    model = open_model(bundle, backend=backend)
    mismatch = preprocess_mismatch(model.manifest.preprocess, ref.spec.preprocess)
    inputs = normalize(vset.raw, model.manifest.preprocess) if mismatch and vset.raw is not None else vset.inputs
    report = verify_outputs(ref_out, model.run(inputs), vset, ref.spec, tol)
    if mismatch:
        report.failures.insert(0, "preprocess: the manifest says " + "; ".join(mismatch))
        report.passed = False
    return report


def _json(data: Any) -> str:
    import json

    return json.dumps(data, indent=2, default=str) + "\n"


def raise_on_failure(results: list[ExportResult]) -> None:
    failed = [r for r in results if not r.passed]
    if failed:
        lines = [f"{r.model} {r.target}: {'; '.join(r.failures)}" for r in failed]
        raise VerificationError("verification failed:\n  " + "\n  ".join(lines))
