"""The model matrix: every model x backend x precision x threads x input size, measured alike.

For each candidate (a bundle on its runtime, or a peer on each runtime able to run its file)
and each thread count: single-input latency (median, p90), throughput at several batch sizes
for recognisers, and peak RSS in a fresh process. Per model: file size, parameters and MACs
counted from its graph at export (read from its manifest), fidelity from its manifest's
verification, and a sanity check on real photos. Everything lands in one JSON-able dict that :mod:`.report` and :mod:`.plot` render.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gfn_edge.errors import GfnEdgeError

from . import probe
from .models import Candidate, runtime_threads, sample_input
from .peers import PeerDetector, PeerEmbedder
from .sanity import detector_sanity, largest_face_landmarks, recogniser_sanity
from .system import QuietGate, busy, load_average
from .timing import measure

log = logging.getLogger(__name__)


@dataclass
class SuiteConfig:
    threads: list[int] = field(default_factory=lambda: [1, 2])
    runs: int = 50
    warmup: int = 10
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    memory: bool = True
    memory_runs: int = 10
    cache: Path | None = None  # cleaned peer graphs
    scene: Path | None = None  # group photo for detector sanity (insightface_t1.jpg)
    portraits: Path | None = None
    pairs: Path | None = None
    sanity: bool = True
    sanity_pairs: int | None = None  # labelled pairs for recogniser sanity (None: all)
    gate: QuietGate = field(default_factory=QuietGate)  # waits for a quiet machine before each row

    def to_dict(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "runs": self.runs,
            "warmup": self.warmup,
            "batch_sizes": self.batch_sizes,
            "memory": self.memory,
            "memory_runs": self.memory_runs,
        }


def _size_key(c: Candidate) -> str:
    return f"{c.name}@{c.input_size[0]}x{c.input_size[1]}" if c.input_size else c.name


def complexities(cands: list[Candidate]) -> dict[str, dict[str, Any]]:
    """Parameters/MACs per model and input size, as recorded at export (bundles) or peer preparation.

    Every bundle of a model at one input size computes the same MACs (INT8 graphs add
    quantise/dequantise nodes, not MACs); the first candidate with counts speaks for the size,
    FP32 first. Without any, the entry says why FLOPs are unknown.
    """
    out: dict[str, dict[str, Any]] = {}
    for c in sorted(cands, key=lambda c: c.precision != "fp32"):
        key = _size_key(c)
        if "macs" in out.get(key, {}):
            continue
        if "macs" in c.complexity:
            out[key] = dict(c.complexity, file=c.model_file.name, target=c.target)
        else:
            out.setdefault(key, dict(c.complexity) or {"note": "FLOPs unknown"})
    return out


def _throughput(model: Any, batches: list[int], runs: int, warmup: int, guard: Any = None) -> list[dict[str, Any]]:
    rows = []
    for b in batches:
        x = sample_input(model, b)
        n = runs if b == 1 else max(5, runs // 4)
        t = measure(lambda: model.run(x), n, min(warmup, 3) if b > 1 else warmup, guard)  # noqa: B023 (measured within this iteration)
        rows.append({"batch": b, "latency": t.to_dict(), "items_per_s": round(b * 1000.0 / t.median_ms, 1)})
    return rows


def measure_candidate(c: Candidate, threads: int, cfg: SuiteConfig) -> dict[str, Any]:
    """One table row: latency (and throughput, memory) of ``c`` at ``threads``."""
    row: dict[str, Any] = dict(c.to_dict(), threads=threads, load_before=load_average())
    model = c.open(threads, cfg.cache)
    row["threads_runtime"] = runtime_threads(model)
    x = sample_input(model, 1)
    row["machine"] = cfg.gate.wait()
    row["latency"] = measure(lambda: model.run(x), cfg.runs, cfg.warmup, cfg.gate).to_dict()
    if c.task == "embed" and cfg.batch_sizes:
        row["throughput"] = _throughput(model, cfg.batch_sizes, cfg.runs, cfg.warmup, cfg.gate)
    row["others_busy_max"] = max([row["latency"].get("others_busy") or 0.0] + [t["latency"].get("others_busy") or 0.0 for t in row.get("throughput", [])])
    if cfg.memory:
        conf = {
            "kind": c.kind,
            "path": str(c.path if c.kind == "bundle" else c.model_file),
            "backend": c.backend,
            "threads": threads,
            "runs": cfg.memory_runs,
            "name": c.name,
            "cache": str(cfg.cache) if cfg.cache else None,
            "options": c.options,
        }
        row["memory"] = probe.memory(conf)
    row["load_after"] = load_average()
    return row


def sanity_for(c: Candidate, cfg: SuiteConfig, aligner: Any) -> dict[str, Any]:
    """Real-photo sanity check for one model (run once per model, on its first candidate)."""
    if c.task == "detect":
        if c.kind == "peer":
            det: Any = PeerDetector(c.peer, c.open(2, cfg.cache))
            fn: Callable = det.detect
        else:
            from gfn_edge.detector import Detector

            det = Detector(c.open(2))
            fn = det.detect
        return detector_sanity(fn, cfg.scene, cfg.portraits)
    if c.task == "embed" and aligner is not None:
        from gfn_edge.align import CropGeometry

        if c.kind == "peer":
            emb: Any = PeerEmbedder(c.peer, c.open(2, cfg.cache))
            geometry = CropGeometry.from_alignment(None, emb.crop_size[0])  # peers take ArcFace-aligned crops
        else:
            from gfn_edge.embedder import Embedder

            emb = Embedder(c.open(2))
            geometry = emb.geometry
        out = recogniser_sanity(emb.embed, largest_face_landmarks(aligner), cfg.pairs, geometry, max_pairs=cfg.sanity_pairs)
        if any("random weights" in n for n in c.notes):
            out["note"] = "random weights: no separation expected"
        return out
    return {}


def pick_aligner(cands: list[Candidate]) -> Any:
    """A real-weights RetinaFace bundle (FP32, largest input) to align pair photos for recogniser sanity."""
    dets = [c for c in cands if c.kind == "bundle" and c.task == "detect" and c.precision == "fp32" and c.verified and not c.options]
    if not dets:
        return None
    best = max(dets, key=lambda c: (c.input_size or (0, 0))[0])
    from gfn_edge.detector import Detector

    return Detector(best.path, backend=best.backend, threads=2)


def run_suite(cands: list[Candidate], cfg: SuiteConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure every candidate at every thread count; returns ``{"models": [...], "complexity": ..., ...}``."""
    say = progress or (lambda msg: log.info("%s", msg))
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    counts = complexities(cands)
    sanity: dict[str, Any] = {}
    aligner = pick_aligner(cands) if cfg.sanity else None
    for c in cands:
        if cfg.sanity and c.name not in sanity:
            try:
                sanity[c.name] = sanity_for(c, cfg, aligner)
            except (GfnEdgeError, OSError, ValueError, RuntimeError) as exc:
                sanity[c.name] = {"error": f"{type(exc).__name__}: {exc}"}
        for t in cfg.threads:
            if busy():
                log.warning("load average %s is high for %d cores: timings will be inflated", load_average(), len(cfg.threads))
            say(f"{c.label} threads={t}")
            try:
                row = measure_candidate(c, t, cfg)
            except (GfnEdgeError, OSError, ValueError, RuntimeError) as exc:
                failures.append({"candidate": c.label, "threads": t, "error": f"{type(exc).__name__}: {exc}"})
                log.error("%s threads=%d failed: %s", c.label, t, exc)
                continue
            row["complexity"] = counts.get(_size_key(c), {})
            rows.append(row)
    return {"models": rows, "complexity": counts, "sanity": sanity, "failures": failures, "settings": cfg.to_dict()}


def import_times(backends: list[str], repeats: int = 5) -> list[dict[str, Any]]:
    """``import gfn_edge`` alone and with each backend, fresh interpreters, medians."""
    return [probe.import_time(None, repeats)] + [probe.import_time(b, repeats) for b in backends]
