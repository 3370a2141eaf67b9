"""DNG and camera RAW files through rawpy (LibRaw): :class:`CameraRawSource`.

What rawpy does not expose of a DNG, gputrack reads through tifffile: the CinemaDNG frame
rate and, for a recording of a windowed run (`run --roi --raw`), the window each frame is on
the sensor (a line of the ImageDescription, `outputs/dng.py`), so that its boxes map back to
the sensor's pixels as the run's did."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from gputrack.errors import GputrackError
from gputrack.native_stderr import quiet_native_stderr
from gputrack.outputs.dng import FRAME_NAME, read_window
from gputrack.sensor.frame import BIT_DEPTHS, RawFrame, check_pattern
from gputrack.sensor.roi import Roi
from gputrack.sensor.sources.base import (
    MAX_FPS,
    MIN_FPS,
    Frame,
    Source,
    _make_raw,
    _raw_params,
)

FRAME_RATE_TAG = 51044  # CinemaDNG's FrameRate, SRATIONAL; what `gputrack run --raw` writes
DESCRIPTION_TAG = 270  # TIFF's ImageDescription: a windowed frame's window (`read_window`)
# A recording's file names (`frame_NNNNNN.dng`), the frame number captured
_RECORDED = re.compile(re.escape(FRAME_NAME).replace(re.escape("{:06d}"), r"(\d+)"))


class CameraRawSource(Source):
    """DNG and camera RAW files (one or a folder) through rawpy: the visible sensor area, its
    Bayer pattern, black and white level, and the bit depth that holds that white level
    (`open_source` refuses a `bit_depth`, `pattern` or level given for them). An odd edge row or
    column is cropped off (the pattern is anchored at the top-left, so it does not change).
    Non-Bayer sensors (X-Trans, four-colour) are an error. ``meta`` carries the per-channel
    black levels and the camera's white balance and colour matrix.

    The frame rate is the first file's CinemaDNG FrameRate when it is from MIN_FPS to
    MAX_FPS, else ``fps`` when given, else 30 (assumed: ``notes`` says so). When every file is named
    as a recording's (``frame_NNNNNN.dng``), each frame's index is the number in its name (a
    frame the recording skipped stays a gap); otherwise frames count from 0 in file order.

    A recording of a windowed run states each frame's window: ``size`` is then the whole
    sensor's, ``window`` the window, and each RawFrame carries both (every file must state
    the same; a window that cannot be read is an error, as no window would shift the boxes)."""

    kind = "camera-raw"

    def __init__(self, files: Sequence[Path], name: str, fps: float | None = None,
                 frames: int | None = None, loop: bool = False) -> None:
        try:
            import rawpy  # noqa: F401  (optional dependency: only DNG/camera RAW needs it)
        except ImportError:
            raise GputrackError(f"{name}: reading DNG/camera RAW needs rawpy "
                                "(pip install rawpy)") from None
        self.files = list(files)
        recorded = _recorded_indices(self.files)
        if recorded is None:
            self.indices = list(range(len(self.files)))
        else:  # in number order (a natural sort gives it too, but the list may be anyone's)
            pairs = sorted(zip(recorded, self.files, strict=True))
            self.indices, self.files = [i for i, _ in pairs], [f for _, f in pairs]
        note = None
        # As a video's: a rate the file states wins over `fps` (gputrack run's summary says
        # so), `fps` is for files that state none
        tags = _dng_tags(self.files[0])
        stated = _stated_fps(tags)
        if stated is not None and MIN_FPS <= stated <= MAX_FPS:  # NaN fails too
            fps = stated
        elif fps is None:
            fps = 30.0
            file = self.files[0].name
            if stated is None:
                said = "states no frame rate"
            elif math.isfinite(stated):
                said = f"{file} states {stated:g} fps, outside {MIN_FPS:g} to {MAX_FPS:g}"
            else:
                said = f"{file} states an invalid frame rate (n/0)"
            note = f"{name}: {said}; {fps:g} fps assumed (--fps sets it)"
        first = self._load(self.files[0], self.indices[0], self.indices[0] / fps, tags)
        self._first: Frame | None = first
        # The first file's RAW frame: what the recording states (its white balance as shot and
        # colour matrix, its window), for the ISP's defaults before any frame is read.
        raw: RawFrame = first.raw  # type: ignore[assignment]
        self.first_raw = raw
        h, w = raw.data.shape
        self._frame_size = (w, h)
        # The sensor: a windowed recording's frames are its window (as the run's source was)
        super().__init__(name, fps, raw.sensor_size or (w, h), is_raw=True,
                         num_frames=len(self.files), frames=frames, loop=loop)  # fmt: skip
        self.window = raw.window
        if note:  # only when the rate really was assumed: given or stated, nothing to say
            self.notes.append(note)
        if raw.window is not None:  # the text summary shows no window: why boxes lie beyond
            self.notes.append(f"{name}: frames are {_placed(raw)}, as recorded; boxes "
                              "and tracks are in the sensor's pixels")
        self._k = 0

    def _load(self, path: Path, index: int, t: float, tags: dict[int, Any] | None = None) -> Frame:
        import rawpy

        try:
            with quiet_native_stderr(), rawpy.imread(str(path)) as r:  # LibRaw's own lines
                pattern = _rawpy_pattern(r, path)
                data = np.array(r.raw_image_visible, dtype=np.uint16)
                blacks = [int(b) for b in r.black_level_per_channel]
                white = int(r.white_level)
                as_shot = _as_shot_gains(r.camera_whitebalance)
                camera_ccm = _camera_matrix(r.color_matrix)
                meta = {
                    "file": str(path),
                    "black_level_per_channel": blacks,
                    "camera_whitebalance": [float(x) for x in r.camera_whitebalance],
                    "rgb_xyz_matrix": np.array(r.rgb_xyz_matrix).tolist(),
                }
        except Exception as err:  # any decoder failure on a user's file is a bad input
            raise GputrackError(f"{path}: rawpy cannot read it ({type(err).__name__}: "
                                f"{err})") from None
        h, w = data.shape
        data = data[: h - h % 2, : w - w % 2]
        # the smallest depth that holds the white level (a white level beyond 16 bits is
        # clipped to what uint16 data can reach)
        depth = next((b for b in BIT_DEPTHS if white < (1 << b)), 16)
        white = min(white, (1 << depth) - 1)
        params = _raw_params(str(path), depth, pattern, round(float(np.mean(blacks))), white)
        raw = _make_raw(str(path), np.ascontiguousarray(data), params, index, t)
        raw.as_shot_wb, raw.camera_ccm = as_shot, camera_ccm
        placed = _stated_window(path, _dng_tags(path) if tags is None else tags)
        if placed is not None:
            try:
                raw = replace(raw, window=placed[0], sensor_size=placed[1])
            except GputrackError as err:  # the window's size is not the image's
                raise GputrackError(f"{path}: {err}") from None
        return Frame(index, t, raw=raw, meta=meta)

    def _read(self) -> Frame | None:
        if self._k >= len(self.files):
            return None
        k = self._k
        self._k += 1
        if k == 0 and self._first is not None:
            frame, self._first = self._first, None
            return frame
        index = self.indices[k]
        frame = self._load(self.files[k], index, index / self.fps)
        raw: RawFrame = frame.raw  # type: ignore[assignment]
        h, w = raw.data.shape
        if (w, h) != self._frame_size:  # as an image folder's: one frame size for every output
            raise GputrackError(f"{self.files[k]}: frame is {w}x{h}, but the first is "
                                f"{self._frame_size[0]}x{self._frame_size[1]}")  # fmt: skip
        if (raw.window, raw.sensor_size) != (self.window, self.first_raw.sensor_size):
            # one place on one sensor: the live map and the outputs are sized once
            raise GputrackError(f"{self.files[k]}: frame is {_placed(raw)}, but the first is "
                                f"{_placed(self.first_raw)}")  # fmt: skip
        return frame

    def _rewind(self) -> bool:
        self._k = 0
        return True


def _recorded_indices(files: Sequence[Path]) -> list[int] | None:
    """The frame numbers in the names when every file is named exactly as `RawRecorder`
    names them (`frame_000004.dng`, not `frame_4.dng`: one number, one name); else None."""
    indices = []
    for path in files:
        m = _RECORDED.fullmatch(path.name)
        if m is None or FRAME_NAME.format(int(m.group(1))) != path.name:
            return None
        indices.append(int(m.group(1)))
    return indices


def _dng_tags(path: Path) -> dict[int, Any]:
    """The values of the tags gputrack reads beyond rawpy (FrameRate, ImageDescription) that
    a DNG holds, read through tifffile. Only DNG has them; any failure to read them (not TIFF,
    a broken file, tifffile missing) is "states none": rawpy judges the file itself."""
    if path.suffix.lower() != ".dng":
        return {}
    quiet = logging.getLogger("tifffile")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # its warnings about odd tags are not the user's concern
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags
            found = {code: tags.get(code) for code in (FRAME_RATE_TAG, DESCRIPTION_TAG)}
            return {code: tag.value for code, tag in found.items() if tag is not None}
    except Exception:
        return {}
    finally:
        quiet.setLevel(level)


def _stated_fps(tags: dict[int, Any]) -> float | None:
    """A DNG's CinemaDNG FrameRate (`_dng_tags`; NaN for n/0); None when it states none."""
    try:
        num, den = (int(v) for v in tags[FRAME_RATE_TAG])  # one SRATIONAL: (num, den)
    except (KeyError, TypeError, ValueError):
        return None
    return num / den if den else math.nan


def _stated_window(path: Path, tags: dict[int, Any]) -> tuple[Roi, tuple[int, int]] | None:
    """The window a DNG's ImageDescription states (`read_window`), None when none; one that
    cannot be read is an error naming the file."""
    text = tags.get(DESCRIPTION_TAG)
    if not isinstance(text, str):
        return None
    try:
        return read_window(text)
    except GputrackError as err:
        raise GputrackError(f"{path}: {err}") from None


def _placed(raw: RawFrame) -> str:
    """Where a frame lies on the sensor, in words."""
    if raw.window is None or raw.sensor_size is None:
        return "the whole sensor (it states no window)"
    return f"the window {raw.window} of a {raw.sensor_size[0]}x{raw.sensor_size[1]} sensor"


def _as_shot_gains(multipliers: Any) -> tuple[float, float, float] | None:
    """LibRaw's camera multipliers (R, G, B, G2) as gains with G = 1; None when the file
    states none (zeros) or ones outside what the ISP takes (1/64 to 64)."""
    m = np.asarray(multipliers, dtype=np.float64)[:3]
    if m.shape != (3,) or not np.all(np.isfinite(m)) or m[1] <= 0:
        return None
    gains = m / m[1]
    if not np.all((gains >= 1 / 64) & (gains <= 64)):
        return None
    return (float(gains[0]), 1.0, float(gains[2]))


def _camera_matrix(matrix: Any) -> tuple[tuple[float, float, float], ...] | None:
    """LibRaw's colour matrix (camera RGB -> sRGB, from the DNG's ColorMatrix or LibRaw's
    own table for the camera) as 3x3; None when the file gave none (zeros)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 3 or m.shape[1] < 3:
        return None
    m = m[:3, :3]
    if not np.all(np.isfinite(m)) or not np.any(m) or np.any(np.abs(m) > 16):
        return None
    return tuple(tuple(float(v) for v in row) for row in m)  # type: ignore[return-value]


def _rawpy_pattern(r: Any, path: Path) -> str:
    """The 2x2 Bayer pattern at the top-left of the visible area, as 'RGGB' etc."""
    pat = r.raw_pattern
    desc = r.color_desc.decode("ascii", "replace")
    if pat is None or pat.shape != (2, 2) or sorted(desc[:3]) != ["B", "G", "R"]:
        raise GputrackError(f"{path}: not a Bayer RAW (colours '{desc}'); only 2x2 RGB Bayer "
                            "sensors are supported")
    s = r.sizes
    # raw_pattern is anchored at the full sensor's corner; the visible area starts at margins
    letters = [desc[pat[(s.top_margin + i) % 2, (s.left_margin + j) % 2]]
               for i in (0, 1) for j in (0, 1)]
    return check_pattern("".join(letters))
