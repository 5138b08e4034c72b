"""Markdown tables of evaluation results (what gfn-eval prints and saves next to the JSON)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join(lines)


def pct(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}"


def _runs_on(result: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["runs_on"] for m in result["models"]}


def _tar_cells(summary: dict[str, Any], notes: list[str]) -> list[str]:
    cells = []
    for far, t in summary["tar_at_far"].items():
        mark = ""
        if t.get("reason"):
            if t["reason"] not in notes:
                notes.append(t["reason"])
            mark = f"[{notes.index(t['reason']) + 1}]"
        cells.append(("n/a" if t["tar"] is None else pct(t["tar"])) + mark)
    return cells


def _notes(notes: list[str], png: str | None) -> list[str]:
    """Footnotes as a list (a bare line right after a Markdown table would become a row)."""
    lines = [f"- [{i + 1}] {r}" for i, r in enumerate(notes)]
    if png:
        lines.append(f"- ROC curve: {png}")
    return lines + [""] if lines else []


def _decisions_cell(decisions: dict[str, Any] | None) -> str:
    if not decisions:
        return "-"
    cell = f"{decisions['changed']} of {decisions['pairs']} ({pct(decisions['share'])} %; {decisions['now_wrong']} / {decisions['now_right']})"
    return cell + (f", expected {decisions['expected']:.1f}" if decisions.get("expected") is not None else "")


def format_verify(result: dict[str, Any]) -> str:
    """A README-style summary (accuracy per data set) and one detail table per data set."""
    runs_on = _runs_on(result)
    datasets = result["datasets"]
    names = [m["name"] for m in result["models"]]
    out = ["## Face verification: 10-fold accuracy (%)" if result["settings"].get("folds") else "## Face verification", ""]
    header = ["model", "runs on"] + [d["name"] for d in datasets]
    rows = []
    for n in names:
        cells = []
        for d in datasets:
            s = d["results"][n]
            cells.append(f"{pct(s['accuracy'])} ± {pct(s['accuracy_std'])}" if "accuracy" in s else pct(s["best_accuracy"]))
        rows.append([n, runs_on[n], *cells])
    out += [table(header, rows), ""]
    for d in datasets:
        info = d["info"]
        first = d["results"][names[0]]
        flip = "flip on" if result["settings"]["flip"] else "flip off"
        out.append(
            f"### {d['name']}: {first['pairs']} pairs ({first['same']} same, {first['different']} different), "
            f"{result['settings']['folds']} folds {info.get('fold_assignment', '')}, {flip}"
        )
        if info.get("bundle_detector"):
            out.append(f"faces found for {names[0]} by {info['detector']}, for the others by {info['bundle_detector']}; {info.get('crops', '')}")
        elif info.get("detector"):
            out.append(f"faces found by {info['detector']}; {info.get('crops', '')}")
        if info.get("pairs_dropped") or info.get("decode_failures"):
            out.append(f"pairs left out: {info['pairs'] + info.get('pairs_dropped', 0) - info['pairs_used']} (no face / undecodable image)")
        if "bundle_pairs_used" in info and info["bundle_pairs_used"] != info["pairs_used"]:
            out.append(f"pairs the bundle detector found both faces of: {info['bundle_pairs_used']} (decisions are compared on the pairs both have)")
        out.append("")
        notes: list[str] = []
        fars = list(first["tar_at_far"])
        changed = f"decisions changed vs {names[0]}" if len(names) > 1 else ""  # no column for a lone model
        header = ["model", "runs on", "accuracy %", "threshold", "best-threshold acc %", "AUC %"] + [f"TAR@FAR={f}" for f in fars]
        header += [changed] if changed else []
        rows = []
        for n in names:
            s = d["results"][n]
            acc = f"{pct(s['accuracy'])} ± {pct(s['accuracy_std'])}" if "accuracy" in s else "-"
            thr = f"{s['threshold']:.4f}" if "threshold" in s else "-"
            row = [n, runs_on[n], acc, thr, pct(s["best_accuracy"]), pct(s["auc"]), *_tar_cells(s, notes)]
            rows.append(row + ([_decisions_cell(s.get("decisions"))] if changed else []))
        out += [table(header, rows), ""]
        if changed:
            out += [f"{changed}: pairs decided otherwise at {names[0]}'s best-accuracy threshold (now wrong / now right)", ""]
        out += _notes(notes, d.get("roc_png"))
    return "\n".join(out)


def format_ijb(result: dict[str, Any]) -> str:
    runs_on = _runs_on(result)
    out = []
    for d in result["datasets"]:
        info, settings = d["info"], result["settings"]
        out.append(
            f"## {d['name']} 1:1 verification: TAR (%) at FAR; {info['templates']} templates, {info['crops']} crops, "
            f"{info['pairs']} pairs ({info['same']} same); flip {'on' if settings['flip'] else 'off'}, "
            f"detector-score weighting {'on' if settings['detector_score'] else 'off'}"
        )
        if info.get("unusable_crops"):
            out.append(f"{info['unusable_crops']} crops could not be read or aligned and were left out of their templates")
        if info.get("pairs_left_out"):
            out.append(f"{info['pairs_left_out']} pairs left out: a template without any readable crop")
        out.append("")
        notes: list[str] = []
        fars = list(next(iter(d["results"].values()))["tar_at_far"])
        rows = [[n, runs_on[n], *_tar_cells(s, notes), pct(s["auc"])] for n, s in d["results"].items()]
        out += [table(["model", "runs on", *[f"FAR={f}" for f in fars], "AUC %"], rows), ""]
        out += _notes(notes, d.get("roc_png"))
    return "\n".join(out)


def _agreement_table(agree: dict[str, dict[str, Any]], runs_on: dict[str, str]) -> str:
    header = ["model", "runs on", "pictures", "faces (ref)", "recall %", "precision %", "max box err px", "landmark NME"]
    rows = [
        [n, runs_on.get(n, "-"), a["images"], a["faces_reference"], pct(a["recall"]), pct(a["precision"]), f"{a['box_err_px']:.2f}", f"{a['landmark_nme']:.4f}"]
        for n, a in agree.items()
    ]
    return table(header, rows)


def format_detect(result: dict[str, Any]) -> str:
    runs_on = _runs_on(result)
    inputs = {m["name"]: m.get("input", "-") for m in result["models"]}
    out = []
    for d in result["datasets"]:
        if d.get("results"):
            info = d["info"]
            out.append(f"## WIDER FACE val AP (%): {info['images']} pictures, official protocol")
            out.append("")
            settings = [s for s in ("easy", "medium", "hard") if s in next(iter(d["results"].values()))]
            rows = [[n, runs_on.get(n, "-"), inputs.get(n, "-"), *[pct(r[s]["ap"]) for s in settings]] for n, r in d["results"].items()]
            out += [table(["model", "runs on", "input", *settings], rows), ""]
            if info.get("unreadable_images"):
                out += [f"{info['unreadable_images']} pictures could not be read (counted as no detections)", ""]
            if d.get("pr_png"):
                out += [f"PR curves: {', '.join(d['pr_png'].values())}", ""]
        if d.get("agreement"):
            out.append(f"## Agreement with the reference detector on {d['info'].get('images', '?')} pictures of {d['name']} (score >= 0.5, IoU >= 0.5)")
            out.append("")
            out.append(_agreement_table(d["agreement"], runs_on))
            out.append("")
    return "\n".join(out)


def format_result(result: dict[str, Any]) -> str:
    task = result["task"]
    if task == "verify":
        return format_verify(result)
    if task == "ijb":
        return format_ijb(result)
    return format_detect(result)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return None if np.isnan(v) else v
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_outputs(result: dict[str, Any], out_dir: str | os.PathLike[str], stem: str) -> tuple[Path, Path]:
    """``OUT/<stem>.json`` (every number) and ``OUT/<stem>.md`` (the printed tables)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / f"{stem}.json"
    md = out_dir / f"{stem}.md"
    js.write_text(json.dumps(_plain(result), indent=2, default=str) + "\n")
    md.write_text(format_result(result) + "\n")
    return js, md
