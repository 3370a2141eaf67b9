"""Per-stage latency percentiles over a run of any length, in bounded memory.

Up to `EXACT_FRAMES` frames every latency is kept (float64) and p50/p99 are NumPy's own
(`np.median`, `np.percentile`). Past that the values go into a log-bucket histogram
(DDSketch's buckets: each spans a factor `GAMMA`, its estimate is within `REL_ERROR` of every
value in it) of a few thousand counters; the percentiles then interpolate between bucket
estimates as NumPy interpolates between samples, so each is within `REL_ERROR` of NumPy's
figure over all the samples. A day at 60 fps (5.2 M frames) costs the same memory as
`EXACT_FRAMES`.
"""

from __future__ import annotations

import math

import numpy as np

EXACT_FRAMES = 1 << 20  # 8 MiB a stage; about 4.9 hours at 60 fps, 9.7 at 30
REL_ERROR = 0.005  # of the percentiles once the histogram takes over
GAMMA = (1 + REL_ERROR) / (1 - REL_ERROR)
MIN_MS = 1e-6  # smaller latencies (a clock's zero) share the lowest bucket
MAX_MS = 1e7  # larger ones (hours: a stalled source) share the highest
_LOG_GAMMA = math.log(GAMMA)
_LOW = math.ceil(math.log(MIN_MS) / _LOG_GAMMA)
_BUCKETS = math.ceil(math.log(MAX_MS) / _LOG_GAMMA) - _LOW + 1  # about 3000


class LatencyStats:
    """`add(ms)` once a frame; `percentile(q)` exact while `exact`, else within REL_ERROR."""

    def __init__(self, exact_frames: int | None = None) -> None:
        self.exact_frames = EXACT_FRAMES if exact_frames is None else exact_frames
        self.count = 0
        self._values: np.ndarray | None = np.empty(min(1024, self.exact_frames))
        self._hist: np.ndarray | None = None

    @property
    def exact(self) -> bool:
        return self._hist is None

    def add(self, ms: float) -> None:
        if self._values is not None:
            if self.count == len(self._values):
                if self.count >= self.exact_frames:
                    self._to_histogram()
                else:  # doubling: appends stay O(1) amortised
                    grown = np.empty(min(2 * self.count, self.exact_frames))
                    grown[: self.count] = self._values
                    self._values = grown
            if self._values is not None:
                self._values[self.count] = ms
                self.count += 1
                return
        assert self._hist is not None
        x = min(max(ms, MIN_MS), MAX_MS) if ms == ms else MIN_MS  # NaN: the lowest
        self._hist[min(max(math.ceil(math.log(x) / _LOG_GAMMA) - _LOW, 0), _BUCKETS - 1)] += 1
        self.count += 1

    def _to_histogram(self) -> None:
        assert self._values is not None
        self._hist = np.bincount(_bucket(self._values[: self.count]), minlength=_BUCKETS)
        self._values = None

    def percentile(self, q: float) -> float:
        """The `q` percentile (0-100), as `np.percentile` (linear) over the values added;
        NaN before any."""
        if self.count == 0:
            return math.nan
        if self._values is not None:
            return float(np.percentile(self._values[: self.count], q))
        assert self._hist is not None
        # NumPy's rank and interpolation, each order statistic taken from its bucket
        rank = q / 100 * (self.count - 1)
        lo, frac = math.floor(rank), rank - math.floor(rank)
        ends = np.cumsum(self._hist)
        a, b = np.searchsorted(ends, [lo, min(lo + 1, self.count - 1)], side="right")
        va, vb = _estimate(int(a)), _estimate(int(b))
        return va + frac * (vb - va)


def _bucket(ms: np.ndarray) -> np.ndarray:
    """The bucket of each value: bucket i holds (GAMMA**(i+_LOW-1), GAMMA**(i+_LOW)] ms."""
    x = np.clip(np.nan_to_num(ms, nan=MIN_MS), MIN_MS, MAX_MS)
    i = np.ceil(np.log(x) / _LOG_GAMMA).astype(np.int64) - _LOW
    return np.clip(i, 0, _BUCKETS - 1)


def _estimate(i: int) -> float:
    """The value within REL_ERROR of every value in bucket `i` (its bounds' harmonic mean)."""
    return 2.0 * GAMMA ** (i + _LOW) / (GAMMA + 1.0)
