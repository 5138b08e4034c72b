"""How the INT8 search compares attempts and ranks layer groups (export/int8/search.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="asset missing: torch (the training side: pip install 'gfn-edge[export]')")

from gfn_edge.export.int8.search import Attempt, Outcome, _score, _slacks, margin, rank
from gfn_edge.export.verify import DEFAULT_TOLERANCES, VerificationReport


def _outcome(name: str, cos_mean: float, cos_min: float, pair_delta: float) -> Outcome:
    report = VerificationReport(False, {"cos_mean": cos_mean, "cos_min": cos_min, "pair_acc_delta": pair_delta}, DEFAULT_TOLERANCES[("embed", "int8")])
    return Outcome(Attempt(name), False, margin(report), report.metrics, [], 1.0, Path("."), total_slack=sum(_slacks(report)))


def test_a_tie_on_the_pair_step_goes_to_the_attempt_closer_to_the_reference():
    # both flip the same two pairs (0.57 points: the worst slack of each); the tuned one is closer in cosine
    plain = _outcome("plain", 0.9772, 0.9423, 0.573066)
    tuned = _outcome("tuned", 0.9821, 0.9525, 0.573066)
    assert plain.margin == pytest.approx(tuned.margin)
    assert max([plain, tuned], key=rank) is tuned and max([tuned, plain], key=rank) is tuned
    # the smallest slack still decides first
    assert max([_outcome("a", 0.999, 0.999, 1.5), _outcome("b", 0.98, 0.95, 0.0)], key=rank).attempt.method == "b"


def test_the_group_ranking_score_weighs_the_worst_faces():
    ref = np.eye(8)
    mild = ref + 0.2  # every face somewhat off (cosine 0.915)
    one_bad = ref.copy()
    one_bad[0] = ref[0] + 2.0 * ref[1]  # one face far off (cosine 0.447), the rest exact
    embed = _score("embed")
    mean_cos = lambda out: float(((out / np.linalg.norm(out, axis=1, keepdims=True)) * ref).sum(1).mean())  # noqa: E731
    assert mean_cos(one_bad) > mean_cos(mild)  # by the mean, the one bad face would look harmless
    assert embed([one_bad], [ref]) < embed([mild], [ref])  # the score ranks it as the worse damage


def _search(tmp_path: Path, monkeypatch, results: dict[str, tuple[float, float, float]], options: dict | None = None) -> list[str]:
    """Runs run_search with a fake quantiser and verifier: ``results`` maps an attempt's label to
    (cos_mean, cos_min, pair Δ); returns the labels in the order the search tried them."""
    from types import SimpleNamespace

    import gfn_edge.export.int8.search as search
    from gfn_edge.export.target_info import TARGETS, Artifact

    tried: list[str] = []
    tolerances = DEFAULT_TOLERANCES[("embed", "int8")]

    def verify(folder, precision):
        metrics = dict(zip(("cos_mean", "cos_min", "pair_acc_delta"), results.get((folder / "label").read_text(), (0.9, 0.8, 3.0))))
        probe = VerificationReport(False, metrics, tolerances)
        return VerificationReport(margin(probe) >= 0, metrics, tolerances)

    def build(attempt, folder):
        tried.append(attempt.label())
        (folder / "label").write_text(attempt.label())
        return Artifact({"model": "label"}, [], [])

    prep = SimpleNamespace(report=dict, sensitivity=[("stem", 0.3), ("blocks.1", 0.2), ("blocks.2", 0.1), ("blocks.3", 0.05)])
    monkeypatch.setattr(search, "preparation", lambda ctx: prep)
    monkeypatch.setattr(search, "sensitivity", lambda ctx: prep.sensitivity)
    monkeypatch.setattr(search, "distillation", lambda ctx, q, groups=(): SimpleNamespace(report={}))
    monkeypatch.setattr(search, "bias_correction", lambda ctx, q, groups=(): SimpleNamespace(report={}))
    monkeypatch.setattr(search, "write_manifest", lambda *a, **k: None)
    monkeypatch.setattr(search, "_calibration_note", lambda ctx, method: {})
    monkeypatch.setattr(search, "_compare_with_fp32", lambda *a: {})
    (tmp_path / "bundle").mkdir(parents=True)
    ctx = SimpleNamespace(
        options={"distill_seconds": 0, **(options or {})},
        shared={},
        work_dir=tmp_path,
        bundle_dir=tmp_path / "bundle",
        metadata={},
        spec=SimpleNamespace(name="student", int8_recipes={}, task="embed"),
        verify=verify,
    )
    search.run_search(ctx, TARGETS["onnx-int8"], build, ["minmax", "entropy"], lambda folder: None, corrects_biases=True)
    return tried


def test_bias_correction_is_tried_after_the_plain_methods_and_carried_into_float_groups(tmp_path, monkeypatch):
    tried = _search(
        tmp_path,
        monkeypatch,
        {
            "minmax": (0.97, 0.92, 0.6),
            "entropy": (0.96, 0.90, 0.6),
            "minmax + bias correction": (0.98, 0.95, 0.3),
            "minmax + bias correction + float stem, blocks.1": (0.992, 0.975, 0.0),
        },
    )
    assert tried == [
        "minmax",
        "entropy",
        "minmax + bias correction",
        "minmax + bias correction + float stem",
        "minmax + bias correction + float stem, blocks.1",
    ]


def test_float_groups_go_without_bias_correction_where_it_did_worse(tmp_path, monkeypatch):
    """A detector whose landmarks moved further with corrected biases: the fallbacks use the plain model."""
    tried = _search(
        tmp_path, monkeypatch, {"minmax": (0.98, 0.95, 0.3), "minmax + bias correction": (0.97, 0.93, 0.6), "minmax + float stem": (0.995, 0.98, 0.0)}
    )
    assert tried == ["minmax", "entropy", "minmax + bias correction", "minmax + float stem"]


def test_no_bias_correction_when_switched_off_or_when_plain_passes(tmp_path, monkeypatch):
    assert _search(tmp_path / "a", monkeypatch, {"minmax": (0.995, 0.98, 0.0)}) == ["minmax"]
    off = _search(tmp_path / "b", monkeypatch, {"minmax + float stem": (0.995, 0.98, 0.0)}, {"bias_correction": False})
    assert off == ["minmax", "entropy", "minmax + float stem"]


def test_the_float_groups_build_on_the_model_closest_in_cosine_not_on_a_pair_flip(tmp_path, monkeypatch):
    """Measured on the w0.5 student (onnx-int8): plain min/max 0.972 / 0.927 with no pair flipped,
    bias-corrected 0.981 / 0.953 with two pairs flipped (0.57 points). The margin ranks the plain one
    higher (one pair is a 0.57 relative slack); the groups must go on the corrected one."""
    tried = _search(tmp_path, monkeypatch, {"minmax": (0.972, 0.927, 0.0), "minmax + bias correction": (0.981, 0.953, 0.573)})
    assert tried[2] == "minmax + bias correction" and tried[3] == "minmax + bias correction + float stem"


def test_distillation_comes_last_with_the_last_groups_in_float(tmp_path, monkeypatch):
    tried = _search(tmp_path, monkeypatch, {"minmax + bias correction": (0.98, 0.95, 0.3)}, {"distill_seconds": 5})
    assert tried[-3:] == [
        "minmax + bias correction + float stem",
        "minmax + bias correction + float stem, blocks.1",
        "minmax + distillation QAT + float stem, blocks.1",
    ]
