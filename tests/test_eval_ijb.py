"""IJB-B/C 1:1 protocol on a tiny synthetic release folder whose TARs are computed by hand.

Each loose crop is a grey picture with a coloured square placed by a random similarity
transform; its five landmarks are the ArcFace template moved by the same transform. Aligning
with those points puts the square at the centre of the 112x112 crop, where a stub recogniser
reads the colour and returns a chosen 2-d embedding. Anything wrong in alignment (ignored or
mismatched landmarks), media pooling or face-score weighting changes the scores below.
"""

from __future__ import annotations

import json
import math
import random

import cv2
import numpy as np
import pytest

from gfn_edge.export.evaluation import ijb
from gfn_edge.export.evaluation.runners import Embedder
from gfn_edge.export.evaluation.suites import evaluate_ijb
from gfn_edge.registry import ARCFACE_112_TEMPLATE

COLORS = {1: (200, 40, 40), 2: (40, 200, 40), 3: (40, 40, 200)}  # BGR per identity code
EMBEDDING = {1: (1.0, 0.0), 2: (0.0, 1.0), 3: (0.6, 0.8)}
# crop name, template, media, identity code, face score. Media 10 appears in templates 1 and 3:
# pooling must group medias within a template.
CROPS = [
    ("1.jpg", 1, 10, 1, 1.0),
    ("2.jpg", 1, 10, 1, 1.0),
    ("3.jpg", 1, 11, 2, 1.0),
    ("4.jpg", 2, 20, 2, 1.0),
    ("5.jpg", 3, 10, 1, 0.5),
    ("6.jpg", 3, 31, 2, 1.0),
    ("7.jpg", 4, 40, 1, 0.9),
    ("8.jpg", 5, 50, 3, 0.7),
    ("9.jpg", 5, 51, 1, 0.9),  # listed but its file is missing: left out of template 5
]
PAIRS = [(1, 2, 1), (3, 2, 1), (4, 2, 0), (5, 2, 0)]
# Template 1: media 10 mean (1,0), media 11 (0,1) -> (1,1)/sqrt2; vs template 2 (0,1): 1/sqrt2.
# Template 3: 0.5*(1,0) + (0,1) -> (0.5,1)/|.|; vs template 2: 2/sqrt5.
# Template 4: (1,0) -> 0. Template 5: (0.6,0.8) -> 0.8.
EXPECTED = [1 / math.sqrt(2), 2 / math.sqrt(5), 0.0, 0.8]
EXPECTED_UNWEIGHTED = [1 / math.sqrt(2), 1 / math.sqrt(2), 0.0, 0.8]


SPOTS = [(50, 50), (130, 50), (210, 50), (50, 110), (210, 110), (50, 170), (130, 170), (210, 170), (90, 80)]


def _face_picture(code: int, spot: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 260x220 loose crop with the face square at ``spot``, and its five landmarks.

    Spots are far apart (and off the picture centre), so landmarks of another crop, or none,
    would align grey background.
    """
    angle = math.radians(rng.uniform(-25, 25))
    scale = rng.uniform(0.45, 0.6)
    centre = np.asarray(spot, float) + rng.uniform(-3, 3, 2)
    rot = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    move = lambda pts: (np.asarray(pts) - 56.0) @ rot.T + centre  # noqa: E731 - crop (112) coords -> picture
    img = np.full((220, 260, 3), 128, np.uint8)
    square = move([[30, 30], [82, 30], [82, 82], [30, 82]])
    cv2.fillPoly(img, [np.round(square * 16).astype(np.int32)], COLORS[code], cv2.LINE_AA, shift=4)
    return img, move(ARCFACE_112_TEMPLATE).astype(np.float32)


def build_ijb_folder(root, prefix: str = "ijbb", seed: int = 0):
    """``root/meta/*`` and ``root/loose_crop/*`` in the release layout (landmark lines shuffled)."""
    rng = np.random.default_rng(seed)
    (root / "meta").mkdir(parents=True)
    (root / "loose_crop").mkdir()
    points_lines = []
    for (name, _, _, code, score), spot in zip(CROPS, SPOTS):
        img, pts = _face_picture(code, spot, rng)
        if name != "9.jpg":
            (root / "loose_crop" / name).write_bytes(cv2.imencode(".png", img)[1].tobytes())  # lossless under a .jpg name
        points_lines.append(" ".join([name, *(f"{v:.3f}" for v in pts.ravel()), f"{score:.3f}"]))
    random.Random(seed).shuffle(points_lines)
    (root / "meta" / f"{prefix}_name_5pts_score.txt").write_text("\n".join(points_lines) + "\n")
    (root / "meta" / f"{prefix}_face_tid_mid.txt").write_text("".join(f"{n} {t} {m}\n" for n, t, m, _, _ in CROPS))
    (root / "meta" / f"{prefix}_template_pair_label.txt").write_text("".join(f"{a} {b} {s}\n" for a, b, s in PAIRS))
    return root


def _code(crop: np.ndarray) -> int:
    centre = crop[46:66, 46:66].reshape(-1, 3).mean(axis=0)
    dist = {c: float(np.abs(centre - np.asarray(col)).max()) for c, col in COLORS.items()}
    code = min(dist, key=dist.get)
    if dist[code] > 25:
        raise AssertionError(f"crop centre is {centre.round()}, no face colour: the crop is not aligned")
    return code


def stub_embedder() -> Embedder:
    """Crops the reader could not load arrive black: they get a zero vector (and must be left out)."""
    return Embedder("stub", "stub", "numpy", lambda crops: np.asarray([EMBEDDING[_code(c)] if c.any() else (0.0, 0.0) for c in crops], np.float32))


def test_alignment_uses_the_landmarks_of_each_crop(tmp_path):
    root = build_ijb_folder(tmp_path / "IJBB")
    meta = ijb.read_ijb(root)
    crops = ijb.IjbCrops(meta)
    aligned = crops.load(0, len(crops))
    assert [_code(c) for c in aligned[:8]] == [c[3] for c in CROPS[:8]]
    assert crops.failed == {8}  # 9.jpg is missing
    assert meta.subset == "IJBB" and meta.face_scores.tolist() == pytest.approx([c[4] for c in CROPS])


def test_template_scores_and_tar_by_hand(tmp_path):
    root = build_ijb_folder(tmp_path / "IJBB")
    result = evaluate_ijb(root, [stub_embedder()], tmp_path / "out", fars=(0.4, 0.5), min_negatives_factor=0)
    ds = result["datasets"][0]
    assert ds["info"]["templates"] == 5 and ds["info"]["unusable_crops"] == 1
    s = ds["results"]["stub"]
    # same pairs score 0.894 and 0.707; different pairs 0.8 and 0.0
    assert s["auc"] == pytest.approx(0.75)
    assert s["tar_at_far"]["4e-01"]["tar"] == pytest.approx(0.5)  # no impostor may pass: only 0.894 > 0.8
    assert s["tar_at_far"]["5e-01"]["tar"] == pytest.approx(1.0)
    assert s["tar_at_far"]["5e-01"]["threshold"] == pytest.approx(1 / math.sqrt(2))
    assert (tmp_path / "out" / "roc-ijbb.png").is_file()

    meta = ijb.read_ijb(root)
    feats = np.asarray([EMBEDDING[c[3]] for c in CROPS], np.float32)
    np.testing.assert_allclose(ijb.ijb_scores(meta, feats, True, {8})[0], EXPECTED, atol=1e-6)
    np.testing.assert_allclose(ijb.ijb_scores(meta, feats, False, {8})[0], EXPECTED_UNWEIGHTED, atol=1e-6)
    # the missing crop really is excluded: counting it as (1, 0) would give template 5
    # 0.7*(0.6, 0.8) + 0.9*(1, 0) = (1.32, 0.56)
    assert ijb.ijb_scores(meta, feats, True, set())[0][3] == pytest.approx(0.56 / math.hypot(1.32, 0.56), abs=1e-6)


def test_without_detector_score_weighting(tmp_path):
    root = build_ijb_folder(tmp_path / "IJBC", prefix="ijbc")
    result = evaluate_ijb(root, [stub_embedder()], None, detector_score=False, fars=(0.4,), min_negatives_factor=0)
    s = result["datasets"][0]["results"]["stub"]
    assert result["datasets"][0]["name"] == "IJBC"
    assert s["auc"] == pytest.approx(0.5)  # both same pairs 0.707: below one impostor (0.8), above the other
    assert s["tar_at_far"]["4e-01"]["tar"] == pytest.approx(0.0)


def test_template_features_pool_media_then_templates():
    feats = np.array([[1, 0], [3, 0], [0, 1], [0, 5]], float)
    templates = np.array([7, 7, 7, 9])
    medias = np.array([1, 1, 2, 1])  # media 1 in templates 7 and 9
    tids, tf = ijb.template_features(feats, templates, medias)
    assert tids.tolist() == [7, 9]
    np.testing.assert_allclose(tf[0], np.array([2, 1]) / math.sqrt(5))  # mean(1,3)=2 in media 1, plus media 2
    np.testing.assert_allclose(tf[1], [0, 1])
    # many pairs, scored block by block (one first template per block) and all at once
    rng = np.random.default_rng(1)
    p1, p2 = rng.choice(tids, 50), rng.choice(tids, 50)
    expected = np.sum(tf[np.searchsorted(tids, p1)] * tf[np.searchsorted(tids, p2)], axis=1)
    np.testing.assert_allclose(ijb.template_pair_scores(tids, tf, p1, p2, block_bytes=1), expected)
    np.testing.assert_allclose(ijb.template_pair_scores(tids, tf, p1, p2), expected)
    with pytest.raises(ValueError, match="without any usable crop"):
        ijb.template_pair_scores(tids, tf, np.array([7]), np.array([8]))


def test_pairs_of_templates_without_readable_crops_are_left_out(tmp_path):
    root = build_ijb_folder(tmp_path / "IJBB")
    (root / "loose_crop" / "7.jpg").unlink()  # template 4's only crop
    result = evaluate_ijb(root, [stub_embedder()], None, fars=(0.4,), min_negatives_factor=0)
    ds = result["datasets"][0]
    assert ds["info"]["pairs_left_out"] == 1 and ds["info"]["unusable_crops"] == 2
    s = ds["results"]["stub"]
    assert (s["same"], s["different"]) == (2, 1)
    assert s["auc"] == pytest.approx(0.5)  # 0.894 and 0.707 against the one impostor at 0.8


def test_meta_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="meta"):
        ijb.read_ijb(tmp_path)
    root = build_ijb_folder(tmp_path / "IJBB")
    lines = (root / "meta" / "ijbb_name_5pts_score.txt").read_text().splitlines()
    (root / "meta" / "ijbb_name_5pts_score.txt").write_text("\n".join(l for l in lines if not l.startswith("4.jpg")) + "\n")
    with pytest.raises(ValueError, match="4.jpg"):
        ijb.read_ijb(root)


@pytest.mark.slow
def test_gfn_eval_ijb_cli_with_a_bundle(tmp_path, bundles):
    from gfn_edge.export.evaluation.cli import main

    bundle = bundles.get("ghostfacenet-dsitweed-w0.5-e16", "onnx")
    root = build_ijb_folder(tmp_path / "IJBB")
    out = tmp_path / "out"
    assert main(["ijb", str(root), "--bundle", str(bundle), "--out", str(out), "--far", "0.5", "--min-negatives-factor", "0"]) == 0
    data = json.loads((out / "ijb.json").read_text())
    res = data["datasets"][0]["results"][bundle.name]
    assert res["pairs"] == 4 and 0.0 <= res["tar_at_far"]["5e-01"]["tar"] <= 1.0
    assert "FAR=5e-01" in (out / "ijb.md").read_text() and (out / "roc-ijbb.png").is_file()
