"""Latency-vs-fidelity chart drawn with OpenCV (no matplotlib on a board).

Two panels, detectors (fidelity: recall of the reference's faces) and recognisers (fidelity:
mean cosine to the reference embeddings), both from each bundle's manifest verification. x is
the median single-input latency at the chosen thread count. Peers have no reference to be
faithful to, so they appear as labelled vertical lines at their latency: the point of the chart
is "how much speed does each precision/backend buy, at what fidelity, next to the peers".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

_BACKEND_COLOUR = {"onnxruntime": (180, 90, 20), "openvino": (150, 40, 150), "tflite": (20, 120, 230)}  # BGR
_PEER_COLOUR = (90, 90, 90)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    span = max(hi - lo, 1e-12)
    raw = span / count
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.4f}".rstrip("0").rstrip(".") if abs(v) < 10 else f"{v:.0f}"


def _marker(img: np.ndarray, p: tuple[int, int], precision: str, colour: tuple[int, int, int], filled: bool = True) -> None:
    """Shape by precision (circle fp32, square fp16, triangle int8); hollow when not verified at export."""
    x, y = p
    fill = -1 if filled else 2
    precision = precision.split(">")[-1]  # "fp32>bf16": the compute precision decides the marker
    if precision == "int8":
        pts = np.array([[x, y - 7], [x - 7, y + 6], [x + 7, y + 6]], np.int32)
        if filled:
            cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)
        else:
            cv2.polylines(img, [pts], True, colour, 2, cv2.LINE_AA)
    elif precision in ("fp16", "bf16"):
        cv2.rectangle(img, (x - 6, y - 6), (x + 6, y + 6), colour, fill, cv2.LINE_AA)
    else:
        cv2.circle(img, (x, y), 6, colour, fill, cv2.LINE_AA)


def _panel(
    img: np.ndarray, origin: tuple[int, int], size: tuple[int, int], title: str, ylabel: str, points: Sequence[dict[str, Any]], peers: Sequence[dict[str, Any]]
) -> None:
    ox, oy = origin
    w, h = size
    left, right, top, bottom = 70, 20, 40, 50
    x0, x1, y0, y1 = ox + left, ox + w - right, oy + top, oy + h - bottom
    cv2.putText(img, title, (x0, oy + 25), _FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    xs = [p["x"] for p in points] + [p["x"] for p in peers]
    ys = [p["y"] for p in points]
    if not xs:
        cv2.putText(img, "nothing measured", (x0 + 20, (y0 + y1) // 2), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        return
    xmax = max(xs) * 1.1
    xmin = 0.0
    if ys:
        ylo, yhi = min(ys), max(ys)
        pad = max((yhi - ylo) * 0.15, 0.002)
        ylo, yhi = ylo - pad, min(yhi + pad, 1.0 + pad / 2) if yhi <= 1.0 else yhi + pad
    else:
        ylo, yhi = 0.0, 1.0

    def px(x: float) -> int:
        return int(round(x0 + (x - xmin) / (xmax - xmin) * (x1 - x0)))

    def py(y: float) -> int:
        return int(round(y1 - (y - ylo) / (yhi - ylo) * (y1 - y0)))

    for t in _nice_ticks(xmin, xmax):
        cv2.line(img, (px(t), y0), (px(t), y1), (230, 230, 230), 1)
        cv2.putText(img, _fmt(t), (px(t) - 10, y1 + 18), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for t in _nice_ticks(ylo, yhi):
        cv2.line(img, (x0, py(t)), (x1, py(t)), (230, 230, 230), 1)
        cv2.putText(img, _fmt(t), (ox + 5, py(t) + 4), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
    cv2.putText(img, "median latency, ms", ((x0 + x1) // 2 - 70, y1 + 38), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, ylabel, (x0 + 5, y0 - 5), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for i, p in enumerate(peers):
        x = px(p["x"])
        for yy in range(y0, y1, 8):
            cv2.line(img, (x, yy), (x, min(yy + 4, y1)), _PEER_COLOUR, 1)
        cv2.putText(img, p["label"], (x + 3, y0 + 14 + 13 * (i % 8)), _FONT, 0.35, _PEER_COLOUR, 1, cv2.LINE_AA)
    for i, p in enumerate(sorted(points, key=lambda p: (p["y"], p["x"]))):
        colour = _BACKEND_COLOUR.get(p["backend"], (0, 0, 0))
        q = (px(p["x"]), py(p["y"]))
        _marker(img, q, p["precision"], colour, p.get("verified", True))
        dy = (-10, 18, -22, 30)[i % 4]  # stagger labels: points often share a fidelity value
        cv2.putText(img, p["label"], (q[0] - 10, q[1] + dy), _FONT, 0.35, colour, 1, cv2.LINE_AA)


def _legend(img: np.ndarray, x: int, y: int) -> None:
    for i, (name, colour) in enumerate(_BACKEND_COLOUR.items()):
        cv2.circle(img, (x + 150 * i, y), 6, colour, -1, cv2.LINE_AA)
        cv2.putText(img, name, (x + 150 * i + 10, y + 5), _FONT, 0.45, colour, 1, cv2.LINE_AA)
    for i, (prec, text) in enumerate((("fp32", "fp32"), ("fp16", "fp16/bf16"), ("int8", "int8"))):
        cx = x + 470 + 90 * i
        _marker(img, (cx, y), prec, (60, 60, 60))
        cv2.putText(img, text, (cx + 10, y + 5), _FONT, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    for yy in (y - 7, y - 1, y + 5):
        cv2.line(img, (x + 760, yy), (x + 760, yy + 3), _PEER_COLOUR, 1)
    cv2.putText(img, "peer (no reference: latency only); hollow: not verified at export", (x + 770, y + 5), _FONT, 0.45, _PEER_COLOUR, 1, cv2.LINE_AA)


def chart_points(models: Sequence[dict[str, Any]], threads: int) -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Per task: (bundle points with fidelity, peer lines) at ``threads``."""
    out: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {"detect": ([], []), "embed": ([], [])}
    for r in models:
        if r.get("threads") != threads or r["task"] not in out or "latency" not in r:
            continue
        x = r["latency"]["median_ms"]
        size = f" {r['input_size'][0]}" if r.get("input_size") and r["task"] == "detect" else ""
        if r["kind"] == "peer":
            out[r["task"]][1].append({"x": x, "label": f"{r['name']} ({r['backend']})"})
        elif "value" in (r.get("fidelity") or {}):
            out[r["task"]][0].append(
                {
                    "x": x,
                    "y": float(r["fidelity"]["value"]),
                    "backend": r["backend"],
                    "precision": r["precision"],
                    "verified": r.get("verified", True),
                    "label": f"{r['target']}{size}",
                }
            )
    return out


def draw(models: Sequence[dict[str, Any]], threads: int, path: str | Path, title: str = "") -> Path:
    """Write the PNG; returns its path."""
    img = np.full((640, 1500, 3), 255, np.uint8)
    cv2.putText(img, title or f"latency vs fidelity, {threads} thread(s)", (20, 28), _FONT, 0.7, (0, 0, 0), 1, cv2.LINE_AA)
    pts = chart_points(models, threads)
    _panel(img, (0, 50), (750, 540), "detectors", "recall vs reference", *pts["detect"])
    _panel(img, (750, 50), (750, 540), "recognisers", "cos_mean vs reference", *pts["embed"])
    _legend(img, 40, 615)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write {path}")
    return path
