"""The FastestDet head -> Detections (float32[N, 6] = x1, y1, x2, y2, score, class in
full-frame pixels), as a NumPy reference and as one kernel launch (kernels/detect.cu).

The head is one 1 x (5 + classes) x H x W map (the model's last Concat): channel 0 the
objectness (already a sigmoid), 1-4 the raw box terms, then the class probabilities (already a
softmax). Per cell (gx, gy), as FastestDet's own decoder does:

    score = obj ** 0.6 * max(cls) ** 0.4,     class = argmax(cls)
    cx = (gx + tanh(t1)) / W,  cy = (gy + tanh(t2)) / H,  w = sigmoid(t3),  h = sigmoid(t4)

in fractions of the network input. Boxes go back to the frame through the letterbox
(`TensorSpec.geometry`), are clipped to it, and a class-aware greedy NMS keeps at most
`max_det` in descending score order (ties: lower cell index first).

Non-finite model outputs never become detections: a cell whose score is not finite (NaN or
inf in the objectness, NaN or +inf in a class probability) or whose decoded box has a
non-finite coordinate (NaN in a box term) is not a candidate, and takes no part in the NMS.
Nor is a box with no area once clipped to the frame (one wholly in the letterbox padding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gputrack.device.base import Backend
from gputrack.errors import GputrackError
from gputrack.isp.params import TensorSpec

MAX_CELLS = 1024  # detect.cu DET_MAX_CAND: every cell can be a candidate
DET_THREADS = 256
F = np.float32


@dataclass(frozen=True)
class DetectParams:
    score: float = 0.55  # IMX500 demo defaults
    iou: float = 0.65
    max_det: int = 10
    obj_power: float = 0.6  # FastestDet: obj^0.6 * cls^0.4

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise GputrackError(f"score threshold {self.score} must be in [0, 1]")
        if not 0.0 <= self.iou <= 1.0:
            raise GputrackError(f"IoU threshold {self.iou} must be in [0, 1]")
        if not 1 <= self.max_det <= MAX_CELLS:
            raise GputrackError(f"max detections {self.max_det} must be in 1..{MAX_CELLS}")


@dataclass(frozen=True)
class FrameMapping:
    """Where the frame sits in the network input: the letterbox of `TensorSpec.geometry`."""

    frame_w: int
    frame_h: int
    tensor_w: int
    tensor_h: int
    content_w: int
    content_h: int
    pad_x: int
    pad_y: int

    @classmethod
    def of(cls, spec: TensorSpec, frame_w: int, frame_h: int) -> FrameMapping:
        cw, ch, px, py = spec.geometry(frame_w, frame_h)
        return cls(frame_w, frame_h, spec.width, spec.height, cw, ch, px, py)

    def scalars(self) -> list[Any]:
        """detect.cu's geometry arguments."""
        return [F(self.tensor_w), F(self.tensor_h), F(self.pad_x), F(self.pad_y),
                F(self.frame_w / self.content_w), F(self.frame_h / self.content_h),
                F(self.frame_w), F(self.frame_h)]  # fmt: skip


def _head(head: np.ndarray) -> np.ndarray:
    h = np.asarray(head)
    if h.ndim == 4:
        if h.shape[0] != 1:
            raise GputrackError(f"detection head batch must be 1, got shape {h.shape}")
        h = h[0]
    if h.ndim != 3 or h.shape[0] < 6:
        raise GputrackError(f"detection head must be (5 + classes) x H x W, got {head.shape}")
    return h


def candidates_reference(head: np.ndarray, params: DetectParams, m: FrameMapping):
    """Scores, classes and frame boxes of the cells over the threshold, best first."""
    h = _head(head).astype(F)
    _, gh, gw = h.shape
    cls = h[5:]
    best = cls.max(axis=0)  # NaN in any class probability makes the score NaN
    label = cls.argmax(axis=0)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite outputs are dropped below
        score = ((h[0] ** F(params.obj_power)) * (best ** F(1.0 - params.obj_power))).ravel()
    cells = np.flatnonzero(np.isfinite(score) & (score > F(params.score)))
    order = np.lexsort((cells, -score[cells]))  # score descending, then cell index
    cells = cells[order]
    gy, gx = cells // gw, cells % gw
    t = h[1:5].reshape(4, -1)[:, cells]
    one = F(1)
    g = m.scalars()
    with np.errstate(invalid="ignore", over="ignore"):
        cx = (gx.astype(F) + np.tanh(t[0])) / F(gw)
        cy = (gy.astype(F) + np.tanh(t[1])) / F(gh)
        bw = one / (one + np.exp(-t[2]))  # exp overflow: 1 / inf = 0, still finite
        bh = one / (one + np.exp(-t[3]))
        x1 = ((cx - bw * F(0.5)) * g[0] - g[2]) * g[4]
        x2 = ((cx + bw * F(0.5)) * g[0] - g[2]) * g[4]
        y1 = ((cy - bh * F(0.5)) * g[1] - g[3]) * g[5]
        y2 = ((cy + bh * F(0.5)) * g[1] - g[3]) * g[5]
    # a box with a non-finite coordinate (before clipping, which would hide a NaN) is dropped
    keep = np.isfinite(x1) & np.isfinite(y1) & np.isfinite(x2) & np.isfinite(y2)
    cells, x1, y1, x2, y2 = cells[keep], x1[keep], y1[keep], x2[keep], y2[keep]
    boxes = np.stack([np.clip(x1, 0, g[6]), np.clip(y1, 0, g[7]),
                      np.clip(x2, 0, g[6]), np.clip(y2, 0, g[7])], axis=1).astype(F)  # fmt: skip
    # a box with no area in the frame (wholly in the letterbox padding or past an edge, or of
    # zero width) is no detection: dropped before the NMS, as a non-finite one
    area = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    cells, boxes = cells[area], boxes[area]
    return score[cells], label.ravel()[cells], boxes


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """float32, in the order of operations detect.cu uses."""
    iw = np.maximum(F(0), np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]))
    ih = np.maximum(F(0), np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]))
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, F(0)).astype(F)


def decode_reference(head: np.ndarray, params: DetectParams, m: FrameMapping) -> np.ndarray:
    """Detections float32[N, 6] from a FastestDet head, in NumPy."""
    scores, labels, boxes = candidates_reference(head, params, m)
    removed = np.zeros(len(scores), dtype=bool)
    rows = []
    for i in range(len(scores)):
        if removed[i]:
            continue
        rows.append([*boxes[i], scores[i], labels[i]])
        if len(rows) == params.max_det:
            break
        rest = np.arange(i + 1, len(scores))
        same = rest[labels[rest] == labels[i]]
        removed[same[iou_one_to_many(boxes[i], boxes[same]) > F(params.iou)]] = True
    return np.asarray(rows, dtype=F).reshape(-1, 6)


class Decoder:
    """Decode + NMS on a backend: one launch of detect.cu's single block; NumPy on `cpu`."""

    def __init__(self, backend: Backend, params: DetectParams | None = None) -> None:
        self.backend = backend
        self.params = params or DetectParams()
        self._kernel = backend.load("detect.cu").kernel("detect_fastestdet") \
            if backend.runs_kernels else None  # fmt: skip
        self._out: Any = None
        self._count: Any = None

    def launch(self, head: Any, mapping: FrameMapping, stream: Any = None) -> tuple[Any, Any]:
        """Queue the decode on `head` (a device array 1 x C x H x W); returns (rows, count)."""
        assert self._kernel is not None
        shape = tuple(head.shape)
        if len(shape) != 4 or shape[0] != 1 or shape[1] < 6:
            raise GputrackError(f"detection head must be 1 x (5 + classes) x H x W, got {shape}")
        _, c, gh, gw = shape
        if gh * gw > MAX_CELLS:
            raise GputrackError(f"detection grid {gw}x{gh} has more than {MAX_CELLS} cells")
        p = self.params
        if self._out is None or self._out.shape[0] != p.max_det:
            self._out = self.backend.empty((p.max_det, 6), np.float32)
            self._count = self.backend.empty((1,), np.int32)
        self._kernel(1, DET_THREADS, [head, np.int32(c - 5), np.int32(gh), np.int32(gw),
                                      F(p.score), F(p.iou), np.int32(p.max_det),
                                      F(p.obj_power), *mapping.scalars(), self._out,
                                      self._count], stream=stream)  # fmt: skip
        return self._out, self._count

    def __call__(self, head: Any, mapping: FrameMapping, stream: Any = None) -> np.ndarray:
        if self._kernel is None:
            host = head if isinstance(head, np.ndarray) else self.backend.to_host(head)
            return decode_reference(host, self.params, mapping)
        out, count = self.launch(head, mapping, stream)
        self.backend.synchronize(stream)
        n = int(self.backend.to_host(count, stream=stream)[0])
        return self.backend.to_host(out, stream=stream)[:n].copy()
