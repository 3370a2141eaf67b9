"""Sources of frames behind one interface: the synthetic world, video files, webcams, image
folders and RAW files (headerless ``.raw``, ``.npy``, DNG and camera RAW through rawpy).

``open_source(spec, **options)`` picks the kind from the spec. A source is an iterator of
:class:`Frame` (each with ``index``, ``timestamp`` and either an RGB ``image`` or a
:class:`RawFrame`), has ``fps`` and ``size``, and closes as a context manager.

Bad input is a :class:`GputrackError` naming the input. Frames that cannot be read:

- live input (webcam, a URL without a frame count): the frame is skipped and counted in
  ``dropped``;
  only ``max_drops`` failed reads in a row (default 30, about a second) end the run, with an
  error, because the camera is then gone;
- a video file: a frame that fails to decode before the end is skipped and counted in
  ``dropped`` (the decoder resumes at the next frame, and frame indices keep the gap so
  timing stays true); if ``max_drops`` reads in a row fail, the source ends cleanly there and
  says why in ``end_reason``;
- an image folder: an unreadable image is skipped and counted the same way.
RAW files are different: a file whose size, bit depth or pattern is wrong is a configuration
error, never skipped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gputrack.errors import GputrackError, UsageError
from gputrack.sensor.sources.base import (
    CAMERA_RAW_EXTS,
    FOLDER_FRAME_EXTS,
    IMAGE_EXTS,
    KNOWN_OPTIONS,
    MAX_FPS,
    MIN_FPS,
    NAMED_SIZES,
    URL,
    Frame,
    Source,
    _files_in,
    _float,
    _int,
    natural_key,
    parse_size,
)
from gputrack.sensor.sources.camera_raw import CameraRawSource
from gputrack.sensor.sources.images import ImageFolderSource
from gputrack.sensor.sources.npy import NpySource
from gputrack.sensor.sources.raw_files import RawFileSource, is_headerless_raw
from gputrack.sensor.sources.synthetic_spec import (
    SYNTHETIC_KEYS,
    SyntheticSource,
    _open_synthetic,
    is_synthetic,
)
from gputrack.sensor.sources.video import MAX_WEBCAM, VideoSource, _open_webcam

__all__ = [
    "CAMERA_RAW_EXTS", "FOLDER_FRAME_EXTS", "IMAGE_EXTS", "KNOWN_OPTIONS", "MAX_FPS",
    "MAX_WEBCAM", "MIN_FPS", "NAMED_SIZES", "SYNTHETIC_KEYS", "URL", "CameraRawSource", "Frame",
    "ImageFolderSource", "NpySource", "RawFileSource", "Source", "SyntheticSource", "VideoSource",
    "is_headerless_raw", "is_synthetic", "natural_key", "open_source", "parse_size",
]


def open_source(spec: str | None = None, **options: Any) -> Source:
    """Open a source from a spec; options as the CLI passes them (``None`` means unset).

    - ``None``, ``synthetic`` or ``synthetic:1920x1080@60,seed=3,objects=12,
      classes=person+car,ring=60,frames=300``: the synthetic world (:func:`is_synthetic`);
      an empty spec is a usage error;
    - ``0`` to ``99``: a webcam; ``rtsp://…`` and other URLs: a live stream, unless OpenCV
      reports a frame count (``file://…``, ``http://…/clip.mp4``): then a file;
    - a folder: its images, or its ``.raw`` / ``.npy`` / camera RAW files, in natural order;
    - ``*.raw``: headerless RAW (``size``, ``bit_depth``, ``pattern``, ``black_level``);
    - ``*.npy``: RAW (uint16) or RGB (uint8) arrays;
    - ``*.dng`` and camera RAW (``.cr2``, ``.nef``, ``.arw``…): through rawpy;
    - an image file: a one-frame source; anything else: a video file through OpenCV.
    Common options: ``fps`` (where the input has none), ``frames`` (stop after N),
    ``loop`` (restart finite inputs), ``max_drops`` (video/webcam).
    """
    opts = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(opts) - KNOWN_OPTIONS)
    if unknown:
        raise GputrackError(f"unknown source option(s) {', '.join(unknown)} (known: "
                            f"{', '.join(sorted(KNOWN_OPTIONS))})")
    synthetic = is_synthetic(spec)
    text = "synthetic" if spec is None else str(spec)
    common = {k: opts[k] for k in ("frames", "loop") if k in opts}
    if "frames" in common:
        common["frames"] = _int(common["frames"], "frames", text)
    fps = _float(opts["fps"], "fps", text) if "fps" in opts else None

    if synthetic:  # every error here is in the spec or the options: a usage error
        try:
            return _open_synthetic(text, opts, fps)
        except UsageError:
            raise
        except GputrackError as err:
            raise UsageError(str(err)) from None
    if re.fullmatch(r"[0-9]+", text):  # ASCII digits only ('²' is a digit to str.isdigit)
        return _open_webcam(text, opts, fps, common.get("frames"))
    if URL.match(text):
        return VideoSource(text, live=None, max_drops=opts.get("max_drops"), fps=fps,
                           **common)

    path = Path(text).expanduser()
    if not path.exists():
        like = text.strip().lower()
        hint = (" (the synthetic world is spelled 'synthetic' or 'synthetic:...', lower case, "
                "no spaces)" if like == "synthetic" or like.startswith("synthetic:") else "")
        raise GputrackError(f"input '{text}' not found{hint}")
    raw_opts = {k: opts.get(k) for k in ("bit_depth", "pattern", "black_level", "white_level")}
    if path.is_dir():
        files = _files_in(path)
        groups = {
            "images": [f for f in files if f.suffix.lower() in IMAGE_EXTS],
            "raw": [f for f in files if f.suffix.lower() == ".raw"],
            "npy": [f for f in files if f.suffix.lower() == ".npy"],
            "camera": [f for f in files if f.suffix.lower() in CAMERA_RAW_EXTS],
        }
        found = [k for k, v in groups.items() if v]
        if not found:
            raise GputrackError(f"folder '{text}' has no images, .raw, .npy or DNG/camera RAW "
                                "files")
        if len(found) > 1:
            raise GputrackError(f"folder '{text}' mixes {' and '.join(found)} files; put one "
                                "kind per folder")
        kind, members = found[0], groups[found[0]]
    else:
        ext = path.suffix.lower()
        kind = ("raw" if ext == ".raw" else "npy" if ext == ".npy" else
                "camera" if ext in CAMERA_RAW_EXTS else "images" if ext in IMAGE_EXTS else "video")
        members = [path]
    name = text
    try:
        if kind == "images":
            return ImageFolderSource(members, name, fps=fps, **common)
        if kind == "raw":
            return RawFileSource(members, name, size=opts.get("size"), fps=fps, **raw_opts,
                                 **common)
        if kind == "npy":
            return NpySource(members, name, fps=fps, **raw_opts, **common)
        if kind == "camera":
            stated = [k for k in ("pattern", "bit_depth", "black_level", "white_level")
                      if opts.get(k) is not None]
            if stated:
                flags = ", ".join(f"--{k.replace('_', '-')}" for k in stated)
                raise UsageError(f"{name}: a DNG/camera RAW file states its own Bayer pattern, "
                                 f"bit depth (its white level's), black and white level; "
                                 f"{flags} does not apply")  # fmt: skip
            return CameraRawSource(members, name, fps=fps, **common)
        return VideoSource(str(path), live=False, fps=fps, max_drops=opts.get("max_drops"),
                           **common)
    except OSError as err:  # name the file that failed (a folder's broken link), not the folder
        raise GputrackError(f"{err.filename or name}: {err.strerror or err}") from None
