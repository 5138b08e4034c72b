"""Human-readable verification tables for gfn-export (and the README)."""
from __future__ import annotations

from typing import Any


def _fmt(value: Any, digits: int = 6) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.{digits}g}"
    return str(value)


_COLUMNS = {
    "embed": ["faces", "cos_mean", "cos_min", "cos_p01", "pair_acc_ref", "pair_acc", "pair_acc_delta"],
    "detect": ["images", "faces_reference", "recall", "precision", "box_err_px", "landmark_err_px", "landmark_nme", "score_err_max", "output_rel_err"],
    "liveness": ["crops", "prob_err", "decision_agree"],
}


def _task(metrics: dict[str, Any]) -> str:
    if "cos_min" in metrics:
        return "embed"
    if "recall" in metrics:
        return "detect"
    return "liveness"


def format_results(results: list) -> str:
    """One table per task: target, verdict, metrics, size and time; tolerances listed below."""
    lines: list[str] = []
    by_task: dict[str, list] = {}
    for r in results:
        by_task.setdefault(_task(r.metrics) if r.metrics else "embed", []).append(r)
    for task, rows in by_task.items():
        cols = _COLUMNS[task]
        header = ["model", "target", "result"] + cols + ["size_MB", "export_s"]
        table = [header]
        for r in rows:
            verdict = "PASS" if r.passed else ("ERROR" if r.error else "FAIL")
            size = f"{r.size_bytes / 1e6:.2f}" if r.size_bytes else "-"
            table.append(
                [r.model, r.target, verdict]
                + [_fmt(r.metrics.get(c), 7 if c.startswith("cos") else 5) for c in cols]
                + [size, _fmt(r.seconds.get("export"), 3)]
            )
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
        lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for row in table[1:]:
            lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        tols = sorted({f"{r.target}: " + ", ".join(f"{k} {v}" for k, v in r.tolerances.items()) for r in rows if r.tolerances})
        if tols:
            lines.append("tolerances: " + " | ".join(tols))
        lines.append("")
    return "\n".join(lines)
