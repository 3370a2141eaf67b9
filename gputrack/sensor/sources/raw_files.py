"""Headerless ``.raw`` files: :class:`RawFileSource`, and the size, bit depth and pattern
their names may state."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gputrack.errors import GputrackError, UsageError
from gputrack.sensor.frame import check_levels
from gputrack.sensor.sources.base import (
    URL,
    Frame,
    Source,
    _files_in,
    _make_raw,
    _raw_params,
    parse_size,
)
from gputrack.sensor.sources.synthetic_spec import is_synthetic

MIN_SIDE = 4  # the smallest frame side the ISP takes (a 1-digit size in a name must reach it)


def is_headerless_raw(spec: str) -> bool:
    """Whether :func:`open_source` reads ``spec`` as headerless ``.raw``: a ``.raw`` file or a
    folder with ``.raw`` files (the extension in any case, as everywhere in the sources)."""
    if is_synthetic(spec) or URL.match(spec):
        return False
    path = Path(spec).expanduser()
    try:
        if path.is_dir():
            return any(f.suffix.lower() == ".raw" for f in _files_in(path))
    except OSError:
        return False
    return path.suffix.lower() == ".raw"


def _hints(path: Path) -> dict[str, Any]:
    """Size, bit depth and pattern written in a file name, e.g. ``x_1920x1080_rggb_10bit.raw``.

    A size with 2 to 5 digits a side wins, as it always has; one with a 1-digit side
    (``cap_8x8.raw``, ``cap_8x16.raw``) counts only when the name states no such size and
    both sides reach the sensor's minimum of 4, the largest of them if several, so that a
    binning or tile count (``bin2x2_1920x1080``, ``t4x4_16x8``) is not read as the frame's."""
    name = path.name.lower()
    out: dict[str, Any] = {}
    if m := re.search(r"(?<!\d)(\d{2,5})x(\d{2,5})(?!\d)", name):
        out["size"] = (int(m.group(1)), int(m.group(2)))
    else:
        found = [(int(m.group(1)), int(m.group(2)))
                 for m in re.finditer(r"(?<!\d)(\d{1,5})x(\d{1,5})(?!\d)", name)]
        found = [wh for wh in found if min(wh) >= MIN_SIDE]
        if found:  # the largest: a binning or tile count is smaller than the frame
            out["size"] = max(found, key=lambda wh: wh[0] * wh[1])
    if m := re.search(r"(?<!\d)(8|10|12|14|16)[-_ ]?bits?(?![a-z])", name):
        out["bit_depth"] = int(m.group(1))
    if m := re.search(r"(?<![a-z])(rggb|grbg|gbrg|bggr)(?![a-z])", name):
        out["pattern"] = m.group(1).upper()
    return out


def _show(key: str, value: Any) -> str:
    """A file-name hint as the user wrote it: '96x64', '10-bit', 'BGGR'."""
    if key == "size":
        return f"{value[0]}x{value[1]}"
    return f"{value}-bit" if key == "bit_depth" else str(value)


def name_hints(files: Sequence[Path], name: str, keys: Sequence[str]) -> dict[str, Any]:
    """What the files' names state of ``keys`` (``size``, ``bit_depth``, ``pattern``; those
    not given as options): one stream has one format, so two files whose names state
    different values are an error naming both; a file whose name states none takes the
    others'. Shared by ``.raw`` and ``.npy`` RAW files."""
    out: dict[str, Any] = {}
    first: dict[str, Path] = {}
    for f in files:
        hint = _hints(f)
        for key in keys:
            if key not in hint:
                continue
            if key not in out:
                out[key], first[key] = hint[key], f
            elif hint[key] != out[key]:
                flag = "--" + key.replace("_", "-")
                raise GputrackError(
                    f"{name}: {first[key].name} is {_show(key, out[key])} but {f.name} is "
                    f"{_show(key, hint[key])} by their names; one stream has one format "
                    f"(separate the files, or set {flag})")
    return out


def check_given_levels(name: str, params: dict[str, Any], black_level: Any,
                       white_level: Any) -> None:
    """Levels given as options (the user's values, not the file's) that do not fit the bit
    depth: a usage error now, before any frame is read."""
    if black_level is None and white_level is None:
        return
    depth, black = params["bit_depth"], params["black_level"]
    white = (1 << depth) - 1 if params["white_level"] is None else params["white_level"]
    try:
        check_levels(black, white, depth)
    except GputrackError as err:
        if white_level is None:  # only the black level was given (all the CLI can give)
            raise UsageError(f"{name}: --black-level {black}: {depth}-bit data takes a black "
                             f"level from 0 to {white - 1}, below its white level") from None
        raise UsageError(f"{name}: {err}") from None


class RawFileSource(Source):
    """Headerless little-endian uint16 RAW files, one frame per file (one file or a folder).

    ``size`` (``WxH``), ``bit_depth`` (default 12), ``pattern`` (default RGGB) and
    ``black_level`` come from the options, else from the file names (``_1920x1080_``,
    ``_10bit``, ``_rggb``), read for every file: files whose names state different values
    are an error (a stream has one format); a file whose name states none takes the others'.
    Each file's byte size is checked up front.
    """

    kind = "raw"

    def __init__(self, files: Sequence[Path], name: str, size: Any = None, bit_depth: Any = None,
                 pattern: Any = None, black_level: Any = None, white_level: Any = None,
                 fps: float | None = None, frames: int | None = None, loop: bool = False) -> None:
        self.files = list(files)
        asked = (("size", size), ("bit_depth", bit_depth), ("pattern", pattern))
        hint = name_hints(self.files, name, [k for k, v in asked if v is None])
        from_name = size is None and "size" in hint
        size = size if size is not None else hint.get("size")
        if size is None:
            raise GputrackError(f"{name}: a headerless .raw needs its size (--size WxH); "
                                f"{self.files[0].stat().st_size} bytes could be many sizes")
        w, h = parse_size(size, f"{name}: size")
        self.params = _raw_params(
            name, bit_depth if bit_depth is not None else hint.get("bit_depth"),
            pattern if pattern is not None else hint.get("pattern"), black_level, white_level)
        check_given_levels(name, self.params, black_level, white_level)
        if w % 2 or h % 2:
            raise GputrackError(f"{name}: RAW size {w}x{h} is odd; a Bayer frame needs even "
                                "width and height")
        need = w * h * 2
        for f in self.files:
            got = f.stat().st_size
            if got != need:
                fits = ""
                if got and got % (2 * h) == 0:
                    fits = f" (that would be {got // (2 * h)}x{h})"
                elif got and got % (2 * w) == 0:
                    fits = f" (that would be {w}x{got // (2 * w)})"
                why = ("; the size comes from the file name: the file is truncated or "
                       "misnamed (--size overrides the name)" if from_name else "; check --size")
                raise GputrackError(f"{f}: {got} bytes, but {w}x{h} 16-bit RAW needs {need}"
                                    f"{fits}{why}")
        super().__init__(name, fps or 30.0, (w, h), is_raw=True, num_frames=len(self.files),
                         frames=frames, loop=loop)
        self._k = 0

    def _read(self) -> Frame | None:
        if self._k >= len(self.files):
            return None
        k = self._k
        self._k += 1
        path = self.files[k]
        w, h = self.size
        try:
            data = np.fromfile(path, dtype="<u2", count=w * h).astype(np.uint16, copy=False)
        except OSError as err:  # gone or unreadable since the start: name the file
            raise GputrackError(f"{path}: {err.strerror or err}") from None
        if data.size != w * h:
            raise GputrackError(f"{path}: file shrank while reading ({data.size * 2} bytes)")
        raw = _make_raw(str(path), data.reshape(h, w), self.params, k, k / self.fps)
        return Frame(k, k / self.fps, raw=raw, meta={"file": str(path)})

    def _rewind(self) -> bool:
        self._k = 0
        return True
