"""Every source kind opens and yields the right types; every bad input gives its one line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from gputrack.errors import GputrackError, UsageError
from gputrack.sensor.frame import RawFrame
from gputrack.sensor.sources import (
    CameraRawSource,
    Frame,
    ImageFolderSource,
    NpySource,
    RawFileSource,
    SyntheticSource,
    VideoSource,
    is_headerless_raw,
    is_synthetic,
    open_source,
    parse_size,
)
from gputrack.sensor.synthetic import SyntheticWorld
from tests.conftest import shared_data

# ---- helpers -----------------------------------------------------------------------------


def _numbered(i: int, w: int = 64, h: int = 48) -> np.ndarray:
    """An RGB frame whose mean grey level tells its number, and whose red half tells RGB
    from BGR."""
    img = np.full((h, w, 3), 20 * i + 10, np.uint8)
    img[:, : w // 2, 0] = 250  # red channel high on the left half
    return img


def _write_video(path: Path, n: int = 10, fps: float = 10.0) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert vw.isOpened()
    for i in range(n):
        vw.write(cv2.cvtColor(_numbered(i), cv2.COLOR_RGB2BGR))
    vw.release()
    return path


def _frame_number(img: np.ndarray) -> int:
    return int(round((float(img[:, 32:, 1].mean()) - 10) / 20))


def _corrupt_frame(path: Path, k: int) -> None:
    """Overwrite the JPEG data of the k-th frame of an MJPG AVI with zeros."""
    data = bytearray(path.read_bytes())
    chunks, p = [], data.find(b"movi")
    while (p := data.find(b"00dc", p + 1)) >= 0:
        size = int.from_bytes(data[p + 4: p + 8], "little")
        if size > 100:
            chunks.append((p + 8, size))
    start, size = chunks[k]
    data[start: start + size] = bytes(size)
    path.write_bytes(data)


class FakeCapture:
    """Stands in for cv2.VideoCapture: frames 0..n-1, with the reads listed in ``fail``
    failing (read attempt numbers)."""

    def __init__(self, n: int, fail: set[int], fps: float = 25.0, count: int | None = None):
        self.n, self.fail, self.fps = n, fail, fps
        self.count = n if count is None else count
        self.reads = 0
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return True

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FPS: self.fps, cv2.CAP_PROP_FRAME_WIDTH: 64,
                cv2.CAP_PROP_FRAME_HEIGHT: 48, cv2.CAP_PROP_FRAME_COUNT: self.count}.get(prop, 0)

    def set(self, prop: int, value: float) -> bool:
        if prop == cv2.CAP_PROP_POS_FRAMES:
            self.reads = int(value)
        return True

    def read(self):
        r = self.reads
        self.reads += 1
        if r >= self.n or r in self.fail:
            return False, None
        return True, cv2.cvtColor(_numbered(r % 12), cv2.COLOR_RGB2BGR)

    def release(self) -> None:
        self.released = True


# ---- synthetic ---------------------------------------------------------------------------


def test_default_is_synthetic_720p():
    with open_source() as src:
        assert isinstance(src, SyntheticSource)
        assert src.size == (1280, 720) and src.fps == 30 and not src.is_raw
        f = next(src)
        assert isinstance(f, Frame) and f.index == 0 and f.timestamp == 0
        assert f.image.shape == (720, 1280, 3) and f.image.dtype == np.uint8
        assert f.truth is not None and f.truth.shape[1] == 7
    assert src.closed


def test_synthetic_spec():
    src = open_source("synthetic:320x180@60,seed=5,objects=3,classes=person+car,frames=4")
    assert src.size == (320, 180) and src.fps == 60
    assert src.class_names == ("person", "car")
    frames = list(src)
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert frames[1].timestamp == pytest.approx(1 / 60)
    world = SyntheticWorld(320, 180, 60, seed=5, num_objects=3, classes=("person", "car"))
    assert np.array_equal(frames[3].image, world.render(3))
    assert np.array_equal(frames[3].truth, world.ground_truth(3))
    assert len(frames[0].truth) <= 3


def test_synthetic_named_size_and_options_override_spec():
    src = open_source("synthetic:720p@25", size="160x90", fps=12, frames=1)
    assert src.size == (160, 90) and src.fps == 12
    assert parse_size("4k") == (3840, 2160)


def test_synthetic_ring_replays():
    src = open_source("synthetic:160x90,ring=3,frames=7")
    frames = list(src)
    assert len(frames) == 7 and frames[6].index == 6
    assert np.array_equal(frames[4].image, frames[1].image)
    assert np.array_equal(frames[5].truth, frames[2].truth)


@pytest.mark.parametrize(
    "spec, words",
    [
        ("synthetic:abc", "not WIDTHxHEIGHT"),
        ("synthetic:320x180,colour=red", "unknown synthetic option"),
        ("synthetic:320x180,seed=x", "seed"),
        ("synthetic:320x180,classes=dragon", "dragon"),
        ("synthetic:320x180@0", "fps"),
        # given twice: silently one of them before
        ("synthetic:320x180,classes=car+car", "car given more than once"),
        ("synthetic:320x180,num_objects=3,objects=5", "objects and num_objects are one option"),
        ("synthetic:320x180,seed=1,seed=2", r"seed is given twice \(1 and 2\)"),
        ("synthetic:320x180,size=64x48", "size is given twice"),
    ],
)
def test_synthetic_spec_errors(spec, words):
    with pytest.raises(GputrackError, match=words):
        open_source(spec)


def test_unknown_option():
    with pytest.raises(GputrackError, match="unknown source option.*colour"):
        open_source("synthetic", colour="red")


def test_options_for_other_kinds_are_ignored(tmp_path):
    # the CLI passes --pattern/--bit-depth for the sensor model; a video source ignores them
    src = open_source(str(_write_video(tmp_path / "v.avi", 2)), pattern="GRBG", bit_depth=10)
    assert not src.is_raw and len(list(src)) == 2


# ---- video files and webcams -------------------------------------------------------------


def test_video_file(tmp_path):
    path = _write_video(tmp_path / "clip.avi", n=10, fps=10)
    with open_source(str(path)) as src:
        assert isinstance(src, VideoSource) and not src.live
        assert src.size == (64, 48) and src.fps == pytest.approx(10) and src.num_frames == 10
        frames = list(src)
    assert [f.index for f in frames] == list(range(10))
    assert frames[3].timestamp == pytest.approx(0.3)
    img = frames[3].image
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    assert img[:, :32, 0].mean() > 200 and img[:, :32, 2].mean() < 150  # RGB, not BGR
    assert [_frame_number(f.image) for f in frames] == list(range(10))
    assert src.dropped == 0 and src.end_reason is None



def test_expected_frames_are_the_fewer_of_the_limit_and_one_pass():
    """What the live view counts to ('frame 20/795'): it showed no total for a video, and
    the limit alone (frame 12/30) for a 12-frame clip run with --frames 30."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = str(_write_video(Path(tmp) / "clip.avi", n=12))
        for frames, loop, want in ((None, False, 12), (30, False, 12), (5, False, 5),
                                   (30, True, 30), (None, True, None)):  # fmt: skip
            with open_source(path, frames=frames, loop=loop) as src:
                assert src.expected_frames == want, (frames, loop)
    with open_source("synthetic:64x48") as src:  # endless
        assert src.expected_frames is None


def test_video_unreadable_frame_in_middle_is_skipped_and_counted(tmp_path):
    path = _write_video(tmp_path / "bad.avi", n=10)
    _corrupt_frame(path, 4)
    src = open_source(str(path))
    frames = list(src)
    assert [f.index for f in frames] == [0, 1, 2, 3, 5, 6, 7, 8, 9]  # the gap stays visible
    assert [_frame_number(f.image) for f in frames] == [f.index for f in frames]
    assert src.dropped == 1 and src.end_reason is None


def test_video_file_that_stops_decoding_ends_cleanly():
    src = VideoSource("fake.avi", live=False, capture=FakeCapture(100, set(range(6, 100))),
                      max_drops=5)
    frames = list(src)
    assert [f.index for f in frames] == list(range(6))
    assert "frames from 6 on cannot be decoded" in src.end_reason
    src.close()
    assert src._cap.released


class StuckCapture(FakeCapture):
    """A damaged stretch [bad0, bad1): after a failed read the decoder stays stuck (every read
    fails) until a seek, as OpenCV's FFmpeg reader can on a damaged file."""

    def __init__(self, n: int, bad0: int, bad1: int) -> None:
        super().__init__(n, set(range(bad0, bad1)))
        self.stuck = False
        self.seeks = 0

    def set(self, prop: int, value: float) -> bool:
        self.stuck = False
        self.seeks += 1
        return super().set(prop, value)

    def read(self):
        if self.stuck:
            self.reads += 1
            return False, None
        ok, img = super().read()
        self.stuck = not ok
        return ok, img


def test_video_file_reads_on_after_a_damaged_stretch():
    cap = StuckCapture(100, 10, 50)
    src = VideoSource("fake.avi", live=False, capture=cap, max_drops=5)
    frames = list(src)
    assert [f.index for f in frames] == [*range(10), *range(50, 100)]
    assert [_frame_number(f.image) for f in frames] == [i % 12 for i in [*range(10),
                                                                         *range(50, 100)]]
    assert src.dropped == 40 and src.end_reason is None and cap.seeks == 8


def test_webcam_skips_and_counts_dropped_frames():
    src = VideoSource(0, capture=FakeCapture(10**6, {2, 3, 7}))
    assert src.live and src.num_frames is None
    frames = [next(src) for _ in range(6)]
    assert [f.index for f in frames] == [0, 1, 4, 5, 6, 8]
    assert src.dropped == 3
    assert all(b.timestamp >= a.timestamp for a, b in zip(frames, frames[1:], strict=False))


def test_webcam_that_stops_delivering_is_an_error():
    src = VideoSource(1, capture=FakeCapture(3, set()), max_drops=4)
    assert len([next(src) for _ in range(3)]) == 3
    with pytest.raises(GputrackError, match="webcam 1: no frame in 4 reads"):
        next(src)


def test_webcam_that_does_not_open():
    with pytest.raises(GputrackError, match="webcam 97 did not open"):
        open_source("97")


def test_not_a_video(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(GputrackError, match="notes.txt.*cannot open"):
        open_source(str(bad))


def test_video_loop_and_frames(tmp_path):
    path = _write_video(tmp_path / "v.avi", n=3)
    frames = list(open_source(str(path), loop=True, frames=7))
    assert [f.index for f in frames] == list(range(7))
    assert [_frame_number(f.image) for f in frames] == [0, 1, 2, 0, 1, 2, 0]


def test_shared_video():
    path = shared_data("video/vtest.avi")
    with open_source(str(path), frames=3) as src:
        assert src.size == (768, 576)
        frames = list(src)
    assert len(frames) == 3 and frames[2].image.shape == (576, 768, 3)


# ---- image folders -----------------------------------------------------------------------


def _png_folder(folder: Path, names: list[str]) -> Path:
    folder.mkdir()
    for i, name in enumerate(names):
        cv2.imwrite(str(folder / name), cv2.cvtColor(_numbered(i), cv2.COLOR_RGB2BGR))
    return folder


def test_image_folder_natural_order(tmp_path):
    folder = _png_folder(tmp_path / "imgs", ["f1.png", "f2.png", "f10.png"])
    (folder / "readme.txt").write_text("not an image")
    with open_source(str(folder), fps=5) as src:
        assert isinstance(src, ImageFolderSource) and src.fps == 5 and src.size == (64, 48)
        frames = list(src)
    assert [_frame_number(f.image) for f in frames] == [0, 1, 2]
    assert frames[2].meta["file"].endswith("f10.png")
    assert frames[0].image[:, :32, 0].mean() > 200  # RGB


def test_image_folder_skips_unreadable_image(tmp_path):
    folder = _png_folder(tmp_path / "imgs", ["a1.png", "a2.png", "a3.png"])
    (folder / "a2.png").write_bytes(b"broken")
    src = open_source(str(folder))
    assert [f.index for f in src] == [0, 2] and src.dropped == 1


def test_image_folder_size_change_is_an_error(tmp_path):
    folder = _png_folder(tmp_path / "imgs", ["a1.png"])
    cv2.imwrite(str(folder / "a2.png"), np.zeros((10, 10, 3), np.uint8))
    src = open_source(str(folder))
    next(src)
    with pytest.raises(GputrackError, match="a2.png: image is 10x10"):
        next(src)


def test_single_image(tmp_path):
    _png_folder(tmp_path / "one", ["x.png"])
    frames = list(open_source(str(tmp_path / "one" / "x.png")))
    assert len(frames) == 1 and frames[0].image.shape == (48, 64, 3)


def test_empty_and_mixed_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(GputrackError, match="has no images"):
        open_source(str(tmp_path / "empty"))
    mixed = _png_folder(tmp_path / "mixed", ["a.png"])
    np.save(mixed / "b.npy", np.zeros((4, 4), np.uint16))
    with pytest.raises(GputrackError, match="mixes images and npy"):
        open_source(str(mixed))


# ---- headerless .raw ---------------------------------------------------------------------


def _raw(w: int = 32, h: int = 16, top: int = 4095, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, top + 1, (h, w), dtype=np.uint16)


def test_raw_file(tmp_path):
    data = _raw()
    path = tmp_path / "frame.raw"
    data.astype("<u2").tofile(path)
    with open_source(str(path), size="32x16", bit_depth=12, pattern="grbg", black_level=64) as s:
        assert isinstance(s, RawFileSource) and s.is_raw and s.size == (32, 16)
        frames = list(s)
    assert len(frames) == 1
    raw = frames[0].raw
    assert isinstance(raw, RawFrame) and frames[0].is_raw and frames[0].image is None
    assert np.array_equal(raw.data, data)
    assert (raw.pattern, raw.bit_depth, raw.black_level, raw.white_level) == ("GRBG", 12, 64, 4095)


def test_raw_folder_and_name_hints(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    for i in (1, 2, 10):
        _raw(top=1023, seed=i).astype("<u2").tofile(folder / f"cam_32x16_bggr_10bit_{i}.raw")
    frames = list(open_source(str(folder)))
    assert [f.index for f in frames] == [0, 1, 2]
    assert frames[2].meta["file"].endswith("_10.raw")
    assert np.array_equal(frames[2].raw.data, _raw(top=1023, seed=10))
    assert (frames[0].raw.pattern, frames[0].raw.bit_depth) == ("BGGR", 10)


@pytest.mark.parametrize(
    "opts, words",
    [
        ({}, "needs its size"),
        ({"size": "30x16"}, r"1024 bytes, but 30x16 16-bit RAW needs 960 \(that would be 32x16\)"),
        ({"size": "31x17"}, "odd"),
        ({"size": "32x16", "bit_depth": 10}, "reaches .* exceeds the declared bit depth 10"),
        ({"size": "32x16", "pattern": "RGBG"}, "unknown Bayer pattern 'RGBG'"),
        ({"size": "32x16", "bit_depth": 11}, "bit depth 11 not supported"),
        ({"size": "32xx16"}, "not WIDTHxHEIGHT"),
        ({"size": "32x16", "black_level": "dark"}, "black_level='dark' is not a whole number"),
        ({"size": "32x16", "black_level": 5000},
         "--black-level 5000: 12-bit data takes a black level from 0 to 4094"),
    ],
)
def test_raw_errors(tmp_path, opts, words):
    path = tmp_path / "frame.raw"
    _raw().astype("<u2").tofile(path)
    with pytest.raises(GputrackError, match=words) as err:
        list(open_source(str(path), **opts))
    assert "frame.raw" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name, size", [
    ("cap_8x8_bggr_10bit.raw", (8, 8)),  # 1-digit sides: the sensor's minimum is 4x4
    ("cap_4x6.raw", (4, 6)),
    ("cap_8x16.raw", (8, 16)),  # one side of 1 digit, one of 2
    ("bin2x2_16x8.raw", (16, 8)),  # a binning factor is not the frame's size
    ("tiles4x4_32x16.raw", (32, 16)),  # a size of 2+ digits a side wins over a 1-digit one
    ("tiles4x4_16x8.raw", (16, 8)),  # else the largest
])
def test_a_raw_name_may_state_a_size_of_one_digit_a_side(tmp_path, name, size):
    path = tmp_path / name
    _raw(*size, top=1023).astype("<u2").tofile(path)
    with open_source(str(path)) as src:
        assert src.size == size and next(src).raw.data.shape == size[::-1]


def test_a_size_below_the_sensors_minimum_in_a_name_is_not_read_as_one(tmp_path):
    path = tmp_path / "cap_2x2_10bit.raw"  # 2x2 cannot be a frame: still asks for --size
    _raw(4, 4, top=1023).astype("<u2").tofile(path)
    with pytest.raises(GputrackError, match="needs its size"):
        open_source(str(path))


@pytest.mark.parametrize("suffix, save", [
    (".raw", lambda p, a: a.astype("<u2").tofile(p)), (".npy", np.save)])
def test_levels_given_that_do_not_fit_are_usage_errors(tmp_path, suffix, save):
    """The user's black level against the depth (given, or stated by the name): a usage error
    when the source opens, not a failure at the first frame."""
    path = tmp_path / f"cap_32x16_10bit{suffix}"
    save(path, _raw(top=1023))
    for opts, words in (({"black_level": 2000}, "--black-level 2000: 10-bit data takes a black "
                                               "level from 0 to 1022"),
                        ({"black_level": 1023}, "--black-level 1023: 10-bit"),
                        ({"black_level": 2000, "bit_depth": 12}, None)):  # fmt: skip
        if words is None:
            with open_source(str(path), **opts) as src:
                assert next(src).raw.black_level == 2000
            continue
        with pytest.raises(UsageError, match=re.escape(words)) as err:
            open_source(str(path), **opts)
        assert str(err.value).startswith(f"{path}: ")


def test_shared_raw_frame():
    path = shared_data("raw/openisp_1920x1080_rggb_10bit.raw")
    frame = next(open_source(str(path)))  # size, pattern and depth from the file name
    raw = frame.raw
    assert raw.data.shape == (1080, 1920) and raw.pattern == "RGGB" and raw.bit_depth == 10
    assert 0 < raw.data.max() < 1024


# ---- .npy --------------------------------------------------------------------------------


def test_npy_raw_and_rgb(tmp_path):
    np.save(tmp_path / "raw.npy", _raw())
    f = next(open_source(str(tmp_path / "raw.npy"), pattern="GBRG"))
    assert f.is_raw and f.raw.pattern == "GBRG" and f.raw.bit_depth == 12
    rgb = _numbered(3)
    np.save(tmp_path / "rgb.npy", rgb)
    src = open_source(str(tmp_path / "rgb.npy"))
    assert not src.is_raw and src.size == (64, 48)
    assert np.array_equal(next(src).image, rgb)


def test_npy_raw_takes_the_pattern_and_bit_depth_its_name_states(tmp_path):
    """As a headerless .raw does (the shape is the array's); an option overrides the name."""
    np.save(tmp_path / "cap_bggr_10bit.npy", _raw(top=1023))
    with open_source(str(tmp_path / "cap_bggr_10bit.npy")) as src:
        raw = next(src).raw
    assert (raw.pattern, raw.bit_depth, raw.white_level) == ("BGGR", 10, 1023)
    with open_source(str(tmp_path / "cap_bggr_10bit.npy"), pattern="GRBG", bit_depth=12) as src:
        raw = next(src).raw
    assert (raw.pattern, raw.bit_depth) == ("GRBG", 12)
    np.save(tmp_path / "cap_96x64.npy", _raw())  # a size in the name: the array's shape wins
    with open_source(str(tmp_path / "cap_96x64.npy")) as src:
        assert src.size == (32, 16) and next(src).raw.bit_depth == 12
    # a folder: every name read, as a .raw folder's; names that disagree are refused
    seq = tmp_path / "seq"
    seq.mkdir()
    np.save(seq / "a1.npy", _raw(top=1023))
    np.save(seq / "a2_gbrg_10bit.npy", _raw(top=1023))
    assert [(f.raw.pattern, f.raw.bit_depth) for f in open_source(str(seq))] == [
        ("GBRG", 10)] * 2  # fmt: skip
    np.save(seq / "a3_12bit.npy", _raw(top=1023))
    with pytest.raises(GputrackError, match=re.escape(
            "a2_gbrg_10bit.npy is 10-bit but a3_12bit.npy is 12-bit by their names")):
        open_source(str(seq))
    # an RGB array's pattern and depth are the sensor model's: its name is not read
    np.save(tmp_path / "rgb_16bit.npy", _numbered(1))
    with open_source(str(tmp_path / "rgb_16bit.npy")) as src:
        assert not src.is_raw and src.params is None


def test_npy_stacks(tmp_path):
    np.save(tmp_path / "raws.npy", np.stack([_raw(seed=i) for i in range(3)]))
    frames = list(open_source(str(tmp_path / "raws.npy")))
    assert [f.index for f in frames] == [0, 1, 2]
    assert np.array_equal(frames[2].raw.data, _raw(seed=2))
    np.save(tmp_path / "rgbs.npy", np.stack([_numbered(i) for i in range(4)]))
    src = open_source(str(tmp_path / "rgbs.npy"))
    assert isinstance(src, NpySource) and src.num_frames == 4
    assert [_frame_number(f.image) for f in src] == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "array, opts, words",
    [
        (np.zeros((4, 4), np.float32), {}, r"float32\[4, 4\] is neither"),
        (np.zeros((4, 4, 4), np.uint8), {}, "neither"),
        (np.zeros((5, 4), np.uint16), {}, "odd"),
        (np.full((4, 4), 5000, np.uint16), {}, "exceeds the declared bit depth 12"),
        (np.zeros((4, 4), np.uint16), {"pattern": "XYZW"}, "unknown Bayer pattern"),
    ],
)
def test_npy_errors(tmp_path, array, opts, words):
    np.save(tmp_path / "a.npy", array)
    with pytest.raises(GputrackError, match=words) as err:
        list(open_source(str(tmp_path / "a.npy"), **opts))
    assert "a.npy" in str(err.value)


def test_npy_not_an_array(tmp_path):
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(GputrackError, match="junk.npy: not a readable .npy"):
        open_source(str(tmp_path / "junk.npy"))


# ---- DNG ---------------------------------------------------------------------------------


def _write_dng(path: Path, data: np.ndarray, pattern: str, bits: int, black: int) -> None:
    core = pytest.importorskip("pidng.core", reason="pidng (writes DNG) is not installed")
    from pidng.defs import CalibrationIlluminant, CFAPattern, PhotometricInterpretation
    from pidng.dng import DNGTags, Tag

    h, w = data.shape
    tags = DNGTags()
    for tag, value in [
        (Tag.ImageWidth, w), (Tag.ImageLength, h), (Tag.TileWidth, w), (Tag.TileLength, h),
        (Tag.Orientation, 1),
        (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
        (Tag.SamplesPerPixel, 1), (Tag.BitsPerSample, bits), (Tag.CFARepeatPatternDim, [2, 2]),
        (Tag.CFAPattern, getattr(CFAPattern, pattern)), (Tag.BlackLevel, black),
        (Tag.WhiteLevel, (1 << bits) - 1),
        (Tag.ColorMatrix1, [[1, 1], [0, 1], [0, 1], [0, 1], [1, 1], [0, 1], [0, 1], [0, 1],
                            [1, 1]]),
        (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65),
        (Tag.AsShotNeutral, [[1, 2], [1, 1], [2, 3]]), (Tag.Make, "gputrack"),
        (Tag.Model, "test"),
    ]:
        tags.set(tag, value)
    writer = core.RAW2DNG()
    writer.options(tags, path=str(path.parent), compress=False)
    writer.convert(data, filename=path.stem)


@pytest.mark.parametrize("pattern", ["RGGB", "GBRG"])
def test_dng(tmp_path, pattern):
    pytest.importorskip("rawpy", reason="rawpy (reads DNG) is not installed")
    data = _raw(48, 32, top=4095)
    _write_dng(tmp_path / "shot.dng", data, pattern, 12, black=64)
    with open_source(str(tmp_path / "shot.dng")) as src:
        assert isinstance(src, CameraRawSource) and src.size == (48, 32)
        f = next(src)
    assert np.array_equal(f.raw.data, data)  # bit-identical through pidng and rawpy
    assert (f.raw.pattern, f.raw.bit_depth, f.raw.black_level, f.raw.white_level) == (
        pattern, 12, 64, 4095)
    assert f.meta["camera_whitebalance"][:3] == pytest.approx([2.0, 1.0, 1.5])


def test_dng_states_its_own_pattern_and_levels(tmp_path):
    """A --pattern, --black-level or --bit-depth given for a DNG would be silently ignored (or
    clip what it states): refused."""
    pytest.importorskip("rawpy", reason="rawpy (reads DNG) is not installed")
    _write_dng(tmp_path / "shot.dng", _raw(48, 32, top=4095), "RGGB", 12, black=64)
    for option, flag in (({"pattern": "BGGR"}, "--pattern"),
                         ({"black_level": 10}, "--black-level")):  # fmt: skip
        with pytest.raises(UsageError, match=f"states its own Bayer pattern.*{flag} does not"):
            open_source(str(tmp_path / "shot.dng"), **option)
    # Nor its bit depth: it follows from the white level the file states (a deeper one was
    # reported beside that white level and changed nothing, a shallower one clipped it).
    for depth in (8, 14, 16):
        with pytest.raises(UsageError, match="states its own .*bit depth.*--bit-depth does not"):
            open_source(str(tmp_path / "shot.dng"), bit_depth=depth)


def test_npy_raw_in_either_byte_order(tmp_path):
    data = _raw(48, 32, top=4095)
    np.save(tmp_path / "be.npy", data.astype(">u2"))
    with open_source(str(tmp_path / "be.npy")) as src:
        f = next(src)
    assert f.raw.data.dtype == np.uint16 and np.array_equal(f.raw.data, data)


def test_dng_unreadable(tmp_path):
    pytest.importorskip("rawpy", reason="rawpy (reads DNG) is not installed")
    (tmp_path / "bad.dng").write_bytes(b"\x00" * 64)
    with pytest.raises(GputrackError, match="bad.dng: rawpy cannot read it"):
        open_source(str(tmp_path / "bad.dng"))



def test_a_cut_dng_is_one_line_not_libraws_too(tmp_path):
    """LibRaw printed 'cut.dng: Unexpected end of file' on stderr before gputrack's line."""
    pytest.importorskip("rawpy", reason="rawpy (reads DNG) is not installed")
    _write_dng(tmp_path / "whole.dng", _raw(48, 32, top=4095), "RGGB", 12, black=64)
    data = (tmp_path / "whole.dng").read_bytes()
    (tmp_path / "cut.dng").write_bytes(data[: len(data) * 2 // 3])
    code = ("import sys; from gputrack.cli import main; "
            f"sys.exit(main(['isp', {str(tmp_path / 'cut.dng')!r}, '--out', "
            f"{str(tmp_path / 'o.png')!r}, '--backend', 'cpu']))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and lines, done.stderr
    assert len(lines) == 1 and "cut.dng" in lines[0] and lines[0].startswith("gputrack isp:"), lines


# ---- general -----------------------------------------------------------------------------


def test_missing_file():
    with pytest.raises(GputrackError, match="input 'no/such/clip.mp4' not found"):
        open_source("no/such/clip.mp4")


@pytest.mark.parametrize("spec, message", [
    ("synthetic:64x48@1e-300", "fps='1e-300' must be from 0.1 to 1000"),
    ("synthetic:64x48@2000", "must be from 0.1 to 1000"),
    ("synthetic:64x48,seed=-1", "seed='-1' must be from 0 to 2**64 - 1"),
    (f"synthetic:64x48,seed={2**64}", f"seed='{2**64}' must be from 0 to 2**64 - 1"),
    ("synthetic:64x48,frames=0", "frames=0: must be at least 1"),
    ("synthetic:64x48,objects=257", "objects=257 must be from 0 to 256"),
    ("synthetic:64x48,ring=0", "ring=0 must be at least 1"),
    ("synthetic:64x48,ring=-2", "ring=-2 must be at least 1"),
    ("synthetic:100000x100000", "size 100000x100000 is too large (each side at most 16384"),
    ("synthetic:16384x4096", "size 16384x4096 is too large"),  # 67 MP: over 40 MP in all
    ("synthetic:64x48,loop=1", "unknown synthetic option(s) loop (known: WxH@FPS, size, fps"),
])
def test_synthetic_spec_values_out_of_range_are_refused(spec, message):
    with pytest.raises(UsageError, match=re.escape(message)) as err:  # the spec is usage
        open_source(spec)
    assert str(err.value).startswith(f"{spec}: ")


def test_an_image_too_small_for_the_sensor_is_named(tmp_path):
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.full((2, 3, 3), 90, np.uint8))
    with pytest.raises(GputrackError, match="tiny.png: image is 3x2; the sensor needs at least"):
        open_source(str(tiny))


# ---- audit E: one rule for each input ----------------------------------------------------


def test_one_test_decides_what_is_the_synthetic_world():
    assert is_synthetic(None) and is_synthetic("synthetic") and is_synthetic("synthetic:64x48")
    for other in ("Synthetic", " synthetic", "synthetic ", "SYNTHETIC:64x48", "synthetics",
                  "clip.mp4"):
        assert not is_synthetic(other)
    for empty in ("", "   "):
        with pytest.raises(UsageError, match="is empty: give a file"):
            is_synthetic(empty)
        with pytest.raises(UsageError, match="is empty"):
            open_source(empty)


@pytest.mark.parametrize("spec", ["Synthetic", " synthetic", "SYNTHETIC:64x48"])
def test_other_spellings_of_synthetic_are_paths_with_a_hint(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GputrackError, match=re.escape(f"input '{spec}' not found (the synthetic "
                                                       "world is spelled 'synthetic'")):
        open_source(spec)


@pytest.mark.parametrize("index", ["100", "4294967296", "99999999999999999999999"])
def test_a_webcam_index_beyond_99_is_a_usage_error(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as err:
        open_source(index)
    assert str(err.value) == f"webcam {index}: no such camera index (0 to 99)"
    with pytest.raises(UsageError, match="no such camera index"):  # beyond C int, directly
        VideoSource(int(index))


class _Closed:
    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return False


def test_a_webcam_that_fails_suggests_the_file_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cv2, "VideoCapture", lambda *a: _Closed())
    with pytest.raises(GputrackError) as err:
        open_source("5")
    assert "webcam 5 did not open" in str(err.value) and "'./5'" not in str(err.value)
    (tmp_path / "5").write_bytes(b"x")
    (tmp_path / "150").write_bytes(b"x")
    with pytest.raises(GputrackError, match=r"webcam 5 did not open .*; to read the file named "
                                            r"'5' here, pass '\./5'$"):
        open_source("5")
    with pytest.raises(UsageError, match=r"\(0 to 99\); to read the file named '150' here, "
                                         r"pass '\./150'$"):
        open_source("150")


def test_upper_case_extensions_are_read(tmp_path):
    raws = tmp_path / "raws"
    raws.mkdir()
    for i in (1, 2):
        _raw(seed=i).astype("<u2").tofile(raws / f"A{i}.RAW")
    assert is_headerless_raw(str(raws)) and is_headerless_raw(str(raws / "A1.RAW"))
    with open_source(str(raws), size="32x16") as src:
        assert isinstance(src, RawFileSource) and len(list(src)) == 2
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    for i in (1, 2):
        cv2.imwrite(str(pngs / f"f{i}.png"), _numbered(i))
        (pngs / f"f{i}.png").rename(pngs / f"F{i}.PNG")
    with open_source(str(pngs)) as src:
        assert isinstance(src, ImageFolderSource) and len(list(src)) == 2
    assert not is_headerless_raw(str(pngs)) and not is_headerless_raw("synthetic:64x48")


def test_a_url_with_a_frame_count_is_a_file_that_ends(tmp_path):
    path = _write_video(tmp_path / "three.avi", n=3)
    with open_source(path.as_uri()) as src:  # file:///...: OpenCV's FFmpeg reads it
        assert isinstance(src, VideoSource) and not src.live and src.num_frames == 3
        assert [_frame_number(f.image) for f in src] == [0, 1, 2]
        assert src.end_reason is None and src.dropped == 0
    # the decision, with a stand-in: a count makes a file, none makes a live stream
    clip = VideoSource("http://host/clip.mp4", capture=FakeCapture(5, set()))
    assert not clip.live and len(list(clip)) == 5
    cam = VideoSource("rtsp://host/cam", capture=FakeCapture(3, set(), count=0), max_drops=4)
    assert cam.live and cam.num_frames is None
    with pytest.raises(GputrackError, match=re.escape(
            "stream 'rtsp://host/cam': no frame in 4 reads in a row (stream disconnected?)")):
        list(cam)


def test_a_stream_that_does_not_open_is_not_called_a_bad_video():
    """A refused connection said 'not a video, or a codec this OpenCV build lacks'."""

    class Closed(FakeCapture):
        def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
            return False

    with pytest.raises(GputrackError, match="server did not answer or refused it"):
        VideoSource("rtsp://127.0.0.1:1/cam", capture=Closed(0, set()))
    with pytest.raises(GputrackError, match="not a video, a damaged or cut-short one"):
        VideoSource("clip.avi", capture=Closed(0, set()))


def _hinted(folder: Path, *names: str, top: int = 1023) -> Path:
    folder.mkdir()
    for i, name in enumerate(names):
        _raw(top=top, seed=i).astype("<u2").tofile(folder / name)
    return folder


@pytest.mark.parametrize("names, words", [
    (("f1_32x16_10bit.raw", "f2_32x16_12bit_bggr.raw"),
     "f1_32x16_10bit.raw is 10-bit but f2_32x16_12bit_bggr.raw is 12-bit by their names"),
    (("f1_32x16_rggb.raw", "f2_32x16_bggr.raw"),
     "f1_32x16_rggb.raw is RGGB but f2_32x16_bggr.raw is BGGR by their names"),
    (("f1_32x16.raw", "f2_16x32.raw"), "f1_32x16.raw is 32x16 but f2_16x32.raw is 16x32"),
])
def test_a_raw_folder_whose_names_disagree_is_refused(tmp_path, names, words):
    folder = _hinted(tmp_path / "seq", *names)
    with pytest.raises(GputrackError, match=re.escape(words)) as err:
        open_source(str(folder))
    assert str(err.value).startswith(f"{folder}: ") and "one stream has one format" in str(
        err.value)


def test_raw_folder_hints_are_read_for_every_file(tmp_path):
    # a name that states nothing takes the others'; an option overrides every name
    folder = _hinted(tmp_path / "seq", "a1.raw", "a2_32x16_bggr_10bit.raw")
    frames = list(open_source(str(folder)))
    assert [(f.raw.pattern, f.raw.bit_depth) for f in frames] == [("BGGR", 10)] * 2
    folder = _hinted(tmp_path / "two", "f1_32x16_10bit.raw", "f2_32x16_12bit.raw")
    assert {f.raw.bit_depth for f in open_source(str(folder), bit_depth=12)} == {12}


def test_a_truncated_raw_whose_size_is_in_its_name_says_so(tmp_path):
    path = tmp_path / "cut_32x16_10bit.raw"
    _raw(top=1023)[:8].astype("<u2").tofile(path)
    with pytest.raises(GputrackError) as err:
        open_source(str(path))
    msg = str(err.value)
    assert msg.startswith(f"{path}: 512 bytes, but 32x16 16-bit RAW needs 1024")
    assert "the size comes from the file name" in msg and "check --size" not in msg


def test_a_file_that_vanishes_mid_run_is_named(tmp_path):
    folder = _hinted(tmp_path / "raws", "f1_32x16.raw", "f2_32x16.raw")
    src = open_source(str(folder))
    next(src)
    (folder / "f2_32x16.raw").unlink()
    with pytest.raises(GputrackError, match=re.escape(f"{folder / 'f2_32x16.raw'}: No such")):
        next(src)
    npys = tmp_path / "npys"
    npys.mkdir()
    for i in (1, 2):
        np.save(npys / f"n{i}.npy", _raw())
    src = open_source(str(npys))
    next(src)
    (npys / "n2.npy").unlink()
    with pytest.raises(GputrackError, match=re.escape(f"{npys / 'n2.npy'}: No such")):
        next(src)


def test_a_video_too_small_for_the_sensor_is_named(tmp_path):
    path = tmp_path / "small.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (2, 2))
    for _ in range(3):
        vw.write(np.zeros((2, 2, 3), np.uint8))
    vw.release()
    with pytest.raises(GputrackError) as err:
        open_source(str(path))
    assert str(err.value) == f"video '{path}': frames are 2x2; the sensor needs at least 4x4 pixels"


@pytest.mark.parametrize("claimed, used, note", [
    (1000.0, 1000.0, None),
    (0.1, 0.1, None),
    (1000.5, 30.0, "states 1000.5 fps, outside 0.1 to 1000; 30 fps assumed"),
    (0.05, 30.0, "states 0.05 fps, outside 0.1 to 1000; 30 fps assumed"),
    (0.0, 30.0, "states no frame rate; 30 fps assumed"),
    (float("nan"), 30.0, "states no frame rate; 30 fps assumed"),
])
def test_a_containers_frame_rate_is_used_within_the_documented_range(claimed, used, note):
    src = VideoSource("clip.avi", live=False, capture=FakeCapture(3, set(), fps=claimed))
    assert src.fps == used
    assert src.notes == ([] if note is None else [f"video 'clip.avi': {note}"])
