"""What a measurement ran on: CPU, cores, load average, runtime versions.

Numbers without this context cannot be compared: the same model is twice as fast on an idle
machine as on one whose cores are busy with someone else's job, so the load average is recorded
before and after every section and a busy machine is flagged.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md
import logging
import os
import platform
from typing import Any

log = logging.getLogger(__name__)

_PACKAGES = ("gfn-edge", "numpy", "opencv-python-headless", "onnxruntime", "openvino", "ai-edge-litert", "tflite-runtime", "onnx", "psutil")


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux) or platform.processor()."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("model name", "Model", "Hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """SIMD features that decide which INT8/FP16 kernels a runtime can use."""
    from gfn_edge.runtimes.base import cpu_features

    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "f16c", "asimd", "asimddp", "fphp", "i8mm")
    have = cpu_features()
    return [f for f in wanted if f in have]


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def usable_cores() -> int:
    """Cores this process may run on (affinity mask), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def busy(threshold: float = 0.5) -> bool:
    """True when the 1-minute load exceeds ``threshold`` per usable core: numbers will be inflated."""
    load = load_average()
    return load is not None and load[0] > threshold * usable_cores()


def versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = _md.version(name)
        except _md.PackageNotFoundError:
            continue
    return out


def describe() -> dict[str, Any]:
    """Machine and software facts recorded at the top of every result file."""
    from gfn_edge.runtimes import physical_cores

    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "machine": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(),
        "usable_cores": usable_cores(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": versions(),
        "load_average": load_average(),
    }


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs from /proc/stat (Linux)."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def cpu_busy(interval: float = 1.0) -> float | None:
    """Fraction of all CPU time spent busy during ``interval`` seconds (None off Linux).

    Called between measurements, when this process is idle, it measures everyone else's load:
    more direct than the load average, which lags by a minute.
    """
    import time

    a = _cpu_times()
    if a is None:
        return None
    time.sleep(interval)
    b = _cpu_times()
    if b is None or b[1] == a[1]:
        return None
    return round((b[0] - a[0]) / (b[1] - a[1]), 3)


class OthersMeter:
    """CPU time used by *other* processes over an interval: all CPUs' busy time minus this process's.

    This is what tells a clean measurement from a disturbed one: the load average lags by a
    minute and counts our own threads too.
    """

    def __init__(self) -> None:
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._start = _cpu_times()
        t = os.times()
        self._own = t.user + t.system

    def share(self) -> float | None:
        """Others' share of all CPU time since construction (0..1), or None where unknown."""
        end = _cpu_times()
        if self._start is None or end is None or end[1] <= self._start[1]:
            return None
        t = os.times()
        own = t.user + t.system - self._own
        busy = (end[0] - self._start[0]) / self._hz
        total = (end[1] - self._start[1]) / self._hz
        return round(min(max((busy - own) / total, 0.0), 1.0), 3)


class QuietGate:
    """Wait (within a budget) for other processes to leave the CPUs before each measurement.

    On a shared machine a row measured while another job runs can be several times slower;
    waiting a little for a quiet moment costs less than a wrong table. ``budget_s`` caps the
    total waiting of a run; the busy fraction seen last is recorded with each row either way.
    """

    def __init__(self, max_wait_s: float = 0.0, budget_s: float = 0.0, threshold: float = 0.15, retries: int = 3):
        self.max_wait_s = float(max_wait_s)
        self.budget_s = float(budget_s)
        self.threshold = float(threshold)
        self.retries = int(retries)
        self.waited_s = 0.0
        self.repeated = 0

    def measure(self, run: Any) -> Any:
        """``run()`` -> Timing, repeated (after waiting for quiet) while others took over ``threshold`` of the CPUs.

        Only when waiting is allowed (``max_wait_s`` > 0) and the budget is not spent; the
        returned Timing records others' share and the number of attempts either way.
        """
        attempt = 0
        while True:
            attempt += 1
            meter = OthersMeter()
            timing = run()
            others = meter.share()
            clean = others is None or others <= self.threshold
            if clean or self.max_wait_s <= 0 or attempt > self.retries or self.waited_s >= self.budget_s:
                return timing.with_noise(others, attempt)
            self.repeated += 1
            log.info("others took %.0f%% of the CPUs during a measurement: waiting and measuring again", 100 * others)
            self.wait()

    def wait(self) -> dict[str, Any]:
        """Block until the CPUs are quiet or the wait limits are reached; returns what was seen."""
        import time

        start = time.monotonic()
        busy_now = cpu_busy(0.5)
        while (
            busy_now is not None
            and busy_now > self.threshold
            and time.monotonic() - start < self.max_wait_s
            and self.waited_s + (time.monotonic() - start) < self.budget_s
        ):
            time.sleep(2.0)
            busy_now = cpu_busy(0.5)
        waited = time.monotonic() - start
        self.waited_s += waited
        if busy_now is not None and busy_now > self.threshold:
            log.warning("CPUs %.0f%% busy with other work before this measurement: it will be inflated", 100 * busy_now)
        return {"cpu_busy_before": busy_now, "waited_s": round(waited, 1), "quiet": busy_now is not None and busy_now <= self.threshold}
