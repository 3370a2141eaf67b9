"""Detection decode + NMS: kernels/detect.cu equals the NumPy reference on random heads (odd
grids, many candidates, poisoned outputs); the reference is checked by hand on a built head;
FastestDet end to end on a real frame: kernels (emu) vs onnxruntime, people found."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gputrack.device import get_backend
from gputrack.dsp.coco import COCO80
from gputrack.dsp.decode import Decoder, DetectParams, FrameMapping, decode_reference
from gputrack.dsp.detector import Detector
from gputrack.dsp.interp import softmax
from gputrack.isp.params import TensorSpec
from tests.conftest import shared_data


def launch_poisoned(backend, head, params, mapping) -> tuple[int, np.ndarray]:
    """The decode kernel on `head` with its outputs poisoned (NaN rows, count -1): the count
    it wrote and every output row, on the host."""
    dec = Decoder(backend, params)
    dec._out = backend.full((params.max_det, 6), np.nan, np.float32)
    dec._count = backend.full((1,), -1, np.int32)
    out, count = dec.launch(backend.to_device(head), mapping)
    return int(backend.to_host(count)[0]), backend.to_host(out)


def random_head(rng, classes: int, gh: int, gw: int) -> np.ndarray:
    head = np.empty((1, 5 + classes, gh, gw), np.float32)
    head[0, 0] = 1 / (1 + np.exp(-rng.standard_normal((gh, gw)) * 3))
    head[0, 1:5] = rng.standard_normal((4, gh, gw))
    head[0, 3:5] += 1.0  # large boxes, so that NMS has overlaps to remove
    head[0, 5:] = softmax(rng.standard_normal((classes, gh, gw)) * 3, 0)
    return head


def random_mapping(rng) -> FrameMapping:
    """A random network input size and frame size (letterboxed either way)."""
    spec = TensorSpec(width=int(rng.integers(100, 400)), height=int(rng.integers(100, 400)))
    return FrameMapping.of(spec, int(rng.integers(200, 2000)), int(rng.integers(200, 2000)))


def random_params(rng) -> DetectParams:
    return DetectParams(
        score=float(rng.uniform(0.05, 0.6)),
        iou=float(rng.uniform(0.3, 0.7)),
        max_det=int(rng.integers(1, 300)),
    )


@pytest.mark.parametrize("grid", [(22, 22), (13, 17), (32, 32), (1, 3)])
def test_decode_kernel_equals_reference(kernel_backend, rng, grid):
    gh, gw = grid
    classes = int(rng.integers(1, 6))
    head = random_head(rng, classes, gh, gw)
    m = random_mapping(rng)
    for _ in range(3):
        p = random_params(rng)
        want = decode_reference(head, p, m)
        dec = Decoder(kernel_backend, p)
        out, count = dec.launch(kernel_backend.to_device(head), m)
        host = kernel_backend.to_host(out)
        n = int(kernel_backend.to_host(count)[0])
        assert n == len(want), f"{p}: {n} kept, reference {len(want)}"
        np.testing.assert_array_equal(host[:n, 5], want[:, 5])
        np.testing.assert_allclose(host[:n, :5], want[:, :5], rtol=1e-5, atol=1e-3)
        assert n <= p.max_det


def test_decode_kernel_writes_nothing_beyond_count(kernel_backend, rng):
    head = random_head(rng, 3, 9, 11)
    p = DetectParams(score=0.3, iou=0.5, max_det=50)
    dec = Decoder(kernel_backend, p)
    dec._out = kernel_backend.full((50, 6), np.nan, np.float32)
    dec._count = kernel_backend.full((1,), -1, np.int32)
    m = FrameMapping.of(TensorSpec(), 640, 480)
    out, count = dec.launch(kernel_backend.to_device(head), m)
    n = int(kernel_backend.to_host(count)[0])
    host = kernel_backend.to_host(out)
    assert n == len(decode_reference(head, p, m))
    assert not np.isnan(host[:n]).any() and np.isnan(host[n:]).all()


def _poisoned_head(rng, where: str):
    """A random head with NaN/+inf/-inf at random positions of the chosen channels, and the
    cells whose poison must drop them (NaN anywhere; obj +-inf or a class +inf: a non-finite
    score; every class -inf: max(cls)^0.4 = inf). Infinite box terms decode to finite boxes
    (tanh(+-inf) = +-1, sigmoid(+-inf) = 1 or 0), so those cells stay."""
    classes = int(rng.integers(1, 5))
    gh, gw = int(rng.integers(3, 24)), int(rng.integers(3, 24))
    head = random_head(rng, classes, gh, gw)
    chans = {"obj": [0], "box": [1, 2, 3, 4], "cls": list(range(5, 5 + classes)),
             "any": list(range(5 + classes))}[where]  # fmt: skip
    h = head[0].reshape(5 + classes, -1)
    for _ in range(int(rng.integers(1, 2 * gh * gw))):
        h[rng.choice(chans), rng.integers(gh * gw)] = rng.choice([np.nan, np.inf, -np.inf])
    cls = h[5:]
    dead = (np.isnan(h).any(axis=0) | np.isinf(h[0]) | (cls == np.inf).any(axis=0)
            | (cls == -np.inf).all(axis=0))  # fmt: skip
    return head, dead


@pytest.mark.parametrize("where", ["obj", "box", "cls", "any"])
def test_non_finite_outputs_are_dropped(kernel_backend, rng, where):
    """Fresh random heads with NaN/inf poisoned in: detect.cu == reference, every row finite,
    and the poisoned cells that must go give what the head gives with those cells empty."""
    head, dead = _poisoned_head(rng, where)
    assert not np.isfinite(head).all()
    _, c, gh, gw = head.shape
    clean = head[0].reshape(c, -1).copy()
    clean[:, dead] = 0.0  # objectness 0: never over a threshold >= 0.05
    clean = clean.reshape(head.shape)
    m = random_mapping(rng)
    for _ in range(3):
        p = random_params(rng)
        want = decode_reference(head, p, m)
        assert np.isfinite(want).all()
        np.testing.assert_array_equal(want, decode_reference(clean, p, m))
        dec = Decoder(kernel_backend, p)
        dec._out = kernel_backend.full((p.max_det, 6), np.nan, np.float32)
        dec._count = kernel_backend.full((1,), -1, np.int32)
        out, count = dec.launch(kernel_backend.to_device(head), m)
        host = kernel_backend.to_host(out)
        n = int(kernel_backend.to_host(count)[0])
        assert n == len(want), f"{where} {p}: {n} kept, reference {len(want)}"
        assert np.isfinite(host[:n]).all() and np.isnan(host[n:]).all()
        np.testing.assert_array_equal(host[:n, 5], want[:, 5])
        np.testing.assert_allclose(host[:n, :5], want[:, :5], rtol=1e-5, atol=1e-3)


def test_reference_drops_each_kind_of_non_finite_cell():
    """By hand: a 1x4 grid, every cell a sure detection, then one poison per cell."""
    head = np.zeros((1, 7, 1, 4), np.float32)
    head[0, 0], head[0, 5], head[0, 6] = 0.9, 0.8, 0.2
    m = FrameMapping.of(TensorSpec(width=64, height=16), 64, 16)
    p = DetectParams(score=0.5, iou=1.0, max_det=10)
    assert len(decode_reference(head, p, m)) == 4
    head[0, 1, 0, 0] = np.nan  # NaN box term, finite score: was a NaN box
    head[0, 0, 0, 1] = np.inf  # inf objectness: was an inf score
    head[0, 6, 0, 2] = np.nan  # NaN class probability (detect.cu's fmaxf alone skipped it)
    head[0, 3, 0, 3] = np.inf  # inf width term: sigmoid = 1, a finite box that stays
    d = decode_reference(head, p, m)
    assert np.isfinite(d).all() and len(d) == 1
    # cell 3: cx = 3/4, w = sigmoid(inf) = 1 (x 0.25..1.25), cy = 0, h = 0.5; then clipped
    np.testing.assert_allclose(d[0, :4], [16, 0, 64, 4], atol=1e-4)


def test_reference_decode_by_hand():
    """Two cells of one class overlapping, one of another class: letterbox undone, NMS."""
    head = np.zeros((1, 7, 2, 2), np.float32)
    head[0, 5:] = 0.5
    head[0, 0] = 0.01
    head[0, 0, 0, 0] = head[0, 0, 0, 1] = head[0, 0, 1, 1] = 0.9
    head[0, 5, 1, 1], head[0, 6, 1, 1] = 0.1, 0.9  # class 1 at cell (1, 1)
    head[0, 3:5] = 2.0  # w = h = sigmoid(2) = 0.881 of the input
    spec = TensorSpec(width=100, height=100)
    m = FrameMapping.of(spec, 200, 100)  # content 100 x 50 at pad_y 25, scale 2
    d = decode_reference(head, DetectParams(score=0.5, iou=0.3), m)
    s = 1 / (1 + np.exp(-2.0))
    score01 = 0.9**0.6 * 0.5**0.4
    assert d.shape == (2, 6)
    assert d[0, 5] == 1 and d[0, 4] == pytest.approx(0.9**0.6 * 0.9**0.4, rel=1e-6)
    assert d[1, 5] == 0 and d[1, 4] == pytest.approx(score01, rel=1e-6)  # cell (0,0) beats (0,1)
    cx = cy = 0.0  # cell (0, 0) with tanh(0) = 0: the cell corner (FastestDet adds no 0.5)
    want = [(cx - 50 * s) * 2, (cy - 50 * s - 25) * 2, (cx + 50 * s) * 2, (cy + 50 * s - 25) * 2]
    want = np.clip(want, 0, [200, 100, 200, 100])
    np.testing.assert_allclose(d[1, :4], want, atol=1e-3)


def vtest_frame() -> np.ndarray:
    cap = cv2.VideoCapture(str(shared_data("video/vtest.avi")))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def test_fastestdet_on_emu_equals_onnxruntime_on_a_real_frame():
    model = shared_data("models/FastestDet.onnx")
    rgb = vtest_frame()
    emu = Detector(model, get_backend("emu"), DetectParams())
    cpu = Detector(model, get_backend("cpu"), DetectParams())
    for buf in emu.network.plan.buffers:
        buf[...] = np.nan
    x = emu.tensor(rgb)
    got = emu.network.run(x)[emu.network.output_names[0]]
    want = cpu.network.run(x)[cpu.network.output_names[0]]
    assert got.shape == want.shape == (1, 85, 22, 22)
    assert np.abs(got - want).max() < 1e-4 * np.abs(want).max()
    d_emu, d_cpu = emu(rgb), cpu(rgb)
    assert d_emu.shape == d_cpu.shape
    np.testing.assert_allclose(d_emu, d_cpu, atol=0.05)
    people = d_emu[d_emu[:, 5] == COCO80.index("person")]
    assert len(people) >= 3, d_emu
    # the three people walking in the first frame (checked by eye on the annotated image)
    centres = (people[:, :2] + people[:, 2:4]) / 2
    for x, y in [(269, 262), (514, 193), (663, 282)]:
        assert np.min(np.hypot(centres[:, 0] - x, centres[:, 1] - y)) < 15


def test_a_box_in_the_letterbox_padding_is_no_detection(kernel_backend, rng):
    """A box wholly in the letterbox padding has no area once clipped to the frame: it is
    dropped before the NMS (reference and detect.cu alike), so it neither counts towards
    max_det nor is reported as a zero-height box (it was, ahead of the real one)."""
    m = FrameMapping.of(TensorSpec(width=64, height=64), 640, 360)  # content rows 14..50
    assert (m.pad_y, m.content_h) == (14, 36)
    head = np.zeros((1, 6 + int(rng.integers(0, 3)), 1, 2), np.float32)
    head[0, 5] = 1.0  # one class, certain
    head[0, 0, 0] = [0.95, 0.9]  # the padding box scores higher
    head[0, 2, 0, 0], head[0, 4, 0, 0] = 5.0, -3.0  # cy = tanh(5) ~ 1, h = 0.047: rows 62..66
    head[0, 1:5, 0, 1] = rng.uniform(-0.3, 0.3, 4)
    head[0, 2, 0, 1] += 0.55  # cy = tanh(0.55) ~ 0.5: a box around the middle of the frame
    for max_det in (1, 10):
        p = DetectParams(score=0.5, iou=float(rng.uniform(0.3, 0.9)), max_det=max_det)
        want = decode_reference(head, p, m)
        assert len(want) == 1 and want[0, 4] == pytest.approx(0.9**0.6, rel=1e-6), want
        assert want[0, 2] > want[0, 0] and want[0, 3] > want[0, 1]
        n, host = launch_poisoned(kernel_backend, head, p, m)
        assert n == 1 and np.isnan(host[1:]).all()
        np.testing.assert_allclose(host[:1], want, rtol=1e-5, atol=1e-3)
