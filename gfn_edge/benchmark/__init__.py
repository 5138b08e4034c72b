"""Device-side benchmarks: per-stage latency, throughput, memory, size, MACs and fidelity.

Measures gfn-edge bundles and peer models (UltraFace, BlazeFace, MobileFace) with one harness,
on the same runtimes, at fixed thread counts. Imports numpy, OpenCV and the inference runtimes
only, never ``onnx`` or a training framework: parameters and FLOPs are counted at export and
read from each bundle's manifest (peers: prepared by :mod:`gfn_edge.export.peer_graphs`).

Modules: :mod:`.engine` (the one engine behind gfn-bench, apps/bench_device.py and
benchmarks/run.py), :mod:`.timing` (medians/p90), :mod:`.models` (what is measured),
:mod:`.peers`, :mod:`.stages` (per-stage frame pipeline), :mod:`.pipeline` (end-to-end table and
naive baseline), :mod:`.suite` (model matrix), :mod:`.probe` (fresh-process import time and peak
RSS), :mod:`.sanity`, :mod:`.report`, :mod:`.plot`, :mod:`.system`, :mod:`.cli` (``gfn-bench``),
:mod:`.device` (the board's printed table).
"""

from __future__ import annotations

from gfn_edge.errors import GfnEdgeError

from .timing import Timing, measure, summarize


class BenchmarkError(GfnEdgeError, RuntimeError):
    """A measurement that cannot be made as asked (no face in the frame, a bundle of the wrong kind...)."""


__all__ = ["BenchmarkError", "Timing", "measure", "summarize"]
