"""DNG and camera RAW files through rawpy (LibRaw): :class:`CameraRawSource`."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gputrack.errors import GputrackError, UsageError
from gputrack.outputs.dng import FRAME_NAME
from gputrack.sensor.frame import BIT_DEPTHS, check_pattern
from gputrack.sensor.sources.base import (
    MAX_FPS,
    MIN_FPS,
    Frame,
    Source,
    _make_raw,
    _raw_params,
)

FRAME_RATE_TAG = 51044  # CinemaDNG's FrameRate, SRATIONAL; what `gputrack run --raw` writes
# A recording's file names (`frame_NNNNNN.dng`), the frame number captured
_RECORDED = re.compile(re.escape(FRAME_NAME).replace(re.escape("{:06d}"), r"(\d+)"))


class CameraRawSource(Source):
    """DNG and camera RAW files (one or a folder) through rawpy: the visible sensor area, its
    Bayer pattern, black and white level, and the bit depth that holds that white level (a
    ``bit_depth`` given is refused, as ``open_source`` refuses the others). An odd edge row or
    column is cropped off (the pattern is anchored at the top-left, so it does not change).
    Non-Bayer sensors (X-Trans, four-colour) are an error. ``meta`` carries the per-channel
    black levels and the camera's white balance and colour matrix.

    The frame rate is the first file's CinemaDNG FrameRate when it is from MIN_FPS to
    MAX_FPS, else ``fps`` when given, else 30 (assumed: ``notes`` says so). When every file is named
    as a recording's (``frame_NNNNNN.dng``), each frame's index is the number in its name (a
    frame the recording skipped stays a gap); otherwise frames count from 0 in file order."""

    kind = "camera-raw"

    def __init__(self, files: Sequence[Path], name: str, bit_depth: Any = None,
                 fps: float | None = None, frames: int | None = None, loop: bool = False) -> None:
        # The depth follows from the white level the file states: another one would be
        # reported beside that level yet change nothing (deeper), or clip it (shallower).
        if bit_depth is not None:
            raise UsageError(f"{name}: a DNG/camera RAW file states its own bit depth (the "
                             "smallest that holds its white level); --bit-depth does not apply")
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
        stated = _stated_fps(self.files[0])
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
        first = self._load(self.files[0], self.indices[0], self.indices[0] / fps)
        self._first: Frame | None = first
        # The first file's RAW frame: what the recording states (its white balance as shot and
        # colour matrix), for the ISP's defaults before any frame is read.
        self.first_raw = first.raw
        h, w = first.raw.data.shape  # type: ignore[union-attr]
        super().__init__(name, fps, (w, h), is_raw=True, num_frames=len(self.files),
                         frames=frames, loop=loop)
        if note:  # only when the rate really was assumed: given or stated, nothing to say
            self.notes.append(note)
        self._k = 0

    def _load(self, path: Path, index: int, t: float) -> Frame:
        import rawpy

        try:
            with rawpy.imread(str(path)) as r:
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
        h, w = frame.raw.data.shape  # type: ignore[union-attr]
        if (w, h) != self.size:  # as an image folder's: one frame size for every output
            raise GputrackError(f"{self.files[k]}: frame is {w}x{h}, but the first is "
                                f"{self.size[0]}x{self.size[1]}")  # fmt: skip
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


def _stated_fps(path: Path) -> float | None:
    """A DNG's CinemaDNG FrameRate (NaN for n/0), read through tifffile since rawpy does not
    expose it; None when it states none. Only DNG has the tag; any failure to read it (not
    TIFF, a broken file, tifffile missing) is "states none": rawpy judges the file itself."""
    if path.suffix.lower() != ".dng":
        return None
    quiet = logging.getLogger("tifffile")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # its warnings about odd tags are not the user's concern
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            tag = tif.pages[0].tags.get(FRAME_RATE_TAG)
            if tag is None:
                return None
            num, den = (int(v) for v in tag.value)  # one SRATIONAL: (numerator, denominator)
    except Exception:
        return None
    finally:
        quiet.setLevel(level)
    return num / den if den else math.nan


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
