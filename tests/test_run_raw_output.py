"""`gputrack run --raw FOLDER`: the IMX500's RAW output mode, each frame's Bayer mosaic as a
DNG file that plays back through gputrack's own ISP into the image the run made."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gputrack.cli import main
from gputrack.device import get_backend, probe
from gputrack.dsp.standin import NoisyTruthDetector
from gputrack.isp import IspParams, IspPipeline
from gputrack.pipeline import Pipeline
from gputrack.sensor.frame import RawFrame
from gputrack.sensor.sources import open_source
from gputrack.track import Tracker

# Both are dependencies, but the GPU machine's offline set-up carries neither.
rawpy = pytest.importorskip("rawpy")
pytest.importorskip("pidng")


@pytest.mark.parametrize("backend", ["cpu", "emu"])
@pytest.mark.parametrize("wb", ["auto", (1.8, 1.0, 1.4)])
def test_the_raw_shot_develops_into_the_image_the_run_made(backend, wb):
    """What --raw writes for a frame is the mosaic the ISP read, with the gains it applied
    (grey world measured on that frame, or the fixed ones) and its colour matrix: the ISP run
    again on the shot alone, with those as fixed gains, gives the same image."""
    if not probe(backend).available:
        pytest.skip(f"{backend} unavailable: {probe(backend).reason}")
    be = get_backend(backend)
    params = IspParams(wb=wb)
    pipe = Pipeline(be, NoisyTruthDetector(0), Tracker(fps=30), isp_params=params)
    with open_source("synthetic:96x64,seed=3") as src:
        for _ in range(2):
            pipe.process(next(src))
    shot = pipe.last_raw()
    image = pipe.last_image()
    assert shot is not None and image is not None
    assert shot.raw.data.shape == (64, 96) and shot.raw.index == 1
    assert (shot.raw.pattern, shot.raw.bit_depth, shot.raw.black_level) == ("RGGB", 12, 256)
    if wb != "auto":
        assert shot.wb_gains == pytest.approx(wb)
    else:  # measured: not the fixed default
        assert shot.wb_gains != pytest.approx(IspParams().wb, rel=1e-3)
    np.testing.assert_allclose(shot.ccm, np.array(params.ccm))
    again = IspPipeline(params.with_(wb=shot.wb_gains), be).process(shot.raw).rgb8
    assert np.abs(again.astype(int) - image.astype(int)).max() <= 1


def _run(capsys, *argv: str) -> tuple[int, dict, str]:
    capsys.readouterr()  # what came before (the rng fixture prints its seed)
    rc = main(["run", *argv, "--json", "--no-ui", "--backend", "cpu"])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if out.strip() else {}), err


def test_a_raw_source_is_recorded_bit_identical_with_its_readout(tmp_path, capsys, rng):
    frames = tmp_path / "in"
    frames.mkdir()
    mosaics = [rng.integers(64, 1024, (48, 64), dtype=np.uint16) for _ in range(3)]
    for i, m in enumerate(mosaics):
        np.save(frames / f"{i:03d}.npy", m)
    rec, log = tmp_path / "rec", tmp_path / "t.jsonl"
    rc, s, _ = _run(capsys, str(frames), "--pattern", "GRBG", "--bit-depth", "10",
                    "--raw", str(rec), "--log", str(log))  # fmt: skip
    assert rc == 0 and s["raw"] == str(rec) and s["raw_frames"] == 3
    logged = [json.loads(line)["frame"] for line in log.read_text().splitlines()]
    assert sorted(p.name for p in rec.iterdir()) == [f"frame_{i:06d}.dng" for i in logged]
    with open_source(str(rec)) as back:
        got = [f.raw for f in back]
    assert all(np.array_equal(g.data, m) for g, m in zip(got, mosaics, strict=True))
    assert {(g.pattern, g.bit_depth) for g in got} == {("GRBG", 10)}
    # RAW input that states no colour: grey world, as `gputrack isp` (fixed gains are the
    # sensor model's illuminant, which a RAW file was not shot under)
    assert (s["white_balance"], s["colour_matrix"]) == ("auto", "default")
    assert s["classes"][0] == "person" and len(s["classes"]) == 80  # FastestDet's COCO names
    # played back, the recording's own white balance and colour matrix are the defaults
    rc, s, _ = _run(capsys, str(rec), "--log", str(tmp_path / "again.jsonl"))
    assert rc == 0 and (s["white_balance"], s["colour_matrix"]) == ("camera", "camera")
    rc, s, _ = _run(capsys, str(rec), "--wb", "auto", "--ccm", "identity")
    assert rc == 0 and (s["white_balance"], s["colour_matrix"]) == ("auto", "given")


def test_the_recording_folder_is_checked_before_any_work(tmp_path, capsys, rng):
    src = tmp_path / "in"
    src.mkdir()
    np.save(src / "000.npy", rng.integers(0, 4096, (48, 64), dtype=np.uint16))
    argv = ["synthetic:64x48", "--frames", "2", "--detector", "truth"]
    cases = [
        ([str(src), "--raw", str(src)], "is the source folder"),
        ([*argv, "--raw", str(tmp_path / "a.txt"), "--log", str(tmp_path / "a.txt")], "--log"),
        ([*argv, "--raw", str(tmp_path / "no" / "rec")], "does not exist"),
    ]
    (tmp_path / "plain").write_text("a file")
    cases.append(([*argv, "--raw", str(tmp_path / "plain")], "not a folder"))
    for args, needle in cases:
        rc, _, err = _run(capsys, *args)
        assert rc == 2 and needle in err and "Traceback" not in err, err
    assert sorted(p.name for p in src.iterdir()) == ["000.npy"]  # nothing added
    # an earlier recording is never written over
    rec = tmp_path / "rec"
    assert _run(capsys, *argv, "--raw", str(rec))[0] == 0
    before = {p.name: p.read_bytes() for p in rec.iterdir()}
    rc, _, err = _run(capsys, *argv, "--raw", str(rec))
    assert rc == 2 and "holds a recording already" in err
    assert {p.name: p.read_bytes() for p in rec.iterdir()} == before
    # no other output inside the recording (it was written over a frame, or read as one)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    for option, name in (("--log", "frame_000001.dng"), ("--mot", "m.txt"),
                         ("--image", "last.png")):  # fmt: skip
        rc, _, err = _run(capsys, *argv, "--raw", str(fresh), option, str(fresh / name))
        assert rc == 2 and "is inside the --raw folder" in err and option in err, err
    assert not any(fresh.iterdir())
    # a folder holding anything else (images, a camera's DNGs) is not a recording's
    shots = tmp_path / "shots"
    shots.mkdir()
    (shots / "IMG_0001.dng").write_bytes(b"a camera's")
    (shots / ".hidden").write_text("an editor's")
    rc, _, err = _run(capsys, *argv, "--raw", str(shots))
    assert rc == 2 and "holds IMG_0001.dng" in err and "a folder of its own" in err, err
    (shots / "IMG_0001.dng").unlink()  # hidden files and notes are no frames: they may stay
    (shots / "notes.txt").write_text("a user's")
    assert _run(capsys, *argv, "--raw", str(shots))[0] == 0
    assert len(list(shots.glob("frame_*.dng"))) == 2
    # an empty value (an unset shell variable) is not "no --raw"
    for option in ("--raw", "--log", "--model"):
        rc, _, err = _run(capsys, "synthetic:64x48", "--frames", "1", f"{option}=")
        assert rc == 2 and f"{option}: an empty name" in err, err


def test_a_recording_says_what_of_the_isp_it_does_not_state(tmp_path, capsys):
    """A DNG states the white balance and colour matrix (refused where it cannot), not the
    tone curve or lens shading: the summary says to give those again on playback."""
    argv = ["synthetic:64x48", "--frames", "1", "--detector", "truth"]
    rc, s, _ = _run(capsys, *argv, "--raw", str(tmp_path / "a"), "--tone", "linear",
                    "--lens-shading", "0.5,0")  # fmt: skip
    assert rc == 0 and len(s["notes"]) == 2
    assert "do not state --tone linear" in s["notes"][0]
    assert "do not state --lens-shading 0.5,0" in s["notes"][1]
    rc, s, _ = _run(capsys, *argv, "--raw", str(tmp_path / "b"))  # the defaults: nothing lost
    assert rc == 0 and s["notes"] == []
    rc, s, _ = _run(capsys, *argv, "--tone", "linear")  # no recording: nothing to say
    assert rc == 0 and s["notes"] == []


def test_frames_libraw_cannot_read_are_not_recorded(tmp_path, capsys):
    """LibRaw (rawpy, darktable) refuses DNG frames under 22 pixels a side: a recording of
    them could never be played back, so it is refused before any work."""
    from gputrack.outputs.dng import MIN_DNG_SIDE, dng_bytes

    for w, h, readable in ((MIN_DNG_SIDE, 64, True), (MIN_DNG_SIDE - 2, 64, False)):
        path = tmp_path / f"{w}x{h}.dng"
        path.write_bytes(dng_bytes(RawFrame(np.full((h, w), 500, np.uint16), bit_depth=12,
                                            black_level=64), (2, 1, 1.5), np.eye(3)))  # fmt: skip
        try:
            with rawpy.imread(str(path)):
                read = True
        except rawpy.LibRawError:
            read = False
        assert read == readable, (w, h)
    rc, _, err = _run(capsys, "synthetic:64x48", "--frames", "1", "--detector", "truth",
                      "--roi", "0,0,20,32", "--raw", str(tmp_path / "rec"))  # fmt: skip
    assert rc == 2 and "LibRaw reads DNG frames of 22 pixels" in err
    assert not (tmp_path / "rec").exists()
