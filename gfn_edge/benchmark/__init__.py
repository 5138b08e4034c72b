"""Device-side benchmarks: per-stage latency, throughput, memory, size, MACs and fidelity.

Measures gfn-edge bundles and peer models (UltraFace, BlazeFace, MobileFace) with one harness,
on the same runtimes, at fixed thread counts. Imports numpy, OpenCV and the inference runtimes
only (``onnx`` optionally, to count MACs of ONNX graphs); never a training framework.

Modules: :mod:`.timing` (medians/p90), :mod:`.models` (what is measured), :mod:`.peers`,
:mod:`.flops`, :mod:`.stages` (per-stage frame pipeline), :mod:`.pipeline` (end-to-end table and
naive baseline), :mod:`.suite` (model matrix), :mod:`.probe` (fresh-process import time and peak
RSS), :mod:`.sanity`, :mod:`.report`, :mod:`.plot`, :mod:`.cli` (``gfn-bench``).
"""
from __future__ import annotations

from .timing import Timing, measure, summarize

__all__ = ["Timing", "measure", "summarize"]
