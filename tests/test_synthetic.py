"""The synthetic world: determinism, random access, and ground truth that matches the frames."""

from __future__ import annotations

import numpy as np
import pytest

from gputrack.errors import GputrackError
from gputrack.sensor.synthetic import ALL_CLASSES, FrameRing, SyntheticWorld, _visible_fraction

W, H = 320, 180  # small frames keep the tests fast; the scene is the same at every size


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(W, H, fps=30, seed=7)


@pytest.fixture(scope="module")
def truth(world) -> list[np.ndarray]:
    return [world.ground_truth(i) for i in range(900)]


def test_render_shape_and_type(world):
    img = world.render(0)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    assert img.std() > 10  # a textured scene, not a flat fill
    assert world.class_names == ALL_CLASSES


def test_same_seed_gives_identical_frames_other_seed_differs():
    a, b = SyntheticWorld(W, H, seed=3), SyntheticWorld(W, H, seed=3)
    for i in (0, 17, 400):
        assert np.array_equal(a.render(i), b.render(i))
        assert np.array_equal(a.ground_truth(i), b.ground_truth(i))
    assert not np.array_equal(a.render(5), SyntheticWorld(W, H, seed=4).render(5))


def test_random_access_equals_sequential():
    seq = SyntheticWorld(W, H, seed=11)
    frames = [seq.render(i) for i in range(0, 1200, 100)]
    # a fresh world asked for late frames first, then out of order
    rnd = SyntheticWorld(W, H, seed=11)
    for j in (11, 3, 7, 0, 10):
        assert np.array_equal(rnd.render(j * 100), frames[j])


def test_scene_is_resolution_independent():
    small = SyntheticWorld(320, 180, seed=2).ground_truth(60)
    big = SyntheticWorld(1280, 720, seed=2).ground_truth(60)
    assert np.array_equal(small[:, 4:6], big[:, 4:6])
    np.testing.assert_allclose(small[:, :4] * 4, big[:, :4], rtol=1e-4, atol=1e-2)


def test_boxes_inside_frame_and_well_formed(truth):
    allgt = np.concatenate(truth)
    assert allgt.dtype == np.float32 and allgt.shape[1] == 7
    x1, y1, x2, y2, _, cls, vis = allgt.T
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= W).all() and (y2 <= H).all()
    assert (x2 > x1).all() and (y2 > y1).all()
    assert ((vis >= 0) & (vis <= 1)).all()
    assert set(np.unique(cls).astype(int)) == {0, 1, 2}  # every class appears


def test_ids_stable_and_objects_enter_and_leave(world, truth):
    classes: dict[int, int] = {}
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, gt in enumerate(truth):
        assert len(np.unique(gt[:, 4])) == len(gt)  # ids unique within a frame
        for row in gt:
            k = int(row[4])
            assert classes.setdefault(k, int(row[5])) == int(row[5])  # class never changes
            first.setdefault(k, i)
            last[k] = i
    # between its first and last frame an id is missing only while the same object is
    # outside the frame (e.g. a ball bouncing past the bottom edge): never a silent swap
    for k in first:
        for i in range(first[k], last[k] + 1):
            if k not in set(truth[i][:, 4].astype(int)):
                obj = [o for o in world.objects(i) if o.life.id == k]
                assert obj, f"id {k} vanishes in frame {i} and comes back"
                x1, y1, x2, y2 = obj[0].box
                assert x2 <= 0 or y2 <= 0 or x1 >= W or y1 >= H
    entered = [k for k, f in first.items() if f > 0]
    left = [k for k, f in last.items() if f < len(truth) - 1]
    assert len(entered) >= 5 and len(left) >= 5
    # an object that enters starts at the frame edge, partly outside (visibility < 1)
    for k in entered[:5]:
        row = truth[first[k]][truth[first[k]][:, 4] == k][0]
        touches = row[0] <= 0 or row[1] <= 0 or row[2] >= W or row[3] >= H
        assert touches and row[6] < 1


def test_objects_move_and_change_scale(world):
    objs0 = {o.life.id: o for o in world.objects(100)}
    objs1 = {o.life.id: o for o in world.objects(160)}
    common = set(objs0) & set(objs1)
    assert common
    moved = [np.abs(objs0[k].box - objs1[k].box).max() for k in common]
    assert max(moved) > 5
    scale = [(objs1[k].box[2] - objs1[k].box[0]) / (objs0[k].box[2] - objs0[k].box[0])
             for k in common]
    assert max(abs(s - 1) for s in scale) > 0.02


def test_visibility_drops_when_occluded(world, truth):
    """Find an object fully inside the frame with visibility < 1: a nearer object covers it,
    and the rendered pixels in the covered part belong to the occluder, not the background."""
    found = 0
    for i, gt in enumerate(truth):
        inside = (gt[:, 0] > 0) & (gt[:, 1] > 0) & (gt[:, 2] < W) & (gt[:, 3] < H)
        occluded = gt[inside & (gt[:, 6] < 0.95)]
        if len(occluded) == 0:
            continue
        objs = world.objects(i)
        ids = [o.life.id for o in objs]
        for row in occluded:
            me = ids.index(int(row[4]))
            nearer = [o for o in objs[me + 1:] if _overlap(o.box, row[:4])]
            assert nearer, f"frame {i}: id {int(row[4])} has visibility {row[6]} with no occluder"
            assert all(o.depth < objs[me].depth for o in nearer)
        found += 1
    assert found >= 10


def _overlap(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def test_visible_fraction_exact():
    box = np.array([0.0, 0.0, 10.0, 10.0])
    assert _visible_fraction(box, np.zeros((0, 4)), 100, 100) == 1.0
    assert _visible_fraction(box, np.array([[5.0, 0, 20, 20]]), 100, 100) == pytest.approx(0.5)
    # two overlapping occluders: the union counts once
    two = np.array([[5.0, 0, 20, 20], [0.0, 5, 7, 20]])
    assert _visible_fraction(box, two, 100, 100) == pytest.approx(0.25)
    # half outside the frame
    assert _visible_fraction(np.array([-5.0, 0, 5, 10]), np.zeros((0, 4)), 100, 100) == 0.5


def test_objects_are_drawn_where_the_truth_says(world):
    """Pixels inside unoccluded boxes differ from the pure background there."""
    idx = 90
    img = world.render(idx).astype(np.int16)
    empty = SyntheticWorld(W, H, seed=7, num_objects=0).render(idx).astype(np.int16)
    diff = np.abs(img - empty).sum(axis=2) > 30
    assert not diff[_outside_all(world.ground_truth(idx))].any()
    for x1, y1, x2, y2, _, _, vis in world.ground_truth(idx):
        if vis > 0.5:
            crop = diff[int(y1): int(np.ceil(y2)), int(x1): int(np.ceil(x2))]
            assert crop.mean() > 0.25


def _outside_all(gt: np.ndarray) -> np.ndarray:
    mask = np.ones((H, W), bool)
    for x1, y1, x2, y2 in gt[:, :4]:
        ya, yb = max(0, int(y1) - 2), int(np.ceil(y2)) + 2
        mask[ya:yb, max(0, int(x1) - 2): int(np.ceil(x2)) + 2] = 0
    return mask


def test_lighting_changes(world):
    levels = [world.lighting(i) for i in range(0, 900, 30)]
    assert max(levels) - min(levels) > 0.1


def test_class_subset():
    w = SyntheticWorld(W, H, classes=("car",))
    assert w.class_names == ("car",)
    gt = np.concatenate([w.ground_truth(i) for i in range(0, 300, 10)])
    assert (gt[:, 5] == 0).all()


def test_frame_ring(world):
    ring = world.prerender(4, start=10)
    assert isinstance(ring, FrameRing) and len(ring) == 4
    assert np.array_equal(ring[1], world.render(11))
    assert np.array_equal(ring[5], world.render(11))  # wraps
    assert np.array_equal(ring.ground_truth(6), world.ground_truth(12))
    assert not ring[0].flags.writeable  # shared views: a consumer cannot draw on the ring


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(width=8, height=8), "too small"),
        (dict(classes=("dragon",)), "dragon"),
        (dict(fps=0), "fps"),
        (dict(width=16385, height=16), "too large"),
        (dict(width=8192, height=8192), "at most 40 MP"),
        (dict(num_objects=257), "num_objects 257 must be from 0 to 256"),
        (dict(num_objects=-1), "must be from 0 to 256"),
        (dict(seed=-1), "seed -1 must be from 0 to 2\\*\\*64 - 1"),
        (dict(seed=2**64), "seed 18446744073709551616 must be from 0"),
    ],
)
def test_bad_arguments(kwargs, words):
    with pytest.raises(GputrackError, match=words):
        SyntheticWorld(**kwargs)


def test_negative_index(world):
    with pytest.raises(GputrackError, match="index"):
        world.render(-1)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"fps": 1e-9}, "fps"),  # rendered frame 3 built lives to 3e9 s: it hung
        ({"fps": float("nan")}, "fps"),  # a ValueError deep inside before
        ({"fps": float("inf")}, "fps"),
        ({"width": 100.7}, "width 100.7: a whole number"),  # a 100-pixel world before
        ({"seed": 1.9}, "seed 1.9"),
        ({"seed": True}, "seed True"),
        ({"num_objects": 2.7}, "num_objects 2.7"),
        ({"classes": "car"}, "a list of names"),  # the classes c, a and r before
        ({"classes": ["car", "car"]}, "car given more than once"),
    ],
)
def test_the_world_refuses_what_it_would_bend(kwargs, words):
    with pytest.raises(GputrackError, match=words):
        SyntheticWorld(**{"width": 64, "height": 48, **kwargs})
    SyntheticWorld(64, 48, fps=np.float32(25), seed=np.uint64(3), num_objects=np.int64(2))
