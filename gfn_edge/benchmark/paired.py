"""Bundles timed side by side: each opened once, warmed up, then timed in alternating rounds.

Why: timed one after the other, two bundles compare across whatever the machine did in between
(another process, a clock change). gfn-bench's rows are timed that way, and on a shared 2-core
VM the same run put w0.5-e16 openvino-int8 at 0.76 ms with one thread and 1.86 ms with two, and
onnx-int8 at 2.13 ms against FP32's 1.48. In alternating rounds a busy CPU slows every bundle
alike, so their ratio holds: the INT8 export times its artifact against its FP32 sibling this way,
and gfn-bench's "INT8 beside FP32" table uses the same function.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def open_timed(bundle: Path, threads: int | None) -> tuple[Any, np.ndarray]:
    """The bundle opened on its own runtime, with an input of its size."""
    from gfn_edge.runtimes import open_model

    model = open_model(bundle, verify_files=False, threads=threads)
    size = model.manifest.preprocess.input_size  # (w, h) from the manifest when the model's input is dynamic
    hw = model.input_hw or ((int(size[1]), int(size[0])) if size else None)
    if hw is None:
        raise ValueError(f"{bundle}: neither the model nor its manifest gives an input size to time it at")
    return model, np.random.default_rng(0).standard_normal((1, hw[0], hw[1], 3)).astype(np.float32)


def median_run_ms(model: Any, x: np.ndarray, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.run(x)
        times.append((time.perf_counter() - start) * 1000)
    return float(statistics.median(times))


def paired_latency_ms(bundles: Sequence[Path], rounds: int = 4, runs: int = 30, threads: int | None = 1, warmup: int = 10) -> list[float]:
    """Median latency of each bundle, opened once and warmed up, timed in alternating rounds; the
    median of each bundle's round medians. Opening a model anew for each round put w0.5-e16
    onnx-int8's float16-weight variant 7 % behind its winner in the export, where the same two
    files timed this way run equally fast (2.04 against 2.05 ms)."""
    opened = [open_timed(Path(b), threads) for b in bundles]
    for model, x in opened:
        for _ in range(warmup):
            model.run(x)
    medians: list[list[float]] = [[] for _ in opened]
    for _ in range(rounds):
        for i, (model, x) in enumerate(opened):
            medians[i].append(median_run_ms(model, x, runs))
    return [float(statistics.median(m)) for m in medians]


def int8_siblings(cands: Sequence[Any]) -> list[tuple[Any, Any]]:
    """(FP32, INT8) bundle candidates of one model, runtime and input size, in the candidates' order:
    what a user weighs when choosing a bundle. Precision-hint variants and peers are left out."""
    fp32 = {(c.name, c.backend, c.input_size): c for c in cands if c.kind == "bundle" and c.precision == "fp32" and not c.options}
    return [
        (fp32[(c.name, c.backend, c.input_size)], c)
        for c in cands
        if c.kind == "bundle" and c.precision == "int8" and not c.options and (c.name, c.backend, c.input_size) in fp32
    ]


def int8_beside_fp32(cands: Sequence[Any], threads: Sequence[int], rounds: int = 5, runs: int = 25) -> list[dict[str, Any]]:
    """Each INT8 bundle timed against its FP32 sibling (:func:`int8_siblings`) in alternating rounds,
    at each thread count: one row each, with the latency ratio and the size ratio. A pair that
    cannot be timed gets its error in the row instead of stopping the benchmark."""
    rows = []
    for fp32, int8 in int8_siblings(cands):
        base = {
            "model": int8.name,
            "task": int8.task,
            "target": int8.target,
            "backend": int8.backend,
            "input_size": list(int8.input_size) if int8.input_size else None,
            "fp32_bytes": int(fp32.file_bytes),
            "int8_bytes": int(int8.file_bytes),
            "size_ratio": round(int8.file_bytes / fp32.file_bytes, 3) if fp32.file_bytes else None,
        }
        for t in threads:
            try:
                fp32_ms, int8_ms = paired_latency_ms([fp32.path, int8.path], rounds=rounds, runs=runs, threads=t)
            except Exception as exc:  # one pair that fails to open is reported, not fatal
                rows.append(dict(base, threads=int(t), error=f"{type(exc).__name__}: {exc}"))
                continue
            rows.append(
                dict(base, threads=int(t), fp32_ms=round(fp32_ms, 3), int8_ms=round(int8_ms, 3), ratio=round(int8_ms / fp32_ms, 2), rounds=rounds, runs=runs)
            )
    return rows
