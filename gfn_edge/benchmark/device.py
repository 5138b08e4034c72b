"""The board-side per-stage benchmark behind ``apps/bench_device.py``.

One frame, the user's bundles, the user's thread count: detect, align, embed, liveness, 1:N
search in a synthetic gallery, and the whole frame timed as one call. Kept in the package (not
the app) so the numbers a board prints come from the same harness as gfn-bench's tables.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

from .probe import peak_rss_mb
from .report import table as md_table
from .stages import default_work_dir, measure_frame, synthetic_gallery, vga_frame
from .system import describe, load_average

log = logging.getLogger(__name__)

_STAGE_ORDER = ("detect", "detect_preprocess", "detect_inference", "detect_decode", "align", "embed", "liveness")


def _default_image() -> Path | None:
    from .cli import default_shared

    shared = default_shared()
    path = shared / "faces" / "pairs" / "deepface_img20.jpg" if shared else None
    return path if path is not None and path.is_file() else None


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
    """Measure every stage; returns a JSON-able dict (see :func:`table` for the printed form)."""
    from gfn_edge.detector import Detector
    from gfn_edge.embedder import Embedder
    from gfn_edge.image import read_image
    from gfn_edge.runtimes import physical_cores

    from .models import runtime_threads

    threads = int(threads or physical_cores())
    path = Path(image) if image else _default_image()
    if path is None:
        raise FileNotFoundError("no picture to benchmark on: pass --image with a photo showing one face")
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
    return {"model": model.manifest.model, "target": model.manifest.target, "precision": model.manifest.precision, "backend": model.backend,
            "threads": model.threads, "path": str(model.path)}


def table(result: dict[str, Any]) -> str:
    """The printed per-stage table (Markdown, readable as plain text)."""
    st = result["stages"]
    names = [k for k in _STAGE_ORDER if k in st] + sorted(k for k in st if k.startswith("search_"))
    rows = [[("  " if k.startswith("detect_") else "") + k.replace("_", " "), f"{st[k]['median_ms']:.2f}", f"{st[k]['p90_ms']:.2f}"] for k in names]
    rows.append(["sum of stages", f"{result['stage_sum_ms']:.2f}", ""])
    rows.append(["whole frame (timed as one call)", f"{st['frame']['median_ms']:.2f}", f"{st['frame']['p90_ms']:.2f}"])
    rows.append(["FPS (from whole-frame median)", f"{result['fps']:.1f}", ""])
    m = result["models"]
    head = [
        f"detector:   {m['detector']['model']} {m['detector']['target']} on {m['detector']['backend']}, input {m['detector']['input']}, "
        f"threads {m['detector']['threads_runtime']}",
        f"recogniser: {m['recognizer']['model']} {m['recognizer']['target']} on {m['recognizer']['backend']}, threads {m['recognizer']['threads_runtime']}",
    ]
    head += [f"liveness:   {x['model']} {x['target']} on {x['backend']}" for x in m["liveness"]]
    s = result["settings"]
    head.append(f"{s['runs']} runs after {s['warmup']} warm-up, {s['threads']} threads; faces in frame: {result['faces']}; "
                f"load average {result['load_average']['before']} -> {result['load_average']['after']}; peak RSS {result['peak_rss_mb']} MiB")
    return "\n".join(head) + "\n\n" + md_table(["stage", "median ms", "p90 ms"], rows)
