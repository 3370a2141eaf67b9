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


# The first bytes of the still-image formats OpenCV decodes. A file that starts so but does
# not decode is a damaged image: it must not go on to FFmpeg as a video, which decodes what it
# can of a truncated JPEG and pads the rest silently. (Not GIF: OpenCV before 4.11 has no GIF
# decoder, and FFmpeg's is the one that reads it there.)
_IMAGE_MAGIC = (
    b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+",
    b"BM", b"\x00\x00\x00\x0cjP  ", b"\xffO\xffQ", b"#?RADIANCE", b"#?RGBE", b"v/1\x01",
)  # fmt: skip


def looks_like_image(path: str | Path) -> bool:
    """Whether the file starts as a still image (PNG, JPEG, TIFF, BMP, WebP, ...) does."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return True
    return head.startswith(_IMAGE_MAGIC)


def read_rgb(
    path: str | Path, floats: bool = False, transparency: bool = True
) -> tuple[np.ndarray, list[str]] | None:
    """An image file (or a uint8/uint16 H x W x 3 .npy) as RGB, as a viewer shows it: EXIF
    orientation applied, 8 or 16 bits kept, grey and palette images as RGB; with notes on
    what the colour channels leave out (transparency). None where the file is no image
    OpenCV decodes. A float image (TIFF, EXR, HDR, float .npy) only with `floats`, as the
    caller says what its values mean; else it is an error. `transparency=False` skips the
    second decode that looks for it (a folder's later frames)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise GputrackError(f"{path}: not a readable .npy array ({err})") from None
        kind_ok = (arr.dtype.kind == "u" and arr.itemsize <= 2) or (floats and
                                                                    arr.dtype.kind == "f")
        if arr.ndim != 3 or arr.shape[2] != 3 or not kind_ok:
            raise GputrackError(f"{path}: array {arr.dtype.str}{list(arr.shape)} is not an RGB "
                                "image (uint8 or uint16 H x W x 3)")  # fmt: skip
        return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("=")), []
    try:
        data = np.fromfile(path, np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    try:
        # ANYDEPTH|ANYCOLOR applies the EXIF orientation, as IMREAD_COLOR does, but keeps
        # 16 bits; IMREAD_UNCHANGED would keep alpha but leave a phone photo on its side
        img = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    except cv2.error:
        img = None
    if img is None:
        return None
    if img.dtype not in (np.uint8, np.uint16) and not (floats and img.dtype.kind == "f"):
        raise GputrackError(f"{path}: {img.dtype} images are not supported (8- or 16-bit; "
                            "gputrack isp develops float linear light into one)")  # fmt: skip
    notes = []
    if transparency and data[:3].tobytes() != b"\xff\xd8\xff":  # a JPEG has no alpha
        try:
            stored = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        except cv2.error:
            stored = None
        if stored is not None and stored.ndim == 3 and stored.shape[2] in (2, 4):
            alpha = stored[..., -1]
            opaque = np.iinfo(alpha.dtype).max if alpha.dtype.kind in "ui" else 1.0
            seen = float(np.mean(alpha < opaque))
            if seen:
                notes.append(f"{path}: has transparency (alpha below opaque in "
                             f"{100 * seen:.3g} % of its pixels); the alpha channel is "
                             "ignored (the colours are used as stored, not "
                             "composited)")  # fmt: skip
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img), notes
