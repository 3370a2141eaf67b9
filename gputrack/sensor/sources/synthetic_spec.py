"""The synthetic world as a source: :class:`SyntheticSource`, and the spec that names it
(``synthetic:WxH@FPS,key=value,...``, recognised by :func:`is_synthetic`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from gputrack.errors import GputrackError, UsageError
from gputrack.sensor.sources.base import Frame, Source, _float, _int, parse_size
from gputrack.sensor.synthetic import (
    ALL_CLASSES,
    MAX_OBJECTS,
    MAX_SEED,
    FrameRing,
    SyntheticWorld,
)

# Keys of the synthetic spec string (``synthetic:WxH@FPS,key=value,...``); "size" and "fps"
# may also be written as keys. "loop" is not one: the synthetic world is endless.
SYNTHETIC_KEYS = ("size", "fps", "seed", "objects", "num_objects", "classes", "ring", "frames")


def is_synthetic(spec: str | None) -> bool:
    """Whether ``spec`` names the synthetic world: ``None`` (no input given), exactly
    ``synthetic``, or ``synthetic:...`` (lower case, no spaces). The one test every caller
    uses. Any other spelling (``Synthetic``, `` synthetic``) is a path like any other.

    An empty or blank spec is a :class:`UsageError`: it is more likely a mistake (an unset
    shell variable) than a request for the default.
    """
    if spec is None:
        return True
    text = str(spec)
    if not text.strip():
        raise UsageError(f"source {text!r} is empty: give a file, a folder, a webcam index, "
                         "a URL or 'synthetic'")  # fmt: skip
    return text == "synthetic" or text.startswith("synthetic:")


class SyntheticSource(Source):
    """The synthetic world; endless unless ``frames`` is given. Frames carry ground truth.

    With ``ring=N`` the first N frames are rendered once and replayed (for benchmarks at 4K).
    """

    kind = "synthetic"

    def __init__(self, size: tuple[int, int] = (1280, 720), fps: float = 30.0, seed: int = 0,
                 num_objects: int = 8, classes: Sequence[str] = ALL_CLASSES,
                 ring: int | None = None, frames: int | None = None,
                 name: str = "synthetic") -> None:
        super().__init__(name, fps, size, frames=frames)
        try:
            self.world = SyntheticWorld(size[0], size[1], fps, seed, num_objects, classes)
            self.ring: FrameRing | None = (None if ring is None
                                           else self.world.prerender(int(ring)))  # fmt: skip
        except GputrackError as err:  # the world's own checks (size bounds): name the spec
            raise type(err)(f"{name}: {err}") from None
        self.class_names = self.world.class_names
        self._i = 0

    def _read(self) -> Frame:
        i = self._i
        self._i += 1
        if self.ring is not None:
            image, truth = self.ring[i], self.ring.ground_truth(i)  # read-only view, no copy
        else:
            image, truth = self.world.render(i), self.world.ground_truth(i)
        return Frame(i, i / self.fps, image=image, truth=truth)


def _parse_synthetic(spec: str) -> dict[str, Any]:
    """``synthetic[:WxH|720p|4k][@FPS][,key=value...]`` → constructor arguments."""
    out: dict[str, Any] = {}
    _, _, rest = spec.partition(":")
    for token in filter(None, (t.strip() for t in rest.split(","))):
        if "=" in token:
            key, _, value = token.partition("=")
            _put(out, key.strip().lower(), value.strip(), spec)
            continue
        size, _, fps = token.partition("@")
        if size:
            _put(out, "size", size, spec)
        if fps:
            _put(out, "fps", fps, spec)
    if "objects" in out and "num_objects" in out:
        raise GputrackError(f"{spec}: objects and num_objects are one option; give it once")
    return out


def _put(out: dict[str, Any], key: str, value: str, spec: str) -> None:
    """A key given twice (seed=1,seed=2; 720p,size=...) is a mistake, not a choice."""
    if key in out:
        raise GputrackError(f"{spec}: {key} is given twice ({out[key]} and {value})")
    out[key] = value


def _seed(value: Any, where: str) -> int:
    seed = _int(value, "seed", where)
    if not 0 <= seed <= MAX_SEED:  # 64-bit: a larger one would wrap onto a smaller one
        raise GputrackError(f"{where}: seed={value!r} must be from 0 to 2**64 - 1")
    return seed


def _open_synthetic(spec: str, opts: dict[str, Any], fps: float | None) -> SyntheticSource:
    parsed = _parse_synthetic(spec)
    unknown = sorted(set(parsed) - set(SYNTHETIC_KEYS))
    if unknown:
        raise GputrackError(f"{spec}: unknown synthetic option(s) {', '.join(unknown)} "
                            f"(known: WxH@FPS, {', '.join(SYNTHETIC_KEYS)})")
    merged = {**parsed, **opts}  # explicit options win over the spec string
    size = parse_size(merged.get("size", (1280, 720)), f"{spec}: size")
    rate = fps if fps is not None else (_float(merged["fps"], "fps", spec)
                                        if "fps" in merged else 30.0)
    classes = merged.get("classes", ALL_CLASSES)
    if isinstance(classes, str):
        classes = [c for c in re.split(r"[+ ;|/]", classes) if c]
    objects = _int(merged.get("num_objects", merged.get("objects", 8)), "objects", spec)
    if not 0 <= objects <= MAX_OBJECTS:
        raise GputrackError(f"{spec}: objects={objects} must be from 0 to {MAX_OBJECTS}")
    ring = _int(merged["ring"], "ring", spec) if "ring" in merged else None
    if ring is not None and ring < 1:  # leave ring out to render every frame
        raise GputrackError(f"{spec}: ring={ring} must be at least 1 (leave it out to render "
                            "every frame)")  # fmt: skip
    return SyntheticSource(
        size=size, fps=rate, seed=_seed(merged.get("seed", 0), spec),
        num_objects=objects, classes=classes, ring=ring,
        frames=_int(merged["frames"], "frames", spec) if "frames" in merged else None,
        name=spec,
    )
