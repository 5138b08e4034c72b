"""IoUTracker: ids that follow moving faces, survive short gaps and crossings, end after long
ones; and the recognition bookkeeping (observe, vote, settle, needs_recognition)."""

from __future__ import annotations

import numpy as np
import pytest

from gfn_edge.gallery import Match
from gfn_edge.retinaface_decode import Detections
from gfn_edge.tracker import IoUTracker, Track

pytestmark = pytest.mark.device


def box(cx: float, cy: float, size: float = 80.0) -> list[float]:
    return [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]


def test_one_moving_face_keeps_one_id():
    tracker = IoUTracker()
    ids = set()
    for f in range(30):
        (track,) = tracker.update([box(100 + 6 * f, 200 + 2 * f)], [0.9])
        ids.add(track.id)
    assert ids == {1}
    assert track.hits == 30 and track.age == 30 and track.missed == 0 and track.confirmed
    np.testing.assert_allclose(track.velocity, [6, 2], atol=1e-3)
    np.testing.assert_allclose(track.box, box(100 + 6 * 29, 200 + 2 * 29))
    assert track.score == pytest.approx(0.9) and track.index == 0


def test_results_follow_detection_order_and_ids_only_grow():
    tracker = IoUTracker()
    a, b = tracker.update([box(100, 100), box(400, 100)])
    assert (a.id, b.id) == (1, 2)
    # same faces, listed the other way round: each detection gets its own track back
    b2, a2 = tracker.update([box(405, 100), box(105, 100)])
    assert (a2, b2) == (a, b) and (a2.index, b2.index) == (1, 0)
    (c,) = tracker.update([box(700, 400)])  # both faces gone, a new one arrives
    assert c.id == 3
    tracker.reset()
    (d,) = tracker.update([box(100, 100)])
    assert d.id == 4  # never reused, even after reset


def test_greedy_matching_takes_the_best_overlap_first():
    tracker = IoUTracker(iou_threshold=0.1, predict=False)
    t1, t2 = tracker.update([box(100, 100), box(150, 100)])
    # one detection overlaps t1 a little and t2 a lot: it must go to t2, not to the first track
    (got,) = tracker.update([box(145, 100)])
    assert got is t2 and t1.missed == 1


def test_crossing_faces_keep_their_ids():
    """A walks right, B walks left at a similar height; while A occludes B only A is detected."""
    tracker = IoUTracker(iou_threshold=0.3, max_missed=5)
    ids_a, ids_b = set(), set()
    for f in range(40):
        ax, bx = 100 + 10 * f, 500 - 10 * f
        a, b = box(ax, 200), box(bx, 210)
        occluded = abs(ax - bx) < 60
        tracks = tracker.update([a] if occluded else [a, b])
        ids_a.add(tracks[0].id)
        if not occluded:
            ids_b.add(tracks[1].id)
    assert ids_a == {1} and ids_b == {2}
    assert len(tracker.tracks) == 2


def test_short_gap_keeps_the_id_long_gap_starts_a_new_track():
    tracker = IoUTracker(max_missed=5)
    for f in range(10):
        (track,) = tracker.update([box(100 + 4 * f, 100)])
    first = track.id
    for _ in range(5):  # gone for max_missed frames: still alive, predicted onward
        assert tracker.update([]) == []
    assert tracker.tracks[0].missed == 5 and tracker.tracks[0].index is None
    (back,) = tracker.update([box(100 + 4 * 15, 100)])  # reappears where it was heading
    assert back.id == first and back.missed == 0 and back.hits == 11 and back.age == 16

    for _ in range(6):  # one frame more than max_missed: the track ends
        tracker.update([])
    assert tracker.tracks == []
    (new,) = tracker.update([box(100 + 4 * 22, 100)])
    assert new.id > first


def test_min_hits_keeps_one_frame_blips_out():
    tracker = IoUTracker(min_hits=3)
    (blip,) = tracker.update([box(300, 300)])
    assert not blip.confirmed and not tracker.needs_recognition(blip)
    tracker.update([])  # a tentative track ends on its first miss
    assert tracker.tracks == []
    for f in range(3):
        (track,) = tracker.update([box(100 + f, 100)])
        assert track.confirmed == (f == 2)
    assert tracker.needs_recognition(track)


def test_accepts_detections_and_validates_input():
    dets = Detections(np.array([box(100, 100), box(300, 100)], np.float32), np.array([0.9, 0.7], np.float32), np.zeros((2, 5, 2), np.float32))
    tracks = IoUTracker().update(dets)
    assert [t.score for t in tracks] == pytest.approx([0.9, 0.7])
    assert IoUTracker().update(np.zeros((0, 4))) == []
    with pytest.raises(ValueError):
        IoUTracker().update([box(1, 1)], [0.5, 0.6])
    with pytest.raises(ValueError):
        IoUTracker().update([[0, 0, np.nan, 10]])
    with pytest.raises(ValueError):
        IoUTracker(iou_threshold=0)


def test_recognise_once_then_every_n_frames():
    tracker = IoUTracker()
    runs = []
    verdicts = iter(["alice", "bob", "alice", "alice", "alice"])  # one bad frame early on
    for f in range(60):
        (track,) = tracker.update([box(200 + f, 200)])
        if tracker.needs_recognition(track, every=20, settle=3):
            runs.append(tracker.frame)
            name = next(verdicts, "alice")
            tracker.record(track, Match(name, 0.8 if name == "alice" else 0.4, 0))
    # frames 1-5 until the last three agree, then every 20 frames
    assert runs == [1, 2, 3, 4, 5, 25, 45]
    assert track.identity == "alice" and track.identity_score == pytest.approx(0.8)
    assert track.settled(3) and track.last_recognized_frame == 45
    assert [o.identity for o in track.observations][:2] == ["alice", "bob"]


def test_a_stranger_settles_as_unknown():
    tracker = IoUTracker()
    runs = 0
    for _ in range(30):
        (track,) = tracker.update([box(100, 100)])
        if tracker.needs_recognition(track, every=50):
            runs += 1
            tracker.record(track, None, 0.12)  # gallery.best() found nobody
    assert runs == 3 and track.identity is None and track.identity_score is None and track.settled()


def test_no_recognition_while_missed():
    tracker = IoUTracker()
    (track,) = tracker.update([box(100, 100)])
    tracker.update([])
    assert track.missed == 1 and not tracker.needs_recognition(track)


def test_vote_prefers_the_majority_then_the_most_recent():
    t = Track(id=1, box=np.array(box(0, 0), np.float32), score=1.0)
    for frame, name in enumerate(["a", "b", "b", "a"]):
        t.observe(name, 0.5 + 0.1 * frame, frame)
    assert t.identity == "a"  # 2:2, "a" is the most recent
    assert t.identity_score == pytest.approx((0.5 + 0.8) / 2)
    t.observe("b", 0.9, 4)
    assert t.identity == "b" and not t.settled(3)
    assert len(t.observations) == 5


def test_observation_history_is_bounded():
    tracker = IoUTracker(history=4)
    (track,) = tracker.update([box(100, 100)])
    for i in range(10):
        tracker.record(track, "a", 0.7)
    assert len(track.observations) == 4
