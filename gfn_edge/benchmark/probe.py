"""Measurements that need a fresh interpreter: import time and peak memory.

Why a subprocess: in a long-running benchmark every backend is already imported and the
process's peak RSS is the largest model seen so far. A user's app starts cold and loads one
model on one backend, so each configuration is measured in its own ``python`` process.

    python -m gfn_edge.benchmark.probe memory '{"kind": "bundle", "path": "...", "backend": "openvino", "threads": 2, "runs": 20}'

prints one JSON object. Peak RSS is the process's high-water mark (:func:`peak_rss_mb`).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# what "import the backend" means: the same call the runtime makes when a model opens
BACKEND_IMPORT = {
    "onnxruntime": "from gfn_edge.runtimes import onnxruntime_backend as m; m._ort()",
    "openvino": "from gfn_edge.runtimes import openvino_backend as m; m.core()",
    "tflite": "from gfn_edge.runtimes import tflite as m; m.interpreter_class()",
}

_IMPORT_CODE = """
import json, time
t0 = time.perf_counter()
import gfn_edge
t1 = time.perf_counter()
{backend_import}
t2 = time.perf_counter()
print(json.dumps({{"gfn_edge_s": t1 - t0, "backend_s": t2 - t1, "total_s": t2 - t0}}))
"""


def _rss_mb_now() -> float | None:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, AttributeError):
        try:
            import psutil

            return psutil.Process().memory_info().rss / 2**20
        except ImportError:
            return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process image, MiB.

    Linux: ``VmHWM`` from /proc/self/status. Not ``getrusage``: its ``ru_maxrss`` survives
    ``exec``, so a probe started from a large benchmark process would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20  # macOS reports bytes


def _env(threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
    return env


def import_time(backend: str | None, repeats: int = 5, timeout: float = 120) -> dict[str, Any]:
    """Median seconds of ``import gfn_edge`` (+ one backend) over ``repeats`` fresh interpreters."""
    code = textwrap.dedent(_IMPORT_CODE.format(backend_import=BACKEND_IMPORT[backend] if backend else "pass"))
    samples: list[dict[str, float]] = []
    for _ in range(repeats):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=_env())
        if proc.returncode != 0:
            return {"backend": backend, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
        samples.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    out: dict[str, Any] = {"backend": backend or "none", "repeats": repeats}
    for key in ("gfn_edge_s", "backend_s", "total_s"):
        values = [s[key] for s in samples]
        out[key] = round(statistics.median(values), 4)
        out[key.replace("_s", "_max_s")] = round(max(values), 4)
    return out


def memory(config: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    """Peak RSS of a fresh process that opens one model and runs it (see :func:`_memory_main`)."""
    proc = subprocess.run(
        [sys.executable, "-m", "gfn_edge.benchmark.probe", "memory", json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(config.get("threads")),
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        return {"error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _memory_main(config: dict[str, Any]) -> dict[str, Any]:
    """Open the configured model, run it ``runs`` times at ``batch``, report RSS figures in MiB."""
    from .models import bundle_candidate, peer_candidates, runtime_threads, sample_input
    from .peers import PEERS

    baseline = _rss_mb_now()
    if config["kind"] == "bundle":
        cand = bundle_candidate(Path(config["path"]))
        cand.backend = config.get("backend") or cand.backend
        cand.options = dict(config.get("options") or {})
    else:
        spec = PEERS[config["name"]]
        cand = next(c for c in peer_candidates([(spec, Path(config["path"]))]) if c.backend == config["backend"])
    model = cand.open(int(config["threads"]), Path(config["cache"]) if config.get("cache") else None)
    opened = _rss_mb_now()
    x = sample_input(model, int(config.get("batch", 1)))
    for _ in range(int(config.get("runs", 10))):
        model.run(x)
    return {
        "baseline_rss_mb": round(baseline, 1) if baseline is not None else None,
        "after_open_rss_mb": round(opened, 1) if opened is not None else None,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "threads": runtime_threads(model),
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2 or argv[0] != "memory":
        print("usage: python -m gfn_edge.benchmark.probe memory CONFIG_JSON", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(_memory_main(json.loads(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
