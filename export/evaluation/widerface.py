"""WIDER FACE validation AP (easy / medium / hard), following the official evaluation exactly.

The protocol (``eval_tools/evaluation.m`` of the WIDER FACE release, and its Python port in
Pytorch_Retinaface ``widerface_evaluate``), reproduced here with our own vectorised code:

- boxes are ``x, y, w, h``; overlaps use inclusive pixel coordinates (``x2 = x + w``, areas
  ``(x2 - x1 + 1) * (y2 - y1 + 1)``); a detection matches the ground-truth face it overlaps most,
  when IoU >= 0.5;
- scores are min-max normalised over *all* detections of the dataset (one min and one max for
  every image, not per image), and each image's detections are sorted by score, descending;
- a setting (easy/medium/hard) counts only the faces in its keep list (``gt_list``); a
  detection matching a face outside it is ignored (neither true nor false positive), a second
  detection of an already-found face is a false positive;
- an image without ground-truth faces or without detections contributes nothing but its face
  count (so detections on empty images are not penalised, as in the official code);
- 1000 thresholds ``1 - t/1000`` give the PR curve, and AP is the VOC area under its precision
  envelope.

Predictions are ``{"event/name": (K, 5) array of x, y, w, h, score}``; detectors' corner boxes
become ``w = x2 - x1 + 1`` as Pytorch_Retinaface's ``test_widerface.py`` writes them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gfn_edge.retinaface_decode import Detections

from .matfile import load_mat

log = logging.getLogger(__name__)

SETTINGS: tuple[str, ...] = ("easy", "medium", "hard")
THRESH_NUM = 1000
IOU_THRESHOLD = 0.5


@dataclass
class WiderImage:
    event: str
    name: str  # file stem, without .jpg
    boxes: np.ndarray  # (K, 4) x, y, w, h
    keep: dict[str, np.ndarray] = field(default_factory=dict)  # setting -> 0-based indices of counted faces

    @property
    def key(self) -> str:
        return f"{self.event}/{self.name}"


@dataclass
class WiderGroundTruth:
    images: list[WiderImage]
    settings: tuple[str, ...] = SETTINGS

    def subset(self, keys: set[str]) -> WiderGroundTruth:
        return WiderGroundTruth([im for im in self.images if im.key in keys], self.settings)


def _cells(value: Any) -> list[Any]:
    return list(np.asarray(value, dtype=object).ravel(order="F"))


def _text(value: Any) -> str:
    arr = np.asarray(value).ravel()
    return str(arr[0]) if arr.size else ""


def load_ground_truth(gt_dir: str | os.PathLike[str], reader: str = "auto", settings: tuple[str, ...] = SETTINGS) -> WiderGroundTruth:
    """Read ``wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat`` from ``gt_dir``."""
    gt_dir = Path(gt_dir)
    files = {"all": gt_dir / "wider_face_val.mat", **{s: gt_dir / f"wider_{s}_val.mat" for s in settings}}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"WIDER FACE ground truth incomplete, missing: {', '.join(missing)} (the official eval_tools/ground_truth folder)")
    main = load_mat(files["all"], reader)
    for var in ("event_list", "file_list", "face_bbx_list"):
        if var not in main:
            raise ValueError(f"{files['all']}: no variable {var!r}")
    keep_lists = {}
    for s in settings:
        data = load_mat(files[s], reader)
        if "gt_list" not in data:
            raise ValueError(f"{files[s]}: no variable 'gt_list'")
        keep_lists[s] = _cells(data["gt_list"])
    images = []
    events, file_lists, box_lists = _cells(main["event_list"]), _cells(main["file_list"]), _cells(main["face_bbx_list"])
    for e, event_value in enumerate(events):
        event = _text(event_value)
        names, boxes = _cells(file_lists[e]), _cells(box_lists[e])
        per_setting = {s: _cells(keep_lists[s][e]) for s in settings}
        for j, name_value in enumerate(names):
            b = np.asarray(boxes[j], dtype=np.float64).reshape(-1, 4)
            keep = {}
            for s in settings:
                idx = np.asarray(per_setting[s][j], dtype=np.int64).ravel() - 1
                if idx.size and (idx.min() < 0 or idx.max() >= len(b)):
                    raise ValueError(f"{files[s]}: keep index out of range for {event}/{_text(name_value)}")
                keep[s] = idx
            images.append(WiderImage(event, _text(name_value), b, keep))
    return WiderGroundTruth(images, settings)


def box_overlaps(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """IoU with inclusive pixel coordinates (the ``+1`` of the official code)."""
    a = np.asarray(a_xyxy, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(inter > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _xyxy(xywh: np.ndarray) -> np.ndarray:
    out = np.array(xywh[:, :4], dtype=np.float64)
    out[:, 2:] += out[:, :2]
    return out


def thresholds(thresh_num: int = THRESH_NUM) -> np.ndarray:
    return 1 - np.arange(1, thresh_num + 1) / thresh_num


def image_pr(pred: np.ndarray, gt_xywh: np.ndarray, keep: np.ndarray, iou_threshold: float = IOU_THRESHOLD, thresh_num: int = THRESH_NUM) -> np.ndarray:
    """(thresh_num, 2): proposals counted and faces found, at each threshold, for one image.

    ``pred`` is (K, 5) with normalised scores; it is sorted here (stable, descending).
    """
    pred = pred[np.argsort(-pred[:, 4], kind="stable")]
    overlaps = box_overlaps(_xyxy(pred), _xyxy(gt_xywh))
    best = overlaps.argmax(axis=1)
    hit = overlaps[np.arange(len(pred)), best] >= iou_threshold
    counted = np.zeros(len(gt_xywh), dtype=bool)
    counted[keep] = True
    proposal = ~(hit & ~counted[best])  # detections of faces outside the setting are not proposals
    found_first = np.zeros(len(pred), dtype=bool)
    on_counted = np.flatnonzero(hit & counted[best])
    _, first = np.unique(best[on_counted], return_index=True)
    found_first[on_counted[first]] = True  # later detections of the same face stay false positives
    recall_cum = np.cumsum(found_first)
    proposal_cum = np.cumsum(proposal)
    n_above = np.searchsorted(-pred[:, 4], -thresholds(thresh_num), side="right")
    out = np.zeros((thresh_num, 2))
    some = n_above > 0
    out[some, 0] = proposal_cum[n_above[some] - 1]
    out[some, 1] = recall_cum[n_above[some] - 1]
    return out


def normalize_scores(preds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Min-max normalise every detection's score with one min and max over the whole dataset."""
    nonempty = [p[:, 4] for p in preds.values() if len(p)]
    if not nonempty:
        return {k: np.asarray(v, dtype=np.float64).reshape(-1, 5) for k, v in preds.items()}
    all_scores = np.concatenate(nonempty)
    lo, hi = float(all_scores.min()), float(all_scores.max())
    out = {}
    for k, v in preds.items():
        v = np.array(v, dtype=np.float64).reshape(-1, 5)
        v[:, 4] = (v[:, 4] - lo) / (hi - lo) if hi > lo else 1.0
        out[k] = v
    return out


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope, summed where recall changes (VOC 2010+ style)."""
    mrec = np.r_[0.0, recall, 1.0]
    mpre = np.r_[0.0, precision, 0.0]
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


@dataclass
class SettingResult:
    ap: float | None
    faces: int
    precision: np.ndarray
    recall: np.ndarray

    def to_dict(self, points: int = 100) -> dict[str, Any]:
        step = max(1, len(self.recall) // points)
        return {
            "ap": self.ap,
            "faces": self.faces,
            "pr_curve": {"recall": self.recall[::step].tolist(), "precision": self.precision[::step].tolist()},
        }


def evaluate(
    preds: Mapping[str, np.ndarray], gt: WiderGroundTruth, iou_threshold: float = IOU_THRESHOLD, thresh_num: int = THRESH_NUM
) -> tuple[dict[str, SettingResult], dict[str, Any]]:
    """AP per setting for ``preds`` on ``gt``; images without predictions count as no detections."""
    norm = normalize_scores(preds)
    missing = [im.key for im in gt.images if im.key not in norm]
    if missing:
        log.warning("%d of %d images have no predictions (counted as no detections), e.g. %s", len(missing), len(gt.images), missing[0])
    results = {}
    for setting in gt.settings:
        curve = np.zeros((thresh_num, 2))
        faces = 0
        for im in gt.images:
            keep = im.keep[setting]
            faces += len(keep)
            pred = norm.get(im.key)
            if pred is None or len(pred) == 0 or len(im.boxes) == 0:
                continue
            curve += image_pr(pred, im.boxes, keep, iou_threshold, thresh_num)
        precision = np.divide(curve[:, 1], curve[:, 0], out=np.zeros(thresh_num), where=curve[:, 0] > 0)
        recall = curve[:, 1] / faces if faces else np.zeros(thresh_num)
        results[setting] = SettingResult(voc_ap(recall, precision) if faces else None, faces, precision, recall)
    return results, {"images": len(gt.images), "images_without_predictions": len(missing)}


def to_wider_boxes(dets: Detections) -> np.ndarray:
    """Corner boxes -> (K, 5) ``x, y, w, h, score`` with inclusive widths, as test_widerface.py writes them."""
    b = np.asarray(dets.boxes, dtype=np.float64).reshape(-1, 4)
    return np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1, np.asarray(dets.scores, np.float64)])


def write_predictions(folder: str | os.PathLike[str], preds: Mapping[str, np.ndarray]) -> Path:
    """The official submission layout: ``folder/<event>/<name>.txt`` (name, count, one box per line)."""
    folder = Path(folder)
    for key, boxes in preds.items():
        event, name = key.split("/", 1)
        path = folder / event / f"{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"{name}.jpg", str(len(boxes))] + [f"{x:.1f} {y:.1f} {w:.1f} {h:.1f} {s:.6f}" for x, y, w, h, s in boxes]
        path.write_text("\n".join(lines) + "\n")
    return folder


def read_predictions(folder: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Predictions in the submission layout (any tool's); unreadable box lines are an error."""
    folder = Path(folder)
    out = {}
    for path in sorted(folder.glob("*/*.txt")):
        lines = path.read_text().splitlines()
        boxes = []
        for n, line in enumerate(lines[2:], start=3):
            if not line.strip():
                continue
            try:
                boxes.append([float(v) for v in line.split()[:5]])
            except ValueError:
                raise ValueError(f"{path}:{n}: expected 'x y w h score', got {line!r}") from None
        if any(len(b) != 5 for b in boxes):
            raise ValueError(f"{path}: every box line needs x y w h score")
        out[f"{path.parent.name}/{path.stem}"] = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    if not out:
        raise FileNotFoundError(f"{folder}: no <event>/<image>.txt prediction files")
    return out
