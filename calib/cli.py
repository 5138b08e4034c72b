"""gfn-calib: build and inspect INT8 calibration sets.

The installed ``gfn-calib`` command is :func:`gfn_edge.export.calib_cli.main`, which runs this
one with the reference face detector for recogniser and liveness sets (calibration does not
import the export side itself). Called directly, :func:`main` builds detector sets and inspects
any set; pass ``faces_for`` to build the others.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Callable, Optional

from gfn_edge.arg_types import count, input_size
from gfn_edge.cli_errors import run_cli
from gfn_edge.errors import GfnEdgeError
from gfn_edge.registry import ModelSpec, get_spec

from .faces import CalibrationFaces


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gfn-calib", description="Build and inspect INT8 calibration sets.")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="make a calibration set for a model from a folder of photos")
    b.add_argument("--model", required=True, help="registry name, or (through gfn-calib) a checkpoint file as gfn-export takes it (the set records the name)")
    b.add_argument("--images", required=True, help="folder of ordinary photos (searched recursively)")
    b.add_argument("--out", required=True, help="output .npz (a readable .json is written beside it)")
    b.add_argument("--samples", type=count(1), help="cap on samples (default 100 detector pictures / 300 faces)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="varied copies of each sample: 2 with --augment, none with --no-augment; by default enough to bring a small folder to 200",
    )
    b.add_argument("--input-size", type=input_size, help="detector input WIDTHxHEIGHT (must match the export's)")
    b.add_argument("--min-face-size", type=float, default=40.0)
    b.add_argument("--no-quality-gates", action="store_true", help="keep faces the device's quality gates would reject")
    b.add_argument("--exclude", action="append", default=[], help="picture file name to leave out (repeatable)")
    b.add_argument("--mirror", help="weights mirror folder (for the reference face detector)")
    i = sub.add_parser("inspect", help="print a set's provenance and statistics")
    i.add_argument("set")
    i.add_argument("--json", action="store_true")
    return p


FacesFor = Callable[[Optional[str]], CalibrationFaces]  # weights mirror (or None) -> a face finder


def _main(argv: list[str] | None = None, faces_for: FacesFor | None = None, spec_for: Callable[[str], ModelSpec] = get_spec) -> int:
    """Run gfn-calib; ``faces_for(mirror)`` supplies the face finder recogniser and liveness sets need,
    ``spec_for(model)`` the model's spec (the export side also reads checkpoint files)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gfn_edge").setLevel(logging.INFO)
    from .build import build_calibration_set
    from .dataset import CalibrationSet

    try:
        if args.command == "build":
            spec = spec_for(args.model)
            if args.input_size:
                spec = spec.with_input_size(args.input_size)
            cset = build_calibration_set(
                spec,
                args.images,
                num_samples=args.samples,
                seed=args.seed,
                augment=args.augment,
                faces=faces_for(args.mirror) if faces_for is not None and spec.task != "detect" else None,
                exclude=set(args.exclude),
                min_face_size=args.min_face_size,
                quality_gates=not args.no_quality_gates,
            )
            path = cset.save(args.out)
            print(json.dumps({"saved": str(path), **cset.summary()}, indent=2))
            return 0
        cset = CalibrationSet.load(args.set)
        summary = cset.summary()
        if args.json:
            print(json.dumps({**summary, "manifest": cset.manifest}, indent=2))
        else:
            for k, v in summary.items():
                print(f"{k:20s} {v}")
            for rel, why in cset.manifest.get("skipped", [])[:20]:
                print(f"  skipped {rel}: {why}")
        return 0
    except (GfnEdgeError, ValueError, OSError) as exc:
        print(f"gfn-calib: error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None, faces_for: FacesFor | None = None, spec_for: Callable[[str], ModelSpec] = get_spec) -> int:
    """gfn-calib, with every error ending as one line ``gfn-calib: error: ...`` (``--debug``: and its traceback)."""
    return run_cli("gfn-calib", lambda args: _main(args, faces_for, spec_for), argv, error_status=2)


if __name__ == "__main__":
    sys.exit(main())
