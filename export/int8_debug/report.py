"""Per-layer INT8 error: statistics accumulated batch by batch, the table rows, and their files.

Every backend's debugger (:mod:`.debug`) hands this module, for each quantised tensor in graph
order, the FP32 tensor and the INT8 tensor (dequantised) at the same point. What a row says:

- the error so far at that tensor (cosine per sample, relative L2, SQNR in dB), which grows
  along the network, and the error *added* there: the SQNR lost against the worst of the
  tensor's nearest compared inputs. The added error localises the damage; the cumulative one
  does not (every layer after a bad one looks bad);
- the range the quantiser chose (from scale and zero point) beside the FP32 tensor's observed
  min/max/percentiles on the verification faces, with the share of values clipped and the
  number of int8 levels the central 99.8 % of values actually use (few levels: an outlier or a
  wide range elsewhere in the tensor stretched the scale);
- where the backend can also run the same INT8 model with exact QDQ arithmetic (float ops on
  dequantised values), ``exact_sqnr_db``: the error the ranges and rounding alone cause. A
  deployed SQNR well below it means the fused integer kernels lose precision themselves (u8s8
  saturation on x86 without VNNI), not the choice of ranges; ``kernel_db`` is the SQNR of the
  fused result against the exact one.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

JUMP_DB = 3.0  # error added at one tensor that flags it: the noise power at least doubled there
CLIP_SHARE = 1e-3  # more FP32 values than this outside the quantiser's range flags clipping
FEW_LEVELS = 16  # the central 99.8 % of values on fewer int8 levels than this flags a stretched range
KERNEL_LOSS_DB = 3.0  # fused kernels this much below exact QDQ arithmetic flag the kernel
INSTRUMENTED_DB = 40.0  # the run with tensors exposed must match the deployed run at least this well
_SAMPLE_VALUES = 20000  # FP32 values kept per tensor and batch for the percentiles


@dataclass(frozen=True)
class TensorPoint:
    """One place where the FP32 and INT8 models are compared."""

    name: str  # the FP32 tensor's name
    op: str  # op type of the layer producing it
    layer: str  # the producing node's name (or the tensor's when it has none)
    upstream: tuple[str, ...] = ()  # nearest compared tensors it is computed from
    scale: float | None = None  # None: the tensor stays float in the INT8 model
    zero_point: int = 0
    qmin: int = 0
    qmax: int = 255


@dataclass
class _Accumulator:
    cosines: list[np.ndarray] = field(default_factory=list)
    signal: float = 0.0
    noise: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf
    clipped: int = 0
    count: int = 0
    values: list[np.ndarray] = field(default_factory=list)
    kernel_signal: float = 0.0
    kernel_noise: float = 0.0
    exact_noise: float = 0.0


class ErrorStats:
    """Accumulates FP32-vs-INT8 statistics per tensor over batches (all faces never sit in memory)."""

    def __init__(self, points: list[TensorPoint]):
        self.points = points
        self._acc = {p.name: _Accumulator() for p in points}

    def add(self, point: TensorPoint, fp32: np.ndarray, int8: np.ndarray, exact: np.ndarray | None = None) -> None:
        """One batch of ``point``: FP32 values, dequantised INT8 values, and optionally the same
        INT8 model's values under exact QDQ arithmetic (no fused kernels)."""
        acc = self._acc[point.name]
        a = fp32.reshape(len(fp32), -1).astype(np.float64)
        b = int8.reshape(len(int8), -1).astype(np.float64)
        if a.shape != b.shape:
            raise ValueError(f"{point.name}: FP32 shape {fp32.shape} and INT8 shape {int8.shape} differ")
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        acc.cosines.append(np.where(norms > 0, (a * b).sum(1) / np.maximum(norms, 1e-30), 1.0))
        acc.signal += float((a * a).sum())
        acc.noise += float(((a - b) ** 2).sum())
        acc.lo, acc.hi = min(acc.lo, float(a.min())), max(acc.hi, float(a.max()))
        acc.count += a.size
        if point.scale is not None:
            lo, hi = quantiser_range(point)
            acc.clipped += int(((a < lo - point.scale / 2) | (a > hi + point.scale / 2)).sum())
        flat = a.ravel()
        acc.values.append(flat[:: max(1, flat.size // _SAMPLE_VALUES)].astype(np.float32))
        if exact is not None:
            e = exact.reshape(len(exact), -1).astype(np.float64)
            acc.kernel_signal += float((e * e).sum())
            acc.kernel_noise += float(((e - b) ** 2).sum())
            acc.exact_noise += float(((a - e) ** 2).sum())

    def rows(self) -> list[dict[str, Any]]:
        """The table: one row per point in graph order, with the error added at each."""
        out: list[dict[str, Any]] = []
        sqnr_of: dict[str, float] = {}
        exact_of: dict[str, float] = {}
        for i, p in enumerate(self.points):
            acc = self._acc[p.name]
            if not acc.cosines:
                continue
            cos = np.concatenate(acc.cosines)
            sqnr = _db(acc.signal, acc.noise)
            inherited = min((sqnr_of[u] for u in p.upstream if u in sqnr_of), default=math.inf)
            sqnr_of[p.name] = sqnr
            values = np.concatenate(acc.values)
            p001, p999 = (float(v) for v in np.percentile(values, [0.1, 99.9]))
            row: dict[str, Any] = {
                "index": i,
                "tensor": p.name,
                "layer": p.layer,
                "op": p.op,
                "quantised": p.scale is not None,
                "cosine": float(cos.mean()),
                "cosine_min": float(cos.min()),
                "rel_l2": math.sqrt(acc.noise / acc.signal) if acc.signal > 0 else 0.0,
                "sqnr_db": sqnr,
                "added_db": max(0.0, inherited - sqnr) if math.isfinite(inherited) else None,
                "added_noise": _added_noise(inherited, sqnr),
                "fp32_min": acc.lo,
                "fp32_p0.1": p001,
                "fp32_p99.9": p999,
                "fp32_max": acc.hi,
                "scale": p.scale,
                "zero_point": p.zero_point if p.scale is not None else None,
                "range_lo": None,
                "range_hi": None,
                "clipped": None,
                "levels_used": None,
                "exact_sqnr_db": _db(acc.signal, acc.exact_noise) if acc.kernel_signal > 0 else None,
                "kernel_db": _db(acc.kernel_signal, acc.kernel_noise) if acc.kernel_signal > 0 else None,
                "exact_added_noise": None,
            }
            if p.scale is not None:
                lo, hi = quantiser_range(p)
                row.update(range_lo=lo, range_hi=hi, clipped=acc.clipped / max(acc.count, 1), levels_used=(p999 - p001) / p.scale)
            if row["exact_sqnr_db"] is not None:
                exact_of[p.name] = row["exact_sqnr_db"]
                carried = min((exact_of[u] for u in p.upstream if u in exact_of), default=math.inf)
                row["exact_added_noise"] = _added_noise(carried, row["exact_sqnr_db"])
            row["flags"] = ",".join(_flags(row))
            out.append(row)
        return out


def quantiser_range(p: TensorPoint) -> tuple[float, float]:
    """The real-valued interval the int8 grid of ``p`` covers."""
    assert p.scale is not None
    return (p.qmin - p.zero_point) * p.scale, (p.qmax - p.zero_point) * p.scale


def _db(signal: float, noise: float) -> float:
    if noise <= 0:
        return 200.0  # identical: capped so tables and plots stay finite
    return min(200.0, 10 * math.log10(max(signal, 1e-300) / noise))


def _added_noise(inherited: float, sqnr: float) -> float:
    """Noise power added at this tensor, relative to its signal: with independent noises the
    noise-to-signal ratios add up, so the new share is 1/sqnr - 1/inherited (linear units)."""
    carried = 0.0 if math.isinf(inherited) else 10 ** (-inherited / 10)
    return max(0.0, 10 ** (-sqnr / 10) - carried)


def _flags(row: dict[str, Any]) -> list[str]:
    flags = []
    if row["added_db"] is not None and row["added_db"] >= JUMP_DB:
        flags.append("jump")
    if row["clipped"] is not None and row["clipped"] > CLIP_SHARE:
        flags.append("clip")
    if row["levels_used"] is not None and row["levels_used"] < FEW_LEVELS:
        flags.append("few-levels")
    if _kernel_loss(row) >= KERNEL_LOSS_DB:
        flags.append("kernel")
    return flags


def _kernel_loss(row: dict[str, Any]) -> float:
    """dB the fused kernels lose against exact QDQ arithmetic at this tensor (0 when not measured)."""
    return 0.0 if row.get("exact_sqnr_db") is None else max(0.0, row["exact_sqnr_db"] - row["sqnr_db"])


def likely_cause(row: dict[str, Any]) -> str:
    """A short reading of a bad row: which of the measured causes fits its numbers."""
    causes = []
    exact_added = row.get("exact_added_noise")
    if exact_added is not None and row["added_noise"] > 0 and exact_added < 0.5 * row["added_noise"]:
        share = 100 * (1 - exact_added / row["added_noise"])
        causes.append(f"fused int8 kernels: {share:.0f} % of the noise added here is not in exact QDQ arithmetic (kernel saturation)")
    if row.get("clipped") and row["clipped"] > CLIP_SHARE:
        causes.append(f"{100 * row['clipped']:.2f} % of FP32 values outside the range (clipping)")
    if row.get("levels_used") is not None and row["levels_used"] < FEW_LEVELS:
        causes.append(f"central 99.8 % of values on {row['levels_used']:.1f} levels (range stretched by outliers)")
    if not causes and row["quantised"]:
        causes.append(f"no clipping or kernel loss: weight rounding, or activation rounding at step {row['scale']:.3g} ({row['levels_used']:.0f} levels used)")
    if not causes:
        causes.append("float tensor: error carried in from quantised inputs")
    return "; ".join(causes)


def worst_rows(rows: list[dict[str, Any]], count: int = 10) -> list[dict[str, Any]]:
    """The rows that added the most noise (relative to their signal), worst first."""
    return sorted((r for r in rows if r["added_noise"] > 0), key=lambda r: -r["added_noise"])[:count]


# ----------------------------------------------------------------------------- files

_COLUMNS = [
    ("#", "index", "{}"),
    ("layer", "layer", "{}"),
    ("op", "op", "{}"),
    ("cos", "cosine", "{:.5f}"),
    ("cos min", "cosine_min", "{:.4f}"),
    ("rel L2", "rel_l2", "{:.4f}"),
    ("SQNR dB", "sqnr_db", "{:.1f}"),
    ("added dB", "added_db", "{:.1f}"),
    ("added noise %", "added_noise", "{:.3f}"),
    ("range", None, ""),
    ("FP32 min / p0.1 / p99.9 / max", None, ""),
    ("clip %", "clipped", "{:.3f}"),
    ("levels", "levels_used", "{:.0f}"),
    ("exact SQNR dB", "exact_sqnr_db", "{:.1f}"),
    ("kernel dB", "kernel_db", "{:.1f}"),
    ("flags", "flags", "{}"),
]


def _cell(row: dict[str, Any], header: str, key: str | None, fmt: str) -> str:
    if header == "range":
        return f"[{row['range_lo']:.3g}, {row['range_hi']:.3g}] s={row['scale']:.3g} zp={row['zero_point']}" if row["quantised"] else "float"
    if header.startswith("FP32"):
        return " / ".join(f"{row[k]:.3g}" for k in ("fp32_min", "fp32_p0.1", "fp32_p99.9", "fp32_max"))
    value = row.get(key) if key else None
    if value is None or value == "":
        return ""
    return fmt.format(100 * value if key in ("clipped", "added_noise") else value)


def markdown(rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    lines = [f"# INT8 debug: {summary['artifact']}", ""]
    lines += [f"- {k}: {v}" for k, v in summary.items() if k not in ("artifact", "worst", "error_sources")]
    lines += [
        "",
        "## Worst layers (error added there)",
        "",
        "| # | layer | op | added noise % | added dB | SQNR dB | cos | likely cause |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["worst"]:
        added_db = "" if r["added_db"] is None else f"{r['added_db']:.1f}"
        lines.append(
            f"| {r['index']} | {r['layer']} | {r['op']} | {100 * r['added_noise']:.3f} | {added_db} | {r['sqnr_db']:.1f} | {r['cosine']:.5f} | {r['cause']} |"
        )
    lines += ["", "## Every compared tensor, in graph order", ""]
    lines.append("| " + " | ".join(h for h, _, _ in _COLUMNS) + " |")
    lines.append("|" + "---|" * len(_COLUMNS))
    for row in rows:
        lines.append("| " + " | ".join(_cell(row, h, k, f) for h, k, f in _COLUMNS) + " |")
    sources = summary.get("error_sources")
    if sources and sources.get("cases"):
        from .error_sources import markdown as sources_markdown

        lines += ["", sources_markdown(sources).rstrip("\n")]
    elif sources:
        lines += ["", f"Error sources not simulated: {sources.get('error')}"]
    return "\n".join(lines) + "\n"


def write_report(rows: list[dict[str, Any]], summary: dict[str, Any], folder: Path, stem: str = "int8-debug") -> dict[str, Path]:
    """``stem``.md (summary and table), .csv (every column), .json (summary) and .png (plot)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {ext: folder / f"{stem}.{ext}" for ext in ("md", "csv", "json", "png")}
    paths["md"].write_text(markdown(rows, summary))
    with paths["csv"].open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["index"])
        writer.writeheader()
        writer.writerows(rows)
    paths["json"].write_text(json.dumps(summary, indent=2, default=str) + "\n")
    from .plot import plot_error_vs_depth

    if not plot_error_vs_depth(rows, paths["png"], title=str(summary["artifact"])):
        del paths["png"]
    return paths


def summarise(rows: list[dict[str, Any]], **facts: Any) -> dict[str, Any]:
    """The facts given, the end-to-end numbers (the last rows: the model's outputs) and the worst layers."""
    summary: dict[str, Any] = dict(facts)
    if rows:
        last = rows[-1]
        summary.update(output=last["tensor"], output_cosine=round(last["cosine"], 6), output_cosine_min=round(last["cosine_min"], 6))
        summary["tensors_compared"] = len(rows)
        if last.get("instrumented_db") is not None and last["instrumented_db"] < INSTRUMENTED_DB:
            summary["warning"] = (
                f"with tensors exposed the runtime ran other kernels: its output is {last['instrumented_db']:.1f} dB SQNR from the "
                "deployed model's, so the inner rows describe that run (the last row is the deployed model)"
            )
        summary["flagged"] = {f: sum(f in r["flags"].split(",") for r in rows) for f in ("jump", "clip", "few-levels", "kernel")}
    summary["worst"] = [
        {**{k: r[k] for k in ("index", "layer", "tensor", "op", "added_noise", "added_db", "sqnr_db", "cosine")}, "cause": likely_cause(r)}
        for r in worst_rows(rows)
    ]
    return summary


def rows_from_csv(path: Path) -> list[dict[str, Any]]:
    """Rows read back from a written CSV (numbers as floats), for tools and tests."""
    with Path(path).open() as fh:
        return [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(fh)]


def _number(text: str) -> Any:
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


__all__ = ["ErrorStats", "TensorPoint", "likely_cause", "markdown", "quantiser_range", "rows_from_csv", "summarise", "worst_rows", "write_report"]
