"""The RAW output mode's DNG files: bit-identical mosaics with the metadata that develops them
as gputrack's ISP does, read back by rawpy and by gputrack's own sources."""

from __future__ import annotations

import json
import struct
from argparse import Namespace
from pathlib import Path

import cv2
import numpy as np
import pytest

from gputrack.cli import main
from gputrack.commands.args import stated_colour
from gputrack.device import get_backend
from gputrack.dsp.standin import NoisyTruthDetector
from gputrack.errors import GputrackError, UsageError
from gputrack.isp import IspParams, IspPipeline
from gputrack.isp.params import DEFAULT_WB
from gputrack.outputs.dng import RawRecorder, check_raw_folder, dng_bytes
from gputrack.pipeline import Pipeline
from gputrack.sensor.frame import RawFrame
from gputrack.sensor.model import SensorModel, SensorParams
from gputrack.sensor.sources import open_source
from gputrack.track import Tracker

# Both are dependencies, but the GPU machine's offline set-up carries neither (only the kernel
# tests run there): skip rather than fail the collection of every test.
rawpy = pytest.importorskip("rawpy")
pytest.importorskip("pidng")

CCM = np.array([[1.7, -0.55, -0.15], [-0.25, 1.45, -0.2], [0.05, -0.6, 1.55]])


def _raw(rng, pattern="RGGB", bits=12, black=256, shape=(32, 48)) -> RawFrame:
    white = (1 << bits) - 1
    data = rng.integers(black, white + 1, shape, dtype=np.uint16)
    data[0, :4] = (black, white, black + 1, white - 1)  # the extremes are kept exactly
    return RawFrame(data, pattern=pattern, bit_depth=bits, black_level=black)


@pytest.mark.parametrize(("pattern", "bits"), [("RGGB", 12), ("GRBG", 10), ("GBRG", 14),
                                               ("BGGR", 16)])  # fmt: skip
def test_a_frame_reads_back_bit_identical_with_its_levels(tmp_path, rng, pattern, bits):
    raw = _raw(rng, pattern, bits, black=rng.integers(0, 300))
    path = tmp_path / "one.dng"
    path.write_bytes(dng_bytes(raw, (2.0, 1.0, 1.6), CCM))
    with open_source(str(path)) as src:
        got = next(src).raw
    assert np.array_equal(got.data, raw.data)
    assert (got.pattern, got.bit_depth, got.black_level, got.white_level) == (
        pattern, bits, raw.black_level, (1 << bits) - 1)
    with rawpy.imread(str(path)) as r:
        wb = np.array(r.camera_whitebalance[:3])
        assert wb / wb[1] == pytest.approx([2.0, 1.0, 1.6], rel=1e-5)
        # LibRaw turns ColorMatrix1 (XYZ -> camera) back into camera -> sRGB: the ISP's matrix
        np.testing.assert_allclose(np.array(r.color_matrix)[:, :3], CCM, atol=2e-4)


def _scene(h: int, w: int) -> np.ndarray:
    """A smooth colourful scene (no data needed): hue across, brightness down."""
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    hue = np.stack([0.5 + 0.4 * np.sin(6 * x + phase) for phase in (0, 2, 4)], axis=-1)
    rgb = hue * (0.3 + 0.7 * y[..., None])
    return np.round(rgb * 255).astype(np.uint8)


def test_a_raw_developer_gets_the_scene_back_from_the_metadata(tmp_path):
    """The sensor model's frame of a scene, as DNG, developed by LibRaw with the camera's white
    balance and colour matrix from the file: close to the scene and to gputrack's ISP image.
    Wrong gains or a matrix not inverted would put it tens of codes off."""
    be = get_backend("cpu")
    params = IspParams()
    scene = _scene(96, 128)
    raw = SensorModel(SensorParams(isp=params, noise=False), be).render(scene)
    path = tmp_path / "scene.dng"
    path.write_bytes(dng_bytes(raw, params.wb, np.array(params.ccm)))
    with rawpy.imread(str(path)) as r:
        developed = r.postprocess(use_camera_wb=True, no_auto_bright=True, output_bps=8,
                                  gamma=(2.4, 12.92), user_flip=0)  # fmt: skip
    isp = IspPipeline(params, be).process(raw).rgb8
    inner = (slice(4, -4), slice(4, -4))  # demosaicing methods differ at the border
    off_scene = np.abs(developed[inner].astype(int) - scene[inner]).mean(axis=(0, 1))
    off_isp = np.abs(developed[inner].astype(int) - isp[inner]).mean(axis=(0, 1))
    assert np.all(off_scene < 4) and np.all(off_isp < 4), (off_scene, off_isp)


def test_bad_colour_metadata_is_one_clear_error(rng):
    raw = _raw(rng)
    for gains in ((0.0, 1.0, 1.0), (1.0, float("nan"), 1.0), (1.0, 1.0)):
        with pytest.raises(GputrackError, match="three positive numbers"):
            dng_bytes(raw, gains, CCM)
    with pytest.raises(GputrackError, match="singular"):
        dng_bytes(raw, (2.0, 1.0, 1.6), np.ones((3, 3)))


def test_a_recording_is_one_complete_file_per_frame(tmp_path, rng):
    folder = tmp_path / "rec"
    rec = RawRecorder(folder)
    frames = [_raw(rng) for _ in range(3)]
    for i, raw in enumerate(frames):
        rec.write(raw, (2.0, 1.0, 1.6), CCM, index=i)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["frame_000000.dng", "frame_000001.dng", "frame_000002.dng"]  # no temps
    with open_source(str(folder)) as src:  # the folder plays back as a source, in order
        back = [f.raw.data for f in src]
    assert all(np.array_equal(a, b.data) for a, b in zip(back, frames, strict=True))


def test_a_recording_without_frames_leaves_no_folder(tmp_path, rng):
    made = RawRecorder(tmp_path / "new")
    made.close()
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    RawRecorder(tmp_path / "old").close()  # a folder that was there stays
    assert (tmp_path / "old").is_dir()
    kept = RawRecorder(tmp_path / "kept")
    kept.write(_raw(rng), (2.0, 1.0, 1.6), CCM, index=0)
    kept.close()
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["frame_000000.dng"]


def test_a_recording_never_lands_on_another_or_on_a_file(tmp_path, rng):
    folder = tmp_path / "rec"
    RawRecorder(folder).write(_raw(rng), (2.0, 1.0, 1.6), CCM, index=0)
    before = (folder / "frame_000000.dng").read_bytes()
    with pytest.raises(UsageError, match="holds a recording already"):
        RawRecorder(folder)
    assert (folder / "frame_000000.dng").read_bytes() == before
    (tmp_path / "plain.txt").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        check_raw_folder(tmp_path / "plain.txt")
    with pytest.raises(UsageError, match="does not exist"):
        check_raw_folder(tmp_path / "missing" / "rec")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("kept")
    assert check_raw_folder(other) == other  # a folder with other files is fine


def test_a_recording_plays_back_into_the_images_the_run_made(tmp_path):
    """Recorded with grey world and a matrix of the user's, played back with the defaults a
    DNG source gets (its gains as shot, its colour matrix): the same ISP images, frame for
    frame, though each frame's grey-world gains differ."""
    be = get_backend("cpu")
    ccm = ((1.5, -0.4, -0.1), (-0.3, 1.5, -0.2), (0.0, -0.5, 1.5))
    params = IspParams(wb="auto", ccm=ccm)
    pipe = Pipeline(be, NoisyTruthDetector(0), Tracker(fps=30), isp_params=params)
    rec = RawRecorder(tmp_path / "rec")
    images, gains = [], []
    with open_source("synthetic:96x64,seed=5") as src:
        for i in range(3):
            pipe.process(next(src))
            shot = pipe.last_raw()
            rec.write(shot.raw, shot.wb_gains, shot.ccm, index=i)
            images.append(pipe.last_image())
            gains.append(shot.wb_gains)
    assert len(set(gains)) == 3  # measured per frame
    with open_source(str(rec.folder)) as back:
        colour = stated_colour(Namespace(wb=None, ccm=None), back.first_raw, "rec", DEFAULT_WB)
        assert colour["wb"] == "camera"
        np.testing.assert_allclose(colour["ccm"], ccm, atol=2e-4)
        isp = IspPipeline(IspParams(**colour), be)
        for frame, want, g in zip(back, images, gains, strict=True):
            assert frame.raw.as_shot_wb == pytest.approx(g, rel=1e-5)
            got = isp.process(frame.raw).rgb8
            assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_the_isp_verb_takes_a_dngs_colour_unless_told_otherwise(tmp_path, capsys, rng):
    raw = _raw(rng)
    dng = tmp_path / "shot.dng"
    dng.write_bytes(dng_bytes(raw, (1.9, 1.0, 1.3), CCM))

    def isp(*argv: str) -> tuple[int, dict, str]:
        capsys.readouterr()
        rc = main(["isp", *argv, "--backend", "cpu", "--json"])
        out, err = capsys.readouterr()
        return rc, (json.loads(out) if out.strip() else {}), err

    rc, info, _ = isp(str(dng), "--out", str(tmp_path / "a.png"))
    assert rc == 0 and info["wb_gains"] == pytest.approx([1.9, 1.0, 1.3], rel=1e-4)
    np.testing.assert_allclose(info["ccm"], CCM, atol=2e-4)
    rc, info, _ = isp(str(dng), "--out", str(tmp_path / "b.png"), "--wb", "auto",
                      "--ccm", "identity")  # fmt: skip
    assert rc == 0 and info["wb_gains"] != pytest.approx([1.9, 1.0, 1.3], rel=1e-3)
    assert info["ccm"] == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    # 'camera' where the input states nothing: a usage error naming it
    npy = tmp_path / "plain.npy"
    np.save(npy, raw.data)
    png = tmp_path / "scene.png"
    cv2.imwrite(str(png), rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    for src, option in ((npy, "--wb"), (npy, "--ccm"), (png, "--wb")):
        rc, _, err = isp(str(src), "--out", str(tmp_path / "c.png"), option, "camera")
        assert rc == 2 and f"{option} camera: " in err and "states no" in err, err


# ---- frame rate and frame numbers ---------------------------------------------------------


def _recording(folder, rng, indices, fps=None, shape=(32, 48)) -> list[RawFrame]:
    rec = RawRecorder(folder, fps=fps)
    frames = [_raw(rng, shape=shape) for _ in indices]
    for i, raw in zip(indices, frames, strict=True):
        rec.write(raw, (2.0, 1.0, 1.6), CCM, index=i)
    return frames


def _frame_rate_tag(path) -> tuple[int, int] | None:
    tifffile = pytest.importorskip("tifffile")
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags.get(51044)
        return None if tag is None else tuple(tag.value)


@pytest.mark.parametrize(("fps", "rational"), [(25, (25, 1)), (29.97, (2997, 100)),
                                                (30000 / 1001, (30000, 1001)), (12.5, (25, 2))])
def test_a_recording_states_its_frame_rate_and_plays_back_at_it(tmp_path, rng, fps, rational):
    folder = tmp_path / "rec"
    _recording(folder, rng, range(2), fps=fps)
    assert _frame_rate_tag(folder / "frame_000001.dng") == rational  # CinemaDNG FrameRate
    with open_source(str(folder)) as src:
        assert src.fps == fps and src.notes == []  # stated, not assumed
        assert [f.timestamp for f in src] == [0.0, 1 / fps]
    with open_source(str(folder), fps=10) as src:  # as a video's: the stated rate wins
        assert src.fps == fps and [f.timestamp for f in src] == [0.0, 1 / fps]


def test_a_dng_stating_no_frame_rate_plays_at_30_and_says_so(tmp_path, rng):
    folder = tmp_path / "rec"
    _recording(folder, rng, range(2))
    assert _frame_rate_tag(folder / "frame_000000.dng") is None
    with open_source(str(folder)) as src:
        assert src.fps == 30.0
        assert src.notes == [f"{folder}: states no frame rate; 30 fps assumed (--fps sets it)"]
    with open_source(str(folder), fps=12) as src:  # given, not assumed: nothing to say
        assert src.fps == 12.0 and src.notes == []


def _overwrite_frame_rate(path, num: int, den: int) -> None:
    tifffile = pytest.importorskip("tifffile")
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].tags.get(51044).valueoffset
    data = bytearray(path.read_bytes())
    data[offset:offset + 8] = struct.pack("<ll", num, den)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("num", "den", "said"), [
    (0, 1, "states 0 fps"), (-25, 1, "states -25 fps"), (1, 100, "states 0.01 fps"),
    (5000, 1, "states 5000 fps"), (25, 0, "states an invalid frame rate")])  # fmt: skip
def test_a_stated_frame_rate_out_of_range_is_ignored(tmp_path, rng, num, den, said):
    folder = tmp_path / "rec"
    _recording(folder, rng, range(1), fps=25)
    _overwrite_frame_rate(folder / "frame_000000.dng", num, den)
    assert _frame_rate_tag(folder / "frame_000000.dng") == (num, den)
    with open_source(str(folder)) as src:
        assert src.fps == 30.0 and next(src).raw is not None
        (note,) = src.notes
        assert f"frame_000000.dng {said}" in note and "30 fps assumed" in note, note
    with open_source(str(folder), fps=12) as src:
        assert src.fps == 12.0 and src.notes == []


def test_a_frame_rate_that_cannot_be_read_is_none_stated(tmp_path, rng, monkeypatch):
    """Any failure reading the tag (a camera's TIFF-like RAW tifffile trips on, tifffile
    absent) leaves the file to rawpy and the rate to the default."""
    tifffile = pytest.importorskip("tifffile")
    folder = tmp_path / "rec"
    _recording(folder, rng, range(1), fps=25)

    def broken(*args, **kwargs):
        raise tifffile.TiffFileError("not a TIFF file")

    monkeypatch.setattr(tifffile, "TiffFile", broken)
    with open_source(str(folder)) as src:
        assert src.fps == 30.0 and "states no frame rate" in src.notes[0]


def test_a_bad_frame_rate_is_refused_before_any_frame(tmp_path, rng):
    for fps in (0, -5, float("nan"), float("inf"), 1e12):
        with pytest.raises(GputrackError, match="frame rate"):
            RawRecorder(tmp_path / "rec", fps=fps)
        with pytest.raises(GputrackError, match="frame rate"):
            dng_bytes(_raw(rng), (2.0, 1.0, 1.6), CCM, fps=fps)
    assert not (tmp_path / "rec").exists()


def test_a_recording_with_a_gap_keeps_its_frame_numbers(tmp_path, rng):
    """Frames the run skipped (a video's drops) stay gaps on playback: indices from the names,
    timestamps from them and the stated rate, also across a loop."""
    folder = tmp_path / "rec"
    frames = _recording(folder, rng, [1, 2, 4], fps=25)
    with open_source(str(folder)) as src:
        got = list(src)
    assert [f.index for f in got] == [1, 2, 4]
    assert [f.raw.index for f in got] == [1, 2, 4]
    assert [f.timestamp for f in got] == [1 / 25, 2 / 25, 4 / 25]
    assert all(np.array_equal(f.raw.data, r.data) for f, r in zip(got, frames, strict=True))
    with open_source(str(folder), frames=5, loop=True) as src:  # counts up across the loop
        assert [f.index for f in src] == [1, 2, 4, 6, 7]


def test_frame_numbers_come_from_names_only_when_every_file_is_a_recordings(tmp_path, rng):
    folder = tmp_path / "mixed"
    _recording(folder, rng, [3, 10])
    (folder / "take.dng").write_bytes((folder / "frame_000003.dng").read_bytes())
    with open_source(str(folder)) as src:  # natural order of the names, counted from 0
        assert [(f.index, Path(f.meta["file"]).name) for f in src] == [
            (0, "frame_000003.dng"), (1, "frame_000010.dng"), (2, "take.dng")]
    loose = tmp_path / "loose"  # frame_5.dng is not a name the recorder gives
    loose.mkdir()
    (loose / "frame_5.dng").write_bytes((folder / "frame_000003.dng").read_bytes())
    (loose / "frame_000007.dng").write_bytes((folder / "frame_000003.dng").read_bytes())
    with open_source(str(loose)) as src:
        assert [f.index for f in src] == [0, 1]
    one = tmp_path / "rec"  # beyond six digits, as the recorder names it
    _recording(one, rng, [999_999, 1_000_000])
    with open_source(str(one)) as src:
        assert [f.index for f in src] == [999_999, 1_000_000]
