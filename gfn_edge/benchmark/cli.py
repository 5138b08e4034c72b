"""gfn-bench: latency, throughput, memory, size, parameters, MACs and fidelity of bundles and peers.

A thin front-end: options in, :class:`~gfn_edge.benchmark.engine.BenchmarkRequest` out, the
engine measures (the same engine behind apps/bench_device.py and benchmarks/run.py).

    gfn-bench --bundles artifacts/ --peers ../shared/peers --threads 1,2 --out bench-results/

Writes ``bench.json`` (everything), ``bench.md`` (tables) and ``latency_fidelity.png`` to
``--out`` and prints the Markdown. With detector and recogniser bundles of the same target it
also measures the end-to-end frame (detect + align + embed) and the naive ONNX Runtime
baseline; ``--no-pipeline`` skips that. Thread counts are fixed per row and read back from
each runtime; medians (and p90) are over ``--runs`` timed runs after ``--warmup``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..arg_types import names_given
from ..cli_errors import run_cli
from ..errors import UsageError
from .engine import BenchmarkRequest, default_shared
from .engine import run_benchmark as engine_run

__all__ = ["build_parser", "default_shared", "main", "request_from_args", "run_benchmark"]


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _names(given: list[str] | None, default: str) -> list[str]:
    """A list option given comma-separated, repeated, or both -> its names, each once, in order
    (argparse alone kept only the last of a repeated flag)."""
    return names_given(given if given is not None else default)


def _unique(given: list[int] | None, default: list[int]) -> list[int]:
    return list(dict.fromkeys(given)) if given else list(default)


def _positive(text: str) -> int:
    return _ints(text)[0]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gfn-bench", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundles", action="append", default=[], metavar="DIR", help="folder searched for bundles (repeatable; a bundle folder itself works)")
    p.add_argument("--peers", metavar="DIR", help="peers folder (default: <shared>/peers when found)")
    p.add_argument("--peer", action="append", default=[], metavar="NAME", help="only these peers (repeatable; default: all found)")
    p.add_argument("--no-peers", action="store_true", help="measure no peers")
    p.add_argument("--peer-backends", action="append", help="runtimes to run peers on, comma-separated or repeated (default: every runtime able to)")
    p.add_argument("--openvino-hints", action="append", help="also run OpenVINO bundles with these precision hints, e.g. bf16 (default: none; f32 always)")
    p.add_argument("--task", action="append", help="tasks to measure, comma-separated or repeated (default: detect, embed, liveness)")
    p.add_argument("--threads", type=_ints, action="extend", help="thread counts, comma-separated or repeated (default 1,2)")
    p.add_argument("--runs", type=_positive, default=50, help="timed runs per measurement (default 50)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    p.add_argument("--batch-sizes", type=_ints, action="extend", help="recogniser throughput batches (default 1,8,32)")
    p.add_argument("--no-memory", action="store_true", help="skip peak-RSS subprocesses")
    p.add_argument("--no-sanity", action="store_true", help="skip the real-photo checks")
    p.add_argument("--sanity-pairs", type=_positive, default=None, help="labelled pairs used for recogniser sanity (default: all)")
    p.add_argument("--no-pipeline", action="store_true", help="skip the end-to-end frame benchmark")
    p.add_argument("--no-models", action="store_true", help="skip the per-model table (only the end-to-end frame benchmark)")
    p.add_argument("--frame", metavar="IMAGE", help="picture with one face, fitted into a 640x480 frame (default: a shared/ portrait)")
    p.add_argument("--pipeline-runs", type=_positive, default=100, help="timed runs per pipeline stage (default 100)")
    p.add_argument("--gallery-sizes", type=_ints, action="extend", help="synthetic gallery sizes (default 10000,100000)")
    p.add_argument("--target-ms", type=float, default=8.0, help="frame target for the verdict (default 8 ms)")
    p.add_argument("--import-repeats", type=int, default=5, help="fresh interpreters per import-time figure (0 skips; default 5)")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each row wait up to S seconds for other processes to leave the CPUs (default 0: just record how busy)",
    )
    p.add_argument("--wait-budget", type=float, default=1200.0, metavar="S", help="total waiting allowed in a run (default 1200)")
    p.add_argument("--shared", metavar="DIR", help="shared/ folder with photos and peers (default: auto)")
    p.add_argument("--work", metavar="DIR", help="scratch folder for galleries and cleaned peer graphs")
    p.add_argument("--out", metavar="DIR", default="bench-results", help="where bench.json, bench.md and latency_fidelity.png go")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def request_from_args(args: argparse.Namespace) -> BenchmarkRequest:
    """The engine's request for parsed gfn-bench options."""
    progress = (lambda msg: print(f"[gfn-bench] {msg}", file=sys.stderr, flush=True)) if args.verbose else None
    return BenchmarkRequest(
        bundles=list(args.bundles),
        peers=args.peers,
        peer_names=list(args.peer),
        no_peers=args.no_peers,
        peer_backends=_names(args.peer_backends, "onnxruntime,openvino,tflite"),
        openvino_hints=_names(args.openvino_hints, ""),
        tasks=set(_names(args.task, "detect,embed,liveness")),
        threads=_unique(args.threads, [1, 2]),
        runs=args.runs,
        warmup=args.warmup,
        batch_sizes=_unique(args.batch_sizes, [1, 8, 32]),
        memory=not args.no_memory,
        sanity=not args.no_sanity,
        sanity_pairs=args.sanity_pairs,
        pipeline=not args.no_pipeline,
        models=not args.no_models,
        frame=args.frame,
        pipeline_runs=args.pipeline_runs,
        gallery_sizes=_unique(args.gallery_sizes, [10_000, 100_000]),
        target_ms=args.target_ms,
        import_repeats=args.import_repeats,
        wait_quiet=args.wait_quiet,
        wait_budget=args.wait_budget,
        shared=args.shared,
        work=args.work,
        out=args.out,
        progress=progress,
    )


def run_benchmark(args: argparse.Namespace, skipped: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """gfn-bench's options through the engine (:func:`gfn_edge.benchmark.engine.run_benchmark`)."""
    return engine_run(request_from_args(args), skipped)


def _main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.bundles and args.no_peers:
        print("gfn-bench: nothing to measure: give --bundles DIR and/or a peers folder", file=sys.stderr)
        return 2
    missing = [b for b in args.bundles if not Path(b).exists()] + [p for p in (args.peers, args.frame) if p and not Path(p).exists()]
    if missing:  # checked before minutes of measuring, not reported after
        raise UsageError(f"{', '.join(map(str, missing))} does not exist")
    try:
        result = run_benchmark(args)
    except KeyboardInterrupt:
        return 130
    print((Path(args.out) / "bench.md").read_text())
    return 0 if result.get("models") or result.get("pipeline") else 1


def main(argv: list[str] | None = None) -> int:
    """gfn-bench, with every error ending as one line ``gfn-bench: error: ...`` (``--debug``: and its traceback)."""
    return run_cli("gfn-bench", _main, argv, error_status=1)


if __name__ == "__main__":
    sys.exit(main())
