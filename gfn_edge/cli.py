"""gfn-edge: run exported bundles on pictures from the shell, one JSON object per line on stdout.

    gfn-edge analyze --detector DET --recognizer REC IMAGE...
    gfn-edge compare --detector DET --recognizer REC IMAGE_A IMAGE_B
    gfn-edge gallery check PATH   (see gfn_edge/gallery/cli.py)
    gfn-edge info BUNDLE...

Exit status: 0 success; 1 bad input (unreadable picture, no face to compare, wrong or damaged
bundle, missing backend); 2 bad command line; 3 an unexpected error (a bug). Messages go to
stderr, results to stdout; ``--debug`` adds tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .arg_types import count
from .checks import check_number, check_threshold, clamp_threads
from .cli_errors import run_cli
from .errors import GfnEdgeError, UsageError

log = logging.getLogger("gfn_edge.cli")


class CliError(UsageError):
    """A problem with what the user gave us: reported in one line, exit status 1."""


def _common(p: argparse.ArgumentParser, recognizer_required: bool) -> None:
    p.add_argument("--detector", required=True, metavar="BUNDLE", help="detector bundle folder from gfn-export (e.g. retinaface-mnet025-onnx)")
    p.add_argument("--recognizer", required=recognizer_required, metavar="BUNDLE", help="recogniser bundle folder (e.g. ghostfacenet-...-onnx)")
    p.add_argument("--backend", default="auto", help="auto, onnxruntime, openvino or tflite (default: auto, the bundle's own)")
    p.add_argument("--threads", type=count(1), help="inference threads (default: physical cores)")
    p.add_argument("--score-threshold", type=float, help="detector score threshold (default: the detector manifest's)")
    p.add_argument("--flip", action="store_true", help="average each embedding with the mirrored face's (slower, a bit more accurate)")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gfn-edge",
        description="Detect, align, embed and compare faces with bundles exported by gfn-export.",
        epilog="Results go to stdout as JSON (one object per line); messages to stderr.",
    )
    parser.add_argument("--version", action="version", version=f"gfn-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("analyze", help="faces, landmarks and embeddings of each picture", description="Print one JSON line per picture.")
    _common(p, recognizer_required=False)
    p.add_argument("--max-faces", type=count(1), help="keep at most this many faces per picture (the largest)")
    p.add_argument("--min-face-size", type=float, default=0.0, help="drop faces whose shorter box side is under this many pixels")
    p.add_argument("--no-embedding", action="store_true", help="leave embeddings out of the output")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=_analyze)

    p = sub.add_parser("compare", help="are the largest faces of two pictures the same person?", description="Print one JSON line.")
    _common(p, recognizer_required=True)
    p.add_argument("--threshold", type=float, help="same-person cosine threshold (default: the recogniser manifest's)")
    p.add_argument("image_a", metavar="IMAGE_A")
    p.add_argument("image_b", metavar="IMAGE_B")
    p.set_defaults(func=_compare)

    from .gallery.cli import add_gallery_commands

    add_gallery_commands(sub)
    p = sub.add_parser("info", help="what a bundle is and where it was verified", description="Print one JSON line per bundle.")
    p.add_argument("bundles", nargs="+", metavar="BUNDLE")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    p.set_defaults(func=_info)
    return parser


def _analyzer(args: argparse.Namespace, **kwargs: Any):
    from .analyzer import FaceAnalyzer
    from .detector import Detector
    from .embedder import Embedder
    from .quality import QualityGates

    args.threads = clamp_threads(args.threads, "--threads")
    if args.score_threshold is not None:
        check_number(args.score_threshold, "--score-threshold", 0.0, 1.0, lo_open=True)

    detector = Detector(args.detector, backend=args.backend, threads=args.threads, score_threshold=args.score_threshold)
    recognizer = Embedder(args.recognizer, backend=args.backend, threads=args.threads, flip=args.flip) if args.recognizer else None
    return FaceAnalyzer(detector, recognizer, gates=QualityGates(), **kwargs)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _analyze(args: argparse.Namespace) -> int:
    from .image import read_image

    check_number(args.min_face_size, "--min-face-size", 0.0)
    analyzer = _analyzer(args, max_faces=args.max_faces, min_face_size=args.min_face_size)
    failed = 0
    for path in args.images:
        try:
            faces = analyzer.analyze(read_image(path))
        except GfnEdgeError as exc:  # one bad picture must not lose the others' results
            failed += 1
            print(f"gfn-edge: error: {exc}", file=sys.stderr)
            _emit({"image": path, "error": str(exc)})
            continue
        log.info("%s: %d face(s)", path, len(faces))
        _emit({"image": path, "faces": [f.to_dict(embedding=not args.no_embedding) for f in faces]})
    return 1 if failed else 0


def _compare(args: argparse.Namespace) -> int:
    from .analyzer import largest_face
    from .image import read_image

    analyzer = _analyzer(args)
    threshold = check_threshold(args.threshold, "--threshold") if args.threshold is not None else analyzer.threshold
    if threshold is None:
        raise CliError(f"{args.recognizer}: its manifest records no default_threshold; pass --threshold")
    faces = []
    for path in (args.image_a, args.image_b):
        face = largest_face(analyzer.analyze(read_image(path)))
        if face is None:
            raise CliError(f"no face found in {path}")
        faces.append(face)
    sim = faces[0].similarity(faces[1])
    _emit(
        {
            "similarity": round(sim, 6),
            "same": bool(sim >= threshold),
            "threshold": float(threshold),
            "image_a": args.image_a,
            "image_b": args.image_b,
            "faces": [{"box": f.to_dict()["box"], "score": round(f.score, 5), "passed": f.passed, "rejected_reasons": f.rejected_reasons} for f in faces],
        }
    )
    return 0


def bundle_info(bundle: str) -> dict[str, Any]:
    """A bundle's identity and its verification: the export machine's and each platform's (--verify-on)."""
    from .manifest import read_manifest

    m = read_manifest(bundle)
    v = m.verification or {}
    where = []
    for p in v.get("platforms") or []:
        entry = {k: p.get(k) for k in ("platform", "machine", "cpu", "emulated", "os", "runtime", "inference_precision", "passed")}
        if isinstance(p.get("metrics"), dict):
            entry["metrics"] = p["metrics"]
        if p.get("failures"):
            entry["failures"] = p["failures"]
        where.append(entry)
    return {
        "bundle": str(bundle),
        "model": m.model,
        "task": m.task,
        "target": m.target,
        "precision": m.precision,
        "backend": m.backend,
        "signature": m.signature,
        "verified": bool(v.get("passed")),
        "metrics": v.get("metrics", {}),
        "tolerances": v.get("tolerances", {}),
        "verified_on": where or None,
    }


def _info(args: argparse.Namespace) -> int:
    for bundle in args.bundles:
        info = bundle_info(bundle)
        _emit(info)
        places = info["verified_on"] or []
        summary = ", ".join(
            f"{p['platform']} ({p.get('cpu')}, {p.get('runtime')}, {p.get('inference_precision')}): {'passed' if p.get('passed') else 'FAILED'}" for p in places
        )
        print(f"{bundle}: verified {'on ' + summary if places else 'on the export machine only (no --verify-on)'}", file=sys.stderr)
    return 0


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("gfn_edge").setLevel(logging.INFO if verbose else logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("gfn-edge", _main, argv, expected=(CliError,))


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
