"""gfn-export: turn a registry model or a checkpoint into verified deployable bundles."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path

from gfn_edge.arg_types import count, input_size
from gfn_edge.cli_errors import run_cli
from gfn_edge.errors import GfnEdgeError
from gfn_edge.registry import REGISTRY

from .int8_options import CALIBRATION_METHODS, DEFAULT_DISTILL_STEPS, DEFAULT_ROUNDING_STEPS, MAX_SECONDS, MAX_STEPS
from .report import format_results
from .targets import TARGETS


def configure_logging(verbose: bool = False) -> None:
    """Our progress at INFO; the converters' chatter (litert, JAX, TF, NNCF) only when verbose."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gfn_edge").setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        for noisy in ("torchao", "root", "absl", "jax", "nncf"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def _bounded(parse: type, unit: str, lowest: float, highest: float):
    """An argparse type: ``parse`` of the text, within the bounds export_model holds the same options to."""
    kind = "whole number" if parse is int else "number"

    def check(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind} of {unit}") from None
        if not lowest <= value <= highest:
            raise argparse.ArgumentTypeError(f"{text} {unit} is outside {lowest:g} .. {highest:g}")
        return value

    return check


_seconds = _bounded(float, "seconds", 0.0, MAX_SECONDS)
_steps = _bounded(int, "steps", 1, MAX_STEPS)


def _per_task(steps: dict[str, int]) -> str:
    return ", ".join(f"{n} for {task}" for task, n in steps.items())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gfn-export",
        description="Export a face model to ONNX, TFLite and OpenVINO and verify every artifact against the original framework.",
        epilog=f"models: {', '.join(REGISTRY)}\ntargets: all, {', '.join(TARGETS)}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=False, help="registry name or checkpoint path (.pth, .npz, .h5)")
    p.add_argument(
        "--target",
        action="append",
        help="targets, comma-separated or the flag repeated (--target onnx --target tflite-int8), or 'all' (default: onnx)",
    )
    p.add_argument("--out", default="artifacts", help="output folder; bundles go to OUT/<model>-<target>/")
    p.add_argument("--arch", help="registry architecture of a checkpoint path (detected from the file if omitted)")
    p.add_argument("--input-size", type=input_size, help="detector input WIDTHxHEIGHT (default: the registry's, 640x480)")
    p.add_argument(
        "--verify-images",
        help="folder of real photos to verify on (default: $GFN_EDGE_VERIFY_IMAGES; with neither, an INT8 run holds half of --calib's folder, at most 300 pictures, out of the calibration to verify on)",
    )
    p.add_argument("--max-verify-images", type=count(1), default=48, help="detector verification pictures (default 48)")
    p.add_argument("--tolerance", action="append", metavar="KEY=VALUE", help="override a tolerance, e.g. cos_min=0.9995 (repeatable)")
    p.add_argument("--force", action="store_true", help="keep artifacts that fail verification (manifest says passed: false)")
    p.add_argument("--random-weights", action="store_true", help="seeded random weights (shape/speed checks only, never accuracy)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mirror", help="folder mirroring upstream weights (default: $GFN_EDGE_MIRROR)")
    p.add_argument("--calib", help="INT8 calibration: a folder of photos or a saved set (.npz) from gfn-calib")
    p.add_argument("--calib-method", choices=CALIBRATION_METHODS, help="INT8 calibration method (default: per backend)")
    p.add_argument(
        "--calib-samples",
        type=count(1),
        default=None,
        help="calibration samples to use (default 100 detector pictures, 300 faces; a folder of more than twice as many pictures is drawn from)",
    )
    p.add_argument(
        "--calib-augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add varied copies (mirrored, exposure, blur, noise) of each calibration face: 2 with --calib-augment, none with "
        "--no-calib-augment; by default as many as a folder of fewer than 100 faces needs to reach 200 (recorded)",
    )
    p.add_argument("--int8-io", action="store_true", help="tflite-int8: int8 input/output tensors instead of float")
    p.add_argument(
        "--int8-float",
        action="append",
        default=[],
        metavar="GROUP",
        help="INT8: keep this layer group in float in the first attempt (repeatable; names as in the manifest's sensitivity list)",
    )
    p.add_argument(
        "--int8-debug",
        action="store_true",
        help="INT8: per-layer error of the chosen artifact against FP32 on the verification faces (table, plot) in OUT/<model>-<target>-int8-debug/",
    )
    p.add_argument(
        "--int8-rounding-seconds",
        type=_seconds,
        metavar="S",
        help="INT8 remedy after the float groups: learned rounding (AdaRound) of the int8 weights for at most S seconds (default 30; 0 skips it)",
    )
    p.add_argument(
        "--int8-rounding-steps",
        type=_steps,
        metavar="N",
        help=f"INT8: learned rounding's schedule in steps (default per task: {_per_task(DEFAULT_ROUNDING_STEPS)}); "
        "the same steps give the same weights every run, and --int8-rounding-seconds caps them",
    )
    p.add_argument(
        "--int8-distill-seconds",
        type=_seconds,
        metavar="S",
        help="INT8 remedy after plain calibration fails: label-free distillation QAT for at most S seconds (default 150; 0 skips it)",
    )
    p.add_argument(
        "--int8-distill-steps",
        type=_steps,
        metavar="N",
        help=f"INT8: the distillation's schedule in steps (default per task: {_per_task(DEFAULT_DISTILL_STEPS)}); "
        "the same steps give the same weights every run, and --int8-distill-seconds caps them",
    )
    p.add_argument(
        "--int8-search-seconds",
        type=_seconds,
        metavar="S",
        help="INT8: time budget of each target's search, counted from its first attempt (the INT8 preparation, done once per run, is not in it); no attempt starts after S seconds and the best one so far is reported (default 600; 0: no limit)",
    )
    p.add_argument(
        "--no-int8-bias-correction",
        dest="int8_bias_correction",
        action="store_false",
        help="INT8: quantise onnx-int8 / tflite-int8 without first correcting the model's biases for int8 (on by default; NNCF corrects its own)",
    )
    p.add_argument("--max-float-groups", type=count(0), help="INT8 remedy: most layer groups that may be kept in float (default: half)")
    p.add_argument(
        "--verify-on",
        action="append",
        metavar="CPUS",
        help="also verify every artifact on these emulated ARM CPUs, e.g. cortex-a72,cortex-a76 or the flag repeated (scripts/arm64.sh; recorded under verification.platforms)",
    )
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--list", action="store_true", help="list models and targets, then exit")
    p.add_argument("--report", metavar="DIR", help="print the tables of the bundles under DIR (fidelity, size; INT8 details), from their manifests, then exit")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    if args.list:
        for name, spec in REGISTRY.items():
            print(f"{name:32s} {spec.task:8s} {spec.description}")
        print("\ntargets:", ", ".join(TARGETS), "(or all)")
        return 0
    if args.report:
        from gfn_edge.manifest import find_bundles, read_manifest

        from .report import bundle_table, int8_table

        found = [read_manifest(folder) for folder in find_bundles([args.report])]
        print(bundle_table(found))
        if any(m.precision == "int8" for m in found):
            print()
            print(int8_table(found))
        return 0
    if not args.model:
        print("gfn-export: error: --model is required (see --list)", file=sys.stderr)
        return 2
    from .api import export_model

    options = {
        "int8_io": args.int8_io,
        "calib_method": args.calib_method,
        "calib_samples": args.calib_samples,
        "calib_augment": args.calib_augment,
        "max_float_groups": args.max_float_groups,
        "float_groups": args.int8_float,
        "int8_debug": args.int8_debug,
        "distill_seconds": args.int8_distill_seconds,
        "rounding_seconds": args.int8_rounding_seconds,
        "distill_steps": args.int8_distill_steps,
        "rounding_steps": args.int8_rounding_steps,
        "search_seconds": args.int8_search_seconds,
        "bias_correction": args.int8_bias_correction,
    }
    calib = None
    try:
        verify_on = None
        if args.verify_on:
            from .verify_on import parse_platforms

            verify_on = parse_platforms(args.verify_on)
        if args.calib:
            calib = args.calib  # a folder or saved set; checked against the model's spec inside export
        results = export_model(
            args.model,
            args.target or "onnx",
            args.out,
            arch=args.arch,
            input_size=args.input_size,
            verify_images=args.verify_images,
            tolerances=args.tolerance,
            force=args.force,
            random_weights=args.random_weights,
            seed=args.seed,
            mirror=args.mirror,
            calib=calib,
            options=options,
            max_verify_images=args.max_verify_images,
            verify_on=verify_on,
        )
    except (GfnEdgeError, ValueError, FileNotFoundError, ImportError) as exc:
        print(f"gfn-export: error: {exc}", file=sys.stderr)
        return 2
    print(format_results(results))
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in results], indent=2, default=str) + "\n")
    failed = [r for r in results if not r.passed]
    if verify_on:
        from .verify_on import format_platforms, platform_failures

        print(format_platforms(results))
        for r in results:
            for line in platform_failures(r.platforms):
                print(f"FAILED {r.model} {r.target} {line}", file=sys.stderr)
    platform_failed = any(not p.get("passed") for r in results for p in r.platforms)
    if failed:
        for r in failed:
            kept = " (kept: --force)" if r.bundle else " (not kept)"
            print(f"FAILED {r.model} {r.target}{kept}: {'; '.join(r.failures)}", file=sys.stderr)
    return 1 if failed or platform_failed else 0


def main(argv: list[str] | None = None) -> int:
    """gfn-export, with every error ending as one line ``gfn-export: error: ...`` (``--debug``: and its traceback)."""
    return run_cli("gfn-export", _main, argv, error_status=2)


if __name__ == "__main__":
    sys.exit(main())
