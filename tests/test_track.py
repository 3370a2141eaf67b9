"""The tracker: Kalman model against filterpy, association, one test per life-cycle rule,
and the real TUD-Campus sequence."""

from __future__ import annotations

import numpy as np
import pytest

from gputrack.errors import GputrackError
from gputrack.track import Track, Tracker, TrackerParams
from gputrack.track.association import assign, iou_matrix, match, similarity
from gputrack.track.kalman import (
    BatchKalman,
    MotionNoise,
    make_filter,
    set_measurement_noise,
    set_process_noise,
)
from gputrack.track.mot_eval import evaluate
from gputrack.track.mot_io import read_detections, write_results
from tests.conftest import shared_data

# -- helpers ---------------------------------------------------------------------------------


def box(cx: float, cy: float, w: float = 40, h: float = 80, score: float = 0.9,
        cls: int = 0) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score, cls]


def dets(*rows: list[float]) -> np.ndarray:
    return np.array(rows, np.float32).reshape(-1, 6)


def confirmed(tracks: list[Track]) -> list[Track]:
    return [t for t in tracks if t.state == "confirmed"]


def run_frames(tracker: Tracker, frames: list[np.ndarray]) -> list[list[Track]]:
    return [tracker.update(d, i) for i, d in enumerate(frames)]


# -- Kalman filter: the batch equals filterpy --------------------------------------------------


def test_batched_kalman_equals_filterpy(rng):
    fps, noise = 30.0, MotionNoise()
    batch = BatchKalman(fps, noise)
    ref = []

    def add(n):
        z = np.column_stack([rng.uniform(0, 1000, (n, 2)), rng.uniform(5, 300, (n, 2))])
        batch.add(z)
        ref.extend(make_filter(zi, fps, noise) for zi in z)

    add(5)
    for step in range(40):
        batch.predict()
        for kf in ref:
            set_process_noise(kf, noise, 1.0 / fps)
            kf.predict()
        rows = np.flatnonzero(rng.random(len(ref)) < 0.7)  # some tracks miss a detection
        z = batch.x[rows, :4] + rng.normal(0, 3, (len(rows), 4))
        batch.update(rows, z)
        for r, zi in zip(rows, z, strict=True):
            set_measurement_noise(ref[r], noise)
            ref[r].update(zi)
        if step == 10:
            add(3)
        if step == 20:  # drop a track from both
            mask = np.ones(len(ref), bool)
            mask[1] = False
            batch.keep(mask)
            del ref[1]
        x_ref = np.array([kf.x[:, 0] for kf in ref])
        P_ref = np.array([kf.P for kf in ref])
        np.testing.assert_allclose(batch.x, x_ref, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(batch.covariance(), P_ref, rtol=1e-9, atol=1e-9)


def test_velocity_is_per_second_whatever_the_fps():
    for fps in (30.0, 60.0):
        kf = BatchKalman(fps)
        kf.add(np.array([[100.0, 100, 40, 80]]))
        for i in range(1, int(fps)):  # one second moving at 120 px/s
            kf.predict()
            kf.update(np.array([0]), np.array([[100.0 + 120 * i / fps, 100, 40, 80]]))
        assert kf.x[0, 4] == pytest.approx(120, rel=0.05)


# -- association -----------------------------------------------------------------------------


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10.0]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30.0]])
    np.testing.assert_allclose(iou_matrix(a, b)[0], [1.0, 50 / 150, 0.0])


def test_assignment_threshold_and_optimum():
    sim = np.array([[0.9, 0.8], [0.85, 0.1]])
    pairs, free_r, free_c = assign(sim, 0.3)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (1, 0)]  # total 1.65 beats 1.0
    pairs, free_r, free_c = assign(np.array([[0.2]]), 0.3)
    assert len(pairs) == 0 and free_r.tolist() == [0] and free_c.tolist() == [0]


def test_centre_fallback_catches_small_fast_box_and_class_blocks():
    track = np.array([[100, 100, 110, 110.0]])
    det = np.array([[112, 100, 122, 110.0]])  # moved past its own width: IoU 0
    assert iou_matrix(track, det)[0, 0] == 0
    std = np.array([[8.0, 8.0]])  # an uncertain (new or lost) track's predicted centre
    sim = similarity(track, np.array([0]), det, np.array([0]), std)
    assert sim[0, 0] > 0.2
    assert similarity(track, np.array([0]), det, np.array([1]), std)[0, 0] == 0
    far = np.array([[300, 300, 310, 310.0]])
    assert similarity(track, np.array([0]), far, np.array([0]), std)[0, 0] == 0
    sure = np.array([[1.0, 1.0]])  # a well-followed track does not reach that far
    assert similarity(track, np.array([0]), det, np.array([0]), sure)[0, 0] == 0


def test_sparse_match_equals_dense_assignment(rng):
    for _ in range(20):  # crowded random scenes: many overlaps and near misses
        n, m = rng.integers(0, 60, 2)
        t = np.column_stack([rng.uniform(0, 400, (n, 2)), rng.uniform(10, 60, (n, 2))])
        d = np.column_stack([rng.uniform(0, 400, (m, 2)), rng.uniform(10, 60, (m, 2))])
        std = rng.uniform(2, 20, (n, 2))
        tc, dc = rng.integers(0, 2, n), rng.integers(0, 2, m)

        def xyxy(b):
            return np.column_stack([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2])

        dense = assign(similarity(xyxy(t), tc, xyxy(d), dc, std), 0.2)
        sparse = match(t, std, tc, d, dc, 0.2)
        assert sorted(map(tuple, dense[0].tolist())) == sorted(map(tuple, sparse[0].tolist()))
        for a, b in zip(dense[1:], sparse[1:], strict=True):
            assert a.tolist() == b.tolist()


# -- life cycle, one rule each ---------------------------------------------------------------


def test_parameters_scale_with_fps():
    p30, p60 = TrackerParams(fps=30), TrackerParams(fps=60)
    assert (p30.min_hits, p30.max_lost) == (3, 30)
    assert (p60.min_hits, p60.max_lost) == (6, 60)


def test_tentative_tracks_get_ids_only_when_confirmed_and_ids_do_not_skip():
    tr = Tracker(fps=30)
    tr.update(dets(box(100, 100)), 0)  # first frame: confirmed at once
    for i in range(1, 40):
        frame = [box(100 + 2 * i, 100)]
        if i % 3 == 0:  # clutter: one-frame false detections each time somewhere else
            frame.append(box(600 + 13 * i, 400))
        if i >= 20:  # a real object appears
            frame.append(box(400, 300 + i))
        tracks = tr.update(dets(*frame), i)
        for t in tracks:
            assert (t.id == -1) == (t.state == "tentative")
    ids = sorted({t.id for t in tracks if t.id > 0})
    assert ids == [1, 2]  # the clutter used up no IDs
    assert tr.next_id == 3


def test_no_id_reuse_after_removal():
    p = TrackerParams(fps=30, lost_time=0.2)
    tr = Tracker(p)
    seen = set()
    for i in range(30):  # object A then, after it is gone for good, object B at the same place
        d = dets(box(200, 200)) if i < 10 or i >= 20 else dets()
        for t in confirmed(tr.update(d, i)):
            seen.add((i >= 20, t.id))
    assert seen == {(False, 1), (True, 2)}


def test_occlusion_gap_is_bridged_with_predictions_reported_as_lost():
    tr = Tracker(fps=30)
    states = []
    for i in range(60):
        cx = 100 + 5 * i  # 150 px/s
        if 20 <= i < 35:  # half a second behind something
            tracks = tr.update(dets(), i)
            (t,) = tracks
            assert t.state == "lost" and t.det_index == -1
            assert t.x + t.w / 2 == pytest.approx(cx, abs=8)  # the prediction keeps moving
        else:
            tracks = tr.update(dets(box(cx, 200)), i)
        states.append(tracks[0].state)
        assert {t.id for t in tracks} == {1}
    assert states[35] == "confirmed"


def test_lost_track_reported_then_removed_after_lost_time():
    tr = Tracker(fps=30, lost_time=0.5)
    for i in range(10):
        tr.update(dets(box(300, 300)), i)
    lost_frames = 0
    for i in range(10, 40):
        tracks = tr.update(dets(), i)
        if tracks:
            assert tracks[0].state == "lost"
            lost_frames += 1
    assert lost_frames == 15 and len(tr) == 0


@pytest.mark.parametrize("gap", [5, 16, 17, 10**9])
def test_skipped_frames_bridge_a_gap_up_to_lost_time_and_cost_nothing_beyond(gap):
    """A jump in frame_index: the track survives it exactly when it would have survived
    that many frames without detections, and a huge jump returns at once."""
    p = TrackerParams(fps=30, lost_time=0.5)  # max_lost 15
    jumped, stepped = Tracker(p), Tracker(p)
    for i in range(10):
        jumped.update(dets(box(300, 300)), i)
        stepped.update(dets(box(300, 300)), i)
    for i in range(10, 10 + min(gap, 40) - 1):
        stepped.update(dets(), i)
    again = dets(box(300, 300))
    after_jump = jumped.update(again, 9 + gap)  # frames 10 .. 8+gap skipped
    after_steps = stepped.update(again, 9 + gap)
    survives = gap - 1 <= p.max_lost
    assert [t.id for t in confirmed(after_jump)] == ([1] if survives else [])
    assert [t.id for t in confirmed(after_steps)] == [t.id for t in confirmed(after_jump)]
    assert len(jumped) == len(stepped) == 1


def test_class_is_kept_and_other_classes_do_not_steal():
    tr = Tracker(fps=30)
    # A person (0) walks right and a car (1) left along the same line: they cross at i = 20.
    for i in range(41):
        a = box(100 + 10 * i, 200, score=0.9, cls=0)
        b = box(500 - 10 * i, 200, score=0.8, cls=1)
        tracks = confirmed(tr.update(dets(a, b), i))
        assert {(t.id, t.cls) for t in tracks} == {(1, 0), (2, 1)}
    # A detection of another class on a track's position does not update it.
    tracks = tr.update(dets(box(510, 200, cls=5)), 41)
    assert all(t.state == "lost" for t in tracks if t.id in (1, 2))


def test_every_row_maps_back_to_its_detection(rng):
    tr = Tracker(fps=30)
    centres = np.array([[100.0, 100], [300, 100], [500, 300], [700, 500]])
    for i in range(20):
        d = dets(*[box(x + 3 * i, y) for x, y in centres])
        order = rng.permutation(len(d))
        d = d[order]
        d[:, 4] = rng.uniform(0.6, 1.0, len(d))
        tracks = tr.update(d, i)
        assert sorted(t.det_index for t in tracks) == list(range(len(d)))
        for t in tracks:
            x1, y1, x2, y2, score, cls = d[t.det_index]
            assert iou_matrix(np.array([[t.x, t.y, t.x + t.w, t.y + t.h]]),
                              d[None, t.det_index, :4])[0, 0] > 0.8
            assert t.score == pytest.approx(score) and t.cls == cls


def test_weak_detections_keep_a_track_but_do_not_start_one():
    tr = Tracker(fps=30)
    for i in range(10):
        tr.update(dets(box(100 + 4 * i, 100)), i)
    for i in range(10, 20):  # partly occluded: the detector is unsure
        tracks = tr.update(dets(box(100 + 4 * i, 100, score=0.3), box(600, 600, score=0.3)), i)
        assert [(t.id, t.state, t.det_index) for t in tracks] == [(1, "confirmed", 0)]


@pytest.mark.parametrize("fps", [0, -1, float("nan"), float("inf")])
def test_a_frame_rate_that_is_no_positive_number_is_refused(fps):
    with pytest.raises(GputrackError, match="fps must be a positive number"):
        Tracker(fps=fps)


def test_bad_detections_array_is_a_clear_error():
    with pytest.raises(GputrackError, match="N x 6"):
        Tracker().update(np.zeros((3, 4)), 0)
    assert Tracker().update(np.zeros((0, 6)), 0) == []


# -- accuracy --------------------------------------------------------------------------------


def _track_file(det: str, out, fps: float) -> None:
    frames = read_detections(det)
    tr = Tracker(fps=fps)
    with open(out, "w") as f:
        for i in range(1, max(frames) + 1):
            write_results(f, i, tr.update_array(frames.get(i, np.zeros((0, 6))), i))


@pytest.mark.parametrize(("fps", "reached"), [(25, (0.643, 0.767, 3)), (30, (0.643, 0.762, 4))])
def test_tud_campus_beats_sort_and_bytetrack(tmp_path, fps, reached):
    det = shared_data("mot/TUD-Campus/det.txt")
    gt = shared_data("mot/TUD-Campus/gt.txt")
    out = tmp_path / "result.txt"
    # TUD-Campus is filmed at 25 fps (MOT15 seqinfo); 30 is the CLI's default. The defaults
    # are used as they are.
    _track_file(det, out, fps=fps)
    m = evaluate(gt, out)
    # SORT: MOTA 62.7 %, IDF1 60.6 %; ByteTrack: 59.6 %, 67.9 % (their code and defaults).
    # Reached: 25 fps MOTA 64.3 %, IDF1 76.7 %, 3 switches; 30 fps 64.3 %, 76.2 %, 4.
    mota, idf1, switches = reached
    assert m["mota"] >= max(mota - 0.01, 0.628), m
    assert m["idf1"] >= max(idf1 - 0.01, 0.680), m
    assert m["num_switches"] <= switches, m
    assert not hasattr(np, "asfarray") or np.lib.NumpyVersion(np.__version__) < "2.0.0"
