"""The one benchmark engine behind gfn-bench, apps/bench_device.py and benchmarks/run.py.

Each entry point is a thin front-end that fills a request and calls one function here:

* :func:`run_benchmark` (gfn-bench, benchmarks/run.py): the model matrix (every bundle and peer
  at every thread count), the end-to-end frame table with the naive baseline, 1:N search,
  import times; written as bench.json, bench.md and latency_fidelity.png;
* :func:`run_device_benchmark` (apps/bench_device.py, on the board): one detector/recogniser
  (+ liveness) pair, stage by stage, at the user's thread count.

Both time frames with :func:`.stages.measure_frame`, so a board's numbers and gfn-bench's
tables come from the same code. Device side: imports numpy, OpenCV and the inference runtimes
only; FLOPs come from the bundles' manifests (counted at export), never from ``onnx`` here.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("gfn_edge.benchmark")

FRAME_PICTURE = ("faces", "pairs", "deepface_img20.jpg")  # one face, fitted into a VGA frame


def default_shared() -> Path | None:
    """shared/ with real photos and peers: $GFN_EDGE_SHARED, else ../shared next to the checkout or cwd."""
    env = os.environ.get("GFN_EDGE_SHARED")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2].parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"]
    return next((c for c in candidates if c.is_dir()), None)


@dataclass
class BenchmarkRequest:
    """Everything :func:`run_benchmark` measures and where it writes (gfn-bench's options, typed)."""

    bundles: list[str] = field(default_factory=list)  # folders searched for bundles
    peers: str | None = None  # peers folder (default: <shared>/peers)
    peer_names: list[str] = field(default_factory=list)  # only these peers (default: all found)
    no_peers: bool = False
    peer_backends: list[str] = field(default_factory=lambda: ["onnxruntime", "openvino", "tflite"])
    openvino_hints: list[str] = field(default_factory=list)  # extra OpenVINO precision hints (f32 always)
    tasks: set[str] = field(default_factory=lambda: {"detect", "embed", "liveness"})
    threads: list[int] = field(default_factory=lambda: [1, 2])
    runs: int = 50
    warmup: int = 10
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    memory: bool = True
    sanity: bool = True
    sanity_pairs: int | None = None
    pipeline: bool = True
    models: bool = True
    frame: str | None = None  # picture with one face (default: a shared/ portrait)
    pipeline_runs: int = 100
    gallery_sizes: list[int] = field(default_factory=lambda: [10_000, 100_000])
    target_ms: float = 8.0
    import_repeats: int = 5
    wait_quiet: float = 0.0
    wait_budget: float = 1200.0
    shared: str | None = None
    work: str | None = None
    out: str = "bench-results"
    progress: Callable[[str], None] | None = None


def _candidates(req: BenchmarkRequest, shared: Path | None, cache: Path, result: dict[str, Any]) -> list[Any]:
    """Bundles found under ``req.bundles`` (plus OpenVINO hint variants) and peers, limited to ``req.tasks``."""
    from gfn_edge.manifest import find_bundles

    from .models import bundle_candidate, peer_candidates, with_precision_hint
    from .peers import find_peers, prepare_peers

    cands = []
    for folder in find_bundles(req.bundles):
        try:
            c = bundle_candidate(folder)
        except Exception as exc:  # a damaged bundle is reported, not fatal
            result["skipped"].append({"bundle": str(folder), "reason": f"{type(exc).__name__}: {exc}"})
            continue
        if c.task in req.tasks:
            cands.append(c)
            if c.backend == "openvino" and c.precision != "int8":
                cands += [with_precision_hint(c, h) for h in req.openvino_hints if h and h != "f32"]
    if req.no_peers:
        return cands
    peers_dir = Path(req.peers) if req.peers else (shared / "peers" if shared else None)
    if peers_dir is None or not peers_dir.is_dir():
        result["skipped"].append({"name": "peers", "reason": f"no peers folder ({peers_dir}); pass --peers"})
        return cands
    found = [(spec, path) for spec, path in find_peers(peers_dir, req.peer_names or None) if spec.task in req.tasks]
    result["warnings"] += prepare_peers([path for _, path in found], cache)
    return cands + [c for c in peer_candidates(found, req.peer_backends, cache) if c.task in req.tasks]


def run_benchmark(req: BenchmarkRequest, skipped: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Everything gfn-bench measures, as one JSON-able dict (also written to ``req.out``)."""
    from gfn_edge.image import read_image

    from . import report
    from .pipeline import PipelineConfig, run_pipeline
    from .stages import default_work_dir, vga_frame
    from .suite import SuiteConfig, import_times, run_suite
    from .system import QuietGate, busy, describe, load_average

    shared = Path(req.shared) if req.shared else default_shared()
    work = Path(req.work) if req.work else default_work_dir()
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"schema": "gfn-bench/1", "system": describe(), "load_before": load_average(), "skipped": list(skipped or []), "warnings": []}
    if busy():
        result["warnings"].append(f"load average {load_average()} was high when the run started: timings are inflated; re-run on an idle machine")
    cands = _candidates(req, shared, work / "peers", result)
    faces = shared / "faces" if shared else None
    gate = QuietGate(req.wait_quiet, req.wait_budget if req.wait_quiet > 0 else 0.0)
    cfg = SuiteConfig(
        gate=gate,
        threads=req.threads,
        runs=req.runs,
        warmup=req.warmup,
        batch_sizes=req.batch_sizes,
        memory=req.memory,
        cache=work / "peers",
        scene=faces / "scenes" / "insightface_t1.jpg" if faces else None,
        portraits=faces / "portraits" if faces else None,
        pairs=faces / "pairs" if faces else None,
        sanity=req.sanity and faces is not None,
        sanity_pairs=req.sanity_pairs,
    )
    if req.pipeline:
        frame_path = Path(req.frame) if req.frame else (shared.joinpath(*FRAME_PICTURE) if shared else None)
        dets = [c for c in cands if c.task == "detect" and c.kind == "bundle"]
        recs = [c for c in cands if c.task == "embed" and c.kind == "bundle"]
        if frame_path is None or not frame_path.is_file():
            result["skipped"].append({"name": "pipeline", "reason": "no frame picture; pass --frame IMAGE with one face"})
        elif not dets or not recs:
            result["skipped"].append({"name": "pipeline", "reason": "needs detector and recogniser bundles"})
        else:
            pcfg = PipelineConfig(
                threads=req.threads, runs=req.pipeline_runs, warmup=req.warmup, gallery_sizes=req.gallery_sizes, work=work, target_ms=req.target_ms, gate=gate
            )
            frame = vga_frame(read_image(frame_path))
            result["pipeline"] = run_pipeline(dets, recs, frame, pcfg, req.progress)
            result["pipeline"]["frame"] = {"source": str(frame_path), "size": [int(frame.shape[1]), int(frame.shape[0])]}
    suite = run_suite(cands if req.models else [], cfg, req.progress)
    result.update(
        models=suite["models"],
        complexity=suite["complexity"],
        sanity=suite["sanity"],
        failures=suite["failures"],
        settings=dict(suite["settings"], pipeline_runs=req.pipeline_runs),
    )
    if req.models:
        from .paired import int8_beside_fp32

        result["int8_vs_fp32"] = int8_beside_fp32(cands, req.threads, runs=max(10, req.runs // 2))
    if req.import_repeats > 0:
        result["import_time"] = import_times(sorted({c.backend for c in cands}) or ["onnxruntime"], req.import_repeats)
    result["load_after"] = load_average()
    _noise_summary(result, gate, report.NOISY)
    if busy():
        result["warnings"].append(f"load average {result['load_after']} was high when the run ended: timings may be inflated")
    write_results(result, Path(req.out), max(req.threads))
    return result


def _noise_summary(result: dict[str, Any], gate: Any, noisy_share: float) -> None:
    rows = result.get("models", []) + (result.get("pipeline") or {}).get("rows", [])
    noisy = [r for r in rows if (r.get("others_busy_max") or 0.0) > noisy_share]
    result["noise"] = {"rows": len(rows), "disturbed_rows": len(noisy), "waited_s": round(gate.waited_s, 1), "repeated_measurements": gate.repeated}
    if noisy:
        result["warnings"].append(
            f"{len(noisy)} of {len(rows)} rows were measured while other processes took over {noisy_share:.0%} of the CPUs "
            f"(marked * in the tables); waited {gate.waited_s:.0f} s for quiet moments and repeated {gate.repeated} measurements"
        )


def write_results(result: dict[str, Any], out: Path, top_threads: int) -> None:
    """bench.json (everything), bench.md (the tables) and latency_fidelity.png (the chart) in ``out``."""
    from . import plot, report

    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2, default=json_default) + "\n")
    (out / "bench.md").write_text(report.render(result) + "\n")
    plot.draw(
        result["models"], top_threads, out / "latency_fidelity.png", f"gfn-bench: latency vs fidelity, {top_threads} thread(s), {result['system']['cpu']}"
    )


def json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def run_device_benchmark(
    detector: str | os.PathLike[str],
    recognizer: str | os.PathLike[str],
    liveness: Sequence[str | os.PathLike[str]] = (),
    image: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    backend: str = "auto",
    runs: int = 100,
    warmup: int = 10,
    gallery_size: int = 10_000,
    work: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """One pair on the board, every stage timed; a JSON-able dict (:func:`.device.table` prints it)."""
    from gfn_edge.detector import Detector
    from gfn_edge.embedder import Embedder
    from gfn_edge.image import read_image
    from gfn_edge.runtimes import physical_cores

    from .models import runtime_threads
    from .probe import peak_rss_mb
    from .stages import default_work_dir, measure_frame, synthetic_gallery, vga_frame
    from .system import describe, load_average

    threads = int(threads or physical_cores())
    shared = default_shared()
    path = Path(image) if image else (shared.joinpath(*FRAME_PICTURE) if shared else None)
    if path is None or not path.is_file():
        raise FileNotFoundError(f"no picture to benchmark on ({path}): pass --image with a photo showing one face")
    frame = vga_frame(read_image(path))
    load_before = load_average()
    det = Detector(detector, backend=backend, threads=threads)
    emb = Embedder(recognizer, backend=backend, threads=threads)
    live = None
    if liveness:
        from gfn_edge.liveness import Liveness

        live = Liveness(list(liveness), backend=backend, threads=threads)
    galleries = {}
    if gallery_size > 0:
        name = f"{gallery_size // 1000}k" if gallery_size % 1000 == 0 else str(gallery_size)
        galleries[name] = synthetic_gallery(Path(work) if work else default_work_dir() / "galleries", gallery_size, emb.dim or 512)
    res = measure_frame(det, emb, frame, runs=runs, warmup=warmup, threads=threads, liveness=live, galleries=galleries)
    stages = {k: v.to_dict() for k, v in res["stages"].items()}
    frame_ms = stages["frame"]["median_ms"]
    return {
        "schema": "gfn-bench-device/1",
        "system": describe(),
        "settings": {"threads": threads, "backend": backend, "runs": runs, "warmup": warmup, "gallery_size": gallery_size, "image": str(path)},
        "models": {
            "detector": {**_describe(det.model), "input": list(det.input_size) if det.input_size else None, "threads_runtime": runtime_threads(det.model)},
            "recognizer": {**_describe(emb.model), "threads_runtime": runtime_threads(emb.model)},
            "liveness": [{**_describe(m.model), "threads_runtime": runtime_threads(m.model)} for m in live.members] if live else [],
        },
        "pinned": res["pinned"],
        "faces": res["faces"],
        "stages": stages,
        "frame_ms": frame_ms,
        "stage_sum_ms": round(sum(stages[k]["median_ms"] for k in stages if k in ("detect", "align", "embed", "liveness") or k.startswith("search_")), 4),
        "fps": round(1000.0 / frame_ms, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "load_average": {"before": load_before, "after": load_average()},
    }


def _describe(model: Any) -> dict[str, Any]:
    m = model.manifest
    return {
        "model": m.model,
        "target": m.target,
        "precision": m.precision,
        "backend": model.backend,
        "threads": model.threads,
        "path": str(model.path),
        "complexity": (m.export or {}).get("flops") or {"note": "FLOPs unknown"},
        **model.settings(),  # the backend's own (onnxruntime's spinning threads, OpenVINO's precision)
    }
