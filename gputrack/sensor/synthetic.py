"""The synthetic world: the default source, with ground truth for every frame.

Objects of a few classes (person, car, ball) move along curved paths through the frame,
change speed and size, pass in front of each other and enter and leave, over a textured,
slowly changing background under changing light. Everything is a closed-form function of
time and of a per-object random draw keyed on ``(seed, slot, life)``, so any frame can be
rendered directly (``render(i)`` never depends on earlier calls) and the same seed gives
bit-identical frames. Positions are fractions of the frame and sizes fractions of its height,
so the same seed shows the same scene at 720p and at 4K.
"""

from __future__ import annotations

import bisect
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from gputrack.errors import GputrackError
from gputrack.sensor.frame import MAX_FPS, MIN_FPS

ALL_CLASSES = ("person", "car", "ball")

# Size of each class relative to the frame height at depth 1: (box height, width / height).
_CLASS_SIZE = {"person": (0.42, 0.40), "car": (0.26, 2.3), "ball": (0.13, 1.0)}
_CLASS_WEIGHT = {"person": 0.2, "car": 0.45, "ball": 0.35}
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel positions, so motion is smooth at any size
_ONE = 1 << _SHIFT
# Bounds that keep one world's setup within seconds and memory within a few GB: each side
# 16 to 16384 pixels and at most 40 MP in all (8K, 7680x4320, is 33.2 MP); at most 256
# objects (the exact visibility is quadratic in them: 256 take about 0.2 s a frame).
MIN_SIDE, MAX_SIDE, MAX_PIXELS = 16, 16384, 40_000_000
MAX_OBJECTS = 256
# Seeds are 64-bit (the sensor model's noise hashes them as such): 0 to 2**64 - 1.
MAX_SEED = 2**64 - 1
# Each object's lives form a chain (one starts where the last one's gap ends), about one
# life every 10 s. A run keeps the last LIVES_KEPT of each object's lives and every
# LIFE_MARK-th one, from which an earlier frame's are made again: a day at 8 objects is
# ~80 000 lives (70 MB kept whole), now a few hundred.
LIVES_KEPT, LIFE_MARK = 64, 1024


@dataclass(frozen=True)
class _Life:
    """One appearance of one object: from entering the frame to leaving it."""

    id: int
    cls: int  # index into the world's class_names
    kind: str  # class name
    t0: float  # start of the path (object outside the frame)
    dur: float  # seconds along the path
    t_next: float  # start of the slot's next life (after a gap)
    ctrl: np.ndarray  # (4, 2) cubic Bezier control points, in frame fractions
    warp_a: float  # speed change: amplitude of the time warp (|a| < 1 keeps it monotonic)
    warp_m: int  # speed change: number of slow/fast cycles along the path
    depth0: float  # base distance (1 = near, 3 = far): sets size and draw order
    depth_b: float  # relative depth swing (objects approach and recede)
    depth_f: float  # depth swing cycles along the path
    depth_p: float  # depth swing phase
    bounce: float  # balls: bounce height in frame heights
    colors: np.ndarray  # (3, 3) float RGB: the class's primary, secondary, accent colours
    gait: float  # person stride / ball spin rate


def _start(life: _Life) -> float:
    return life.t0


def _bezier(ctrl: np.ndarray, u: float) -> tuple[np.ndarray, np.ndarray]:
    """Point and tangent of a cubic Bezier at u in [0, 1]."""
    v = 1.0 - u
    p = v**3 * ctrl[0] + 3 * v * v * u * ctrl[1] + 3 * v * u * u * ctrl[2] + u**3 * ctrl[3]
    dc = np.diff(ctrl, axis=0)
    d = 3 * v * v * dc[0] + 6 * v * u * dc[1] + 3 * u * u * dc[2]
    return p, d


def _fbm(rng: np.random.Generator, h: int, w: int, octaves: int = 5) -> np.ndarray:
    """Smooth fractal noise in [0, 1] at h x w (low-res random grids, upsampled and summed)."""
    out = np.zeros((h, w), np.float32)
    total = 0.0
    for o in range(octaves):
        cells = 3 * 2**o
        gh, gw = max(2, cells * h // max(h, w) + 2), max(2, cells * w // max(h, w) + 2)
        grid = rng.random((gh, gw), dtype=np.float32)
        amp = 0.55**o
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


@dataclass
class ObjectState:
    """One object at one instant: the full (unclipped) box in pixels and how to draw it."""

    life: _Life
    box: np.ndarray  # x1, y1, x2, y2 in pixels, not clipped to the frame
    depth: float
    facing: int  # +1 moving right, -1 moving left
    phase: float  # animation phase (legs, spin)


class SyntheticWorld:
    """A deterministic synthetic scene with per-frame ground truth.

    ``render(i)`` gives ``uint8[H, W, 3]`` RGB; ``ground_truth(i)`` gives ``float32[N, 7]``
    rows ``x1, y1, x2, y2, id, class, visibility`` for the objects at least partly in the frame.
    Boxes are clipped to the frame; visibility is the fraction of the object's whole box that
    is inside the frame and not covered by the boxes of nearer objects. ``class`` indexes
    ``class_names``. Ids never repeat: an object that leaves comes back as a new id.
    """

    def __init__(
        self,
        width: int = 1280,
        height: int = 720,
        fps: float = 30.0,
        seed: int = 0,
        num_objects: int = 8,
        classes: Sequence[str] = ALL_CLASSES,
    ) -> None:
        # The API's own checks (the spec parser checks its text before): whole numbers stay
        # whole (100.7 would render a 100-pixel world), a rate the sources allow
        for name, value in (("width", width), ("height", height), ("seed", seed),
                            ("num_objects", num_objects)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise GputrackError(f"synthetic world {name} {value!r}: a whole number")
        if isinstance(classes, str):  # "car" would be the classes c, a and r
            raise GputrackError(f"synthetic world classes {classes!r}: a list of names, such "
                                "as ['car']")  # fmt: skip
        if not MIN_FPS <= fps <= MAX_FPS:  # NaN fails too; 1e-9 fps built lives for ages
            raise GputrackError(f"synthetic world fps {fps} must be from {MIN_FPS:g} to "
                                f"{MAX_FPS:g}")  # fmt: skip
        if width < MIN_SIDE or height < MIN_SIDE:
            raise GputrackError(f"synthetic world size {width}x{height} is too small (min 16x16)")
        if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
            raise GputrackError(
                f"synthetic world size {width}x{height} is too large (each side at most "
                f"{MAX_SIDE}, at most {MAX_PIXELS / 1e6:g} MP in all; 8K is 7680x4320)"
            )
        if not 0 <= num_objects <= MAX_OBJECTS:
            raise GputrackError(
                f"synthetic world num_objects {num_objects} must be from 0 to {MAX_OBJECTS}"
            )
        if not 0 <= int(seed) <= MAX_SEED:
            raise GputrackError(f"synthetic world seed {seed} must be from 0 to 2**64 - 1")
        classes = tuple(str(c).lower() for c in classes)
        bad = [c for c in classes if c not in ALL_CLASSES]
        twice = sorted({c for c in classes if classes.count(c) > 1})
        if twice:  # a class numbered twice in the truth, drawn twice as often
            raise GputrackError(f"synthetic world classes {list(classes)}: {', '.join(twice)} "
                                "given more than once")  # fmt: skip
        if bad or not classes:
            raise GputrackError(
                f"synthetic world classes {list(classes)}: choose from {', '.join(ALL_CLASSES)}"
            )
        self.width, self.height = int(width), int(height)
        self.fps = float(fps)
        self.seed = int(seed)
        self.num_objects = int(num_objects)
        self.class_names: tuple[str, ...] = classes
        self._lives: list[list[_Life]] = [[] for _ in range(self.num_objects)]  # recent
        self._marks: list[list[_Life]] = [[] for _ in range(self.num_objects)]  # k % LIFE_MARK
        self._bg: tuple[np.ndarray, np.ndarray] | None = None  # built on first render
        self._margin = max(2, int(round(0.04 * self.height)))

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    # ---- object timelines -------------------------------------------------------------

    def _new_life(self, slot: int, k: int, t0: float) -> _Life:
        # Each life has its own generator, so it is the same whatever was computed before.
        rng = np.random.default_rng([self.seed, 1, slot, k])
        # Slow classes stay longer in view, so they are drawn less often: a balanced mix.
        weights = np.array([_CLASS_WEIGHT[c] for c in self.class_names])
        cls = int(rng.choice(len(self.class_names), p=weights / weights.sum()))
        kind = self.class_names[cls]
        aspect = self.width / self.height
        depth0 = float(rng.uniform(1.0, 3.0))
        depth_b = float(rng.uniform(0.0, 0.3))
        h_rel, wh = _CLASS_SIZE[kind]
        # Largest half-extent this life can have, in frame fractions: start and end fully outside.
        hmax = h_rel / (depth0 * (1 - depth_b))
        mx = 0.5 * hmax * wh / aspect + 0.01
        my = 0.5 * hmax + 0.01 + (0.15 if kind == "ball" else 0.0)

        def inside(lo: float = 0.1, hi: float = 0.9) -> np.ndarray:
            if kind == "car":  # cars keep to a "road" band in the lower half
                return np.array([rng.uniform(lo, hi), rng.uniform(0.5, 0.85)])
            return np.array([rng.uniform(lo, hi), rng.uniform(0.25, 0.85)])

        def edge(side: int) -> np.ndarray:
            if side == 0:
                return np.array([-mx, rng.uniform(0.2, 0.85)])
            if side == 1:
                return np.array([1 + mx, rng.uniform(0.2, 0.85)])
            if side == 2:
                return np.array([rng.uniform(0.1, 0.9), -my])
            return np.array([rng.uniform(0.1, 0.9), 1 + my])

        if kind == "car":  # cars cross from side to side
            s_in = int(rng.integers(2))
            s_out = 1 - s_in
        else:
            s_in = int(rng.integers(4))
            s_out = int((s_in ^ 1) if rng.random() < 0.6 else rng.integers(4))
            if s_out == s_in:
                s_out = s_in ^ 1
        p0, p3 = edge(s_in), edge(s_out)
        if kind == "car":
            p0[1] = p3[1] = rng.uniform(0.55, 0.85)
        ctrl = np.stack([p0, inside(), inside(), p3])
        speed = {"person": 0.12, "car": 0.35, "ball": 0.3}[kind]  # frame widths per second
        length = float(np.linalg.norm(np.diff(ctrl, axis=0), axis=1).sum())
        dur = float(np.clip(length / (speed * rng.uniform(0.6, 1.5)), 2.0, 30.0))
        gap = float(rng.uniform(0.0, 3.0))
        palette = {
            "person": [rng.uniform(40, 230, 3), [225, 185, 150], rng.uniform(20, 90, 3)],
            "car": [rng.uniform(0, 255, 3), [60, 80, 100], [245, 225, 90]],
            "ball": [[250, 130, 30] if rng.random() < 0.5 else [240, 240, 240], [20, 20, 20],
                     [200, 40, 40]],
        }[kind]
        return _Life(
            id=1 + slot + k * self.num_objects,
            cls=cls,
            kind=kind,
            t0=t0,
            dur=dur,
            t_next=t0 + dur + gap,
            ctrl=ctrl,
            warp_a=float(rng.uniform(-0.8, 0.8)),
            warp_m=int(rng.integers(1, 4)),
            depth0=depth0,
            depth_b=depth_b,
            depth_f=float(rng.uniform(0.3, 1.5)),
            depth_p=float(rng.uniform(0, 2 * math.pi)),
            bounce=float(rng.uniform(0.05, 0.15)) if kind == "ball" else 0.0,
            colors=np.asarray(palette, np.float64),
            gait=float(rng.uniform(1.5, 3.0)),
        )

    def _life_at(self, slot: int, t: float) -> _Life | None:
        lives, marks = self._lives[slot], self._marks[slot]
        if not marks:
            # The first life starts part-way along its path, so frame 0 is already populated.
            first = self._new_life(slot, 0, 0.0)
            off = float(np.random.default_rng([self.seed, 2, slot]).uniform(0.05, 0.9)) * first.dur
            first = _Life(**{**first.__dict__, "t0": -off, "t_next": first.t_next - off})
            marks.append(first)
        if not lives or t < lives[0].t0:  # an earlier time: the chain again from a mark
            lives[:] = [marks[bisect.bisect_right(marks, t, key=_start) - 1]]
        while lives[-1].t_next <= t:  # extend lazily; each life is keyed, not chained
            k = self._life_number(lives[-1], slot) + 1
            nxt = self._new_life(slot, k, lives[-1].t_next)
            lives.append(nxt)
            if k == len(marks) * LIFE_MARK:
                marks.append(nxt)
            if len(lives) > LIVES_KEPT:
                del lives[0]
        life = lives[bisect.bisect_right(lives, t, key=_start) - 1]
        return life if t < life.t0 + life.dur else None

    def _life_number(self, life: _Life, slot: int) -> int:
        """k of `_new_life(slot, k, ...)`: ids count lives up slot by slot."""
        return (life.id - 1 - slot) // self.num_objects

    def objects(self, index: int) -> list[ObjectState]:
        """Every object alive at frame ``index`` (in or out of the frame), far to near."""
        if index < 0:
            raise GputrackError(f"synthetic frame index {index} must be >= 0")
        t = index / self.fps
        out: list[ObjectState] = []
        for slot in range(self.num_objects):
            life = self._life_at(slot, t)
            if life is None:
                continue
            tau = (t - life.t0) / life.dur
            m = life.warp_m
            u = tau + life.warp_a * math.sin(2 * math.pi * m * tau) / (2 * math.pi * m)
            p, d = _bezier(life.ctrl, u)
            depth = life.depth0 * (1 + life.depth_b * math.sin(2 * math.pi * life.depth_f * tau
                                                                + life.depth_p))
            h_rel, wh = _CLASS_SIZE[life.kind]
            bh = self.height * h_rel / depth
            bw = bh * wh
            cx, cy = p[0] * self.width, p[1] * self.height
            secs = t - life.t0
            if life.kind == "ball":  # bounces: the path is the floor, the ball hops above it
                cy -= self.height * life.bounce * abs(math.sin(math.pi * 1.5 * secs))
            box = np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
            facing = 1 if d[0] >= 0 else -1
            out.append(ObjectState(life, box, depth, facing, life.gait * secs * 2 * math.pi))
        out.sort(key=lambda o: -o.depth)
        return out

    # ---- ground truth -----------------------------------------------------------------

    def ground_truth(self, index: int) -> np.ndarray:
        """``float32[N, 7]``: x1, y1, x2, y2 (clipped), id, class, visibility; sorted by id."""
        objs = self.objects(index)
        W, H = self.width, self.height
        rows = []
        for i, o in enumerate(objs):
            x1, y1, x2, y2 = o.box
            if x2 <= 0 or y2 <= 0 or x1 >= W or y1 >= H:
                continue
            nearer = np.array([n.box for n in objs[i + 1:]]).reshape(-1, 4)
            vis = _visible_fraction(o.box, nearer, W, H)
            rows.append([max(x1, 0), max(y1, 0), min(x2, W), min(y2, H),
                         o.life.id, o.life.cls, vis])
        gt = np.array(rows, np.float32).reshape(-1, 7)
        return gt[np.argsort(gt[:, 4], kind="stable")]

    # ---- rendering --------------------------------------------------------------------

    def _background_layers(self) -> tuple[np.ndarray, np.ndarray]:
        """Two textures a little larger than the frame; frames pan over them and blend them."""
        if self._bg is None:
            m = self._margin
            h, w = self.height + 2 * m, self.width + 2 * m
            self._bg = (self._texture(h, w, 0), self._texture(h, w, 1))
        return self._bg

    def _texture(self, h: int, w: int, layer: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 3, layer])
        # Built at a fixed low resolution and scaled, so the scene is the same at every size.
        lh = 270
        lw = max(2, int(round(lh * w / h)))
        field = _fbm(rng, lh, lw)
        detail = _fbm(rng, lh, lw, octaves=3)
        sky = np.linspace(0, 1, lh, dtype=np.float32)[:, None]
        horizon = 0.35 + 0.05 * np.sin(np.linspace(0, 6, lw, dtype=np.float32))[None, :]
        ground = (sky > horizon).astype(np.float32)
        ground = cv2.GaussianBlur(ground, (0, 0), 1.5)
        warm = np.array([1.0, 0.95, 0.85], np.float32) if layer == 0 else np.array(
            [0.85, 0.95, 1.05], np.float32)
        sky_rgb = np.array([120, 160, 215], np.float32) * (0.85 + 0.3 * field[..., None])
        grass = np.array([70, 120, 55], np.float32) * (0.6 + 0.8 * field[..., None])
        pave = np.array([135, 130, 125], np.float32) * (0.75 + 0.5 * detail[..., None])
        mix = np.clip((detail - 0.45) * 4, 0, 1)[..., None]
        gr = grass * (1 - mix) + pave * mix
        low = (sky_rgb * (1 - ground[..., None]) + gr * ground[..., None]) * warm
        img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
        # Paving lines and fine grain at full resolution: texture for motion and detectors.
        step = max(8, h // 14)
        yy = np.arange(h)[:, None]
        xx = np.arange(w)[None, :]
        lines = ((yy % step) < max(1, step // 24)) | ((xx + (yy // step) * step // 2) % (2 * step)
                                                     < max(1, step // 24))
        ground_full = cv2.resize(ground, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
        img *= 1 - 0.25 * (lines[..., None] * ground_full)
        grain = rng.normal(0, 6, (h, w, 1)).astype(np.float32)
        img += grain
        return np.clip(img, 0, 255).astype(np.uint8)

    def lighting(self, index: int) -> float:
        """Global light level at frame ``index`` (1 = nominal): slow drift plus passing clouds."""
        t = index / self.fps
        r = np.random.default_rng([self.seed, 4]).uniform(0, 2 * math.pi, 3)
        g = 1.0 + 0.12 * math.sin(2 * math.pi * t / 23 + r[0]) + 0.06 * math.sin(
            2 * math.pi * t / 7.1 + r[1])
        cloud = 0.5 + 0.5 * math.tanh(4 * math.sin(2 * math.pi * t / 13 + r[2]))  # soft steps
        return g * (1 - 0.22 * cloud)

    def render(self, index: int, out: np.ndarray | None = None) -> np.ndarray:
        """Frame ``index`` as ``uint8[H, W, 3]`` RGB (written into ``out`` when given)."""
        if index < 0:
            raise GputrackError(f"synthetic frame index {index} must be >= 0")
        a, b = self._background_layers()
        t = index / self.fps
        m = self._margin
        H, W = self.height, self.width
        # Slow camera drift over layer a; layer b drifts differently (parallax); whole pixels,
        # so the background costs one blend pass.
        ax = int(round(m * (1 + math.sin(2 * math.pi * t / 29))))
        ay = int(round(m * (1 + 0.6 * math.sin(2 * math.pi * t / 37 + 1))))
        bx = int(round(m * (1 + math.sin(2 * math.pi * t / 41 + 2))))
        by = int(round(m * (1 + 0.6 * math.cos(2 * math.pi * t / 31))))
        w_b = 0.5 + 0.5 * math.sin(2 * math.pi * t / 60)
        g = self.lighting(index)
        if out is None:
            out = np.empty((H, W, 3), np.uint8)
        cv2.addWeighted(a[ay:ay + H, ax:ax + W], g * (1 - w_b), b[by:by + H, bx:bx + W],
                        g * w_b, 0.0, dst=out)
        for o in self.objects(index):
            x1, y1, x2, y2 = o.box
            if x2 <= 0 or y2 <= 0 or x1 >= W or y1 >= H:
                continue
            cols = [tuple(float(v) for v in np.clip(c * g, 0, 255)) for c in o.life.colors]
            _DRAW[o.life.kind](out, o, cols)
        return out

    def prerender(self, n: int, start: int = 0) -> FrameRing:
        """Render frames ``start .. start+n-1`` once, to replay from memory."""
        return FrameRing(self, n, start)


def _visible_fraction(box: np.ndarray, nearer: np.ndarray, W: int, H: int) -> float:
    """Area of ``box`` inside the frame and outside every ``nearer`` box, over its area.

    Exact: the box is cut into cells on every edge of the clipped boxes (coordinate
    compression), and each cell is either wholly covered or not.
    """
    x1, y1, x2, y2 = box
    area = (x2 - x1) * (y2 - y1)
    cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, W), min(y2, H)
    if cx2 <= cx1 or cy2 <= cy1 or area <= 0:
        return 0.0
    if len(nearer) == 0:
        return float((cx2 - cx1) * (cy2 - cy1) / area)
    n = np.clip(nearer, [cx1, cy1, cx1, cy1], [cx2, cy2, cx2, cy2])
    xs = np.unique(np.concatenate([[cx1, cx2], n[:, 0], n[:, 2]]))
    ys = np.unique(np.concatenate([[cy1, cy2], n[:, 1], n[:, 3]]))
    mx = 0.5 * (xs[:-1] + xs[1:])
    my = 0.5 * (ys[:-1] + ys[1:])
    covered = np.zeros((len(my), len(mx)), bool)
    for bx1, by1, bx2, by2 in n:
        covered |= ((my > by1) & (my < by2))[:, None] & ((mx > bx1) & (mx < bx2))[None, :]
    cell = np.diff(ys)[:, None] * np.diff(xs)[None, :]
    return float(cell[~covered].sum() / area)


# ---- drawing: each class has its own silhouette, colours and texture ----------------------


def _pts(xy: Sequence[tuple[float, float]]) -> np.ndarray:
    return (np.asarray(xy, np.float64) * _ONE).round().astype(np.int32)


def _poly(img: np.ndarray, xy: Sequence[tuple[float, float]], col: tuple) -> None:
    cv2.fillPoly(img, [_pts(xy)], col, cv2.LINE_AA, _SHIFT)


def _disc(img: np.ndarray, c: tuple[float, float], r: float, col: tuple) -> None:
    cc = (int(round(c[0] * _ONE)), int(round(c[1] * _ONE)))
    cv2.circle(img, cc, max(1, int(round(r * _ONE))), col, -1, cv2.LINE_AA, _SHIFT)


def _draw_person(img: np.ndarray, o: ObjectState, cols: list[tuple]) -> None:
    shirt, skin, trousers = cols
    x1, y1, x2, y2 = o.box
    w, h = x2 - x1, y2 - y1
    cx = 0.5 * (x1 + x2)
    # legs swing with the walk
    s = math.sin(o.phase)
    hip = y1 + 0.55 * h
    for sign in (-1, 1):
        fx = cx + sign * 0.22 * w * s
        _poly(img, [(cx - 0.17 * w, hip), (cx + 0.17 * w, hip), (fx + 0.1 * w, y2),
                    (fx - 0.1 * w, y2)], trousers)
    # torso: shoulders span the box, striped shirt
    top = y1 + 0.22 * h
    waist = hip + 0.02 * h
    _poly(img, [(x1, top), (x2, top), (cx + 0.3 * w, waist), (cx - 0.3 * w, waist)], shirt)
    dark = tuple(0.55 * v for v in shirt)
    n = 4
    for k in range(n):
        ya = top + (k + 0.5) * (hip - top) / n
        yb = ya + 0.4 * (hip - top) / n
        fa = (ya - top) / (hip - top)
        fb = (yb - top) / (hip - top)
        _poly(img, [(x1 + fa * 0.2 * w, ya), (x2 - fa * 0.2 * w, ya), (x2 - fb * 0.2 * w, yb),
                    (x1 + fb * 0.2 * w, yb)], dark)
    # neck and head (the head touches the top of the box)
    r = 0.11 * h
    _poly(img, [(cx - 0.2 * r, top - 0.3 * r), (cx + 0.2 * r, top - 0.3 * r), (cx + 0.2 * r, top),
                (cx - 0.2 * r, top)], skin)
    _disc(img, (cx + 0.1 * r * o.facing, y1 + r), r, skin)
    hair = tuple(0.3 * v for v in trousers)
    cv2.ellipse(img, (int(round((cx + 0.1 * r * o.facing) * _ONE)), int(round((y1 + r) * _ONE))),
                (int(round(r * _ONE)), int(round(r * _ONE))), 0, 180, 360, hair, -1,
                cv2.LINE_AA, _SHIFT)


def _draw_car(img: np.ndarray, o: ObjectState, cols: list[tuple]) -> None:
    body, glass, light = cols
    x1, y1, x2, y2 = o.box
    w, h = x2 - x1, y2 - y1
    f = o.facing

    def X(fr: float) -> float:  # along the car, 0 = rear, 1 = front
        return x1 + fr * w if f > 0 else x2 - fr * w

    r = 0.2 * h  # wheel radius; wheels touch the bottom of the box
    _poly(img, [(X(0), y1 + 0.4 * h), (X(0.72), y1 + 0.38 * h), (X(1), y1 + 0.52 * h),
                (X(1), y2 - 0.9 * r), (X(0), y2 - 0.9 * r)], body)
    _poly(img, [(X(0.18), y1 + 0.4 * h), (X(0.28), y1), (X(0.6), y1), (X(0.75), y1 + 0.4 * h)],
          body)
    _poly(img, [(X(0.24), y1 + 0.36 * h), (X(0.31), y1 + 0.07 * h), (X(0.43), y1 + 0.07 * h),
                (X(0.43), y1 + 0.36 * h)], glass)
    _poly(img, [(X(0.47), y1 + 0.36 * h), (X(0.47), y1 + 0.07 * h), (X(0.58), y1 + 0.07 * h),
                (X(0.69), y1 + 0.36 * h)], glass)
    _poly(img, [(X(0.94), y1 + 0.52 * h), (X(1), y1 + 0.54 * h), (X(1), y1 + 0.62 * h),
                (X(0.94), y1 + 0.62 * h)], light)
    stripe = tuple(min(255.0, 0.6 * v + 100) for v in body)
    _poly(img, [(X(0.02), y1 + 0.6 * h), (X(0.98), y1 + 0.6 * h), (X(0.98), y1 + 0.64 * h),
                (X(0.02), y1 + 0.64 * h)], stripe)
    for fr in (0.2, 0.8):
        c = (X(fr), y2 - r)
        _disc(img, c, r, (25, 25, 25))
        _disc(img, c, 0.45 * r, (170, 170, 175))


def _draw_ball(img: np.ndarray, o: ObjectState, cols: list[tuple]) -> None:
    base, seam, _ = cols
    x1, y1, x2, y2 = o.box
    c = (0.5 * (x1 + x2), 0.5 * (y1 + y2))
    r = 0.5 * (x2 - x1)
    _disc(img, c, r, base)
    # seams that spin as the ball rolls: two crossing arcs and a ring
    ang = math.degrees(o.phase) * o.facing
    cc = (int(round(c[0] * _ONE)), int(round(c[1] * _ONE)))
    th = max(1, int(round(0.08 * r)))
    for k in (0, 90):
        axes = (int(round(r * _ONE)), int(round(0.35 * r * _ONE)))
        cv2.ellipse(img, cc, axes, ang + k, 0, 360, seam, th, cv2.LINE_AA, _SHIFT)
    cv2.circle(img, cc, int(round(0.5 * r * _ONE)), seam, th, cv2.LINE_AA, _SHIFT)


_DRAW = {"person": _draw_person, "car": _draw_car, "ball": _draw_ball}


class FrameRing:
    """A ring of pre-rendered frames and their ground truth, replayed from memory.

    Frame ``i`` of the ring is world frame ``start + (i mod n)``: at the wrap the scene
    jumps back (a benchmark feeds frames, it does not judge tracking across the jump).
    """

    def __init__(self, world: SyntheticWorld, n: int, start: int = 0) -> None:
        if n < 1:
            raise GputrackError(f"frame ring needs at least one frame, got {n}")
        need = n * world.width * world.height * 3
        if need > 16 * 2**30:
            raise GputrackError(
                f"frame ring of {n} frames at {world.width}x{world.height} needs "
                f"{need / 2**30:.1f} GiB; use fewer frames"
            )
        self.world = world
        self.start = int(start)
        self.frames = np.empty((n, world.height, world.width, 3), np.uint8)
        self.truth: list[np.ndarray] = []
        for i in range(n):
            world.render(self.start + i, out=self.frames[i])
            self.truth.append(world.ground_truth(self.start + i))
        self.frames.flags.writeable = False  # handed out as views: nobody may draw on them

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.frames[i % len(self.frames)]

    def ground_truth(self, i: int) -> np.ndarray:
        return self.truth[i % len(self.frames)]
