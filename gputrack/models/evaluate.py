"""Synthetic-world frames as `gputrack run` shows them to the network, and detection
precision/recall against their ground truth.

A sample is the synthetic world's render -> the sensor model (noise on) -> the reference ISP
-> rgb8: the image the ISP hands to the network's letterbox in `gputrack run`. Matching is
class-aware at IoU >= 0.5, greedy in descending score: ground truth at least `min_visible`
visible counts for recall; a detection that matches nothing counted but overlaps a less
visible object (IoU >= 0.5, any class) is ignored rather than a false positive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from gputrack.isp import reference as isp_reference
from gputrack.isp.params import IspParams
from gputrack.sensor import model as sensor_model
from gputrack.sensor.synthetic import SyntheticWorld


def isp_frame(
    world: SyntheticWorld, index: int, noise_seed: int = 0, isp: IspParams | None = None
) -> np.ndarray:
    """uint8[H, W, 3]: frame `index` of `world` through the sensor model and the ISP."""
    params = isp or IspParams()
    scene = world.render(index)
    raw = sensor_model.reference(
        scene, sensor_model.SensorParams(isp=params, noise=True, seed=noise_seed), frame=index
    )
    return isp_reference.process(raw, params, np.float32).rgb8


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of boxes a[N, 4] and b[M, 4] (x1, y1, x2, y2)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)[:, None]
    b = np.asarray(b, np.float64).reshape(-1, 4)[None]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match(
    dets: np.ndarray, truth: np.ndarray, min_visible: float = 0.5, iou: float = 0.5
) -> tuple[int, int, int]:
    """(true positives, false positives, ground truth counted) for one frame.

    dets float32[N, 6] (x1, y1, x2, y2, score, class); truth float32[M, 7] (x1, y1, x2, y2,
    id, class, visibility)."""
    dets = np.asarray(dets, np.float32).reshape(-1, 6)
    dets = dets[np.argsort(-dets[:, 4], kind="stable")]
    counted = truth[truth[:, 6] >= min_visible]
    faint = truth[truth[:, 6] < min_visible]
    ious = box_iou(dets[:, :4], counted[:, :4])
    same = dets[:, 5:6].astype(int) == counted[None, :, 5].astype(int)
    ious = np.where(same, ious, 0.0)
    faint_iou = box_iou(dets[:, :4], faint[:, :4])
    taken = np.zeros(len(counted), bool)
    tp = fp = 0
    for i in range(len(dets)):
        cand = np.where(taken, -1.0, ious[i]) if len(counted) else np.zeros(0)
        j = int(np.argmax(cand)) if len(cand) else -1
        if j >= 0 and cand[j] >= iou:
            taken[j] = True
            tp += 1
        elif not (len(faint) and faint_iou[i].max() >= iou):
            fp += 1
    return tp, fp, len(counted)


@dataclass
class Scores:
    tp: int = 0
    fp: int = 0
    gt: int = 0
    frames: int = 0

    @property
    def recall(self) -> float:
        return self.tp / max(self.gt, 1)

    @property
    def precision(self) -> float:
        return self.tp / max(self.tp + self.fp, 1)

    def as_dict(self) -> dict:
        return {
            "frames": self.frames,
            "objects": self.gt,
            "true_positives": self.tp,
            "false_positives": self.fp,
            "recall": round(self.recall, 4),
            "precision": round(self.precision, 4),
        }


# Held-out worlds: never used for training (train_detector.py draws seeds from 1000 up).
HELD_OUT_SEEDS = tuple(range(0, 20))
EVAL_SIZES = ((640, 360), (960, 540), (1280, 720), (640, 480))


def held_out_frames(
    seeds: Iterable[int] = HELD_OUT_SEEDS, per_seed: int = 6, sizes=EVAL_SIZES
) -> Iterable[tuple[int, int, tuple[int, int]]]:
    """(seed, frame index, size): frames spread over the first 100 s of each held-out world."""
    for k, seed in enumerate(seeds):
        size = sizes[k % len(sizes)]
        for j in range(per_seed):
            yield seed, 37 + j * 503 % 3000, size


def evaluate(
    detect: Callable[[np.ndarray], np.ndarray],
    frames: Iterable[tuple[int, int, tuple[int, int]]],
    min_visible: float = 0.5,
) -> Scores:
    """Run `detect(rgb8) -> float32[N, 6]` on each (seed, index, size) frame and score it."""
    s = Scores()
    worlds: dict[tuple, SyntheticWorld] = {}
    for seed, index, size in frames:
        key = (seed, size)
        if key not in worlds:
            worlds[key] = SyntheticWorld(size[0], size[1], 30.0, seed)
        world = worlds[key]
        rgb8 = isp_frame(world, index, noise_seed=seed)
        tp, fp, gt = match(detect(rgb8), world.ground_truth(index), min_visible)
        s.tp, s.fp, s.gt, s.frames = s.tp + tp, s.fp + fp, s.gt + gt, s.frames + 1
    return s
