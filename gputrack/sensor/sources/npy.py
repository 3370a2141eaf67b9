"""``.npy`` arrays of RAW (uint16) or RGB (uint8) frames: :class:`NpySource`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gputrack.errors import GputrackError
from gputrack.sensor.sources.base import Frame, Source, _make_raw, _raw_params
from gputrack.sensor.sources.raw_files import check_given_levels, name_hints


class NpySource(Source):
    """``.npy`` arrays (one file or a folder): ``uint16[H, W]`` or ``uint16[N, H, W]`` are RAW
    frames, ``uint8[H, W, 3]`` or ``uint8[N, H, W, 3]`` are RGB frames. RAW frames take their
    bit depth and pattern from the options, else from the file names (``_10bit``, ``_bggr``)
    as headerless ``.raw`` files do."""

    kind = "npy"

    def __init__(self, files: Sequence[Path], name: str, bit_depth: Any = None,
                 pattern: Any = None, black_level: Any = None, white_level: Any = None,
                 fps: float | None = None, frames: int | None = None, loop: bool = False) -> None:
        self.files = list(files)
        shapes = [self._load(f) for f in self.files]
        first_raw = shapes[0][0]
        first_hw = shapes[0][1]
        for f, (is_raw, hw, _) in zip(self.files, shapes, strict=True):
            if is_raw != first_raw or hw != first_hw:
                raise GputrackError(f"{f}: holds {'RAW' if is_raw else 'RGB'} {hw[1]}x{hw[0]}, "
                                    f"unlike {self.files[0].name}")
        self._counts = [n for _, _, n in shapes]
        self.params: dict[str, Any] | None = None
        # RAW: the bit depth and pattern a name states, as a .raw's (the array has its shape);
        # an RGB array's pattern and depth are the sensor model's, not the file's
        if first_raw:
            asked = (("bit_depth", bit_depth), ("pattern", pattern))
            hint = name_hints(self.files, name, [k for k, v in asked if v is None])
            self.params = _raw_params(
                name, bit_depth if bit_depth is not None else hint.get("bit_depth"),
                pattern if pattern is not None else hint.get("pattern"), black_level,
                white_level)
            check_given_levels(name, self.params, black_level, white_level)
        super().__init__(name, fps or 30.0, (first_hw[1], first_hw[0]), is_raw=first_raw,
                         num_frames=sum(self._counts), frames=frames, loop=loop)
        self._k = 0  # file
        self._j = 0  # frame within the file
        self._i = 0  # frame overall
        self._arr: np.ndarray | None = None

    @staticmethod
    def _open(path: Path) -> np.ndarray:
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except OSError as err:  # gone or unreadable: name the file, not the folder
            raise GputrackError(f"{path}: {err.strerror or err}") from None
        except (ValueError, EOFError) as err:
            raise GputrackError(f"{path}: not a readable .npy array ({err})") from None

    def _load(self, path: Path) -> tuple[bool, tuple[int, int], int]:
        """(is_raw, (h, w), frames) of one file, or a clear error."""
        a = self._open(path)
        if a.dtype.kind == "u" and a.dtype.itemsize == 2 and a.ndim == 3 and a.shape[-1] == 3:
            # read as RAW it would be H frames of an odd Wx3 mosaic: say what it is instead
            raise GputrackError(f"{path}: array {a.dtype}{list(a.shape)} is a 16-bit RGB "
                                "image; RGB frames are uint8 HxWx3 (scale it, e.g. >> 8), "
                                "RAW frames uint16 HxW or NxHxW")  # fmt: skip
        if a.dtype.kind == "u" and a.dtype.itemsize == 2 and a.ndim in (2, 3):  # either order
            return True, a.shape[-2:], 1 if a.ndim == 2 else a.shape[0]
        if a.dtype == np.uint8 and a.ndim in (3, 4) and a.shape[-1] == 3:
            return False, a.shape[-3:-1], 1 if a.ndim == 3 else a.shape[0]
        raise GputrackError(
            f"{path}: array {a.dtype}{list(a.shape)} is neither a RAW frame (uint16 HxW or "
            "NxHxW) nor an RGB image (uint8 HxWx3 or NxHxWx3)")

    def _read(self) -> Frame | None:
        while self._k < len(self.files) and self._j >= self._counts[self._k]:
            self._k += 1
            self._j = 0
            self._arr = None
        if self._k >= len(self.files):
            return None
        path = self.files[self._k]
        if self._arr is None:
            self._arr = self._open(path)
        a = self._arr
        one = a.ndim == (2 if self.is_raw else 3)
        # a copy (the map stays read-only), in this machine's byte order
        data = np.array(a if one else a[self._j], dtype=np.uint16 if self.is_raw else np.uint8)
        i = self._i
        self._j += 1
        self._i += 1
        t = i / self.fps
        meta = {"file": str(path)}
        if self.is_raw:
            assert self.params is not None
            return Frame(i, t, raw=_make_raw(str(path), data, self.params, i, t), meta=meta)
        return Frame(i, t, image=data, meta=meta)

    def _rewind(self) -> bool:
        self._k = self._j = self._i = 0
        self._arr = None
        return True
