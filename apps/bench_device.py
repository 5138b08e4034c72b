#!/usr/bin/env python
"""Per-stage benchmark to run on the board itself: how long does one frame take, stage by stage?

    python apps/bench_device.py --detector bundles/retinaface-mnet025-onnx \\
        --recognizer bundles/ghostfacenet-...-onnx [--liveness bundles/minifasnet-v2-2.7-onnx] \\
        --image door.jpg --threads 4 --runs 100 --json bench-device.json

Prints a table (detect, align, embed, liveness, search in a 10k gallery, the whole frame, FPS)
and writes the same numbers as JSON. Medians and p90 over ``--runs`` timed runs after
``--warmup``; every runtime gets ``--threads`` intra-op threads, and OpenCV/BLAS are pinned to
the same count. Only gfn-edge's device side is imported (numpy, OpenCV, one runtime): this app
is a thin front-end of the benchmark engine (``gfn_edge.benchmark.engine``) gfn-bench runs too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--detector", required=True, metavar="BUNDLE", help="detector bundle folder")
    p.add_argument("--recognizer", required=True, metavar="BUNDLE", help="recogniser bundle folder")
    p.add_argument("--liveness", action="append", default=[], metavar="BUNDLE", help="liveness bundle (repeatable: the Silent-Face pair)")
    p.add_argument("--image", metavar="IMAGE", help="picture with one face, fitted into a 640x480 frame (default: a shared/ portrait)")
    p.add_argument("--threads", type=int, default=None, help="threads for every runtime, OpenCV and BLAS (default: physical cores)")
    p.add_argument("--backend", default="auto", help="auto, onnxruntime, openvino or tflite (default: each bundle's own)")
    p.add_argument("--runs", type=int, default=100, help="timed runs per stage (default 100)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    p.add_argument("--gallery-size", type=int, default=10_000, help="synthetic gallery size for the search stage (0 skips; default 10000)")
    p.add_argument("--work", metavar="DIR", help="where the synthetic gallery is cached (default: $TMPDIR/gfn-bench)")
    p.add_argument("--json", metavar="FILE", default="bench-device.json", help="JSON output (default bench-device.json)")
    args = p.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        p.error("--runs and --threads must be positive, --warmup non-negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:  # before numpy loads: its BLAS pool reads these once
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(args.threads))
    from gfn_edge.benchmark.device import run_device_benchmark, table

    try:
        result = run_device_benchmark(
            detector=args.detector,
            recognizer=args.recognizer,
            liveness=args.liveness,
            image=args.image,
            threads=args.threads,
            backend=args.backend,
            runs=args.runs,
            warmup=args.warmup,
            gallery_size=args.gallery_size,
            work=args.work,
        )
    except Exception as exc:  # one readable line for the user at the board
        print(f"bench_device: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(table(result))
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
