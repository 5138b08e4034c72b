"""The board-side per-stage benchmark's printed form (apps/bench_device.py).

The measuring is :func:`gfn_edge.benchmark.engine.run_device_benchmark` (re-exported here), the
same engine as gfn-bench's tables; this module only renders its result for a terminal.
"""

from __future__ import annotations

from typing import Any

from .engine import run_device_benchmark
from .report import table as md_table

__all__ = ["run_device_benchmark", "table"]

_STAGE_ORDER = ("detect", "detect_preprocess", "detect_inference", "detect_decode", "align", "embed", "liveness")


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
        (
            f"detector:   {m['detector']['model']} {m['detector']['target']} on {m['detector']['backend']}, input {m['detector']['input']}, "
            f"threads {m['detector']['threads_runtime']}, {_gflops(m['detector'])}"
        ),
        (
            f"recogniser: {m['recognizer']['model']} {m['recognizer']['target']} on {m['recognizer']['backend']}, "
            f"threads {m['recognizer']['threads_runtime']}, {_gflops(m['recognizer'])}"
        ),
    ]
    head += [f"liveness:   {x['model']} {x['target']} on {x['backend']}" for x in m["liveness"]]
    s = result["settings"]
    head.append(
        f"{s['runs']} runs after {s['warmup']} warm-up, {s['threads']} threads; faces in frame: {result['faces']}; "
        f"load average {result['load_average']['before']} -> {result['load_average']['after']}; peak RSS {result['peak_rss_mb']} MiB"
    )
    return "\n".join(head) + "\n\n" + md_table(["stage", "median ms", "p90 ms"], rows)


def _gflops(model: dict[str, Any]) -> str:
    """GFLOPs per inference as gfn-export recorded them, or "FLOPs unknown" for an older bundle."""
    flops = (model.get("complexity") or {}).get("flops")
    return f"{flops / 1e9:.2f} GFLOPs" if isinstance(flops, int) else "FLOPs unknown"
