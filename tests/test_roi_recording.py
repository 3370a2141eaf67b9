"""A recording of a windowed run (`run --roi ... --raw FOLDER`): each DNG states where its
window lies on the sensor, and `gputrack run FOLDER` plays it back in the sensor's pixels, as
the windowed run logged it (the boxes were off by the window's corner)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gputrack.cli import main
from gputrack.device import get_backend
from gputrack.dsp.decode import DetectParams
from gputrack.dsp.detector import Detector, bundled_model
from gputrack.errors import GputrackError
from gputrack.isp import IspParams
from gputrack.outputs.dng import dng_bytes, read_window, window_line
from gputrack.pipeline import Pipeline
from gputrack.sensor.frame import RawFrame
from gputrack.sensor.model import SensorModel, SensorParams
from gputrack.sensor.roi import Roi
from gputrack.sensor.sources import Frame, open_source
from gputrack.track import Tracker

rawpy = pytest.importorskip("rawpy")
pytest.importorskip("pidng")
tifffile = pytest.importorskip("tifffile")

MODEL = str(bundled_model())
CCM = np.array([[1.7, -0.55, -0.15], [-0.25, 1.45, -0.2], [0.05, -0.6, 1.55]])
# The playback develops each frame within 1 code of the run's image (the DNG's rational
# white balance and matrix), which moves a box by tenths of a pixel at most; a window's corner
# moves it by tens.
BOX_TOLERANCE = 0.5


def _run(capsys, *argv: str) -> tuple[int, dict, str]:
    capsys.readouterr()
    rc = main(["run", *argv, "--json", "--no-ui", "--backend", "cpu"])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if out.strip() else {}), err


def _tracks(log: Path) -> list[tuple[int, list[tuple[int, list[float]]]]]:
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    return [(x["frame"], [(t["id"], t["bbox"]) for t in x["tracks"]]) for x in lines]


def _assert_same_tracks(got: Path, want: Path) -> None:
    a, b = _tracks(got), _tracks(want)
    assert [f for f, _ in a] == [f for f, _ in b]
    assert sum(len(t) for _, t in b) >= 4, "the window holds objects the model finds"
    for (frame, ta), (_, tb) in zip(a, b, strict=True):
        assert [i for i, _ in ta] == [i for i, _ in tb], frame
        np.testing.assert_allclose([box for _, box in ta], [box for _, box in tb],
                                   atol=BOX_TOLERANCE, err_msg=f"frame {frame}")  # fmt: skip


def _description(path: Path) -> str:
    with tifffile.TiffFile(path) as tif:
        return tif.pages[0].tags[270].value


def test_a_windowed_recording_plays_back_in_the_sensors_pixels(tmp_path, capsys):
    """The bug's own example, played by the same network: the playback logs the windowed
    run's boxes, not boxes off by (32, 16)."""
    rec, roi_log, play_log = tmp_path / "rec", tmp_path / "roi.jsonl", tmp_path / "play.jsonl"
    rc, s, err = _run(capsys, "synthetic:128x96", "--frames", "6", "--roi", "32,16,64,64",
                      "--raw", str(rec), "--log", str(roi_log), "--model", MODEL)  # fmt: skip
    assert rc == 0 and s["raw_frames"] == 6, err
    assert _description(rec / "frame_000000.dng") == (
        "gputrack frame 0\ngputrack-window/1 roi=32,16,64,64 sensor=128x96")
    with open_source(str(rec)) as src:  # the sensor, as the windowed run's source was
        assert src.size == (128, 96) and src.window == Roi(32, 16, 64, 64)
        raw = next(src).raw
        assert raw.data.shape == (64, 64) and raw.window == Roi(32, 16, 64, 64)
        assert raw.sensor_size == (128, 96)
    rc, p, err = _run(capsys, str(rec), "--log", str(play_log), "--model", MODEL,
                      "--raw", str(tmp_path / "again"))  # fmt: skip
    assert rc == 0, err
    _assert_same_tracks(play_log, roi_log)
    assert p["frame_size"] == [64, 64] and p["frames"] == 6 and "mota" not in p  # no truth
    assert p["roi"] == [32, 16, 64, 64]  # the window the frames are, as the run's summary
    assert any("the window 32,16,64,64 of a 128x96 sensor" in n for n in p["source_notes"])
    # recorded again, the playback states the same window
    assert _description(tmp_path / "again" / "frame_000005.dng") == (
        "gputrack frame 5\ngputrack-window/1 roi=32,16,64,64 sensor=128x96")


def test_a_recording_without_a_window_plays_back_unchanged(tmp_path, capsys):
    rec, run_log, play_log = tmp_path / "rec", tmp_path / "run.jsonl", tmp_path / "play.jsonl"
    rc, _, err = _run(capsys, "synthetic:128x96", "--frames", "4", "--raw", str(rec),
                      "--log", str(run_log), "--model", MODEL)  # fmt: skip
    assert rc == 0, err
    assert _description(rec / "frame_000000.dng") == "gputrack frame 0"  # nothing new
    with open_source(str(rec)) as src:
        assert src.size == (128, 96) and src.window is None and src.notes == []
        raw = next(src).raw
        assert raw.window is None and raw.sensor_size is None
    rc, p, err = _run(capsys, str(rec), "--log", str(play_log), "--model", MODEL)
    assert rc == 0 and p["frame_size"] == [128, 96] and p["roi"] is None, err
    _assert_same_tracks(play_log, run_log)


def _raw(rng, shape=(32, 48), **kw) -> RawFrame:
    data = rng.integers(256, 4096, shape, dtype=np.uint16)
    return RawFrame(data, black_level=256, **kw)


def test_the_window_round_trips_through_dng_bytes_and_the_source(tmp_path, rng):
    raw = _raw(rng, window=Roi(8, 4, 48, 32), sensor_size=(96, 64))
    path = tmp_path / "one.dng"
    path.write_bytes(dng_bytes(raw, (2.0, 1.0, 1.6), CCM))
    with open_source(str(path)) as src:
        assert src.size == (96, 64) and src.window == Roi(8, 4, 48, 32)
        got = next(src).raw
    assert np.array_equal(got.data, raw.data)
    assert got.window == Roi(8, 4, 48, 32) and got.sensor_size == (96, 64)
    with rawpy.imread(str(path)) as r:  # a raw developer still sees the window's image
        assert r.raw_image_visible.shape == (32, 48)
    assert read_window(window_line(Roi(8, 4, 48, 32), (96, 64))) == (Roi(8, 4, 48, 32),
                                                                     (96, 64))  # fmt: skip
    assert read_window("gputrack frame 3") is None
    with pytest.raises(GputrackError, match="is for the window line"):
        dng_bytes(raw, (2.0, 1.0, 1.6), CCM, description="gputrack-window/1 roi=0,0,4,4")


def test_a_raw_frame_states_a_window_it_can_be(rng):
    for kw, needle in (({"window": Roi(0, 0, 48, 32)}, "states both"),
                       ({"sensor_size": (96, 64)}, "states both"),
                       ({"window": Roi(0, 0, 48, 30), "sensor_size": (96, 64)}, "not the size"),
                       ({"window": Roi(50, 0, 48, 32), "sensor_size": (96, 64)},
                        "reaches past the sensor")):  # fmt: skip
        with pytest.raises(GputrackError, match=needle):
            _raw(rng, **kw)


def _windowed_file(folder: Path, rng, name: str = "frame_000000.dng") -> Path:
    folder.mkdir(exist_ok=True)
    raw = _raw(rng, shape=(64, 64), window=Roi(32, 16, 64, 64), sensor_size=(128, 96))
    path = folder / name
    path.write_bytes(dng_bytes(raw, (2.0, 1.0, 1.6), CCM, description="gputrack frame 0"))
    return path


@pytest.mark.parametrize(("old", "new", "needle"), [
    (b"roi=32,16", b"roi=33,16", "must be even"),
    (b"window/1 ", b"window/2 ", "a form this gputrack does not read"),
    (b"sensor=128x96", b"sensor=128,96", "not as 'gputrack-window/1 roi=X,Y,W,H sensor=WxH'"),
    (b"sensor=128x96", b"sensor=080x96", "reaches past the sensor"),
    (b"roi=32,16,64,64", b"roi=32,16,60,64", "is not the size of its window"),
])  # fmt: skip
def test_a_window_that_cannot_be_read_is_an_error_naming_the_file(tmp_path, rng, old, new,
                                                                   needle):  # fmt: skip
    """Read as "no window", the frames would play back with every box off by the corner:
    the very fault. Any failure to read the tags at all (tifffile) still means none stated."""
    path = _windowed_file(tmp_path / "rec", rng)
    data = path.read_bytes()
    assert data.count(old) == 1 and len(old) == len(new)
    path.write_bytes(data.replace(old, new))
    with pytest.raises(GputrackError, match="readout window|window") as err:
        open_source(str(tmp_path / "rec"))
    assert str(path) in str(err.value) and needle in str(err.value), err.value


def test_a_broken_window_stops_the_run_with_one_line(tmp_path, rng, capsys):
    path = _windowed_file(tmp_path / "rec", rng)
    path.write_bytes(path.read_bytes().replace(b"roi=32,16", b"roi=33,16"))
    rc, _, err = _run(capsys, str(tmp_path / "rec"), "--model", MODEL)
    assert rc == 1 and "frame_000000.dng: states an impossible readout window" in err, err
    assert "Traceback" not in err


def test_a_recording_holds_one_window(tmp_path, rng):
    folder = tmp_path / "rec"
    _windowed_file(folder, rng)
    plain = _raw(rng, shape=(64, 64))
    (folder / "frame_000001.dng").write_bytes(dng_bytes(plain, (2.0, 1.0, 1.6), CCM))
    with open_source(str(folder)) as src, pytest.raises(GputrackError) as err:
        list(src)
    assert str(err.value) == (
        f"{folder / 'frame_000001.dng'}: frame is the whole sensor (it states no window), but "
        "the first is the window 32,16,64,64 of a 128x96 sensor")


def _detections(frame: Frame, roi: Roi | None, params: IspParams) -> tuple:
    be = get_backend("cpu")
    det = Detector(bundled_model(), be, DetectParams(score=0.3, max_det=50))
    pipe = Pipeline(be, det, Tracker(fps=30), isp_params=params, roi=roi)
    result = pipe.process(frame)
    shot = pipe.last_raw()
    return result.detections, result.origin, result.size, shot.raw


def test_a_windowed_frame_maps_back_as_the_window_did_and_a_roi_within_it_is_cut_from_it():
    """One mechanism: a frame that is a window already (as played back) gives the boxes the
    whole sensor read through that window gives; `--roi` on it is in sensor pixels, cut from
    the window, and the same as that window read from the whole sensor."""
    be = get_backend("cpu")
    with open_source("synthetic:768x448,seed=7,objects=12") as src:
        for _ in range(3):
            scene = next(src).image
    params = IspParams()
    mosaic = SensorModel(SensorParams(isp=params, noise=False), be).render(scene).data
    outer, inner = Roi(96, 48, 576, 352), Roi(192, 96, 384, 224)

    def frame(data: np.ndarray, window: Roi | None = None) -> Frame:
        sensor = None if window is None else (768, 448)
        raw = RawFrame(np.ascontiguousarray(data), black_level=params.black, window=window,
                       sensor_size=sensor)  # fmt: skip
        return Frame(0, 0.0, raw=raw)

    whole, recorded = frame(mosaic), frame(outer.crop(mosaic), outer)
    want, origin, size, _ = _detections(whole, outer, params)
    got, got_origin, got_size, shot = _detections(recorded, None, params)
    assert len(want) >= 2 and (origin, size) == (got_origin, got_size) == ((96, 48), (576, 352))
    np.testing.assert_array_equal(got, want)
    assert shot.window == outer and shot.sensor_size == (768, 448)  # what --raw records

    want, origin, _, _ = _detections(whole, inner, params)
    got, got_origin, got_size, shot = _detections(recorded, inner, params)
    assert len(want) >= 2 and origin == got_origin == (192, 96) and got_size == (384, 224)
    np.testing.assert_array_equal(got, want)
    assert shot.window == inner and shot.sensor_size == (768, 448)

    with pytest.raises(GputrackError, match="reaches past the recording's window 96,48"):
        _detections(recorded, Roi(0, 0, 384, 224), params)


def test_a_roi_on_the_playback_of_a_windowed_recording(tmp_path, capsys):
    rec = tmp_path / "rec"
    rc, _, err = _run(capsys, "synthetic:128x96", "--frames", "2", "--roi", "32,16,64,64",
                      "--raw", str(rec), "--detector", "truth")  # fmt: skip
    assert rc == 0, err
    rc, p, err = _run(capsys, str(rec), "--roi", "40,20,32,32", "--model", MODEL,
                      "--raw", str(tmp_path / "inner"))  # fmt: skip
    assert rc == 0 and p["frame_size"] == [32, 32] and p["roi"] == [40, 20, 32, 32], err
    assert _description(tmp_path / "inner" / "frame_000000.dng").endswith(
        "gputrack-window/1 roi=40,20,32,32 sensor=128x96")
    log = tmp_path / "t.jsonl"
    rc, _, err = _run(capsys, str(rec), "--roi", "0,0,64,64", "--model", MODEL,
                      "--log", str(log))  # fmt: skip
    assert rc == 2 and "--roi window 0,0,64,64" in err, err  # a usage error, before any work
    assert "reaches past the recording's window 32,16,64,64" in err and not log.exists()
    rc, _, err = _run(capsys, str(rec), "--lens-shading", "0.2,0", "--model", MODEL)
    assert rc == 2 and "--lens-shading" in err and "32,16,64,64" in err, err


def test_the_live_view_maps_a_windowed_recording_as_the_run_did(tmp_path, capsys,
                                                                 monkeypatch):
    from gputrack.commands import run_loop

    rec = tmp_path / "rec"
    rc, _, err = _run(capsys, "synthetic:64x48", "--frames", "2", "--roi", "8,8,24,24",
                      "--raw", str(rec), "--detector", "truth")  # fmt: skip
    assert rc == 0, err
    seen = {}

    class View:
        def __init__(self, title, size, fps, names, frames, window=None):
            seen.update(size=size, window=window)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def update(self, *args):
            pass

    monkeypatch.setattr(run_loop, "LiveView", View)
    assert main(["run", str(rec), "--model", MODEL, "--backend", "cpu", "--ui"]) == 0
    assert seen == {"size": (64, 48), "window": (8, 8, 24, 24)}  # the sensor's map, blanked
