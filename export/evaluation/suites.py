"""The three evaluations end to end: data in, models run once over it, JSON-able results out.

Results are plain dicts (fractions in 0..1; the tables print percentages) so the CLI can print
and save them, and so can a notebook.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gfn_edge.errors import ImageError
from gfn_edge.image import list_images, read_image
from gfn_edge.metrics import DetectionAgreement, decisions_changed
from gfn_edge.progress import progress
from gfn_edge.retinaface_decode import Detections

from ..file_names import safe_name
from . import ijb as ijb_mod
from . import widerface
from .pairs_csv import CsvPairs
from .roc_plot import Curve, plot_pr, plot_roc
from .runners import Detector, Embedder, embed_source
from .verification import DEFAULT_FARS, MIN_NEGATIVES_FACTOR, pair_scores, summarize

log = logging.getLogger(__name__)

AGREEMENT = {"score_threshold": 0.5, "score_margin": 0.05, "iou_match": 0.5}  # as export verification


def _models(items: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {"name": m.name, "kind": m.kind, "runs_on": m.runs_on, **({"input": m.input_label} if isinstance(m, Detector) else {}), "info": m.info} for m in items
    ]


# ----------------------------------------------------------------------------- 1:1 pairs


def open_pair_set(path: str | os.PathLike[str], detector: str = "reference", mirror: str | None = None):
    """A .bin (aligned crops) or a pairs CSV / folder holding pairs.csv (photos, aligned here)."""
    from .binfile import read_bin
    from .pairs_csv import load_csv_pairs

    path = Path(path)
    if path.is_dir() and (path / "pairs.csv").is_file():
        path = path / "pairs.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (expected an insightface .bin, a pairs CSV, or a folder with pairs.csv)")
    if path.suffix.lower() == ".bin":
        return read_bin(path)
    if path.suffix.lower() == ".csv":
        return load_csv_pairs(path, detector=detector, mirror=mirror)
    raise ValueError(f"{path}: unknown pair list format {path.suffix!r}; expected .bin or .csv")


def evaluate_pairs(
    data: Sequence[str | os.PathLike[str]],
    embedders: Sequence[Embedder],
    out_dir: str | os.PathLike[str] | None = None,
    flip: bool = True,
    folds: int = 10,
    fold_assignment: str = "auto",
    fars: Sequence[float] = DEFAULT_FARS,
    min_negatives_factor: float = MIN_NEGATIVES_FACTOR,
    detector: str = "reference",
    mirror: str | None = None,
    batch_size: int = 64,
    bundle_detector: str | None = None,
) -> dict[str, Any]:
    """10-fold accuracy, AUC, TAR@FAR and a ROC PNG for every model on every pair set, and every
    model's pair decisions against the first model's.

    With ``bundle_detector`` (a detection bundle; pairs CSVs only) the models after the first are
    given the faces that detector found and aligned, the first keeps ``detector``'s: a whole
    exported pipeline (an INT8 detector and recogniser) against the reference pipeline, the
    decisions it changes being issue 12's criterion (at most 1 %)."""
    if bundle_detector is not None:
        require_two_pipelines(len(embedders))
    result: dict[str, Any] = {
        "task": "verify",
        "settings": {"flip": flip, "folds": folds, "fars": list(fars), "min_negatives_factor": min_negatives_factor, "similarity": "cosine"},
        "models": _models(embedders),
        "datasets": [],
    }
    used_names: set[str] = set()
    for item in data:
        pairs = open_pair_set(item, detector, mirror)
        theirs = pairs  # what the models after the first are given
        if bundle_detector is not None:
            if not isinstance(pairs, CsvPairs):
                raise ValueError(f"{item}: --bundle-detector finds faces in photos, so it needs a pairs CSV, not aligned crops")
            theirs = open_pair_set(item, bundle_detector, mirror)
        stem = safe_name(pairs.name, "pairs")
        while stem in used_names:  # two "pairs.csv" from different folders keep separate plots
            stem += "_"
        used_names.add(stem)
        assignment = fold_assignment if fold_assignment != "auto" else ("interleaved" if pairs.info.get("format") == "pairs csv" else "contiguous")
        groups = [(list(embedders), pairs)] if theirs is pairs else [(list(embedders[:1]), pairs), (list(embedders[1:]), theirs)]
        emb: dict[str, np.ndarray] = {}
        for models, source in groups:
            emb.update(embed_source(models, source, flip, batch_size, desc=f"embedding {pairs.name}"))
        info = dict(pairs.info)
        ok = _usable(pairs)
        info.update({"pairs": int(len(pairs.same)), "pairs_used": int(ok.sum()), "decode_failures": int(len(pairs.failed)), "fold_assignment": assignment})
        if theirs is not pairs:
            info["bundle_detector"] = theirs.info.get("detector")
            info["bundle_pairs_used"] = int(_usable(theirs).sum())
        entry: dict[str, Any] = {"name": pairs.name, "info": info, "results": {}}
        curves, negatives = [], 0
        first: tuple[str, np.ndarray, np.ndarray, float] | None = None  # the first model's name, pair rows, scores, best threshold
        for i, e in enumerate(embedders):
            source = pairs if i == 0 else theirs
            keep = _usable(source)
            scores = pair_scores(emb[e.name][source.a[keep]], emb[e.name][source.b[keep]])
            summary, roc = summarize(scores, source.same[keep], fars, folds, assignment, min_negatives_factor)
            rows = _pair_rows(source)[keep]
            if first is None:
                first = (e.name, rows, scores, summary["best_threshold"])
            else:  # on the pairs both were given (a second detector may find a face the first did not)
                _, at_first, here = np.intersect1d(first[1], rows, assume_unique=True, return_indices=True)
                summary["decisions"] = {"against": first[0], **decisions_changed(first[2][at_first], scores[here], source.same[keep][here], first[3])}
            entry["results"][e.name] = summary
            curves.append(Curve(f"{e.name} (AUC {100 * summary['auc']:.2f}%)", roc.fpr, roc.tpr))
            negatives = roc.negatives
        if out_dir is not None and curves:
            png = plot_roc(Path(out_dir) / f"roc-{stem}.png", curves, negatives, f"ROC: {pairs.name} ({int(ok.sum())} pairs{', flip' if flip else ''})")
            entry["roc_png"] = str(png)
        result["datasets"].append(entry)
    return result


def require_two_pipelines(models: int) -> None:
    """``--bundle-detector`` compares the first model's pipeline with the others': it needs two models
    at least (checked by the CLI before it loads any)."""
    if models < 2:
        raise ValueError("--bundle-detector compares pipelines: give the first model (--reference or a first --bundle) and at least one more --bundle")


def _usable(pairs: Any) -> np.ndarray:
    """The pairs whose two crops decoded."""
    bad = np.asarray(sorted(pairs.failed), dtype=np.int64)
    return ~(np.isin(pairs.a, bad) | np.isin(pairs.b, bad))


def _pair_rows(pairs: Any) -> np.ndarray:
    """Each pair's row in its list: a CSV's pairs name theirs (pairs without a face are left out), a .bin's are all there."""
    rows = getattr(pairs, "rows", None)
    return rows if rows is not None and len(rows) == len(pairs.same) else np.arange(len(pairs.same))


# ----------------------------------------------------------------------------- IJB


def evaluate_ijb(
    root: str | os.PathLike[str],
    embedders: Sequence[Embedder],
    out_dir: str | os.PathLike[str] | None = None,
    subset: str | None = None,
    flip: bool = True,
    detector_score: bool = True,
    fars: Sequence[float] = ijb_mod.IJB_FARS,
    min_negatives_factor: float = MIN_NEGATIVES_FACTOR,
    batch_size: int = 64,
) -> dict[str, Any]:
    """IJB-B/C 1:1 template verification: TAR@FAR, AUC and a ROC PNG per model."""
    meta = ijb_mod.read_ijb(root, subset)
    crops = ijb_mod.IjbCrops(meta)
    emb = embed_source(embedders, crops, flip, batch_size, desc=f"embedding {meta.subset}")
    info = ijb_mod.describe(meta)
    info["unusable_crops"] = len(crops.failed)
    result: dict[str, Any] = {
        "task": "ijb",
        "settings": {
            "flip": flip,
            "detector_score": detector_score,
            "pooling": "mean within media, sum over medias, L2",
            "fars": list(fars),
            "min_negatives_factor": min_negatives_factor,
        },
        "models": _models(embedders),
        "datasets": [],
    }
    entry: dict[str, Any] = {"name": meta.subset, "info": info, "results": {}}
    curves = []
    for e in embedders:
        scores, usable = ijb_mod.ijb_scores(meta, emb[e.name], detector_score, crops.failed)
        info["pairs_left_out"] = int((~usable).sum())
        summary, roc = summarize(scores, meta.label[usable], fars, None, "contiguous", min_negatives_factor)
        entry["results"][e.name] = summary
        curves.append(Curve(f"{e.name} (AUC {100 * summary['auc']:.2f}%)", roc.fpr, roc.tpr))
    if out_dir is not None and curves:
        entry["roc_png"] = str(
            plot_roc(Path(out_dir) / f"roc-{meta.subset.lower()}.png", curves, int((~meta.label).sum()), f"ROC: {meta.subset} 1:1 verification")
        )
    result["datasets"].append(entry)
    return result


# ----------------------------------------------------------------------------- detection


def run_detectors(
    detectors: Sequence[Detector], images: Sequence[tuple[str, Path]], score_threshold: float, nms_threshold: float = 0.4, desc: str = "detecting"
) -> tuple[dict[str, dict[str, Detections]], list[str]]:
    """Every detector on every picture (each read once); returns detections by model, then by key."""
    out: dict[str, dict[str, Detections]] = {d.name: {} for d in detectors}
    unreadable = []
    for key, path in progress(images, desc):
        try:
            image = read_image(path)
        except ImageError as exc:
            log.warning("%s: %s", key, exc)
            unreadable.append(key)
            continue
        for d in detectors:
            out[d.name][key] = d.detect(image, score_threshold, nms_threshold)
    return out, unreadable


def agreement(reference: str, dets: dict[str, dict[str, Detections]]) -> dict[str, dict[str, Any]]:
    """Recall and precision of each model's confident faces against the reference's (same pictures)."""
    out = {}
    for name, per_image in dets.items():
        if name == reference:
            continue
        acc = DetectionAgreement()
        for key, ref in dets[reference].items():
            if key in per_image:
                acc.add(ref, per_image[key], AGREEMENT["score_threshold"], AGREEMENT["score_margin"], AGREEMENT["iou_match"])
        out[name] = {"images": len(per_image), **acc.metrics()}
    return out


def _spread(items: list[Any], limit: int | None) -> list[Any]:
    if limit is None or len(items) <= limit:
        return items
    idx = np.unique(np.linspace(0, len(items) - 1, limit).round().astype(int))
    return [items[i] for i in idx]


def evaluate_widerface(
    gt_dir: str | os.PathLike[str],
    images_root: str | os.PathLike[str] | None,
    detectors: Sequence[Detector],
    out_dir: str | os.PathLike[str] | None = None,
    reference: str | None = None,
    predictions: Sequence[str | os.PathLike[str]] = (),
    max_images: int | None = None,
    score_threshold: float = 0.02,
    nms_threshold: float = 0.4,
    save_predictions: bool = False,
    mat_reader: str = "auto",
) -> dict[str, Any]:
    """WIDER FACE val AP (easy/medium/hard) for detectors and/or saved prediction folders."""
    gt = widerface.load_ground_truth(gt_dir, mat_reader)
    if max_images is not None:
        gt = widerface.WiderGroundTruth(_spread(gt.images, max_images), gt.settings)
    preds: dict[str, dict[str, np.ndarray]] = {}
    labels: list[dict[str, Any]] = _models(detectors)
    info: dict[str, Any] = {"ground_truth": str(gt_dir), "images": len(gt.images), "score_threshold": score_threshold, "nms_threshold": nms_threshold}
    dets: dict[str, dict[str, Detections]] = {}
    if detectors:
        if images_root is None:
            raise ValueError("running detectors on WIDER FACE needs the images folder (WIDER_val/images)")
        root = Path(images_root)
        items = [(im.key, root / im.event / f"{im.name}.jpg") for im in gt.images]
        dets, unreadable = run_detectors(detectors, items, score_threshold, nms_threshold, "WIDER FACE")
        info["unreadable_images"] = len(unreadable)
        for name, per_image in dets.items():
            preds[name] = {k: widerface.to_wider_boxes(d) for k, d in per_image.items()}
            if save_predictions and out_dir is not None:
                widerface.write_predictions(Path(out_dir) / "widerface-predictions" / safe_name(name, "detector"), preds[name])
    for folder in predictions:
        name = f"predictions:{Path(folder).name}"
        preds[name] = widerface.read_predictions(folder)
        labels.append({"name": name, "kind": "predictions", "runs_on": str(folder), "input": "-", "info": {}})
    entry: dict[str, Any] = {"name": "WIDER FACE val", "info": info, "results": {}}
    curves: dict[str, list[Curve]] = {s: [] for s in gt.settings}
    for name, p in preds.items():
        res, extra = widerface.evaluate(p, gt)
        entry["results"][name] = {**{s: r.to_dict() for s, r in res.items()}, **extra}
        for s, r in res.items():
            curves[s].append(Curve(f"{name} (AP {100 * (r.ap or 0):.2f}%)", r.recall, r.precision))
    if out_dir is not None and preds:
        entry["pr_png"] = {s: str(plot_pr(Path(out_dir) / f"pr-widerface-{s}.png", c, f"WIDER FACE val, {s}: precision-recall")) for s, c in curves.items()}
    if reference is not None and len(dets) > 1:
        entry["agreement"] = agreement(reference, dets)
    return {
        "task": "detect",
        "settings": {**AGREEMENT, "protocol": "WIDER FACE official (global score normalisation, IoU 0.5, 1000 thresholds, VOC AP)"},
        "models": labels,
        "datasets": [entry],
    }


def evaluate_agreement(folder: str | os.PathLike[str], reference: Detector, detectors: Sequence[Detector], max_images: int | None = None) -> dict[str, Any]:
    """Agreement of each detector with the reference on any folder of pictures (no ground truth)."""
    folder = Path(folder)
    files = _spread(list_images(folder), max_images)
    if not files:
        raise FileNotFoundError(f"{folder}: no pictures")
    items = [(str(p.relative_to(folder)), p) for p in files]
    low = AGREEMENT["score_threshold"] - AGREEMENT["score_margin"]
    dets, unreadable = run_detectors([reference, *detectors], items, low, 0.4, "agreement")
    entry = {
        "name": folder.name,
        "info": {"folder": str(folder), "images": len(items), "unreadable_images": len(unreadable)},
        "agreement": agreement(reference.name, dets),
    }
    return {"task": "detect-agreement", "settings": dict(AGREEMENT), "models": _models([reference, *detectors]), "datasets": [entry]}
