"""gfn-eval: benchmark a reference model and any number of bundles side by side.

    gfn-eval verify lfw.bin cfp_fp.bin shared/faces/pairs/pairs.csv --reference ghostfacenet-dsitweed-w0.5-e16 --bundle out/ghostfacenet-dsitweed-w0.5-e16-onnx
    gfn-eval ijb /data/IJB_release/IJBB --reference ghostfacenet-dsitweed-w0.5-e16 --bundle ...
    gfn-eval detect --widerface-gt ground_truth --widerface-images WIDER_val/images --reference retinaface-mnet025 --bundle ...
    gfn-eval detect --images photos/ --reference retinaface-mnet025 --bundle ...   (agreement, no ground truth)

Tables are printed as Markdown; OUT/<command>.json holds every number, OUT/<command>.md the
tables, and OUT/*.png the ROC / PR curves.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from gfn_edge.arg_types import count
from gfn_edge.cli_errors import run_cli
from gfn_edge.errors import GfnEdgeError

from .report import format_result, write_outputs
from .verification import DEFAULT_FARS, MIN_NEGATIVES_FACTOR

log = logging.getLogger(__name__)


def _size(text: str) -> str | tuple[int, int]:
    if text in ("model", "original"):
        return text
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'model', 'original' or WIDTHxHEIGHT, got {text!r}") from None
    if w <= 0 or h <= 0 or w % 32 or h % 32:
        raise argparse.ArgumentTypeError(f"{text}: sides must be positive multiples of 32")
    return w, h


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference", help="registry name or checkpoint path of the reference model (run in its original framework)")
    p.add_argument("--arch", help="registry architecture of a --reference checkpoint path (detected if omitted)")
    p.add_argument("--bundle", action="append", default=[], metavar="DIR", help="a bundle folder written by gfn-export (repeatable)")
    p.add_argument("--backend", default="auto", help="backend for bundles: auto, onnxruntime, openvino, tflite")
    p.add_argument("--threads", type=count(1), help="inference threads for bundles (default: physical cores)")
    p.add_argument("--mirror", help="folder mirroring upstream weights (default: $GFN_EDGE_MIRROR)")
    p.add_argument("--out", default="gfn-eval-results", help="folder for the JSON, Markdown and PNG outputs")
    p.add_argument("-v", "--verbose", action="store_true")


def _recogniser_options(p: argparse.ArgumentParser, fars: tuple[float, ...]) -> None:
    p.add_argument("--no-flip", dest="flip", action="store_false", help="embed crops only (default: crop + mirrored crop, summed)")
    p.add_argument("--far", type=float, action="append", help=f"FAR for TAR@FAR (repeatable; default {', '.join(f'{f:g}' for f in fars)})")
    p.add_argument(
        "--min-negatives-factor",
        type=float,
        default=MIN_NEGATIVES_FACTOR,
        help="report TAR@FAR only with at least FACTOR/FAR different-person pairs (default 10; 0 reports always)",
    )
    p.add_argument("--batch-size", type=count(1), default=64)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gfn-eval", description="Accuracy benchmarks for reference models and exported bundles.")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("verify", help="1:1 face verification (same person?) on insightface .bin files and pairs CSVs; not artifact verification")
    v.add_argument("data", nargs="+", help="lfw.bin / cfp_fp.bin / agedb_30.bin ..., or pairs.csv (image_a,image_b,same[,source]) or its folder")
    _common(v)
    _recogniser_options(v, DEFAULT_FARS)
    v.add_argument("--folds", type=count(2), default=10, help="k of k-fold accuracy (default 10)")
    v.add_argument(
        "--fold-assignment",
        choices=["auto", "contiguous", "interleaved"],
        default="auto",
        help="contiguous (insightface protocol; default for .bin) or interleaved (pair i -> fold i%%k; default for CSVs)",
    )
    v.add_argument(
        "--detector",
        default="reference",
        help="what finds and aligns faces in CSV photos, for every model alike: 'reference' (PyTorch RetinaFace-mnet0.25) or a detection bundle folder",
    )
    v.add_argument(
        "--bundle-detector",
        metavar="BUNDLE",
        help="a detection bundle that finds and aligns the faces for every model after the first (CSV photos only; "
        "the first keeps --detector's): a whole exported pipeline against the reference pipeline, e.g. the INT8 one",
    )

    j = sub.add_parser("ijb", help="IJB-B / IJB-C 1:1 template verification (TAR@FAR)")
    j.add_argument("root", help="the IJBB or IJBC release folder (holding meta/ and loose_crop/)")
    _common(j)
    from .ijb import IJB_FARS

    _recogniser_options(j, IJB_FARS)
    j.add_argument("--subset", choices=["IJBB", "IJBC"], help="which meta files to read (detected from the file names)")
    j.add_argument("--no-detector-score", dest="detector_score", action="store_false", help="do not weight crops by face-detection score")

    d = sub.add_parser("detect", help="WIDER FACE val AP, and/or agreement with the reference detector on any pictures")
    _common(d)
    d.add_argument("--widerface-gt", help="folder with wider_face_val.mat and wider_{easy,medium,hard}_val.mat")
    d.add_argument("--widerface-images", help="WIDER_val/images (one folder per event)")
    d.add_argument("--predictions", action="append", default=[], metavar="DIR", help="also score a folder of WIDER-format prediction .txt files")
    d.add_argument("--images", help="a folder of pictures: agreement of each bundle with the reference (needs --reference)")
    d.add_argument("--max-images", type=count(1), help="use at most this many pictures, spread over the set (quick runs)")
    d.add_argument(
        "--ref-size",
        type=_size,
        default="model",
        help="reference input: 'model' (its registry size, letterboxed like the bundles; default), 'original', or WxH",
    )
    d.add_argument("--score-threshold", type=float, default=0.02, help="WIDER FACE detection threshold (default 0.02, as test_widerface.py)")
    d.add_argument("--save-predictions", action="store_true", help="write WIDER-format predictions under OUT/widerface-predictions/")
    d.add_argument("--mat-reader", choices=["auto", "scipy", "builtin"], default="auto", help="how to read .mat files (auto: scipy when installed)")
    return p


def configure_logging(verbose: bool) -> None:
    from gfn_edge.export.cli import configure_logging as export_logging

    export_logging(verbose)


def _embedders(args: argparse.Namespace) -> list[Any]:
    from .runners import bundle_embedder, reference_embedder, unique_names

    models = []
    if args.reference:
        models.append(reference_embedder(args.reference, args.arch, args.mirror, args.batch_size))
    models += [bundle_embedder(b, args.backend, args.threads, args.batch_size) for b in args.bundle]
    unique_names(models)
    return models


def _detectors(args: argparse.Namespace) -> list[Any]:
    from .runners import bundle_detector, reference_detector, unique_names

    models = []
    if args.reference:
        models.append(reference_detector(args.reference, args.ref_size, args.arch, args.mirror))
    models += [bundle_detector(b, args.backend, args.threads) for b in args.bundle]
    unique_names(models)
    return models


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from . import suites

    out = Path(args.out)
    if args.command == "verify" and args.bundle_detector:
        suites.require_two_pipelines(bool(args.reference) + len(args.bundle))
    if args.command in ("verify", "ijb"):
        models = _embedders(args)
        if not models:
            raise ValueError("nothing to evaluate: give --reference and/or --bundle")
    if args.command == "verify":
        return [
            suites.evaluate_pairs(
                args.data,
                models,
                out,
                flip=args.flip,
                folds=args.folds,
                fold_assignment=args.fold_assignment,
                fars=args.far or DEFAULT_FARS,
                min_negatives_factor=args.min_negatives_factor,
                detector=args.detector,
                mirror=args.mirror,
                batch_size=args.batch_size,
                bundle_detector=args.bundle_detector,
            )
        ]
    if args.command == "ijb":
        from .ijb import IJB_FARS

        return [
            suites.evaluate_ijb(
                args.root,
                models,
                out,
                subset=args.subset,
                flip=args.flip,
                detector_score=args.detector_score,
                fars=args.far or IJB_FARS,
                min_negatives_factor=args.min_negatives_factor,
                batch_size=args.batch_size,
            )
        ]
    if not args.widerface_gt and not args.images:
        raise ValueError("detect needs --widerface-gt (with --widerface-images or --predictions) and/or --images")
    if args.images and not (args.reference and args.bundle):
        raise ValueError("--images measures agreement of bundles with the reference detector: give --reference and at least one --bundle")
    models = _detectors(args)
    if not models and not args.predictions:
        raise ValueError("nothing to evaluate: give --reference, --bundle or --predictions")
    results = []
    reference = models[0].name if args.reference else None
    if args.widerface_gt:
        results.append(
            suites.evaluate_widerface(
                args.widerface_gt,
                args.widerface_images,
                models,
                out,
                reference=reference,
                predictions=args.predictions,
                max_images=args.max_images,
                score_threshold=args.score_threshold,
                save_predictions=args.save_predictions,
                mat_reader=args.mat_reader,
            )
        )
    if args.images:
        results.append(suites.evaluate_agreement(args.images, models[0], models[1:], args.max_images))
    return results


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        results = run(args)
    except (GfnEdgeError, ValueError, FileNotFoundError, ImportError) as exc:
        print(f"gfn-eval: error: {exc}", file=sys.stderr)
        return 2
    for i, result in enumerate(results):
        stem = args.command if i == 0 else f"{args.command}-{result['task']}"
        js, md = write_outputs(result, args.out, stem)
        print(format_result(result))
        log.info("results written to %s and %s", js, md)
    return 0


def main(argv: list[str] | None = None) -> int:
    """gfn-eval, with every error ending as one line ``gfn-eval: error: ...`` (``--debug``: and its traceback)."""
    return run_cli("gfn-eval", _main, argv, error_status=2)


if __name__ == "__main__":
    sys.exit(main())
