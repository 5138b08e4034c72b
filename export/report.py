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
    "embed": ["faces", "cos_mean", "cos_min", "cos_p01", "pair_acc_ref", "pair_acc", "pair_acc_delta", "pair_decisions_agree", "pair_decisions_expected_agree"],
    "detect": [
        "images",
        "faces_reference",
        "recall",
        "precision",
        "box_err_px",
        "landmark_err_px",
        "landmark_nme",
        "landmark_nme_large",
        "score_err_max",
        "output_rel_err",
    ],
    "liveness": ["crops", "prob_err", "prob_err_mean", "decision_agree", "decision_flips_robust"],
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


def int8_table(manifests: list) -> str:
    """The INT8 table of a set of bundles, read from their manifests (``gfn-export --int8-report``):
    fidelity against the reference, size and latency beside the FP32 sibling, and what was done."""
    header = ["model", "target", "result", "fidelity", "size MB (FP32)", "latency ms (FP32)", "calibration", "kept in float"]
    rows = [header]
    for m in sorted(manifests, key=lambda m: (m.model, m.target)):
        if m.precision != "int8":
            continue
        v = m.verification.get("metrics", {})
        notes = m.export.get("notes", {})
        if "cos_mean" in v:
            fid = f"cos_mean {v['cos_mean']:.4f}, cos_min {v['cos_min']:.4f}, pair Δ {v.get('pair_acc_delta', float('nan')):+.2f} pt, decisions kept {_fmt(v.get('pair_decisions_agree'), 4)} (expected {_fmt(v.get('pair_decisions_expected_agree'), 4)}, {v.get('faces')} faces)"
        elif "recall" in v:
            fid = f"recall {v['recall']:.4f}, precision {v['precision']:.4f}, NME {v.get('landmark_nme', float('nan')):.4f} (large faces {_fmt(v.get('landmark_nme_large'), 4)})"
        else:
            fid = ", ".join(f"{k} {_fmt(val, 4)}" for k, val in v.items() if isinstance(val, float))
        size = f"{notes.get('size_bytes', 0) / 1e6:.2f} ({notes.get('fp32_size_bytes', 0) / 1e6:.2f})"
        lat = f"{_fmt(notes.get('latency_ms'), 3)} ({_fmt(notes.get('fp32_latency_ms'), 3)})"
        calib = notes.get("calibration", {})
        floats = notes.get("float_groups") or []
        rows.append(
            [
                m.model,
                m.target,
                "PASS" if m.verification.get("passed") else "FAIL",
                fid,
                size,
                lat,
                f"{calib.get('method', '-')}, {calib.get('samples', '-')} samples",
                ", ".join(floats) if floats else "none",
            ]
        )
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows[1:]]
    return "\n".join(out)


def _fidelity(v: dict[str, Any], box: bool = True) -> str:
    if "cos_mean" in v:
        return f"cos_mean {v['cos_mean']:.6f}, cos_min {v['cos_min']:.6f} ({v.get('faces')} faces)"
    if "recall" in v:
        text = f"recall {v['recall']:.4f}, precision {v['precision']:.4f}"
        if "box_err_px" in v and box:  # INT8 is judged on landmarks (NME); its box error is a max over faces
            text += f", box err {_fmt(v['box_err_px'], 2)} px"
        return text + (f", NME {v['landmark_nme']:.4f}" if "landmark_nme" in v else "")
    if "prob_err" in v:
        flips = v.get("decision_flips") or []
        changed = f" (changed: {', '.join(f'{r:.3f} -> {a:.3f}' for r, a in flips[:3])})" if flips else ""
        noise = v.get("reference_noise")
        floor = f"; the reference under one grey level of noise: {_fmt(noise['prob_err'], 2)}, {noise['fragile_crops']} crops it cannot decide" if noise else ""
        fragile = f", {v['decision_flips_fragile']} of them on those" if noise and flips else ""
        # what the INT8 tolerance judges: verdicts the reference holds robustly, and the mean move
        robust = f"; {v['decision_flips_robust']} changed verdicts the reference holds robustly" if flips and "decision_flips_robust" in v else ""
        mean = f" (mean {_fmt(v['prob_err_mean'], 2)})" if "prob_err_mean" in v else ""
        return f"live-probability err {_fmt(v['prob_err'], 2)}{mean}, decisions agree {v.get('decision_agree', 0):.3f}{changed}{floor}{fragile}{robust}"
    return "-"


def bundle_table(manifests: list) -> str:
    """Every bundle under a folder in one table: fidelity to the reference, pair accuracy, size."""
    header = ["model", "target", "verified", "fidelity vs reference", "pair acc (ref)", "size MB"]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for m in sorted(manifests, key=lambda m: (m.model, m.target)):
        v = m.verification.get("metrics", {})
        pair = f"{v['pair_acc']:.2f} ({v['pair_acc_ref']:.2f})" if "pair_acc" in v else "-"
        size = sum((m.path / f).stat().st_size for f in m.files.values() if (m.path / f).is_file()) / 1e6 if m.path else 0
        out.append(
            f"| {m.model} | {m.target} | {'PASS' if m.verification.get('passed') else 'FAIL'} | {_fidelity(v, box=m.precision != 'int8')} | {pair} | {size:.2f} |"
        )
    return "\n".join(out)
