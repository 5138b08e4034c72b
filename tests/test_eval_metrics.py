"""Verification protocol maths and pair-set readers, checked against hand-computed cases."""

from __future__ import annotations

import os
import pickle
import struct

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gfn_edge.export.evaluation import binfile
from gfn_edge.export.evaluation.pairs_csv import read_pairs
from gfn_edge.export.evaluation.report import _decisions_cell
from gfn_edge.export.evaluation.roc_plot import PALETTE, Curve, plot_roc, roc_x_range
from gfn_edge.export.evaluation.runners import ArrayCrops, Embedder, embed_source
from gfn_edge.export.evaluation.suites import evaluate_pairs
from gfn_edge.export.evaluation.verification import (
    auc,
    best_threshold,
    fold_indices,
    kfold_accuracy,
    roc_curve,
    summarize,
    tar_at_far,
)
from gfn_edge.metrics import decisions_changed


def best_threshold_accuracy(scores, same):
    """Oracle: the former O(n^2) implementation (every midpoint tried against every pair at once)."""
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    uniq = np.unique(scores)
    candidates = np.concatenate([[uniq[0] - 1e-6], (uniq[:-1] + uniq[1:]) / 2, [uniq[-1] + 1e-6]])
    acc = ((scores[None, :] >= candidates[:, None]) == same[None, :]).mean(axis=1)
    best = int(np.argmax(acc))
    return float(acc[best]), float(candidates[best])


# pos: 0.9 0.8 0.6 0.4 ; neg: 0.7 0.5 0.3 0.2 0.1
SCORES = np.array([0.9, 0.8, 0.6, 0.4, 0.7, 0.5, 0.3, 0.2, 0.1])
SAME = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0], bool)


def test_roc_points_by_hand():
    roc = roc_curve(SCORES, SAME)
    # descending: .9P .8P .7N .6P .5N .4P .3N .2N .1N
    assert roc.false_positives.tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 4, 5]
    np.testing.assert_allclose(roc.tpr, [0, 1 / 4, 2 / 4, 2 / 4, 3 / 4, 3 / 4, 1, 1, 1, 1])
    np.testing.assert_allclose(roc.fpr, [0, 0, 0, 1 / 5, 1 / 5, 2 / 5, 2 / 5, 3 / 5, 4 / 5, 1])
    assert roc.thresholds[0] == np.inf and roc.thresholds[3] == 0.7
    assert (roc.positives, roc.negatives) == (4, 5)


def test_auc_by_hand_including_ties():
    # pairs (pos > neg): 0.9 beats 5, 0.8 beats 5, 0.6 beats 4, 0.4 beats 3 -> 17 of 20
    assert auc(roc_curve(SCORES, SAME)) == pytest.approx(17 / 20)
    assert auc(roc_curve([0.5, 0.5], [True, False])) == pytest.approx(0.5)  # a tie counts half
    assert auc(roc_curve([0.5, 0.7, 0.5], [True, True, False])) == pytest.approx(0.75)
    assert auc(roc_curve([0.1, 0.9], [True, False])) == pytest.approx(0.0)


def test_tar_at_far_by_hand():
    roc = roc_curve(SCORES, SAME)
    # FAR <= 0.2: one of 5 negatives may pass -> accept >= 0.6 -> 3 of 4 positives
    t = tar_at_far(roc, 0.2, min_negatives_factor=0)
    assert (t.tar, t.threshold, t.far_achieved) == (pytest.approx(0.75), 0.6, pytest.approx(0.2))
    # FAR <= 0.1: no negative may pass -> accept >= 0.8 -> 2 of 4, never the nearer point above the FAR
    t = tar_at_far(roc, 0.1, min_negatives_factor=0)
    assert (t.tar, t.threshold, t.far_achieved) == (pytest.approx(0.5), 0.8, 0.0)
    assert tar_at_far(roc, 0.4, min_negatives_factor=0).tar == pytest.approx(1.0)
    assert tar_at_far(roc, 0.0, min_negatives_factor=0).tar == pytest.approx(0.5)


def test_tar_at_far_needs_enough_negatives():
    roc = roc_curve(SCORES, SAME)
    t = tar_at_far(roc, 1e-4)
    assert t.tar is None and "100,000" in t.reason and "has 5" in t.reason
    # 10 / 0.5 = 20 negatives needed, 5 present
    assert tar_at_far(roc, 0.5, min_negatives_factor=10).tar is None
    assert tar_at_far(roc, 0.5, min_negatives_factor=1).tar == pytest.approx(1.0)
    forced = tar_at_far(roc, 0.1, always=True)
    assert forced.tar == pytest.approx(0.5) and "only 5" in forced.reason


def test_best_threshold_matches_reference_implementation():
    rng = np.random.default_rng(0)
    for n in (2, 7, 50, 300):
        scores = np.round(rng.normal(size=n), 1)  # many ties
        same = rng.random(n) < 0.4
        assert best_threshold(scores, same) == pytest.approx(best_threshold_accuracy(scores, same))
    assert best_threshold([0.2, 0.4, 0.6, 0.8], [False, False, True, True]) == (1.0, pytest.approx(0.5))


def test_decisions_changed_by_hand():
    """Pairs decided otherwise than the first model at its threshold, and which way they went."""
    first = SCORES
    # pair 3 (same, 0.4) pushed over 0.55: now right; pair 4 (different, 0.7) pulled under: now right;
    # pair 0 (same, 0.9) pulled under: now wrong; pair 6 (different, 0.3) pushed over: now wrong
    moved = SCORES.copy()
    moved[[3, 4, 0, 6]] = [0.6, 0.5, 0.5, 0.58]
    d = decisions_changed(first, moved, SAME, 0.55)
    # expected: each of the 9 shifts put on each pair, the decisions that turn counted over 9 x 9
    shifts = moved - first
    turned = ((first[:, None] + shifts[None, :] >= 0.55) != (first >= 0.55)[:, None]).sum() / 9
    assert d == {
        "threshold": 0.55,
        "pairs": 9,
        "changed": 4,
        "share": pytest.approx(4 / 9),
        "agree": pytest.approx(5 / 9),
        "now_wrong": 2,
        "now_right": 2,
        "expected": pytest.approx(turned),
        "expected_agree": pytest.approx(1 - turned / 9),
    }
    assert decisions_changed(first, first, SAME, 0.55)["changed"] == 0
    with pytest.raises(ValueError, match="9 first-model scores, 8 scores"):
        decisions_changed(first, first[:8], SAME, 0.55)


def test_decisions_changed_counts_a_nan_score_as_a_refusal_and_expects_nothing():
    """A model that outputs NaN for a face: its pairs are refused (counted as changed where the
    first model accepted them), and no expectation is made of shifts that are not numbers, so
    ``gfn-eval`` reports the broken model instead of stopping on it."""
    moved = SCORES.copy()
    moved[0] = np.nan  # pair 0: same person, 0.9 -> NaN: accepted -> refused
    d = decisions_changed(SCORES, moved, SAME, 0.55)
    assert (d["changed"], d["now_wrong"], d["expected"], d["expected_agree"]) == (1, 1, None, None)
    assert _decisions_cell(d) == "1 of 9 (11.11 %; 1 / 0)"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-1, 1), st.floats(-1, 1), st.booleans()), min_size=1, max_size=40), st.floats(-1, 1))
def test_decisions_changed_counts_each_changed_pair_once(rows, threshold):
    first, scores, same = (np.array(c) for c in zip(*rows))
    d = decisions_changed(first, scores, same, threshold)
    assert d["changed"] == d["now_wrong"] + d["now_right"] == int(((first >= threshold) != (scores >= threshold)).sum())
    # the accuracy moves by exactly what turned right less what turned wrong
    acc = lambda s: int(((s >= threshold) == same).sum())  # noqa: E731
    assert acc(scores) - acc(first) == d["now_right"] - d["now_wrong"]
    assert decisions_changed(scores, first, same, threshold)["changed"] == d["changed"]


def test_fold_indices():
    folds = fold_indices(23, 10, "contiguous")
    assert [len(f) for f in folds] == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]  # like KFold(shuffle=False)
    assert np.concatenate(folds).tolist() == list(range(23))
    inter = fold_indices(23, 10, "interleaved")
    assert inter[0].tolist() == [0, 10, 20] and inter[9].tolist() == [9, 19]
    with pytest.raises(ValueError):
        fold_indices(5, 10)


def _ten_folds() -> tuple[np.ndarray, np.ndarray]:
    """Folds 0-8: same 0.9, 0.8, different 0.1, 0.2. Fold 9: same 0.45, 0.9, different 0.4, 0.1."""
    scores, same = [], []
    for _ in range(9):
        scores += [0.9, 0.8, 0.1, 0.2]
        same += [True, True, False, False]
    scores += [0.45, 0.9, 0.4, 0.1]
    same += [True, True, False, False]
    return np.array(scores), np.array(same)


def test_kfold_accuracy_by_hand():
    scores, same = _ten_folds()
    k = kfold_accuracy(scores, same, 10, "contiguous")
    # Folds 0-8 train on a set containing fold 9, whose 0.40/0.45 pair puts the best threshold at
    # 0.425: each of them scores 4/4. Fold 9 trains on folds 0-8 only: threshold 0.5, so its
    # 0.45 same-pair is rejected: 3/4. A threshold tuned on all pairs would give 100%.
    np.testing.assert_allclose(k.thresholds, [0.425] * 9 + [0.5])
    np.testing.assert_allclose(k.folds, [1.0] * 9 + [0.75])
    assert k.mean == pytest.approx(0.975)
    assert k.std == pytest.approx(0.075)  # population std of nine 1.0 and one 0.75
    summary, _ = summarize(scores, same, fars=(0.1,), folds=10, min_negatives_factor=0)
    assert summary["best_accuracy"] == pytest.approx(1.0) and summary["accuracy"] == pytest.approx(0.975)
    assert summary["auc"] == pytest.approx(1.0) and summary["tar_at_far"]["1e-01"]["tar"] == pytest.approx(1.0)


def test_summarize_refuses_one_class():
    with pytest.raises(ValueError, match="both same and different"):
        summarize([0.1, 0.2], [True, True])


# ----------------------------------------------------------------------------- .bin files


def _png(color: tuple[int, int, int], size: int = 112) -> bytes:
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = color
    img[:10, :10] = 255 - np.asarray(color)  # asymmetric, so orientation mistakes show
    return cv2.imencode(".png", img)[1].tobytes()


def _py2_pickle(entries: list[bytes], labels: list[bool]) -> bytes:
    """What Python 2 insightface scripts wrote: protocol 2, images as (byte) str."""
    out = b"\x80\x02(]("
    for e in entries:
        out += b"T" + struct.pack("<I", len(e)) + e
    out += b"e]("
    out += b"".join(b"\x88" if v else b"\x89" for v in labels)
    out += b"et."  # APPENDS, TUPLE, STOP
    return out


def test_bin_reader_decodes_every_known_encoding(tmp_path):
    colors = [(10, 20, 200), (10, 20, 200), (200, 20, 10), (20, 200, 10)]
    raw_rgb = np.zeros((112, 112, 3), np.uint8)
    raw_rgb[..., 0] = 250  # red in RGB order
    entries = [_png(colors[0]), _png(colors[1]).decode("latin-1"), raw_rgb.tobytes(), b"not an image at all"]
    labels = np.array([True, False])  # a numpy bool array, as some converters write
    path = tmp_path / "mixed.bin"
    path.write_bytes(pickle.dumps((entries, labels), protocol=2))  # py3 protocol 2: bytes via _codecs.encode
    pairs = binfile.read_bin(path)
    assert pairs.same.tolist() == [True, False] and len(pairs) == 4
    crops = pairs.load(0, 4)
    assert tuple(crops[0, 50, 50]) == colors[0] and tuple(crops[1, 50, 50]) == colors[1]
    assert tuple(crops[0, 0, 0]) == tuple(255 - np.asarray(colors[0]))
    assert tuple(crops[2, 50, 50]) == (0, 0, 250)  # raw RGB buffer -> BGR
    assert pairs.failed == {3}
    assert pairs.a.tolist() == [0, 2] and pairs.b.tolist() == [1, 3]


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_bin_reader_reads_every_pickle_protocol(tmp_path, protocol):
    path = tmp_path / "p.bin"
    labels = {2: (True, False), 3: np.array([True, False]), 4: [np.bool_(True), np.bool_(False)], 5: np.array([True, False])}[protocol]
    path.write_bytes(pickle.dumps(([_png((5, 6, 7))] * 4, labels), protocol=protocol))
    pairs = binfile.read_bin(path)
    assert pairs.same.tolist() == [True, False] and tuple(pairs.load(0, 1)[0, 60, 60]) == (5, 6, 7)
    path.write_bytes(pickle.dumps(([b"a", b"b"], np.array([1.5], dtype=np.float64)), protocol=protocol))
    with pytest.raises(ValueError, match="refusing numpy dtype float64"):
        binfile.read_bin(path)


def test_bin_reader_reads_python2_pickles(tmp_path):
    path = tmp_path / "lfw.bin"
    jpg = cv2.imencode(".jpg", np.full((120, 100, 3), 128, np.uint8))[1].tobytes()
    path.write_bytes(_py2_pickle([_png((1, 2, 3)), jpg], [True]))
    pairs = binfile.read_bin(path)
    crops = pairs.load(0, 2)
    assert pairs.same.tolist() == [True] and crops.shape == (2, 112, 112, 3)
    assert abs(int(crops[1, 56, 56, 0]) - 128) <= 2  # resized from 100x120 to 112x112
    assert not pairs.failed


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch evil-was-here",))


def test_bin_reader_refuses_code_and_objects(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([_Evil(), b"x"], [True])))
    with pytest.raises(ValueError, match="refusing"):
        binfile.read_bin(path)
    assert not (tmp_path / "evil-was-here").exists()
    path.write_bytes(pickle.dumps(([b"a", b"b"], np.array([object(), 1], dtype=object)), protocol=2))
    with pytest.raises(ValueError, match="refusing"):
        binfile.read_bin(path)
    # an object array of harmless bytes is still refused: object arrays are never built
    path.write_bytes(pickle.dumps(([b"a", b"b"], np.array([b"x", b"y"], dtype=object)), protocol=2))
    with pytest.raises(ValueError, match="refusing numpy dtype object"):
        binfile.read_bin(path)
    path.write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True])))
    with pytest.raises(ValueError, match="3 images for 1 pairs"):
        binfile.read_bin(path)
    path.write_bytes(pickle.dumps(([b"a", b"b"], [1])))
    with pytest.raises(ValueError, match="booleans"):
        binfile.read_bin(path)


def _mean_color_embedder(name: str = "stub") -> Embedder:
    """Embedding = mean BGR of the crop, centred: identical crops score 1, other colours less."""
    return Embedder(name, "stub", "numpy", lambda crops: crops.reshape(len(crops), -1, 3).mean(axis=1) - 100.0)


def test_evaluate_pairs_on_a_bin_drops_undecodable_pairs(tmp_path):
    colors = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0), (0, 200, 200)]
    entries, labels = [], []
    for i in range(20):
        c1 = colors[i % 5]
        same = i % 2 == 0
        c2 = c1 if same else colors[(i + 1) % 5]
        entries += [_png(c1), _png(c2)]
        labels.append(same)
    entries[7] = b"garbage"  # pair 3 (different) cannot be used
    path = tmp_path / "toy.bin"
    path.write_bytes(pickle.dumps((entries, labels)))
    result = evaluate_pairs([path], [_mean_color_embedder()], tmp_path / "out", flip=True, folds=5, fars=(1e-1,), min_negatives_factor=0)
    ds = result["datasets"][0]
    assert ds["info"]["pairs_used"] == 19 and ds["info"]["decode_failures"] == 1
    s = ds["results"]["stub"]
    assert s["pairs"] == 19 and s["different"] == 9
    assert s["accuracy"] == pytest.approx(1.0) and s["auc"] == pytest.approx(1.0)
    assert ds["info"]["fold_assignment"] == "contiguous"
    assert (tmp_path / "out" / "roc-toy.png").is_file()


def test_embed_source_sums_the_mirrored_crop():
    crop = np.zeros((1, 4, 4, 3), np.uint8)
    crop[:, :, :2] = 255  # left half white
    halves = Embedder("halves", "stub", "numpy", lambda c: np.stack([c[:, :, :2].mean((1, 2, 3)), c[:, :, 2:].mean((1, 2, 3))], 1))
    plain = embed_source([halves], ArrayCrops(crop), flip=False)["halves"]
    flipped = embed_source([halves], ArrayCrops(crop), flip=True)["halves"]
    np.testing.assert_allclose(plain, [[255, 0]])
    np.testing.assert_allclose(flipped, [[255, 255]])


def test_read_pairs_csv(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("image_a,image_b,same,source\na.jpg,b.jpg,1,x\nc.jpg,d.jpg,false,\n")
    rows = read_pairs(path)
    assert [(r.image_a, r.same, r.source) for r in rows] == [("a.jpg", True, "x"), ("c.jpg", False, "")]
    path.write_text("image_a,image_b,same\na.jpg,b.jpg,maybe\n")
    with pytest.raises(ValueError, match="maybe"):
        read_pairs(path)
    path.write_text("left,right\na,b\n")
    with pytest.raises(ValueError, match="columns"):
        read_pairs(path)


def test_roc_plot_draws_the_curves(tmp_path):
    assert roc_x_range(273) == (1e-3, 1.0) and roc_x_range(8_000_000) == (1e-6, 1.0)
    perfect = roc_curve([0.9, 0.8, 0.1, 0.2], [True, True, False, False])
    png = plot_roc(tmp_path / "roc.png", [Curve("perfect", perfect.fpr, perfect.tpr)], perfect.negatives, "test")
    img = cv2.imread(str(png))
    assert img.shape == (640, 900, 3)
    color = np.asarray(PALETTE[0])
    near = np.all(np.abs(img.astype(int) - color) < 40, axis=2)
    # a perfect ROC runs along the top edge of the plot (TAR = 1 from the smallest FAR on)
    top_row = near[40:55, 300:800]
    assert top_row.any(axis=0).mean() > 0.9
    assert not near[300:500, 300:800].any()  # and nowhere through the middle


class _ColourFinder:
    """Stands in for the reference detector: a non-grey 112x112 photo is one face filling it."""

    signature = "colour-finder-test"
    score_threshold = 0.9
    max_side = 1024

    def __init__(self, mirror=None):
        pass

    def detect(self, image):
        from gfn_edge.align import ARCFACE_TEMPLATE
        from gfn_edge.retinaface_decode import Detections

        if np.all(image == 128):
            return Detections.empty()
        h, w = image.shape[:2]
        pts = (ARCFACE_TEMPLATE * np.array([w / 112, h / 112], np.float32))[None]
        return Detections(np.array([[0, 0, w, h]], np.float32), np.array([0.99], np.float32), pts)


def test_pairs_csv_finds_faces_once_and_drops_unusable_pairs(tmp_path, monkeypatch):
    import gfn_edge.export.faces as faces

    monkeypatch.setattr(faces, "ReferenceFaceFinder", _ColourFinder)
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0), (0, 200, 200), (200, 0, 200)]
    for i, c in enumerate(colours):
        for k in range(2):
            cv2.imwrite(str(photos / ("sub" if k else ".") / f"c{i}_{k}.png"), np.full((112, 112, 3), c, np.uint8))
    cv2.imwrite(str(photos / "nobody.png"), np.full((112, 112, 3), 128, np.uint8))
    lines = ["image_a,image_b,same"]
    for i in range(6):
        lines += [f"c{i}_0.png,sub/c{i}_1.png,1", f"c{i}_0.png,c{(i + 1) % 6}_0.png,0"]
    lines += ["c0_0.png,nobody.png,0", "ghost.png,sub/c1_1.png,1"]
    csv_path = photos / "pairs.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    result = evaluate_pairs([photos], [_mean_color_embedder()], None, flip=False, fars=(0.5,), min_negatives_factor=0)
    ds = result["datasets"][0]
    info = ds["info"]
    assert (info["pairs_listed"], info["pairs_dropped"], info["pairs_used"]) == (14, 2, 12)
    reasons = " | ".join(d["reason"] for d in info["dropped"])
    assert "nobody.png: no face" in reasons and "ghost.png: missing file" in reasons
    assert info["fold_assignment"] == "interleaved" and info["detector"].startswith("reference")
    s = ds["results"]["stub"]
    assert (s["same"], s["different"]) == (6, 6) and s["accuracy"] == pytest.approx(1.0)
    # each kept pair knows its CSV row (the pipeline comparison matches two detectors' pairs by it)
    from gfn_edge.export.evaluation.pairs_csv import load_csv_pairs

    assert load_csv_pairs(csv_path).rows.tolist() == list(range(12))
    lines.insert(1, "ghost.png,c0_0.png,1")  # a first row without a face: every later row moves by one
    csv_path.write_text("\n".join(lines) + "\n")
    assert load_csv_pairs(csv_path).rows.tolist() == list(range(1, 13))


class _BlindFinder(_ColourFinder):
    """A second detector for the pipeline comparison: finds no face in the blue photos."""

    signature = "blind-to-blue-test"

    def __init__(self):
        from types import SimpleNamespace

        self.detector = SimpleNamespace(name="blind", runs_on="test", input_label="112x112")

    def detect(self, image):
        from gfn_edge.retinaface_decode import Detections

        return Detections.empty() if image[..., 0].mean() > 150 and image[..., 1:].max() == 0 else super().detect(image)


def test_a_pipeline_comparison_matches_the_pairs_both_detectors_found(tmp_path, monkeypatch):
    """--bundle-detector: the first model on the first detector's faces, the others on the
    bundle detector's; decisions are compared on the pairs both found, matched by CSV row."""
    import gfn_edge.export.faces as faces
    from gfn_edge.export.evaluation import runners

    monkeypatch.setattr(faces, "ReferenceFaceFinder", _ColourFinder)
    monkeypatch.setattr(runners, "bundle_face_finder", lambda path: _BlindFinder())
    photos = tmp_path / "photos"
    photos.mkdir()
    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0)]  # BGR: the first is blue
    for i, c in enumerate(colours):
        for k in range(2):
            cv2.imwrite(str(photos / f"c{i}_{k}.png"), np.full((112, 112, 3), c, np.uint8))
    lines = ["image_a,image_b,same"] + [f"c{i}_0.png,c{i}_1.png,1" for i in range(4)] + [f"c{i}_0.png,c{(i + 1) % 4}_1.png,0" for i in range(4)]
    (photos / "pairs.csv").write_text("\n".join(lines) + "\n")
    first, second = _mean_color_embedder(), _mean_color_embedder()
    second.name = "stub#2"
    result = evaluate_pairs([photos], [first, second], None, flip=False, folds=2, fars=(0.5,), min_negatives_factor=0, bundle_detector="blind")
    info = result["datasets"][0]["info"]
    # the blue photos' pairs: rows 0 (same), 4 (blue-green) and 7 (yellow-blue) are lost to the bundle
    assert (info["pairs_used"], info["bundle_pairs_used"]) == (8, 5) and info["bundle_detector"].startswith("bundle blind")
    decisions = result["datasets"][0]["results"]["stub#2"]["decisions"]
    assert decisions["against"] == "stub" and decisions["pairs"] == 5 and decisions["changed"] == 0
    with pytest.raises(ValueError, match="at least one more --bundle"):
        evaluate_pairs([photos], [first], None, bundle_detector="blind")
