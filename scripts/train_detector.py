"""Train gputrack's bundled detector (gputrack/models/synthetic_det.onnx) on the synthetic world.

    .venv/bin/pip install torch          # CPU build is enough (the `train` extra)
    .venv/bin/python scripts/train_detector.py            # data + training + export + eval

Data: frames of many synthetic worlds (seeds 1000..), at several sizes and aspect ratios, as
`gputrack run` shows them to the network: render -> sensor model (noise on) -> reference ISP
-> rgb8 -> the ISP's letterbox into the network input (`make_tensor`). Cached as .npy under
`.cache/train_detector/` (git-ignored); held-out worlds (seeds 0-19, `gputrack run`'s seed 0
among them) are never used for training.

Network: a FastestDet-style single-scale detector, stride 16, 384x224 input (the 16:9 world
fills 384x216 of it; a 24x14 grid), depthwise/pointwise conv + BN + ReLU stages with a stride-8
branch for small objects. The head has FastestDet's layout and activations, so
`gputrack.dsp.decode` decodes it unchanged: 1 x (5 + 3) x 14 x 24 = sigmoid objectness, four
raw box terms (centre = cell corner + tanh, size = sigmoid x input), softmax class scores.
Only ops gputrack's importer supports (Conv, BatchNormalization folded, Relu, Add, Concat,
Sigmoid, Softmax over channels); ONNX opset 13, static shape.

Seeded and deterministic on one machine (torch's CPU kernels with a fixed thread count).
"""

from __future__ import annotations

import json
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gputrack.commands.args import (  # noqa: E402
    ScriptParser,
    int_at_least,
    non_negative_int,
    positive_float,
)
from gputrack.dsp.decode import DetectParams, FrameMapping, decode_reference  # noqa: E402
from gputrack.isp.params import TensorSpec  # noqa: E402
from gputrack.isp.reference import make_tensor  # noqa: E402
from gputrack.models import SYNTHETIC_DET, SYNTHETIC_DET_INFO  # noqa: E402
from gputrack.models.evaluate import evaluate, held_out_frames, isp_frame  # noqa: E402
from gputrack.sensor.synthetic import ALL_CLASSES, SyntheticWorld  # noqa: E402

IN_W, IN_H, STRIDE = 384, 224, 16
GW, GH = IN_W // STRIDE, IN_H // STRIDE
SPEC = TensorSpec(width=IN_W, height=IN_H)
CACHE = ROOT / ".cache" / "train_detector"
TRAIN_SIZES = ((640, 360), (640, 360), (960, 540), (960, 540), (1280, 720), (512, 288),
               (800, 450), (640, 480), (800, 600), (480, 480))  # fmt: skip
MIN_VIS_TRAIN = 0.35  # objects less visible than this neither train nor count as background


# ---- data ---------------------------------------------------------------------------------


def _world_samples(job: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """One world's frames: (uint8[IN_H, IN_W, 3] network input, float32[N, 6] boxes in input
    pixels x1, y1, x2, y2, class, visibility)."""
    seed, per_world = job
    rng = np.random.default_rng([seed, 77])
    w, h = TRAIN_SIZES[int(rng.integers(len(TRAIN_SIZES)))]
    world = SyntheticWorld(w, h, 30.0, seed, num_objects=int(rng.integers(4, 13)))
    cw, ch, px, py = SPEC.geometry(w, h)
    out = []
    for index in np.sort(rng.choice(6000, per_world, replace=False)):
        rgb8 = isp_frame(world, int(index), noise_seed=seed * 10007 + int(index))
        img = make_tensor(rgb8, SPEC, np.float32)[0].transpose(1, 2, 0) * 255.0
        gt = world.ground_truth(int(index))
        boxes = np.empty((len(gt), 6), np.float32)
        boxes[:, [0, 2]] = gt[:, [0, 2]] * (cw / w) + px
        boxes[:, [1, 3]] = gt[:, [1, 3]] * (ch / h) + py
        boxes[:, 4:] = gt[:, 5:7]
        out.append((np.clip(np.rint(img), 0, 255).astype(np.uint8), boxes))
    return out


def dataset(worlds: int, per_world: int, first_seed: int = 1000, workers: int = 2):
    """(uint8[N, IN_H, IN_W, 3], float32[M, 7] boxes with their image index first), cached."""
    stem = CACHE / f"w{worlds}_f{per_world}_s{first_seed}_{IN_W}x{IN_H}"
    if stem.with_suffix(".images.npy").is_file():
        return np.load(stem.with_suffix(".images.npy")), np.load(stem.with_suffix(".boxes.npy"))
    t0 = time.perf_counter()
    jobs = [(first_seed + k, per_world) for k in range(worlds)]
    with Pool(workers) as pool:
        per = pool.map(_world_samples, jobs, chunksize=4)
    samples = [s for world in per for s in world]
    images = np.stack([s[0] for s in samples])
    boxes = np.concatenate(
        [np.column_stack([np.full(len(b), i, np.float32), b]) for i, (_, b) in enumerate(samples)]
    ).astype(np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(stem.with_suffix(".images.npy"), images)
    np.save(stem.with_suffix(".boxes.npy"), boxes)
    print(f"dataset: {len(images)} frames, {len(boxes)} boxes in {time.perf_counter() - t0:.0f} s")
    return images, boxes


def targets(boxes: list[np.ndarray]):
    """Per-cell training targets of a batch (boxes in input pixels, already augmented).

    An object is assigned to the cell holding its centre and to the neighbour(s) on the side
    its centre leans to (the cells whose tanh range reaches it and whose centre is within one
    cell of it): 1-4 cells. A cell claimed by two objects keeps the smaller one. Cells of
    objects less visible than MIN_VIS_TRAIN are ignored by the objectness loss."""
    b = len(boxes)
    pos = np.zeros((b, GH, GW), bool)
    ignore = np.zeros((b, GH, GW), bool)
    area = np.full((b, GH, GW), np.inf, np.float32)
    box = np.zeros((b, 4, GH, GW), np.float32)  # x1, y1, x2, y2 as fractions of the input
    cls = np.zeros((b, GH, GW), np.int64)
    for i, bx in enumerate(boxes):
        for x1, y1, x2, y2, c, vis in bx:
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            cx, cy = (x1 + x2) / 2 / STRIDE, (y1 + y2) / 2 / STRIDE
            gx, gy = min(int(cx), GW - 1), min(int(cy), GH - 1)
            xs = [gx] + ([gx + 1] if cx - gx > 0.5 and gx + 1 < GW else [])
            ys = [gy] + ([gy + 1] if cy - gy > 0.5 and gy + 1 < GH else [])
            a = (x2 - x1) * (y2 - y1)
            for yy in ys:
                for xx in xs:
                    if vis < MIN_VIS_TRAIN:
                        ignore[i, yy, xx] = True
                    elif a < area[i, yy, xx]:
                        area[i, yy, xx] = a
                        pos[i, yy, xx] = True
                        box[i, :, yy, xx] = (x1 / IN_W, y1 / IN_H, x2 / IN_W, y2 / IN_H)
                        cls[i, yy, xx] = int(c)
    ignore &= ~pos
    return pos, ignore, box, cls


# ---- network ------------------------------------------------------------------------------


def build_model(classes: int = len(ALL_CLASSES)):
    import torch
    from torch import nn

    def cbr(cin, cout, k=1, s=1, groups=1, act=True):
        layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(cout)]  # fmt: skip
        if act:
            layers.append(nn.ReLU(inplace=True))
        return nn.Sequential(*layers)

    def dwpw(cin, cout, s=1, k=3):
        return nn.Sequential(cbr(cin, cin, k, s, groups=cin, act=False), cbr(cin, cout))

    class Residual(nn.Module):
        def __init__(self, ch, k=3):
            super().__init__()
            self.body = nn.Sequential(cbr(ch, ch, k, 1, groups=ch, act=False), cbr(ch, ch),
                                      cbr(ch, ch, act=False))  # fmt: skip
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            return self.act(x + self.body(x))

    class SyntheticDet(nn.Module):
        def __init__(self):
            super().__init__()
            self.s8 = nn.Sequential(
                cbr(3, 16, 3, 2),  # 112 x 192
                dwpw(16, 32, 2),  # 56 x 96
                dwpw(32, 48, 2),  # 28 x 48
                Residual(48),
            )
            self.s16 = nn.Sequential(dwpw(48, 96, 2), Residual(96), Residual(96))  # 14 x 24
            self.skip = cbr(48, 48, 3, 2, groups=48, act=False)  # stride-8 detail, to 14 x 24
            self.neck = nn.Sequential(cbr(144, 96), Residual(96, k=5))
            self.obj = nn.Conv2d(96, 1, 1)
            self.box = nn.Conv2d(96, 4, 1)
            self.cls = nn.Conv2d(96, classes, 1)
            nn.init.constant_(self.obj.bias, -4.0)

        def raw(self, x):
            f8 = self.s8(x)
            f = self.neck(torch.cat([self.s16(f8), self.skip(f8)], 1))
            return self.obj(f), self.box(f), self.cls(f)

        def forward(self, x):  # the exported head: FastestDet's layout and activations
            o, b, c = self.raw(x)
            return torch.cat([torch.sigmoid(o), b, torch.softmax(c, dim=1)], 1)

    return SyntheticDet()


def loss_fn(model, x, pos, ignore, box, cls):
    import torch
    import torch.nn.functional as F

    o, t, c = model.raw(x)
    o = o[:, 0]
    npos = max(int(pos.sum()), 1)
    keep = ~ignore
    obj = F.binary_cross_entropy_with_logits(o[keep], pos[keep].float(), reduction="sum") / npos
    gy, gx = torch.meshgrid(torch.arange(GH), torch.arange(GW), indexing="ij")
    cx = (gx + torch.tanh(t[:, 0])) / GW
    cy = (gy + torch.tanh(t[:, 1])) / GH
    w, h = torch.sigmoid(t[:, 2]), torch.sigmoid(t[:, 3])
    p = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    pb, gb = p.permute(0, 2, 3, 1)[pos], box.permute(0, 2, 3, 1)[pos]
    iw = (torch.min(pb[:, 2], gb[:, 2]) - torch.max(pb[:, 0], gb[:, 0])).clamp(min=0)
    ih = (torch.min(pb[:, 3], gb[:, 3]) - torch.max(pb[:, 1], gb[:, 1])).clamp(min=0)
    inter = iw * ih
    union = (
        (pb[:, 2] - pb[:, 0]) * (pb[:, 3] - pb[:, 1])
        + (gb[:, 2] - gb[:, 0]) * (gb[:, 3] - gb[:, 1])
        - inter
    )
    iou = inter / union.clamp(min=1e-9)
    ew = torch.max(pb[:, 2], gb[:, 2]) - torch.min(pb[:, 0], gb[:, 0])
    eh = torch.max(pb[:, 3], gb[:, 3]) - torch.min(pb[:, 1], gb[:, 1])
    enclose = (ew * eh).clamp(min=1e-9)
    giou = iou - (enclose - union) / enclose
    reg = (1 - giou).mean() if len(pb) else o.sum() * 0
    ce = F.cross_entropy(c.permute(0, 2, 3, 1)[pos], cls[pos]) if len(pb) else o.sum() * 0
    return obj + 2.0 * reg + ce, (obj.item(), reg.item(), ce.item())


def augment(rng, images: np.ndarray, boxes: list[np.ndarray]):
    """Horizontal flips and mild brightness/contrast/colour jitter (float32 NCHW in [0, 1])."""
    x = images.astype(np.float32) / 255.0
    out = []
    for i in range(len(x)):
        b = boxes[i].copy()
        if rng.random() < 0.5:
            x[i] = x[i, :, ::-1]
            b[:, [0, 2]] = IN_W - b[:, [2, 0]]
        gain = rng.uniform(0.75, 1.25) * rng.uniform(0.92, 1.08, 3)
        mean = x[i].mean()
        x[i] = (x[i] - mean) * rng.uniform(0.8, 1.2) + mean * gain + rng.uniform(-0.05, 0.05)
        out.append(b)
    return np.clip(x, 0, 1).transpose(0, 3, 1, 2).copy(), out


def train(images, boxes, epochs: int, batch: int, lr: float, seed: int):
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    rng = np.random.default_rng(seed)
    model = build_model()
    n = len(images)
    by_image = [boxes[boxes[:, 0] == i, 1:] for i in range(n)]
    steps = epochs * (n // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    t0, step = time.perf_counter(), 0
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(n)
        acc = np.zeros(3)
        for k in range(n // batch):
            idx = np.sort(order[k * batch : (k + 1) * batch])
            x, bb = augment(rng, images[idx], [by_image[i] for i in idx])
            pos, ignore, box, cls = targets(bb)
            loss, parts = loss_fn(model, torch.from_numpy(x), torch.from_numpy(pos),
                                  torch.from_numpy(ignore), torch.from_numpy(box),
                                  torch.from_numpy(cls))  # fmt: skip
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            acc += parts
        acc /= max(n // batch, 1)
        print(f"epoch {epoch + 1}/{epochs}: obj {acc[0]:.3f} giou {acc[1]:.3f} cls {acc[2]:.3f}"
              f"  ({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    return model.eval(), time.perf_counter() - t0


def export(model, path: Path) -> None:
    import torch

    x = torch.zeros(1, 3, IN_H, IN_W)
    torch.onnx.export(model, x, str(path), input_names=["images"], output_names=["head"],
                      opset_version=13, do_constant_folding=True, dynamo=False)  # fmt: skip


def onnx_detector(path: Path, params: DetectParams):
    """rgb8 -> Detections with onnxruntime and gputrack's decode (what `--backend cpu` does)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def detect(rgb8: np.ndarray) -> np.ndarray:
        head = sess.run(None, {"images": make_tensor(rgb8, SPEC, np.float32)})[0]
        return decode_reference(head, params, FrameMapping.of(SPEC, rgb8.shape[1], rgb8.shape[0]))

    return detect


def main(argv: list[str] | None = None) -> int:
    ap = ScriptParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worlds", type=int_at_least(1), default=300,
                    help="training worlds (seeds 1000..)")
    ap.add_argument("--frames-per-world", type=int_at_least(1), default=12)
    ap.add_argument("--epochs", type=int_at_least(1), default=18)
    ap.add_argument("--batch", type=int_at_least(1), default=32)
    ap.add_argument("--lr", type=positive_float, default=4e-3)
    ap.add_argument("--seed", type=non_negative_int, default=0)
    ap.add_argument(
        "--out",
        type=Path,
        default=SYNTHETIC_DET,
        help="the ONNX file to write (default: the bundled model, which it replaces)",
    )
    ap.add_argument("--eval-only", action="store_true", help="evaluate --out, train nothing")
    args = ap.parse_args(argv)
    # Checked now, not after an hour of training: the model is written, then its .json beside.
    if args.eval_only and not args.out.is_file():
        ap.error(f"argument --out: '{args.out}': no such model to evaluate")
    if not args.eval_only:
        ap.check_output("--out", args.out)
    ap.check_output("--out (its .json)", args.out.with_suffix(".json"))
    t0 = time.perf_counter()
    info: dict = {}
    if not args.eval_only:
        images, boxes = dataset(args.worlds, args.frames_per_world)
        t_data = time.perf_counter() - t0
        model, t_train = train(images, boxes, args.epochs, args.batch, args.lr, args.seed)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        export(model, args.out)
        info = {
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "training": {
                "command": "python scripts/train_detector.py " + " ".join(argv or sys.argv[1:]),
                "seed": args.seed,
                "worlds": args.worlds,
                "world_seeds": [1000, 1000 + args.worlds - 1],
                "frames": len(images),
                "boxes": len(boxes),
                "epochs": args.epochs,
                "batch": args.batch,
                "lr": args.lr,
                "data_seconds": round(t_data),
                "train_seconds": round(t_train),
                "machine": "2 CPU cores, torch CPU build",
            },
        }
    params = DetectParams(score=0.55, iou=0.65, max_det=50)
    scores = evaluate(onnx_detector(args.out, params), held_out_frames())
    print(f"held-out: {scores.as_dict()}")
    info_path = args.out.with_suffix(".json")
    old = json.loads(info_path.read_text()) if info_path.is_file() else {}
    info = {
        **old,
        **info,
        "model": args.out.name,
        "classes": list(ALL_CLASSES),
        "input": {"width": IN_W, "height": IN_H, "layout": "NCHW RGB/255, letterboxed (pad 114)"},
        "head": f"1x{5 + len(ALL_CLASSES)}x{GH}x{GW} FastestDet layout",
        "held_out": {
            "seeds": [0, 19],
            "detect_params": {"score": params.score, "iou": params.iou, "max_det": params.max_det},
            "min_visible": 0.5,
            "iou_match": 0.5,
            **scores.as_dict(),
        },
    }
    if args.out == SYNTHETIC_DET:
        SYNTHETIC_DET_INFO.write_text(json.dumps(info, indent=2) + "\n")
    else:
        info_path.write_text(json.dumps(info, indent=2) + "\n")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
