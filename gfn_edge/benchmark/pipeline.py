"""End-to-end frame benchmark: detect + align + embed on one VGA frame, per backend, beside the naive baseline.

The figure users ask for is "how long does one camera frame with one face take". It is
measured here for every (detector bundle, recogniser bundle) pair sharing a target, at each
detector input size and thread count, together with:

* the naive baseline, in the same run: the reference code's way, RetinaFace on the full 640x480
  frame and the recogniser, both FP32 ONNX in plain ONNX Runtime sessions (only the thread
  count set), with the reference's numpy preprocessing;
* the best mix: the fastest detector and the fastest recogniser of the run, whatever their
  backends, measured together (a real pipeline may mix runtimes);
* 1:N search in synthetic 10k / 100k galleries, with BLAS pinned to the same thread count.

A verdict compares the best frame median at the highest thread count with the target.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gfn_edge.errors import GfnEdgeError

from .models import Candidate
from .stages import (
    BenchmarkError,
    NaiveOrtDetector,
    NaiveOrtEmbedder,
    measure_frame,
    measure_search,
    synthetic_gallery,
)
from .system import QuietGate, load_average

log = logging.getLogger(__name__)


@dataclass
class PipelineConfig:
    threads: list[int] = field(default_factory=lambda: [1, 2])
    runs: int = 100
    warmup: int = 10
    gallery_sizes: list[int] = field(default_factory=lambda: [10_000, 100_000])
    work: Path = Path("gfn-bench-work")
    target_ms: float = 8.0
    naive: bool = True
    best_mix: bool = True
    gate: QuietGate = field(default_factory=QuietGate)  # waits for a quiet machine before each row

    def to_dict(self) -> dict[str, Any]:
        return {"threads": self.threads, "runs": self.runs, "warmup": self.warmup, "gallery_sizes": self.gallery_sizes, "target_ms": self.target_ms}


def pairs(dets: list[Candidate], recs: list[Candidate]) -> list[tuple[Candidate, Candidate]]:
    """(detector, recogniser) bundle pairs, per recogniser model, smaller detector input first.

    A detector pairs with the recogniser of its own target; when the recogniser has no bundle of
    that target (an INT8 detector beside a recogniser whose INT8 export failed verification), with
    the recogniser's FP32 bundle on the same runtime: what a device with that runtime would run.
    """
    rec_bundles = [r for r in recs if r.kind == "bundle"]
    out = []
    for d in (d for d in dets if d.kind == "bundle"):
        for name in sorted({r.name for r in rec_bundles}):
            mine = [r for r in rec_bundles if r.name == name]
            match = next((r for r in mine if r.target == d.target), None)
            if match is None:
                match = next((r for r in mine if r.backend == d.backend and r.precision == "fp32" and r.verified), None)
            if match is not None:
                out.append((d, match))
    return sorted(out, key=lambda p: ((p[0].input_size or (0, 0))[0], p[1].name, p[0].target))


def _size(c: Candidate | None) -> str:
    return f"{c.input_size[0]}x{c.input_size[1]}" if c is not None and c.input_size else "full frame"


def _row(label: str, det: Any, rec: Any, det_c: Candidate | None, rec_c: Candidate | None, threads: int, result: dict[str, Any]) -> dict[str, Any]:
    stages = {k: v.to_dict() for k, v in result["stages"].items()}
    return {
        "label": label,
        "detector": {
            "name": det_c.name if det_c else "retinaface",
            "target": det_c.target if det_c else None,
            "backend": det_c.backend if det_c else None,
            "input": _size(det_c),
            "precision": det_c.precision if det_c else None,
        },
        "recogniser": {
            "name": rec_c.name if rec_c else None,
            "target": rec_c.target if rec_c else None,
            "backend": rec_c.backend if rec_c else None,
            "precision": rec_c.precision if rec_c else None,
        },
        "threads": threads,
        "threads_runtime": {
            "detector": getattr(getattr(det, "model", det), "threads", None),
            "recogniser": getattr(getattr(rec, "model", rec), "threads", None),
        },
        "faces": result["faces"],
        "pinned": result["pinned"],
        "stages": stages,
        "frame_ms": stages["frame"]["median_ms"],
        "others_busy_max": max((v.get("others_busy") or 0.0 for v in stages.values()), default=0.0),
        "verified": all(c is None or c.verified for c in (det_c, rec_c)),
        "load_average": load_average(),
    }


def _open_pair(det_c: Candidate, rec_c: Candidate, threads: int) -> tuple[Any, Any]:
    from gfn_edge.detector import Detector
    from gfn_edge.embedder import Embedder

    return Detector(det_c.open(threads)), Embedder(rec_c.open(threads))


def _fastest(rows: list[dict[str, Any]], stage: str, **where: Any) -> dict[str, Any] | None:
    keep = [r for r in rows if r.get("kind") == "pair" and r["verified"] and all(r["detector"].get(k) == v for k, v in where.items())]
    return min(keep, key=lambda r: r["stages"][stage]["median_ms"]) if keep else None


def run_pipeline(
    dets: list[Candidate],
    recs: list[Candidate],
    frame: np.ndarray,
    cfg: PipelineConfig,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Frame rows for every pair, thread count, the naive baseline and the best mix; search timings; verdict."""
    say = progress or (lambda msg: log.info("%s", msg))
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    by_key = {(d.key, r.key): (d, r) for d, r in pairs(dets, recs)}
    dim = 512
    galleries = {}
    for n in cfg.gallery_sizes:
        name = f"{n // 1000}k" if n % 1000 == 0 else str(n)
        galleries[name] = synthetic_gallery(cfg.work / "galleries", n, dim)
    search_rows = []
    for threads in cfg.threads:
        say(f"search threads={threads}")
        machine = cfg.gate.wait()
        for name, t in measure_search(galleries, dim, threads, cfg.runs, cfg.warmup, guard=cfg.gate).items():
            search_rows.append(
                {
                    "gallery": name,
                    "size": len(galleries[name]),
                    "threads": threads,
                    "latency": t.to_dict(),
                    "machine": machine,
                    "others_busy_max": t.others_busy or 0.0,
                }
            )
        several = len({r.name for _, r in by_key.values()}) > 1
        for (dk, rk), (d, r) in by_key.items():
            label = f"{d.target} det {_size(d)}" + (f" + {r.target} rec" if r.target != d.target else "")
            if several:
                label += f" ({r.name})"
            say(f"frame {label} threads={threads}")
            try:
                det, rec = _open_pair(d, r, threads)
                machine = cfg.gate.wait()
                res = measure_frame(det, rec, frame, runs=cfg.runs, warmup=cfg.warmup, threads=threads, guard=cfg.gate)
            except (GfnEdgeError, BenchmarkError, OSError, ValueError, RuntimeError) as exc:
                failures.append({"pair": label, "threads": threads, "error": f"{type(exc).__name__}: {exc}"})
                continue
            row = _row(label, det, rec, d, r, threads, res)
            row["kind"], row["machine"] = "pair", machine
            rows.append(row)
        if cfg.naive:
            naive_det = next((d for d in dets if d.kind == "bundle" and d.target == "onnx" and d.input_size == (frame.shape[1], frame.shape[0])), None)
            naive_rec = next((r for r in recs if r.kind == "bundle" and r.target == "onnx"), None)
            if naive_det is None or naive_rec is None:
                failures.append({"pair": "naive baseline", "threads": threads, "error": "needs FP32 ONNX bundles: detector at the frame size and recogniser"})
            else:
                say(f"frame naive onnxruntime threads={threads}")
                det, rec = NaiveOrtDetector(naive_det.path, threads), NaiveOrtEmbedder(naive_rec.path, threads)
                machine = cfg.gate.wait()
                res = measure_frame(det, rec, frame, runs=cfg.runs, warmup=cfg.warmup, threads=threads, breakdown=False, guard=cfg.gate)
                row = _row("naive: plain ORT FP32, full 640x480 frame", det, rec, naive_det, naive_rec, threads, res)
                row["kind"], row["machine"] = "naive", machine
                row["detector"]["input"] = "full frame 640x480"
                rows.append(row)
        if cfg.best_mix:
            here = [r for r in rows if r["threads"] == threads]
            sizes = sorted({r["detector"]["input"] for r in here if r.get("kind") == "pair"})
            for rec_name in sorted({r["recogniser"]["name"] for r in here if r.get("kind") == "pair"}):
                for size in sizes:
                    fd = _fastest(here, "detect", input=size)
                    fe = _fastest([r for r in here if r["recogniser"]["name"] == rec_name], "embed")
                    if (
                        fd is None
                        or fe is None
                        or fd is fe
                        or (fd["detector"]["target"] == fe["detector"]["target"] and fd["recogniser"]["target"] == fe["recogniser"]["target"])
                    ):
                        continue  # the fastest pair already is the best mix
                    d = next(c for c in dets if c.target == fd["detector"]["target"] and _size(c) == size and c.kind == "bundle")
                    r = next(c for c in recs if c.name == rec_name and c.target == fe["recogniser"]["target"] and c.kind == "bundle")
                    if any(
                        x["detector"]["target"] == d.target
                        and x["detector"]["input"] == size
                        and x["recogniser"]["target"] == r.target
                        and x["recogniser"]["name"] == rec_name
                        for x in here
                    ):
                        continue  # that pair was measured already
                    say(f"frame best mix {d.target}+{r.target} det {size} threads={threads}")
                    det, rec = _open_pair(d, r, threads)
                    machine = cfg.gate.wait()
                    res = measure_frame(det, rec, frame, runs=cfg.runs, warmup=cfg.warmup, threads=threads, guard=cfg.gate)
                    row = _row(f"best mix: det {d.target}, rec {r.target}, det {size}", det, rec, d, r, threads, res)
                    row["kind"], row["machine"] = "mix", machine
                    rows.append(row)
    return {"rows": rows, "search": search_rows, "failures": failures, "verdict": verdict(rows, cfg), "settings": cfg.to_dict()}


def verdict(rows: list[dict[str, Any]], cfg: PipelineConfig) -> dict[str, Any]:
    """Best frame median at the highest thread count vs the target, the naive baseline, and where time goes."""
    if not rows:
        return {"met": None, "text": "no pipeline rows were measured"}
    top = max(r["threads"] for r in rows)
    mine = [r for r in rows if r["threads"] == top and r["kind"] in ("pair", "mix") and r["verified"]]
    unverified = [r for r in rows if r["threads"] == top and r["kind"] in ("pair", "mix") and not r["verified"]]
    naive = next((r for r in rows if r["threads"] == top and r["kind"] == "naive"), None)
    if not mine:
        return {"met": None, "text": "no gfn-edge pipeline rows were measured"}
    best = min(mine, key=lambda r: r["frame_ms"])
    met = best["frame_ms"] <= cfg.target_ms
    st = best["stages"]
    parts = [f"detect {st['detect']['median_ms']:.2f}"]
    if "detect_inference" in st:
        parts.append(
            f"(inference {st['detect_inference']['median_ms']:.2f}, preprocess {st['detect_preprocess']['median_ms']:.2f}, "
            f"decode {st['detect_decode']['median_ms']:.2f})"
        )
    parts.append(f"align {st['align']['median_ms']:.2f}, embed {st['embed']['median_ms']:.2f}")
    text = (
        f"{'MET' if met else 'NOT MET'}: best frame median {best['frame_ms']:.2f} ms at {top} threads "
        f"({best['label']}) vs target {cfg.target_ms:g} ms. Where the time goes (ms): {' '.join(parts)}."
    )
    out: dict[str, Any] = {"met": met, "threads": top, "best_ms": best["frame_ms"], "best": best["label"], "target_ms": cfg.target_ms}
    if naive is not None:
        out["naive_ms"] = naive["frame_ms"]
        out["speedup_vs_naive"] = round(naive["frame_ms"] / best["frame_ms"], 2)
        text += f" Naive baseline {naive['frame_ms']:.2f} ms ({out['speedup_vs_naive']:.2f}x slower)."
    if unverified:
        fast = min(unverified, key=lambda r: r["frame_ms"])
        if fast["frame_ms"] < best["frame_ms"]:
            out["unverified_best_ms"] = fast["frame_ms"]
            text += f" Unverified option {fast['label']}: {fast['frame_ms']:.2f} ms (its accuracy was not checked at export)."
    if not met:
        best_det = min(mine, key=lambda r: r["stages"]["detect"]["median_ms"])
        best_emb = min(mine, key=lambda r: r["stages"]["embed"]["median_ms"])
        floor = best_det["stages"]["detect"]["median_ms"] + best_emb["stages"]["embed"]["median_ms"] + best["stages"]["align"]["median_ms"]
        out["floor_ms"] = round(floor, 3)
        text += (
            f" Fastest stages measured: detect {best_det['stages']['detect']['median_ms']:.2f} ms ({best_det['label']}), "
            f"embed {best_emb['stages']['embed']['median_ms']:.2f} ms ({best_emb['recogniser']['target']}); "
            f"their sum with align is {floor:.2f} ms."
        )
        precisions = {r["recogniser"]["precision"] for r in mine} | {r["detector"]["precision"] for r in mine}
        if "int8" not in precisions:
            text += " No INT8 bundle was measured: INT8 (VNNI) is the next lever."
    out["text"] = text
    return out
