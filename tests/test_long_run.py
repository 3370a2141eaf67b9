"""Runs of days (`gputrack run` recording headless): nothing may grow with the frames.

The bounded structures are tested directly, at small bounds, plus one short run whose bounds
are lowered so that it goes past them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gputrack import latency
from gputrack.cli import main
from gputrack.commands import run_score
from gputrack.commands.run import _score_row
from gputrack.dsp.standin import NoisyTruthDetector
from gputrack.latency import REL_ERROR, LatencyStats
from gputrack.sensor import synthetic
from gputrack.sensor.synthetic import SyntheticWorld
from gputrack.track import Tracker
from gputrack.track.mot_eval import score_frames
from gputrack.track.mot_stream import StreamScorer

# -- latency percentiles -------------------------------------------------------------------


def test_latency_percentiles_are_numpys_own_up_to_the_bound():
    values = np.random.default_rng(0).lognormal(0.0, 1.0, 5000)
    stats = LatencyStats(exact_frames=5000)
    for v in values:
        stats.add(float(v))
    assert stats.exact and stats.count == 5000
    for q in (0, 1, 50, 99, 100):
        assert stats.percentile(q) == np.percentile(values, q)


def test_latency_past_the_bound_is_a_fixed_histogram_within_the_stated_error():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.lognormal(0.5, 0.8, 40_000), rng.uniform(30, 60, 400)])
    rng.shuffle(values)
    stats = LatencyStats(exact_frames=1000)
    for v in values[:20_000]:
        stats.add(float(v))
    held = stats._hist.nbytes
    for v in values[20_000:]:
        stats.add(float(v))
    assert not stats.exact and stats._values is None, "the per-frame values are gone"
    assert stats._hist.nbytes == held < 64 * 1024, "the histogram does not grow"
    assert stats.count == len(values)
    for q in (50, 99, 99.9):
        want = np.percentile(values, q)
        assert abs(stats.percentile(q) - want) <= REL_ERROR * want, q


def test_latency_edges_zero_nan_and_empty():
    stats = LatencyStats(exact_frames=0)
    assert np.isnan(stats.percentile(50))
    for v in (0.0, float("nan"), 5.0, 1e12):
        stats.add(v)
    assert not stats.exact and stats.count == 4
    assert 0 <= stats.percentile(0) < 1e-5 and stats.percentile(100) <= latency.MAX_MS * 1.01


# -- tracking scores -----------------------------------------------------------------------


def _rows(frames: int, seed: int) -> list[tuple]:
    """What `gputrack run` scores: a noisy detector's tracks on the synthetic world."""
    world = SyntheticWorld(160, 96, fps=30, seed=seed, num_objects=10)
    detect, tracker = NoisyTruthDetector(seed, jitter=0.08, miss=0.2), Tracker(fps=30)
    rows = []
    for i in range(frames):
        truth = world.ground_truth(i)
        rows.append(_score_row(truth, tracker.update(detect(truth), i)))
    return rows


@pytest.mark.parametrize("seed", [0, 3])
def test_stream_scorer_gives_score_frames_figures_exactly(seed):
    rows = _rows(400, seed)
    want = score_frames(rows)
    scorer = StreamScorer()
    for row in rows:
        scorer.update(*row)
    got = scorer.metrics()
    assert want["num_switches"] > 0 and want["num_misses"] > 0, "a test with mistakes in it"
    for k in ("mota", "idf1", "num_switches", "num_false_positives", "num_misses",
              "num_objects", "precision", "recall"):  # fmt: skip
        assert got[k] == want[k], k
    assert got["motp"] == pytest.approx(want["motp"], rel=1e-12)  # summed in another order


def test_stream_scorer_keeps_counts_not_frames():
    """The same objects and tracks for many frames: what is kept stays the same size."""
    gt = np.array([[0, 0, 10, 10], [50, 0, 10, 10]], float)
    scorer = StreamScorer()
    for i in range(3000):
        hyp_ids = [7, 8] if i < 1500 else [8, 7]  # the tracks swap once: two switches
        scorer.update([1, 2], gt, hyp_ids, gt)
    assert scorer.frames == 3000 and scorer.pairs == 4
    assert len(vars(scorer)) < 20 and all(
        len(v) <= 4 for v in vars(scorer).values() if isinstance(v, dict))
    m = scorer.metrics()
    assert m["num_switches"] == 2 and m["num_objects"] == 6000
    assert m["idf1"] == pytest.approx(0.5)  # each truth id half its frames on its best track


def test_stream_scorer_with_nothing_to_score_is_nan_like_motmetrics():
    scorer = StreamScorer()
    scorer.update([], np.zeros((0, 4)), [], np.zeros((0, 4)))
    got, want = scorer.metrics(), score_frames([([], np.zeros((0, 4)), [], np.zeros((0, 4)))])
    assert np.isnan(got["mota"]) and np.isnan(want["mota"])
    assert np.isnan(got["idf1"]) and np.isnan(want["idf1"])


# -- the synthetic world -------------------------------------------------------------------


def test_synthetic_world_keeps_a_bounded_window_of_lives(monkeypatch):
    """Days of frames keep a few lives per object; any frame, earlier ones too, is still the
    one a world that kept every life renders."""
    monkeypatch.setattr(synthetic, "LIVES_KEPT", 10**9)
    whole = SyntheticWorld(64, 48, fps=30, seed=4, num_objects=5)
    monkeypatch.setattr(synthetic, "LIVES_KEPT", 3)
    monkeypatch.setattr(synthetic, "LIFE_MARK", 4)
    window = SyntheticWorld(64, 48, fps=30, seed=4, num_objects=5)
    frames = [*range(0, 20_000, 61), 7, 19_000, 3_001, 12_345, 0, 19_999]  # then back
    for i in frames:
        assert np.array_equal(window.ground_truth(i), whole.ground_truth(i)), i
    assert max(map(len, window._lives)) <= 3
    monkeypatch.undo()
    day = SyntheticWorld(64, 48, fps=30, seed=0)
    day.ground_truth(30 * 6 * 3600)  # six hours later: ~20 000 lives made on the way
    kept = sum(map(len, day._lives)) + sum(map(len, day._marks))
    assert kept <= 8 * (synthetic.LIVES_KEPT + 5), kept


# -- one short run past the bounds ---------------------------------------------------------


def test_run_past_the_bounds_keeps_its_figures(monkeypatch, capsys):
    """Latency past its exact bound says so; MOTA and IDF1 are score_frames' own."""
    monkeypatch.setattr(latency, "EXACT_FRAMES", 50)
    rows: list[tuple] = []

    class Recording(StreamScorer):
        def update(self, *row):
            rows.append(row)
            super().update(*row)

    monkeypatch.setattr(run_score, "new_scorer", Recording)
    argv = ["run", "synthetic:96x64@30", "--frames", "240", "--backend", "cpu", "--detector",
            "truth", "--no-ui"]  # fmt: skip
    assert main([*argv, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["frames"] == 240 and s["scored_frames"] == 240 == len(rows)
    assert s["stage_ms_exact"] is False and s["stage_ms_rel_error"] == REL_ERROR
    assert set(s["stage_ms_p50"]) == set(s["stage_ms_p99"]) == {
        "sensor", "isp", "dsp", "track", "total"}  # fmt: skip
    assert all(s["stage_ms_p99"][k] >= s["stage_ms_p50"][k] > 0 for k in s["stage_ms_p50"])
    want = score_frames(rows)
    assert s["mota"] == round(want["mota"], 4) and s["idf1"] == round(want["idf1"], 4)
    assert s["id_switches"] == want["num_switches"]
    rows.clear()
    assert main([*argv, "--frames", "60"]) == 0
    assert "past 50 frames p50 and p99 come from a histogram, within 0.5 %" in (
        capsys.readouterr().out)


def test_run_stops_scoring_at_the_pair_bound_and_says_so(monkeypatch, capsys):
    monkeypatch.setattr(run_score, "MAX_SCORED_PAIRS", 3)
    assert main(["run", "synthetic:96x64@30", "--frames", "120", "--backend", "cpu",
                 "--detector", "truth", "--no-ui", "--json"]) == 0  # fmt: skip
    s = json.loads(capsys.readouterr().out)
    assert s["frames"] == 120 and s["scored_frames"] < 120 and s["stage_ms_exact"] is True
    assert any(f"scored on the first {s['scored_frames']} frames" in n
               for n in s["source_notes"])  # fmt: skip
