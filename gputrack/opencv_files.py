"""Image files through Python's file I/O and OpenCV's codecs in memory.

OpenCV's own file functions take the name as UTF-8: a name that is not (bytes the file
system allows, such as Latin-1 from an old camera card) crashes the process inside OpenCV.
Reading the bytes with Python and decoding them in memory takes any name; a video, which
OpenCV must open itself, gets a clear error instead (`opencv_name`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from gputrack.errors import GputrackError


def read_image(path: str | Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """As `cv2.imread(path, flags)`: the decoded image, or None where there is none."""
    try:
        data = np.fromfile(Path(path), np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    try:
        return cv2.imdecode(data, flags)
    except cv2.error:
        return None


def encode_image(suffix: str, image: np.ndarray) -> bytes | None:
    """The file's bytes in the format `suffix` names ('.png'), or None where OpenCV cannot
    write that format or this image in it (a colour image as .pgm)."""
    try:
        ok, buf = cv2.imencode(suffix, image)
    except cv2.error:
        return None
    return buf.tobytes() if ok else None


def can_write_colour(suffix: str) -> bool:
    """Whether OpenCV writes an 8-bit colour image as `suffix` (checked by encoding one)."""
    return encode_image(suffix, np.full((16, 16, 3), 128, np.uint8)) is not None


def opencv_name(path: str | Path, what: str) -> str:
    """`path` as the string OpenCV's video functions take; a name that is not UTF-8 is a
    `GputrackError` rather than a crash."""
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise GputrackError(f"{what} {name!r}: OpenCV cannot open a file whose name is not "
                            "UTF-8; rename it") from None  # fmt: skip
    return name
