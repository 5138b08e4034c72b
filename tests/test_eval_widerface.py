"""WIDER FACE AP under the official protocol, on tiny ground truths with hand-computed APs.

The ground truth is written as the official .mat files (scipy.io.savemat) and read back with
both scipy and the built-in MAT v5 reader.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from gfn_edge.export.evaluation import widerface as W
from gfn_edge.export.evaluation.matfile import load_mat, read_mat_v5
from gfn_edge.export.evaluation.suites import evaluate_widerface

scipy_io = pytest.importorskip("scipy.io", reason="writing .mat fixtures needs scipy")


def write_ground_truth(folder, images: dict[str, dict[str, list]], keep: dict[str, dict[str, list[int]]], compress: bool = False):
    """``images``: event -> {name: [[x, y, w, h], ...]}; ``keep``: setting -> {"event/name": 1-based indices}."""
    folder.mkdir(parents=True, exist_ok=True)
    events = sorted(images)

    def cell(items, shape=None):
        arr = np.empty((len(items), 1) if shape is None else shape, dtype=object)
        for i, v in enumerate(items):
            arr[i, 0] = v
        return arr

    main = {
        "event_list": cell(events),
        "file_list": cell([cell(sorted(images[e])) for e in events]),
        "face_bbx_list": cell([cell([np.asarray(images[e][n], np.float64).reshape(-1, 4) for n in sorted(images[e])]) for e in events]),
    }
    scipy_io.savemat(str(folder / "wider_face_val.mat"), main, do_compression=compress)
    for setting in ("easy", "medium", "hard"):
        lists = cell([cell([np.asarray(keep[setting].get(f"{e}/{n}", []), np.uint16).reshape(-1, 1) for n in sorted(images[e])]) for e in events])
        scipy_io.savemat(str(folder / f"wider_{setting}_val.mat"), {**main, "gt_list": lists}, do_compression=compress)
    return folder


def _all(images):
    return {s: {f"{e}/{n}": list(range(1, len(b) + 1)) for e in images for n, b in images[e].items()} for s in ("easy", "medium", "hard")}


def _ap(tmp_path, images, keep, preds, setting="hard"):
    gt = W.load_ground_truth(write_ground_truth(tmp_path / "gt", images, keep))
    res, _ = W.evaluate({k: np.asarray(v, float).reshape(-1, 5) for k, v in preds.items()}, gt)
    return res[setting].ap if setting else res


def test_perfect_detections_give_ap_one(tmp_path):
    images = {"0--Parade": {"a": [[10, 10, 40, 40]], "b": [[100, 50, 30, 30]]}}
    preds = {"0--Parade/a": [[10, 10, 40, 40, 0.9]], "0--Parade/b": [[100, 50, 30, 30, 0.8]]}
    assert _ap(tmp_path, images, _all(images), preds) == pytest.approx(1.0)


def test_scores_are_normalised_over_the_whole_dataset(tmp_path):
    # a: face found at 0.9, a false positive at 0.8; b: face found at 0.6, a false positive at 0.5.
    # Dataset-wide ranking TP, FP, TP, FP: (recall, precision) = (1/2, 1), (1/2, 1/2), (1, 2/3), (1, 1/2)
    # -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6. (Normalising per image would rank both faces first: AP 1.)
    images = {"1--Handshaking": {"a": [[10, 10, 40, 40]], "b": [[10, 10, 40, 40]]}}
    preds = {
        "1--Handshaking/a": [[10, 10, 40, 40, 0.9], [200, 200, 30, 30, 0.8]],
        "1--Handshaking/b": [[10, 10, 40, 40, 0.6], [200, 200, 30, 30, 0.5]],
    }
    assert _ap(tmp_path, images, _all(images), preds) == pytest.approx(5 / 6)


def test_false_positive_ranked_first(tmp_path):
    # a: false positive 1.0, face 0.25; b: face 0.5. Ranking FP, TP(b), TP(a):
    # (0, 0), (1/2, 1/2), (1, 2/3) -> envelope 2/3 over the whole recall range: AP = 2/3.
    images = {"2--Demo": {"a": [[10, 10, 40, 40]], "b": [[60, 60, 20, 20]]}}
    preds = {"2--Demo/a": [[300, 300, 30, 30, 1.0], [10, 10, 40, 40, 0.25]], "2--Demo/b": [[60, 60, 20, 20, 0.5]]}
    assert _ap(tmp_path, images, _all(images), preds) == pytest.approx(2 / 3)


def test_pictures_without_faces_are_not_penalised(tmp_path):
    # As in the official code: a picture with no ground-truth face contributes nothing, so its
    # (confident) false positive does not lower AP; a missed face still counts.
    images = {"5--Car_Accident": {"a": [[10, 10, 40, 40]], "b": [], "c": [[5, 5, 30, 30]]}}
    preds = {"5--Car_Accident/a": [[10, 10, 40, 40, 0.5]], "5--Car_Accident/b": [[10, 10, 40, 40, 0.9]]}
    res = _ap(tmp_path, images, _all(images), preds, setting=None)
    assert res["hard"].faces == 2 and res["hard"].ap == pytest.approx(0.5)


def test_settings_ignore_faces_outside_their_keep_list(tmp_path):
    # Three faces: easy counts face 1, medium faces 1-2, hard all three. Detections, best first:
    # face 2 (0.9), face 1 (0.8), face 1 again (0.7, a duplicate), background (0.6).
    images = {"3--Riot": {"x": [[0, 0, 50, 50], [100, 0, 50, 50], [200, 0, 10, 10]]}}
    keep = {"easy": {"3--Riot/x": [1]}, "medium": {"3--Riot/x": [1, 2]}, "hard": {"3--Riot/x": [1, 2, 3]}}
    preds = {"3--Riot/x": [[100, 0, 50, 50, 0.9], [0, 0, 50, 50, 0.8], [1, 1, 50, 50, 0.7], [300, 300, 20, 20, 0.6]]}
    res = _ap(tmp_path, images, keep, preds, setting=None)
    assert res["easy"].faces == 1 and res["medium"].faces == 2 and res["hard"].faces == 3
    # easy: the face-2 detection is neither true nor false; face 1 then comes at precision 1
    assert res["easy"].ap == pytest.approx(1.0)
    assert res["medium"].ap == pytest.approx(1.0)
    # hard: faces 2 and 1 at precision 1, face 3 never found: AP = 2/3
    assert res["hard"].ap == pytest.approx(2 / 3)
    assert res["hard"].recall.max() == pytest.approx(2 / 3)
    # at the lowest threshold: 3 proposals in easy (the duplicate and the background count)
    assert res["easy"].precision[-1] == pytest.approx(1 / 3)


def test_overlap_uses_inclusive_pixels(tmp_path):
    np.testing.assert_allclose(W.box_overlaps([[0, 0, 9, 9]], [[5, 0, 14, 9]]), [[50 / 150]])
    # 10x10 detection in a 10x20 face: IoU 100/200 = 0.5 with the +1 (a match), 81/171 without
    images = {"4--Dancing": {"a": [[0, 0, 9, 19]]}}
    assert _ap(tmp_path, images, _all(images), {"4--Dancing/a": [[0, 0, 9, 9, 0.9]]}) == pytest.approx(1.0)
    images = {"4--Dancing": {"a": [[0, 0, 9, 20]]}}  # 100/210: no match
    shutil.rmtree(tmp_path / "gt")
    assert _ap(tmp_path, images, _all(images), {"4--Dancing/a": [[0, 0, 9, 9, 0.9]]}) == pytest.approx(0.0)


def test_image_pr_counts_duplicates_as_proposals():
    gt = np.array([[0, 0, 50, 50]], float)
    pred = np.array([[0, 0, 50, 50, 0.5], [2, 2, 50, 50, 1.0]])  # unsorted on purpose
    pr = W.image_pr(pred, gt, np.array([0]))
    t = np.searchsorted(-W.thresholds(), -0.5)  # first threshold <= 0.5
    assert pr[0].tolist() == [1, 1] and pr[t].tolist() == [2, 1] and pr[-1].tolist() == [2, 1]


def test_voc_ap_by_hand():
    assert W.voc_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5])) == pytest.approx(0.75)
    assert W.voc_ap(np.array([0.5, 0.5, 1.0]), np.array([0.2, 1.0, 0.5])) == pytest.approx(0.75)


@pytest.mark.parametrize("compress", [False, True])
def test_builtin_mat_reader_matches_scipy(tmp_path, compress):
    images = {"0--Parade": {"a": [[1, 2, 3, 4], [5, 6, 7, 8]], "b": []}, "9--Press": {"c": [[9, 9, 9, 9]]}}
    keep = {"easy": {"0--Parade/a": [2]}, "medium": {"0--Parade/a": [1, 2]}, "hard": {"0--Parade/a": [1, 2], "9--Press/c": [1]}}
    folder = write_ground_truth(tmp_path / "gt", images, keep, compress)
    ours = W.load_ground_truth(folder, reader="builtin")
    theirs = W.load_ground_truth(folder, reader="scipy")
    assert [im.key for im in ours.images] == ["0--Parade/a", "0--Parade/b", "9--Press/c"]
    for a, b in zip(ours.images, theirs.images):
        assert a.key == b.key and np.array_equal(a.boxes, b.boxes)
        assert all(np.array_equal(a.keep[s], b.keep[s]) for s in W.SETTINGS)
    assert ours.images[0].keep["easy"].tolist() == [1] and ours.images[2].keep["easy"].tolist() == []
    raw = read_mat_v5(folder / "wider_face_val.mat")
    ref = load_mat(folder / "wider_face_val.mat", "scipy")
    assert raw["event_list"].shape == ref["event_list"].shape == (2, 1)
    assert str(raw["event_list"][1, 0][0]) == "9--Press"


def test_missing_ground_truth_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="wider_face_val.mat"):
        W.load_ground_truth(tmp_path)


def test_predictions_folder_round_trip_through_the_suite(tmp_path):
    images = {"1--Handshaking": {"a": [[10, 10, 40, 40]], "b": [[10, 10, 40, 40]]}}
    gt_dir = write_ground_truth(tmp_path / "gt", images, _all(images))
    preds = {
        "1--Handshaking/a": np.array([[10, 10, 40, 40, 0.9], [200, 200, 30, 30, 0.8]]),
        "1--Handshaking/b": np.array([[10, 10, 40, 40, 0.6], [200, 200, 30, 30, 0.5]]),
    }
    W.write_predictions(tmp_path / "pred", preds)
    assert (tmp_path / "pred" / "1--Handshaking" / "a.txt").read_text().splitlines()[:2] == ["a.jpg", "2"]
    back = W.read_predictions(tmp_path / "pred")
    assert set(back) == set(preds) and np.allclose(back["1--Handshaking/a"], preds["1--Handshaking/a"])
    result = evaluate_widerface(gt_dir, None, [], tmp_path / "out", predictions=[tmp_path / "pred"])
    res = result["datasets"][0]["results"]["predictions:pred"]
    assert res["hard"]["ap"] == pytest.approx(5 / 6) and res["easy"]["faces"] == 2
    assert (tmp_path / "out" / "pr-widerface-hard.png").is_file()


@pytest.mark.slow
def test_gfn_eval_detect_on_a_wider_layout(tmp_path, faces_dir, bundles):
    """Ground truth = the reference's own confident faces at its input size: its AP must be ~1,
    and the FP32 ONNX bundle's must match it."""
    from gfn_edge.export.evaluation.cli import main
    from gfn_edge.export.evaluation.runners import reference_detector
    from gfn_edge.image import read_image

    bundle = bundles.get("retinaface-mnet025", "onnx")
    ref = reference_detector("retinaface-mnet025")
    images, keep = {"0--Parade": {}}, {"easy": {}, "medium": {}, "hard": {}}
    pictures = tmp_path / "images" / "0--Parade"
    pictures.mkdir(parents=True)
    for name in ("insightface_t1", "deepface_couple", "biubug6_1", "linzaer_2"):
        shutil.copy(faces_dir / "scenes" / f"{name}.jpg", pictures / f"{name}.jpg")
        dets = ref.detect(read_image(pictures / f"{name}.jpg"), 0.5)
        boxes = W.to_wider_boxes(dets)[:, :4]
        images["0--Parade"][name] = boxes.tolist()
        side = np.minimum(boxes[:, 2], boxes[:, 3])
        for setting, min_side in (("easy", 40), ("medium", 20), ("hard", 0)):
            keep[setting][f"0--Parade/{name}"] = (np.flatnonzero(side >= min_side) + 1).tolist()
    gt_dir = write_ground_truth(tmp_path / "gt", images, keep)
    out = tmp_path / "out"
    argv = ["detect", "--widerface-gt", str(gt_dir), "--widerface-images", str(tmp_path / "images"), "--reference", "retinaface-mnet025"]
    assert main(argv + ["--bundle", str(bundle), "--out", str(out), "--save-predictions"]) == 0
    data = json.loads((out / "detect.json").read_text())["datasets"][0]
    ref_res, bun_res = data["results"]["retinaface-mnet025"], data["results"][bundle.name]
    assert sum(len(v) for v in images["0--Parade"].values()) >= 10
    for s in ("easy", "medium", "hard"):
        assert ref_res[s]["ap"] >= 0.99
        assert abs(bun_res[s]["ap"] - ref_res[s]["ap"]) <= 0.01
    assert data["agreement"][bundle.name]["recall"] >= 0.99
    assert (out / "widerface-predictions" / bundle.name / "0--Parade" / "biubug6_1.txt").is_file()
    assert "| easy" in (out / "detect.md").read_text().replace("easy  ", "easy")
