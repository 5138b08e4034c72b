"""Markdown tables from a gfn-bench result dict (the same dict that is written as JSON).

Tables quote medians with p90 beside them, the thread count of every row, and the load
average the run saw, so a reader can tell a slow model from a busy machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub Markdown table; numbers right-aligned."""
    rows = [["" if v is None else str(v) for v in r] for r in rows]
    align = ["---:" if rows and all(_numeric(r[i]) for r in rows if r[i]) else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("x%"))
        return True
    except ValueError:
        return False


def _ms(t: dict[str, Any] | None, key: str = "median_ms") -> str:
    return "" if not t or key not in t else f"{t[key]:.2f}"


def _int(v: Any) -> str:
    return "" if v is None else f"{int(v):,}"


NOISY = 0.15  # others' share of the CPUs during a measurement above which a row is marked


def _noisy(r: dict[str, Any]) -> str:
    """'*' when other processes took over 15% of the CPUs while the row was measured."""
    return "*" if (r.get("others_busy_max") or 0.0) > NOISY else ""


def _size(r: dict[str, Any]) -> str:
    s = r.get("input_size")
    return f"{s[0]}x{s[1]}" if s else ""


def _fidelity(r: dict[str, Any]) -> str:
    f = r.get("fidelity") or {}
    if r["task"] == "detect" and "recall" in f:
        lm = f" lm {f['landmark_err_px']:.2f}px" if "landmark_err_px" in f else ""
        return f"recall {f['recall']:.3f}{lm}"
    if r["task"] == "embed" and "cos_mean" in f:
        return f"cos {f['cos_mean']:.4f}"
    if "prob_err" in f:
        return f"prob err {f['prob_err']:.1e}"
    return ""


def _sanity(s: dict[str, Any] | None) -> str:
    if not s:
        return ""
    if "error" in s:
        return "error"
    bits = []
    if "scene_found" in s:
        bits.append(f"t1 {s['scene_found']}/{s.get('scene_expected') or '?'}")
    if "portraits" in s:
        bits.append(f"1-face {s['portraits_one_face']}/{s['portraits']}")
    if "mean_cos_same" in s:
        bits.append(f"same {s['mean_cos_same']:.2f} / diff {s['mean_cos_different']:.2f}")
    if "best_accuracy" in s:
        bits.append(f"best acc {100 * s['best_accuracy']:.1f}% at {s['best_threshold']:.2f}")
    return ", ".join(bits)


def models_table(result: dict[str, Any], task: str) -> str:
    rows = []
    batches: list[int] = []
    for r in result.get("models", []):
        if r["task"] != task:
            continue
        c = r.get("complexity") or {}
        mem = r.get("memory") or {}
        thr = {t["batch"]: t["items_per_s"] for t in r.get("throughput", [])}
        batches = sorted(set(batches) | set(thr))
        row = [
            r["name"] + (" (peer)" if r["kind"] == "peer" else ""),
            _size(r),
            r["target"],
            r["backend"],
            r["precision"],
            f"{r['threads']}" + ("" if r.get("threads_runtime") in (None, r["threads"]) else f" (runtime {r['threads_runtime']})") + _noisy(r),
            _ms(r.get("latency")),
            _ms(r.get("latency"), "p90_ms"),
        ]
        if task == "embed":
            row += [f"{thr[b]:.0f}" if b in thr else "" for b in batches]
        row += [
            f"{mem['peak_rss_mb']:.0f}" if "peak_rss_mb" in mem else mem.get("error", ""),
            f"{r['file_bytes'] / 1024:.0f}",
            _int(c.get("params")),
            f"{c['macs'] / 1e6:.0f}" if "macs" in c else "unknown",
            _fidelity(r),
            _sanity((result.get("sanity") or {}).get(r["name"])),
        ]
        rows.append(row)
    headers = ["model", "input", "target", "backend", "precision", "threads", "median ms", "p90 ms"]
    if task == "embed":
        headers += [f"faces/s b{b}" for b in batches]
    headers += ["peak RSS MiB", "file KiB", "params", "MMACs", "fidelity (manifest)", "sanity (real photos)"]
    return table(headers, rows)


def pipeline_table(pipe: dict[str, Any]) -> str:
    rows = []
    for r in sorted(pipe.get("rows", []), key=lambda r: (r["threads"], r["frame_ms"])):
        st = r["stages"]
        rows.append(
            [
                r["label"],
                r["detector"]["input"],
                f"{r['threads']}{_noisy(r)}",
                _ms(st.get("detect")),
                _ms(st.get("detect_inference")),
                _ms(st.get("detect_preprocess")),
                _ms(st.get("detect_decode")),
                _ms(st.get("align")),
                _ms(st.get("embed")),
                _ms(st.get("frame")),
                _ms(st.get("frame"), "p90_ms"),
                f"{1000.0 / st['frame']['median_ms']:.0f}",
            ]
        )
    headers = ["pipeline", "det input", "threads", "detect", "det infer", "det pre", "det decode", "align", "embed", "frame median", "frame p90", "FPS"]
    return table(headers, rows)


def search_table(pipe: dict[str, Any]) -> str:
    rows = [[s["gallery"], _int(s["size"]), f"{s['threads']}{_noisy(s)}", _ms(s["latency"]), _ms(s["latency"], "p90_ms")] for s in pipe.get("search", [])]
    return table(["gallery", "identities", "threads", "search median ms", "p90 ms"], rows)


def import_table(items: list[dict[str, Any]]) -> str:
    rows = []
    for i in items:
        if "error" in i:
            rows.append([i["backend"], "", "", "", i["error"]])
        else:
            rows.append(
                [i["backend"], f"{i['gfn_edge_s'] * 1000:.0f}", f"{i['backend_s'] * 1000:.0f}", f"{i['total_s'] * 1000:.0f}", f"median of {i['repeats']}"]
            )
    return table(["backend", "import gfn_edge ms", "+ backend ms", "total ms", "note"], rows)


def int8_table(rows: list[dict[str, Any]]) -> str:
    """INT8 bundles against their FP32 siblings, timed in alternating rounds (:mod:`.paired`)."""
    out = []
    for r in rows:
        size = f"{r['input_size'][0]}x{r['input_size'][1]}" if r.get("input_size") else ""
        sizes = f"{r['int8_bytes'] / 1e6:.2f} / {r['fp32_bytes'] / 1e6:.2f} ({100 * r['size_ratio']:.0f} %)" if r.get("size_ratio") else ""
        if "error" in r:
            out.append([r["model"], size, r["backend"], str(r["threads"]), "", "", r["error"], sizes])
        else:
            out.append([r["model"], size, r["backend"], str(r["threads"]), f"{r['fp32_ms']:.2f}", f"{r['int8_ms']:.2f}", f"{r['ratio']:.2f}", sizes])
    return table(["model", "input", "backend", "threads", "FP32 ms", "INT8 ms", "INT8 / FP32", "MB INT8 / FP32"], out)


def render(result: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    sys_ = result.get("system", {})
    out = [
        "# gfn-bench results\n",
        f"- machine: {sys_.get('cpu', '?')}, {sys_.get('usable_cores', '?')} usable cores "
        f"({sys_.get('physical_cores', '?')} physical), {sys_.get('os', '')}, Python {sys_.get('python', '')}",
        f"- CPU features: {', '.join(sys_.get('cpu_flags', [])) or 'n/a'}",
        f"- load average (1/5/15 min): before {result.get('load_before')}, after {result.get('load_after')}",
        "- runtimes: " + ", ".join(f"{k} {v}" for k, v in sys_.get("packages", {}).items()),
        f"- settings: {result.get('settings', {})}",
        f"- date: {sys_.get('date', '')}\n",
    ]
    if result.get("warnings"):
        out += ["**Warnings:**", *[f"- {w}" for w in result["warnings"]], ""]
    pipe = result.get("pipeline")
    if pipe:
        v = pipe.get("verdict", {})
        out += [
            "## End to end: one VGA frame, one face (detect + align + embed)\n",
            f"**{v.get('text', '')}**\n",
            pipeline_table(pipe),
            "",
            "Stage columns are medians in ms, each timed alone; `frame` is the whole pipeline timed as one call. "
            "`*`: other processes took over 15% of the CPUs while the row was measured, even after retries (inflated). Unverified rows (`+bf16`) "
            "were not checked for accuracy at export.\n",
        ]
        out += ["## 1:N search (synthetic normalised 512-d templates)\n", search_table(pipe), ""]
    if result.get("models"):
        out += ["## Detectors (single-input inference latency)\n", models_table(result, "detect"), ""]
        out += ["## Recognisers (single-face latency, throughput by batch)\n", models_table(result, "embed"), ""]
        if any(r["task"] == "liveness" for r in result["models"]):
            out += ["## Liveness\n", models_table(result, "liveness"), ""]
    if result.get("int8_vs_fp32"):
        out += [
            "## INT8 beside FP32 (each pair timed in alternating rounds)\n",
            int8_table(result["int8_vs_fp32"]),
            "",
            "Each INT8 bundle and the FP32 bundle of the same model, runtime and input size, opened together and "
            "timed in alternating rounds (median of the round medians), so a busy or throttled CPU slows both alike; "
            "the tables above time each row on its own.\n",
        ]
    if result.get("import_time"):
        out += ["## Import time (fresh interpreter)\n", import_table(result["import_time"]), ""]
    skipped = result.get("skipped", []) + result.get("failures", []) + (pipe or {}).get("failures", [])
    if skipped:
        out += ["## Skipped or failed\n"] + [f"- {_describe_skip(s)}" for s in skipped] + [""]
    notes = sorted({n for r in result.get("models", []) for n in r.get("notes", [])})
    if notes:
        out += ["## Notes\n"] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)


def _describe_skip(s: dict[str, Any]) -> str:
    what = s.get("candidate") or s.get("pair") or s.get("bundle") or s.get("name") or "?"
    extra = f" (threads {s['threads']})" if "threads" in s else ""
    return f"{what}{extra}: {s.get('error') or s.get('reason')}"
