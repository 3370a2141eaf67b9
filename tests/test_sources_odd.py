"""Odd real-world inputs fed to the sources: names, links, unreadable files, videos that do
not state their size or change it. Each builds its small input in tmp_path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from gputrack.cli import main
from gputrack.errors import GputrackError
from gputrack.sensor.sources import VideoSource, open_source
from gputrack.sensor.sources import video as video_module

MODEL = str(Path(__file__).resolve().parent.parent / "gputrack" / "models" / "synthetic_det.onnx")


def _png(path: Path, w: int = 16, h: int = 12, grey: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((h, w, 3), grey, np.uint8))
    return path


class _Capture:
    """Stands in for cv2.VideoCapture: `n` frames, frame i of `sizes.get(i, size)`; it states
    `stated` as its size (0x0: none, as some streams before their first frame)."""

    def __init__(self, n: int = 6, size: tuple[int, int] = (64, 48),
                 stated: tuple[int, int] | None = None,
                 sizes: dict[int, tuple[int, int]] | None = None) -> None:
        self.n, self.size, self.sizes = n, size, sizes or {}
        self.stated = size if stated is None else stated
        self.reads = 0

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return True

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FPS: 25.0, cv2.CAP_PROP_FRAME_COUNT: self.n,
                cv2.CAP_PROP_FRAME_WIDTH: self.stated[0],
                cv2.CAP_PROP_FRAME_HEIGHT: self.stated[1]}.get(prop, 0.0)

    def set(self, prop: int, value: float) -> bool:
        if prop == cv2.CAP_PROP_POS_FRAMES:
            self.reads = int(value)
        return True

    def read(self):
        i = self.reads
        self.reads += 1
        if i >= self.n:
            return False, None
        w, h = self.sizes.get(i, self.size)
        return True, np.full((h, w, 3), 10 * i, np.uint8)

    def release(self) -> None:
        pass


# ---- image folders -----------------------------------------------------------------------


def test_a_name_with_a_superscript_digit_sorts(tmp_path):
    # '²' is a digit to str.isdigit but not to int(): the sort key crashed with a traceback
    _png(tmp_path / "a.png")
    _png(tmp_path / "x1²2.png")
    _png(tmp_path / "frame_١٠.png")  # Arabic-Indic 10: a number, after frame_9
    _png(tmp_path / "frame_9.png")
    with open_source(str(tmp_path)) as src:
        names = [Path(f.meta["file"]).name for f in src]
    assert names == ["a.png", "frame_9.png", "frame_١٠.png", "x1²2.png"]


def test_folder_order_does_not_depend_on_the_file_system(tmp_path, monkeypatch):
    # names equal to the natural key ('A1', 'a1', 'a01') kept the listing's order, which
    # differs between file systems: the frames then came in another order elsewhere
    for name in ("a1.png", "A1.png", "a01.png", "a2.png"):
        _png(tmp_path / name)
    listing = sorted(tmp_path.iterdir())
    orders = []
    for order in (listing, listing[::-1]):
        monkeypatch.setattr(Path, "iterdir", lambda self, o=order: iter(o))
        with open_source(str(tmp_path)) as src:
            orders.append([Path(f.meta["file"]).name for f in src])
    assert orders[0] == orders[1] == ["A1.png", "a01.png", "a1.png", "a2.png"]


def test_a_broken_link_in_a_folder_is_a_counted_drop(tmp_path):
    # a dangling link was left out silently: a frame gone with no trace in `dropped`
    _png(tmp_path / "f1.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "f2.png")
    _png(tmp_path / "f3.png")
    os.symlink("f1.png", tmp_path / "f4.png")  # a good link is a frame like any
    with open_source(str(tmp_path)) as src:
        frames = list(src)
    assert [f.index for f in frames] == [0, 2, 3] and src.dropped == 1


def test_a_broken_link_among_raw_files_is_an_error_naming_it(tmp_path):
    # RAW files are never skipped: the link was left out silently, and once listed, the
    # error named the folder rather than the file
    for name in ("f1_8x8.raw", "f3_8x8.raw"):
        np.zeros((8, 8), np.uint16).tofile(tmp_path / name)
    os.symlink(tmp_path / "gone.raw", tmp_path / "f2_8x8.raw")
    with pytest.raises(GputrackError) as err:
        open_source(str(tmp_path))
    assert str(err.value) == f"{tmp_path / 'f2_8x8.raw'}: No such file or directory"


def test_one_unreadable_image_names_the_file(tmp_path, capsys):
    bad = tmp_path / "clip.png"
    bad.write_bytes(b"not a png\n" * 10)
    rc = main(["run", str(bad), "--frames", "1", "--no-ui", "--backend", "cpu",
               "--model", MODEL])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err == [f"gputrack run: error: {bad}: cannot read it as an image (not "
                               "an image, damaged, or a format this OpenCV build cannot "
                               "decode)"]


# ---- videos ------------------------------------------------------------------------------


def test_a_video_that_states_no_size_takes_its_first_frames(tmp_path):
    # 0x0 stated: the source said its size was 0x0, so --roi and --video blamed the input
    cap = _Capture(n=4, stated=(0, 0))
    src = VideoSource("stream.avi", live=False, capture=cap)
    assert src.size == (64, 48)
    frames = list(src)
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 10, 20, 30]  # none lost or doubled


def test_a_camera_that_states_another_mode_takes_its_first_frames_size():
    # a webcam stating the mode asked for (640x480) but delivering another: every frame was
    # refused as the wrong size; a live source learns the size from its first frame
    cap = _Capture(n=3, size=(64, 48), stated=(640, 480))
    src = VideoSource("cam", live=True, capture=cap)
    assert src.size == (64, 48)
    assert [int(next(src).image[0, 0, 0]) for _ in range(3)] == [0, 10, 20]  # none lost


def test_a_video_that_states_no_size_and_reads_nothing_is_an_error():
    cap = _Capture(n=0, stated=(0, 0))
    with pytest.raises(GputrackError, match="states no frame size, and its first frame"):
        VideoSource("stream.avi", live=False, capture=cap)


def test_run_with_roi_on_a_video_that_states_no_size(tmp_path, capsys, monkeypatch):
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    real = cv2.VideoCapture

    class NoSize:  # OpenCV's capture of the file, stating no size
        def __init__(self, *args: object) -> None:
            self._cap = real(*args)

        def get(self, prop: int) -> float:
            sides = (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT)
            return 0.0 if prop in sides else self._cap.get(prop)

        def __getattr__(self, name: str):
            return getattr(self._cap, name)

    monkeypatch.setattr(video_module.cv2, "VideoCapture", NoSize)
    rc = main(["run", str(path), "--frames", "2", "--no-ui", "--json", "--backend", "cpu",
               "--model", MODEL, "--roi", "0,0,32,32"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert json.loads(out.out)["frame_size"] == [32, 32]


def test_a_video_frame_of_another_size_is_an_error():
    # a camera that switches mode mid-run: its frames went on at a size no output was made for
    cap = _Capture(n=6, sizes={3: (128, 96)})
    src = VideoSource("cam.avi", live=False, capture=cap)
    assert [next(src).index for _ in range(3)] == [0, 1, 2]
    with pytest.raises(GputrackError) as err:
        next(src)
    assert str(err.value) == "video 'cam.avi': frame 3 is 128x96, but its frames are 64x48"


# ---- .npy --------------------------------------------------------------------------------


def test_a_16_bit_rgb_npy_is_named_as_such(tmp_path):
    # uint16[H, W, 3] was read as H RAW frames of 3xW: "RAW size 3x8 is odd"
    path = tmp_path / "rgb16.npy"
    np.save(path, np.zeros((8, 8, 3), np.uint16))
    with pytest.raises(GputrackError, match=r"rgb16.npy: array uint16\[8, 8, 3\] is a 16-bit "
                                            r"RGB image; RGB frames are uint8 HxWx3"):
        open_source(str(path))


def test_a_folder_of_16_bit_images_keeps_its_precision(tmp_path):
    # read as 8-bit colour, a 16-bit frame lost its low byte before the sensor model saw it
    rng = np.random.default_rng(3)
    want = [rng.integers(0, 65536, (12, 16, 3), dtype=np.uint16) for _ in range(2)]
    for i, img in enumerate(want):
        assert cv2.imwrite(str(tmp_path / f"f{i}.png"), img[..., ::-1])
    with open_source(str(tmp_path)) as src:
        got = [f.image for f in src]
    assert all(g.dtype == np.uint16 for g in got)
    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


def test_transparency_in_a_folder_is_noted_once(tmp_path):
    for i in range(3):
        rgba = np.full((12, 16, 4), 200, np.uint8)
        rgba[..., 3] = 255
        rgba[:6, :, 3] = 0  # the top half transparent
        assert cv2.imwrite(str(tmp_path / f"f{i}.png"), rgba)
    with open_source(str(tmp_path)) as src:
        frames = list(src)
    assert len(frames) == 3 and frames[0].image.shape == (12, 16, 3)
    noted = [n for n in src.notes if "transparency" in n]
    assert len(noted) == 1 and "f0.png" in noted[0] and "50 %" in noted[0]


def test_run_on_16_bit_frames(tmp_path, capsys):
    for i in range(2):
        img = np.full((48, 64, 3), 30000 + 1000 * i, np.uint16)
        assert cv2.imwrite(str(tmp_path / f"f{i}.png"), img)
    rc = main(["run", str(tmp_path), "--frames", "2", "--no-ui", "--backend", "cpu",
               "--model", MODEL, "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["frames"] == 2


def test_a_live_source_numbers_frames_by_capture_time(monkeypatch):
    # a camera at 25 fps whose frames the pipeline takes every 3 periods: they were numbered
    # 0, 1, 2, ... and the tracker predicted one period of motion for three
    cap = _Capture(n=10, size=(64, 48))
    # each read comes 3 periods of 40 ms after the one before
    monkeypatch.setattr(video_module.time, "monotonic", lambda: 100.0 + 0.12 * cap.reads)
    src = VideoSource("cam", live=True, capture=cap)
    frames = [next(src) for _ in range(4)]
    assert [f.index for f in frames] == [0, 3, 6, 9]
    steps = [b.timestamp - a.timestamp for a, b in zip(frames, frames[1:], strict=False)]
    assert steps == pytest.approx([0.12] * 3)


def test_a_live_sources_first_frame_is_not_stamped_before_its_clock_starts(monkeypatch):
    # the first frame is read (peeked) while the source opens, and the clock its timestamps
    # count from was started after it: the first frame was stamped at a negative time
    clock = iter(100.0 + 0.5 * k for k in range(1000))  # every reading of the clock later
    monkeypatch.setattr(video_module.time, "monotonic", lambda: next(clock))
    src = VideoSource("cam", live=True, capture=_Capture(n=5, size=(64, 48)))
    frames = [next(src) for _ in range(3)]
    assert frames[0].index == 0 and frames[0].timestamp >= 0
    assert all(b.timestamp > a.timestamp for a, b in zip(frames, frames[1:], strict=False))


def test_a_rotated_video_takes_its_frames_size():
    # a phone video: OpenCV turns its frames upright but (in some versions) states the size
    # as stored; every frame was refused as "another size"
    cap = _Capture(n=3, size=(48, 64), stated=(64, 48))
    src = VideoSource("portrait.mp4", live=False, capture=cap)
    assert src.size == (48, 64)
    assert [f.index for f in src] == [0, 1, 2]


def test_a_video_whose_first_frame_fails_counts_it():
    class FirstFails(_Capture):
        def read(self):
            ok, img = super().read()
            return (False, None) if self.reads == 1 else (ok, img)

    src = VideoSource("clip.avi", live=False, capture=FirstFails(n=4))
    assert src.size == (64, 48)
    frames = list(src)
    assert [f.index for f in frames] == [1, 2, 3] and src.dropped == 1
    assert [int(f.image[0, 0, 0]) for f in frames] == [10, 20, 30]
