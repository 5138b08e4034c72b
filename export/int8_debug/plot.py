"""The INT8 debugger's plot: SQNR (cumulative) and added noise along the network's depth.

Drawn with OpenCV, which the SDK already needs (matplotlib is not a dependency): a PNG a user
can open beside the table to see where the error enters.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_W, _H = 1200, 520
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 70, 40, 60
_BLUE, _RED, _GREY, _BLACK, _GREEN = (180, 90, 20), (40, 40, 220), (200, 200, 200), (30, 30, 30), (60, 160, 60)


def plot_error_vs_depth(rows: list[dict[str, Any]], path: Path, title: str = "", label_worst: int = 5) -> bool:
    """Write the plot to ``path``; False (logged) when OpenCV is missing or there is nothing to draw."""
    try:
        import cv2
    except ImportError:
        log.warning("INT8 debug: OpenCV is not installed, no plot written (the table has the numbers)")
        return False
    if not rows:
        return False
    img = np.full((_H, _W, 3), 255, np.uint8)
    n = len(rows)
    sqnr = np.array([min(r["sqnr_db"], 80.0) for r in rows])
    added = np.array([100 * r["added_noise"] for r in rows])
    top_db = max(10.0, math.ceil(sqnr.max() / 10) * 10)
    top_added = max(float(added.max()), 1e-6)
    x0, x1, y0, y1 = _LEFT, _W - _RIGHT, _H - _BOTTOM, _TOP

    def px(i: int) -> int:
        return int(x0 + (x1 - x0) * (i / max(n - 1, 1)))

    def py(v: float, top: float) -> int:
        return int(y0 - (y0 - y1) * min(max(v / top, 0.0), 1.0))

    for k in range(0, int(top_db) + 1, 10):  # grid and left axis (SQNR dB)
        y = py(k, top_db)
        cv2.line(img, (x0, y), (x1, y), _GREY, 1)
        cv2.putText(img, f"{k}", (x0 - 35, y + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, _BLUE, 1, cv2.LINE_AA)
    for frac in (0.0, 0.5, 1.0):  # right axis (added noise %)
        y = py(frac * top_added, top_added)
        cv2.putText(img, f"{frac * top_added:.2g}", (x1 + 6, y + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, _RED, 1, cv2.LINE_AA)
    cv2.rectangle(img, (x0, y1), (x1, y0), _BLACK, 1)
    for i, a in enumerate(added):  # bars: noise added at each tensor
        if a > 0:
            cv2.line(img, (px(i), y0), (px(i), py(a, top_added)), _RED, 2)
    exact = [(i, min(r["exact_sqnr_db"], 80.0)) for i, r in enumerate(rows) if r.get("exact_sqnr_db") is not None]
    if exact:  # onnx-int8: the same model under exact QDQ arithmetic (the gap is the kernels' own error)
        cv2.polylines(img, [np.array([[px(i), py(v, top_db)] for i, v in exact], np.int32)], False, _GREEN, 1, cv2.LINE_AA)
    points = np.array([[px(i), py(v, top_db)] for i, v in enumerate(sqnr)], np.int32)
    cv2.polylines(img, [points], False, _BLUE, 2, cv2.LINE_AA)
    for rank, i in enumerate(np.argsort(-added)[:label_worst]):
        if added[i] <= 0:
            break
        name = str(rows[i]["layer"]).lstrip("/").replace("blocks/blocks.", "blocks.")[-34:]
        cv2.putText(
            img, f"{int(rows[i]['index'])} {name}", (min(px(i) + 4, x1 - 230), y1 + 16 + 16 * rank), cv2.FONT_HERSHEY_SIMPLEX, 0.4, _RED, 1, cv2.LINE_AA
        )
    cv2.putText(img, (title or "INT8 vs FP32")[:90], (x0, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.55, _BLACK, 1, cv2.LINE_AA)
    cv2.putText(
        img,
        "blue: SQNR dB so far (left)   green: the same under exact QDQ arithmetic   red: noise added at the tensor, % of its signal (right)",
        (x0, _H - 30),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.45,
        _BLACK,
        1,
        cv2.LINE_AA,
    )
    cv2.putText(img, "tensor index (graph order) ->", (x1 - 230, _H - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, _BLACK, 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), img):
        log.warning("INT8 debug: could not write %s", path)
        return False
    return True
