"""Multi-object tracking: a Kalman filter on the box (filterpy), IoU association, track life cycle.

    tracker = Tracker(fps=30)
    for index, dets in enumerate(frames):        # dets: float32[N, 6] x1, y1, x2, y2, score, class
        tracks = tracker.update(dets, index)     # list[Track]
"""

from gputrack.track.tracker import COLUMNS, Track, Tracker, TrackerParams, to_tracks

__all__ = ["COLUMNS", "Track", "Tracker", "TrackerParams", "to_tracks"]
