"""gfn-bench: latency, throughput, memory, size, parameters, MACs and fidelity of bundles and peers.

    gfn-bench --bundles artifacts/ --peers ../shared/peers --threads 1,2 --out bench-results/

Writes ``bench.json`` (everything), ``bench.md`` (tables) and ``latency_fidelity.png`` to
``--out`` and prints the Markdown. With detector and recogniser bundles of the same target it
also measures the end-to-end frame (detect + align + embed) and the naive ONNX Runtime
baseline; ``--no-pipeline`` skips that. Thread counts are fixed per row and read back from
each runtime; medians (and p90) are over ``--runs`` timed runs after ``--warmup``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from ..cli_errors import run_cli
from ..errors import UsageError

log = logging.getLogger("gfn_edge.benchmark")


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _positive(text: str) -> int:
    return _ints(text)[0]


def default_shared() -> Path | None:
    """shared/ with real photos and peers: $GFN_EDGE_SHARED, else ../shared next to the checkout or cwd."""
    env = os.environ.get("GFN_EDGE_SHARED")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2].parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"]
    return next((c for c in candidates if c.is_dir()), None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gfn-bench", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundles", action="append", default=[], metavar="DIR", help="folder searched for bundles (repeatable; a bundle folder itself works)")
    p.add_argument("--peers", metavar="DIR", help="peers folder (default: <shared>/peers when found)")
    p.add_argument("--peer", action="append", default=[], metavar="NAME", help="only these peers (repeatable; default: all found)")
    p.add_argument("--no-peers", action="store_true", help="measure no peers")
    p.add_argument("--peer-backends", default="onnxruntime,openvino,tflite", help="runtimes to run peers on (default: every runtime able to)")
    p.add_argument("--openvino-hints", default="", help="also run OpenVINO bundles with these precision hints, e.g. bf16 (default: none; f32 always)")
    p.add_argument("--task", default="detect,embed,liveness", help="tasks to measure (default: all)")
    p.add_argument("--threads", type=_ints, default=[1, 2], help="comma-separated thread counts (default 1,2)")
    p.add_argument("--runs", type=_positive, default=50, help="timed runs per measurement (default 50)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    p.add_argument("--batch-sizes", type=_ints, default=[1, 8, 32], help="recogniser throughput batches (default 1,8,32)")
    p.add_argument("--no-memory", action="store_true", help="skip peak-RSS subprocesses")
    p.add_argument("--no-sanity", action="store_true", help="skip the real-photo checks")
    p.add_argument("--sanity-pairs", type=_positive, default=None, help="labelled pairs used for recogniser sanity (default: all)")
    p.add_argument("--no-pipeline", action="store_true", help="skip the end-to-end frame benchmark")
    p.add_argument("--no-models", action="store_true", help="skip the per-model table (only the end-to-end frame benchmark)")
    p.add_argument("--frame", metavar="IMAGE", help="picture with one face, fitted into a 640x480 frame (default: a shared/ portrait)")
    p.add_argument("--pipeline-runs", type=_positive, default=100, help="timed runs per pipeline stage (default 100)")
    p.add_argument("--gallery-sizes", type=_ints, default=[10_000, 100_000], help="synthetic gallery sizes (default 10000,100000)")
    p.add_argument("--target-ms", type=float, default=8.0, help="frame target for the verdict (default 8 ms)")
    p.add_argument("--import-repeats", type=int, default=5, help="fresh interpreters per import-time figure (0 skips; default 5)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="before each row wait up to S seconds for other processes to leave the CPUs (default 0: just record how busy)")
    p.add_argument("--wait-budget", type=float, default=1200.0, metavar="S", help="total waiting allowed in a run (default 1200)")
    p.add_argument("--shared", metavar="DIR", help="shared/ folder with photos and peers (default: auto)")
    p.add_argument("--work", metavar="DIR", help="scratch folder for galleries and cleaned peer graphs")
    p.add_argument("--out", metavar="DIR", default="bench-results", help="where bench.json, bench.md and latency_fidelity.png go")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def run_benchmark(args: argparse.Namespace, skipped: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Everything gfn-bench measures, as one JSON-able dict (also written to ``args.out``)."""
    from gfn_edge.image import read_image
    from gfn_edge.manifest import find_bundles

    from . import plot, report
    from .models import bundle_candidate, peer_candidates, with_precision_hint
    from .peers import find_peers
    from .pipeline import PipelineConfig, run_pipeline
    from .stages import default_work_dir, vga_frame
    from .suite import SuiteConfig, import_times, run_suite
    from .system import QuietGate, busy, describe, load_average

    shared = Path(args.shared) if args.shared else default_shared()
    work = Path(args.work) if args.work else default_work_dir()
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = {t.strip() for t in args.task.split(",") if t.strip()}
    result: dict[str, Any] = {"schema": "gfn-bench/1", "system": describe(), "load_before": load_average(), "skipped": list(skipped or []), "warnings": []}
    if busy():
        result["warnings"].append(f"load average {load_average()} was high when the run started: timings are inflated; re-run on an idle machine")

    cands = []
    for folder in find_bundles(args.bundles):
        try:
            c = bundle_candidate(folder)
        except Exception as exc:  # a damaged bundle is reported, not fatal
            result["skipped"].append({"bundle": str(folder), "reason": f"{type(exc).__name__}: {exc}"})
            continue
        if c.task in tasks:
            cands.append(c)
            if c.backend == "openvino" and c.precision != "int8":
                cands += [with_precision_hint(c, h) for h in args.openvino_hints.split(",") if h.strip() and h.strip() != "f32"]
    if not args.no_peers:
        peers_dir = Path(args.peers) if args.peers else (shared / "peers" if shared else None)
        if peers_dir is None or not peers_dir.is_dir():
            result["skipped"].append({"name": "peers", "reason": f"no peers folder ({peers_dir}); pass --peers"})
        else:
            found = find_peers(peers_dir, args.peer or None)
            cands += [c for c in peer_candidates(found, args.peer_backends.split(",")) if c.task in tasks]
    faces = shared / "faces" if shared else None
    gate = QuietGate(args.wait_quiet, args.wait_budget if args.wait_quiet > 0 else 0.0)
    cfg = SuiteConfig(
        gate=gate,
        threads=args.threads,
        runs=args.runs,
        warmup=args.warmup,
        batch_sizes=args.batch_sizes,
        memory=not args.no_memory,
        cache=work / "peers",
        scene=faces / "scenes" / "insightface_t1.jpg" if faces else None,
        portraits=faces / "portraits" if faces else None,
        pairs=faces / "pairs" if faces else None,
        sanity=not args.no_sanity and faces is not None,
        sanity_pairs=args.sanity_pairs,
    )
    progress = (lambda msg: print(f"[gfn-bench] {msg}", file=sys.stderr, flush=True)) if args.verbose else None

    if not args.no_pipeline:
        frame_path = Path(args.frame) if args.frame else (faces / "pairs" / "deepface_img20.jpg" if faces else None)
        dets = [c for c in cands if c.task == "detect" and c.kind == "bundle"]
        recs = [c for c in cands if c.task == "embed" and c.kind == "bundle"]
        if frame_path is None or not frame_path.is_file():
            result["skipped"].append({"name": "pipeline", "reason": "no frame picture; pass --frame IMAGE with one face"})
        elif not dets or not recs:
            result["skipped"].append({"name": "pipeline", "reason": "needs detector and recogniser bundles"})
        else:
            pcfg = PipelineConfig(threads=args.threads, runs=args.pipeline_runs, warmup=args.warmup, gallery_sizes=args.gallery_sizes,
                                  work=work, target_ms=args.target_ms, gate=gate)
            frame = vga_frame(read_image(frame_path))
            result["pipeline"] = run_pipeline(dets, recs, frame, pcfg, progress)
            result["pipeline"]["frame"] = {"source": str(frame_path), "size": [int(frame.shape[1]), int(frame.shape[0])]}
    suite = run_suite([] if args.no_models else cands, cfg, progress)
    result.update(models=suite["models"], complexity=suite["complexity"], sanity=suite["sanity"], failures=suite["failures"],
                  settings=dict(suite["settings"], pipeline_runs=args.pipeline_runs))
    if args.import_repeats > 0:
        backends = sorted({c.backend for c in cands}) or ["onnxruntime"]
        result["import_time"] = import_times(backends, args.import_repeats)
    result["load_after"] = load_average()
    rows = result.get("models", []) + (result.get("pipeline") or {}).get("rows", [])
    noisy = [r for r in rows if (r.get("others_busy_max") or 0.0) > report.NOISY]
    result["noise"] = {"rows": len(rows), "disturbed_rows": len(noisy), "waited_s": round(gate.waited_s, 1), "repeated_measurements": gate.repeated}
    if noisy:
        result["warnings"].append(
            f"{len(noisy)} of {len(rows)} rows were measured while other processes took over {report.NOISY:.0%} of the CPUs "
            f"(marked * in the tables); waited {gate.waited_s:.0f} s for quiet moments and repeated {gate.repeated} measurements"
        )
    if busy():
        result["warnings"].append(f"load average {result['load_after']} was high when the run ended: timings may be inflated")
    (out / "bench.json").write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    md = report.render(result)
    (out / "bench.md").write_text(md + "\n")
    top = max(args.threads)
    plot.draw(result["models"], top, out / "latency_fidelity.png", f"gfn-bench: latency vs fidelity, {top} thread(s), {result['system']['cpu']}")
    return result


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


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
