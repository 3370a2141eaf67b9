"""What a Python user may pass to the library API, by mistake or legitimately.

Legitimate inputs (views, Fortran order, read-only arrays, the other byte order) give the
very results of a plain C-ordered native array; wrong ones (a list, a float where uint16 is
meant, NaN, a level of 256.5, a string for a switch) are a `GputrackError` naming the input,
never a traceback from deep inside or a silently wrong result. Every check runs on `cpu` and
on `emu` (the CUDA kernels on the host), which must agree.
"""

from __future__ import annotations

import numpy as np
import pytest

from gputrack.device import get_backend, probe
from gputrack.errors import GputrackError
from gputrack.isp import IspParams, IspPipeline, TensorSpec
from gputrack.sensor.frame import RawFrame
from gputrack.sensor.model import SensorModel, SensorParams
from gputrack.track.tracker import Tracker


@pytest.fixture(params=("cpu", "emu"))
def backend(request):
    state = probe(request.param)
    if not state.available:
        pytest.skip(f"{request.param} backend unavailable: {state.reason}")
    return get_backend(request.param)


PARAMS = IspParams(nv12=True, tensor=TensorSpec(width=24, height=16))


def mosaic(rng: np.random.Generator, shape: tuple[int, int] = (16, 24)) -> np.ndarray:
    return rng.integers(256, 4096, shape).astype(np.uint16)


def outputs(pipe: IspPipeline, raw: RawFrame | np.ndarray) -> dict[str, np.ndarray]:
    out = pipe.process(raw)
    return {"rgb8": out.rgb8, "nv12": out.nv12, "tensor": out.tensor, "rgb": out.rgb}


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# --- ISP: IspPipeline.process and RawFrame ---------------------------------------------------


def test_isp_takes_views_fortran_read_only_and_big_endian_alike(backend):
    rng = np.random.default_rng(1)
    raw = mosaic(rng)
    pipe = IspPipeline(PARAMS, backend, float_output=True)
    want = outputs(pipe, RawFrame(raw.copy(), black_level=256))
    wide = np.zeros((32, 48), np.uint16)
    wide[::2, ::2] = raw
    read_only = raw.copy()
    read_only.flags.writeable = False
    for data in (
        np.asfortranarray(raw),
        wide[::2, ::2],
        read_only,
        raw.astype(">u2"),  # from a big-endian file: the same numbers
    ):
        assert_same(outputs(pipe, RawFrame(data, black_level=256)), want)
    # a bare array takes the parameters' levels (black 256 by default at 12 bits)
    assert_same(outputs(pipe, raw.astype(">u2")), outputs(pipe, raw))


def test_big_endian_raw_frame_holds_native_data():
    raw = np.arange(16, dtype=">u2").reshape(4, 4)
    frame = RawFrame(raw)
    assert frame.data.dtype == np.uint16 and frame.data.dtype.isnative
    np.testing.assert_array_equal(frame.data, np.arange(16).reshape(4, 4))


def test_isp_leaves_the_callers_mosaic_alone_and_follows_size_changes(backend):
    rng = np.random.default_rng(2)
    raw, other = mosaic(rng), mosaic(rng, (20, 8))
    keep = raw.copy()
    pipe = IspPipeline(PARAMS, backend, float_output=True)
    first = outputs(pipe, RawFrame(raw, black_level=256))
    np.testing.assert_array_equal(raw, keep)
    # another frame size on the same pipeline, then back: as a fresh pipeline gives
    fresh = IspPipeline(PARAMS, backend, float_output=True)
    assert_same(outputs(pipe, other), outputs(fresh, other))
    assert_same(outputs(pipe, RawFrame(raw, black_level=256)), first)


@pytest.mark.parametrize("data", [[[0] * 4] * 4, ((0,) * 4,) * 4], ids=["list", "tuple"])
def test_isp_refuses_a_list_with_a_clear_error(backend, data):
    pipe = IspPipeline(PARAMS, backend)
    with pytest.raises(GputrackError, match="must be an array"):
        pipe.process(data)
    with pytest.raises(GputrackError, match="RAW frame data must be an array"):
        RawFrame(data)


def test_isp_refuses_data_beyond_its_bit_depth(backend):
    """16-bit data given as 12-bit would come out all white without a word."""
    rng = np.random.default_rng(3)
    raw = mosaic(rng)
    raw[3, 5] = 65535
    pipe = IspPipeline(PARAMS, backend)
    with pytest.raises(GputrackError, match="reaches 65535, which exceeds its bit depth 12"):
        pipe.process(RawFrame(raw, black_level=256))
    with pytest.raises(GputrackError, match="exceeds its bit depth 12"):
        pipe.process(raw)
    # Above the white level but within the bit depth: a real sensor's clipped highlights.
    raw[3, 5] = 4095
    frame = RawFrame(raw, black_level=256, white_level=4000)
    assert pipe.process(frame).rgb8.shape == (16, 24, 3)
    assert IspPipeline(PARAMS, backend).process(RawFrame(raw, bit_depth=16)).rgb8.shape == (
        16,
        24,
        3,
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"black_level": 256.5}, "black level 256.5: must be a whole number"),
        ({"black_level": "256"}, "black level '256': must be a whole number"),
        ({"black_level": True}, "black level True: must be a whole number"),
        ({"white_level": 4000.7}, "white level 4000.7: must be a whole number"),
        ({"bit_depth": 12.5}, "bit depth 12.5: must be a whole number"),
        ({"bit_depth": "12"}, "bit depth '12': must be a whole number"),
    ],
)
def test_levels_and_bit_depth_are_whole_numbers(kwargs, message):
    raw = np.full((4, 4), 300, np.uint16)
    with pytest.raises(GputrackError, match=message):
        RawFrame(raw, **kwargs)
    with pytest.raises(GputrackError, match=message):
        IspParams(**kwargs)


def test_integral_float_levels_are_taken_as_ints(backend):
    raw = mosaic(np.random.default_rng(4))
    frame = RawFrame(raw, bit_depth=12.0, black_level=256.0, white_level=np.float32(4095))
    assert (frame.bit_depth, frame.black_level, frame.white_level) == (12, 256, 4095)
    assert all(type(v) is int for v in (frame.bit_depth, frame.black_level, frame.white_level))
    params = IspParams(bit_depth=np.int64(12), black_level=np.uint16(256))
    assert (params.bit_depth, params.black) == (12, 256)
    want = outputs(IspPipeline(PARAMS, backend), RawFrame(raw, black_level=256))
    assert_same(outputs(IspPipeline(PARAMS, backend), frame), want)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: IspParams(nv12="no"), "nv12 'no': must be True or False"),
        (lambda: IspParams(tensor=(32, 32)), r"tensor \(32, 32\): a TensorSpec or None"),
        (lambda: IspParams(tone=None), "tone curve None unknown"),
        (lambda: IspParams(awb_clip="0.9"), "awb_clip '0.9': a fraction"),
        (lambda: IspParams(lut=["a", "b"]), "custom tone LUT must hold numbers"),
        (lambda: TensorSpec(width=32.5), "tensor width 32.5: must be a whole number"),
        (lambda: TensorSpec(height="32"), "tensor height '32': must be a whole number"),
        (lambda: TensorSpec(width=True), "tensor width True: must be a whole number"),
        (lambda: TensorSpec(letterbox="no"), "tensor letterbox 'no': must be True or False"),
        (lambda: TensorSpec(pad_value=None), "tensor pad value None: a finite number"),
        (lambda: TensorSpec(pad_value="114"), "tensor pad value '114': a finite number"),
    ],
)
def test_parameters_of_the_wrong_type_are_named(make, message):
    with pytest.raises(GputrackError, match=message):
        make()


def test_tensor_size_as_integral_float_is_an_int(backend):
    spec = TensorSpec(width=24.0, height=np.int64(16))
    assert (type(spec.width), type(spec.height)) == (int, int)
    out = IspPipeline(IspParams(tensor=spec), backend).process(mosaic(np.random.default_rng(5)))
    assert out.tensor.shape == (1, 3, 16, 24)


def test_custom_tone_lut_as_an_array_runs_on_every_backend(backend):
    """An array LUT made the parameters unhashable: the kernel backends failed on it (their
    constants are keyed on the parameters), the cpu backend did not."""
    curve = np.sqrt(np.linspace(0.0, 1.0, 257))
    raw = mosaic(np.random.default_rng(6))
    as_array = IspPipeline(IspParams(lut=curve), backend).process(raw)
    as_tuple = IspPipeline(IspParams(lut=tuple(curve.tolist())), backend).process(raw)
    np.testing.assert_array_equal(as_array.rgb8, as_tuple.rgb8)
    assert hash(IspParams(lut=curve)) == hash(IspParams(lut=tuple(curve.tolist())))


# --- the sensor model ------------------------------------------------------------------------


def scene8(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (16, 24, 3)).astype(np.uint8)


def test_sensor_takes_views_read_only_and_big_endian_alike(backend):
    rng = np.random.default_rng(7)
    model = SensorModel(SensorParams(IspParams(), noise=True, seed=5), backend)
    s8 = scene8(rng)
    want8 = model.render(s8, frame=3).data
    read_only = s8.copy()
    read_only.flags.writeable = False
    for view in (np.asfortranarray(s8), s8[:, ::-1][:, ::-1], read_only):
        np.testing.assert_array_equal(model.render(view, frame=3).data, want8)
    s16 = s8.astype(np.uint16) * 257
    want16 = model.render(s16, frame=3).data
    np.testing.assert_array_equal(model.render(s16.astype(">u2"), frame=3).data, want16)
    f32 = (s8 / 255.0).astype(np.float32)
    np.testing.assert_array_equal(
        model.render(f32.astype(">f4"), frame=3).data, model.render(f32, frame=3).data
    )
    np.testing.assert_array_equal(s16, s8.astype(np.uint16) * 257)  # the caller's scene kept


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_sensor_refuses_a_non_finite_float_scene(backend, bad):
    """NaN became RAW 0 (an undefined cast: a warning on cpu, nothing on emu), inf white."""
    scene = np.full((8, 8, 3), 0.5, np.float32)
    scene[2, 3, 1] = bad
    model = SensorModel(SensorParams(IspParams()), backend)
    with pytest.raises(GputrackError, match="scene holds NaN or infinite values"):
        model.render(scene)


def test_sensor_refuses_a_list_scene_alike_on_every_backend(backend):
    model = SensorModel(SensorParams(IspParams()), backend)
    with pytest.raises(GputrackError, match="scene must be an array"):
        model.render(scene8(np.random.default_rng(8)).tolist())


@pytest.mark.parametrize(
    ("frame", "message"),
    [(1.5, "frame number 1.5: must be a whole number"), (-1, "frame number -1: must be from 0")],
)
def test_sensor_frame_number_is_checked_alike_on_every_backend(backend, frame, message):
    """A frame of 1.5 ran on cpu and was a TypeError on emu."""
    model = SensorModel(SensorParams(IspParams(), noise=True), backend)
    with pytest.raises(GputrackError, match=message):
        model.render(scene8(np.random.default_rng(9)), frame=frame)


# --- the detector ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector():
    from gputrack.dsp.detector import Detector, bundled_model

    return Detector(bundled_model(), get_backend("cpu"))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.full((64, 96, 3), 0.5), "must be uint8 .*got float64"),  # float RGB in [0, 1]
        (np.full((64, 96, 3), 30000, np.uint16), "must be uint8 .*got uint16"),
        (np.zeros((64, 96), np.uint8), r"must be RGB \(H, W, 3\), got shape \(64, 96\)"),
        (np.zeros((64, 96, 4), np.uint8), r"must be RGB \(H, W, 3\), got shape \(64, 96, 4\)"),
        (np.zeros((0, 96, 3), np.uint8), "detector image 96x0 is empty"),
        ([[[0, 0, 0]] * 4] * 4, "must be a NumPy uint8 array .*got list"),
    ],
    ids=["float01", "uint16", "grey", "rgba", "empty", "list"],
)
def test_detector_refuses_what_is_not_an_rgb8_image(detector, image, message):
    """A float image in [0, 1] found nothing, silently; others failed deep inside."""
    with pytest.raises(GputrackError, match=message):
        detector(image)
    with pytest.raises(GputrackError, match=message):
        detector.tensor(image)


def test_detector_takes_views_and_read_only_images(detector):
    from gputrack.sensor.synthetic import SyntheticWorld

    image = SyntheticWorld(384, 224, seed=1).render(10)
    want = detector(image)
    read_only = image.copy()
    read_only.flags.writeable = False
    for view in (np.asfortranarray(image), image[..., ::-1].copy()[..., ::-1], read_only):
        np.testing.assert_array_equal(detector(view), want)
    np.testing.assert_array_equal(image, SyntheticWorld(384, 224, seed=1).render(10))


# --- the tracker -------------------------------------------------------------------------------

DETS = np.array([[10, 10, 50, 80, 0.9, 0], [100, 100, 130, 160, 0.8, 1]], np.float32)


def run_tracker(dets, frames: int = 3) -> np.ndarray:
    tracker = Tracker()
    for _ in range(frames):
        rows = tracker.update_array(dets)
    return rows


def test_tracker_takes_lists_views_and_byte_orders_alike():
    want = run_tracker(DETS)
    read_only = DETS.copy()
    read_only.flags.writeable = False
    for dets in (
        DETS.tolist(),
        np.asfortranarray(DETS),
        DETS.astype(">f8"),
        read_only,
        np.c_[DETS, np.arange(2)],  # extra columns are ignored
    ):
        np.testing.assert_array_equal(run_tracker(dets), want)


def test_tracker_leaves_the_callers_detections_alone():
    dets = DETS.astype(np.float64)
    keep = dets.copy()
    tracker = Tracker()
    for _ in range(5):
        tracker.update(dets)
    np.testing.assert_array_equal(dets, keep)


@pytest.mark.parametrize("empty", [[], np.zeros(0), np.zeros((0, 6)), np.zeros((0, 7))])
def test_tracker_takes_no_detections_as_any_empty_table(empty):
    assert run_tracker(empty).shape == (0, 13)


@pytest.mark.parametrize("shape", [(5, 0), (1, 0, 6), (0, 4)])
def test_tracker_refuses_empty_arrays_of_the_wrong_shape(shape):
    """A 5 x 0 array (five detections with no columns) was taken as no detections."""
    with pytest.raises(GputrackError, match="must be an N x 6 array"):
        Tracker().update(np.zeros(shape))


@pytest.mark.parametrize(
    "dets",
    [DETS.astype(np.complex128), DETS > 0, DETS.astype(str)],
    ids=["complex", "bool", "text"],
)
def test_tracker_refuses_detections_that_are_not_numbers(dets):
    """Complex detections lost their imaginary part (a warning only), text and bools were
    converted to boxes."""
    tracker = Tracker()
    with pytest.raises(GputrackError, match="array of numbers"):
        tracker.update(dets)
    assert len(tracker) == 0 and tracker.frame is None
