"""The tracker's dynamics and life cycle on synthetic sequences: time (gaps in frame indices),
geometry (tiny boxes, boxes shrinking to nothing) and the filter's numbers over long runs."""

from __future__ import annotations

import numpy as np
import pytest

from gputrack.track import Track, Tracker
from gputrack.track.tracker import MIN_SIZE
from tests.test_track import box


def dets(*rows: list[float]) -> np.ndarray:  # float64: sub-pixel boxes keep their size
    return np.array(rows, np.float64).reshape(-1, 6)


def ids(tracks: list[Track]) -> set[int]:
    return {t.id for t in tracks if t.id > 0}


@pytest.mark.parametrize("size", [0.6, 1.0, 1.5])
def test_a_pixel_sized_object_keeps_one_track(size):
    """A far object 1 px wide, its detected size jittering by 5 %: one track, confirmed every
    frame. (Tracks under 1 px used to be removed as degenerate, so a 1 px object got a new
    tentative track every few frames and 9 IDs in 3 s, and a 0.6 px one lost its track after
    its first frame, although its detections were taken.)"""
    tr = Tracker(fps=30)
    rng = np.random.default_rng(0)
    seen: set[int] = set()
    for i in range(90):
        w, h = size * (1 + rng.normal(0, 0.05, 2))
        tracks = tr.update(dets(box(100 + 0.1 * i, 100, w, 2 * h)), i)
        assert [(t.id, t.state) for t in tracks] == [(1, "confirmed")], i
        seen |= ids(tracks)
    assert seen == {1}


def test_a_collapsing_prediction_is_removed_and_never_reported_empty():
    """A lost track whose size velocity is negative shrinks while predicted; it is removed
    once its box runs out, never reported with a size under `MIN_SIZE` or negative."""
    tr = Tracker(fps=30)
    for i in range(10):
        tr.update(dets(box(300, 300, 40 - 3 * i, 80 - 6 * i)), i)
    for i in range(10, 30):
        for t in tr.update(dets(), i):
            assert t.w >= MIN_SIZE and t.h >= MIN_SIZE and np.isfinite([t.x, t.y]).all()
    assert len(tr) == 0


def test_empty_detections_start_nothing():
    tr = Tracker(fps=30)
    assert tr.update(dets(box(100, 100, MIN_SIZE / 2, 10), box(200, 100, 10, 0)), 0) == []
    assert len(tr.update(dets(box(100, 100, 2 * MIN_SIZE, 2 * MIN_SIZE)), 1)) == 1


@pytest.mark.parametrize("step", [1, 3, 10])
def test_dropped_frames_are_predicted_through_and_counted(step):
    """A webcam that gives every `step`-th frame: the prediction advances by the gap, the
    velocity stays per second and the age counts frames, not updates."""
    tr = Tracker(fps=30)
    for k in range(20):
        (t,) = tr.update(dets(box(100 + 5 * k * step, 200)), k * step)
    assert t.id == 1 and t.age == 19 * step
    assert t.vx == pytest.approx(150, rel=0.02)  # 5 px a frame at 30 fps
    (lost,) = tr.update(dets(), 20 * step)
    assert lost.state == "lost" and lost.x + lost.w / 2 == pytest.approx(100 + 100 * step, abs=1)


@pytest.mark.parametrize("fps", [1000.0, 30.0, 0.1])
def test_the_filter_stays_finite_and_positive_over_long_runs(fps):
    """Thousands of updates of one track, then a long prediction: covariance blocks stay
    positive definite and finite, the box keeps its size."""
    tr = Tracker(fps=fps, lost_time=2000 / fps)
    rng = np.random.default_rng(1)
    for i in range(3000):
        tr.update(dets(box(300 + rng.normal(0, 1), 300 + rng.normal(0, 1))), i)
    for i in range(3000, 5000):  # predicted only
        (t,) = tr.update(dets(), i)
    kf = tr.kf
    assert np.isfinite(kf.x).all() and np.isfinite(kf.pp).all() and np.isfinite(kf.vv).all()
    assert (kf.pp > 0).all() and (kf.vv > 0).all() and (kf.pp * kf.vv > kf.pv**2).all()
    assert t.state == "lost" and t.w == pytest.approx(40, rel=0.1)
