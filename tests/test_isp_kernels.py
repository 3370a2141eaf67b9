"""kernels/isp.cu on every backend that runs kernels (emu here, cuda on a GPU) against the
NumPy reference: 8-bit outputs within 1 in 99.9 % of pixels and 2 anywhere, float outputs
and the tensor against float64, grey-world statistics exactly. Fresh random inputs of sizes
that are not multiples of the 64x16 tile, real images, and outputs poisoned beforehand."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from gputrack.device import get_backend
from gputrack.errors import GputrackError
from gputrack.isp import IspParams, IspPipeline, TensorSpec
from gputrack.isp import reference as ref
from gputrack.isp.params import BAYER_PATTERNS, DEMOSAIC_METHODS
from gputrack.isp.pipeline import AWB_WORDS
from gputrack.isp.quality import natural_image
from gputrack.sensor import model
from gputrack.sensor.frame import RawFrame
from tests.conftest import shared_data

REAL_RAW = "raw/openisp_1920x1080_rggb_10bit.raw"


def assert_u8_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape and got.dtype == np.uint8, what
    d = np.abs(got.astype(np.int64) - want.astype(np.int64))
    frac = float((d > 1).mean())
    assert d.max() <= 2, (
        f"{what}: max difference {d.max()} at {np.unravel_index(d.argmax(), d.shape)}"
    )
    assert frac <= 0.001, f"{what}: {frac:.4%} of values differ by more than 1"


def assert_nv12_of_own_rgb8(out, what: str) -> None:
    """The NV12 planes are the kernel's own RGB8 converted as the reference converts: the
    fixed-point arithmetic is within 1e-4 of a code, so only a value that close to a rounding
    tie may come out one step off (a few values on a small frame: a 192x22 frame, 6336 values,
    once had 2)."""
    want = ref.to_nv12(out.rgb8.astype(np.float64) / 255.0)
    d = np.abs(out.nv12.astype(np.int64) - want.astype(np.int64))
    assert d.max() <= 1 and (d > 0).sum() <= 3 + d.size // 10_000, (
        f"{what}: nv12 of the kernel's own rgb8: {(d > 0).sum()} values off, max {d.max()}"
    )


def run_and_compare(backend, raw: np.ndarray | RawFrame, params: IspParams, what: str) -> None:
    pipe = IspPipeline(params, backend, float_output=True)
    pipe.process(raw)  # allocate, then poison everything the kernels must overwrite
    pipe.poison(0xA5)
    out = pipe.process(raw)
    data = raw.data if isinstance(raw, RawFrame) else raw
    want = ref.process(data, pipe.effective(raw), dtype=np.float64)
    assert_u8_close(out.rgb8, want.rgb8, f"{what} rgb8")
    if pipe.effective(raw).demosaic == "directional":
        # Its blend weights (d + eps)^2 are sensitive to the float32 rounding of the
        # variations d where both directions vary alike (pure noise does that), so its float
        # output is held to the 8-bit bound in float: within 1/7 of a step in 99.9 %
        # of values and within 2 steps anywhere. The 8-bit outputs above meet MHC's bound.
        d = np.abs(out.rgb.astype(np.float64) - want.rgb)
        assert d.max() <= 2 / 255, f"{what} float rgb: max difference {d.max():.2e}"
        assert (d > 5e-4).mean() <= 1e-3, f"{what} float rgb: {(d > 5e-4).mean():.3%} off"
    else:
        np.testing.assert_allclose(out.rgb, want.rgb, atol=2e-5, err_msg=f"{what} float rgb")
    if params.nv12:
        assert_u8_close(out.nv12, want.nv12, f"{what} nv12")
        assert_nv12_of_own_rgb8(out, what)
    if params.tensor is not None:
        # The tensor is made from the RGB8 image; compare against the reference made from the
        # kernel's own RGB8 so that the resampling alone is measured, in float64.
        t64 = ref.make_tensor(out.rgb8, params.tensor, np.float64)
        np.testing.assert_allclose(out.tensor.astype(np.float64), t64, atol=2e-5, rtol=2e-3)
    assert out.gains == pytest.approx(want.gains, rel=1e-12), f"{what} white-balance gains"
    # Without the float image the pipeline runs other code (isp_main instead of
    # isp_main_float; isp_main_dir's 8-bit instantiation): the kernels of the live pipeline,
    # held to the same bounds.
    pipe8 = IspPipeline(params, backend)
    pipe8.process(raw)
    pipe8.poison(0x5A)
    out8 = pipe8.process(raw)
    assert out8.rgb is None
    assert_u8_close(out8.rgb8, want.rgb8, f"{what} rgb8 (8-bit only)")
    if params.nv12:
        assert_u8_close(out8.nv12, want.nv12, f"{what} nv12 (8-bit only)")
        assert_nv12_of_own_rgb8(out8, f"{what} (8-bit only)")


# isp_main's blocks are strips of 2 tiles of 32 rows: (70, 150) three strips, the last one a
# 22-row tile; (128, 40) 16-byte stores with a last tile of 8 rows; (192, 22) one partial tile;
# (70, 100) a last tile of 4 rows; (4, 4), (4, 6), (6, 4) mirror across the whole frame.
@pytest.mark.parametrize(
    "size",
    [(70, 46), (130, 34), (128, 64), (70, 150), (128, 40), (192, 22), (70, 100), (4, 4), (4, 6),
     (6, 4)],
)  # fmt: skip
def test_random_raw_matches_reference(kernel_backend, rng, size):
    w, h = size
    for pattern in BAYER_PATTERNS:
        raw = rng.integers(0, 4096, (h, w)).astype(np.uint16)
        params = IspParams(
            pattern=pattern,
            demosaic=str(rng.choice(DEMOSAIC_METHODS)),
            wb="auto" if rng.random() < 0.5 else tuple(rng.uniform(0.5, 3.0, 3)),
            lens_shading=tuple(rng.uniform(0, 0.5, 2)) if rng.random() < 0.5 else (0.0, 0.0),
            nv12=True,
            tensor=TensorSpec(int(rng.integers(8, 60)), int(rng.integers(8, 60))),
        )
        run_and_compare(kernel_backend, raw, params, f"{w}x{h} {pattern} {params.demosaic}")


@pytest.mark.parametrize("size", [(70, 46), (130, 34), (128, 64), (6, 4), (4, 4), (4, 34)])
def test_random_raw_directional_matches_reference(kernel_backend, rng, size):
    """isp_main_dir: its own halo (5 rows, 8 columns) and shared-memory stages; the smallest
    frames mirror beyond one reflection (its reach is 6 pixels), where a mirrored pixel must
    keep its Bayer colour."""
    w, h = size
    for pattern in BAYER_PATTERNS:
        raw = rng.integers(0, 4096, (h, w)).astype(np.uint16)
        params = IspParams(
            pattern=pattern,
            demosaic="directional",
            wb="auto" if rng.random() < 0.5 else tuple(rng.uniform(0.5, 3.0, 3)),
            lens_shading=tuple(rng.uniform(0, 0.5, 2)) if rng.random() < 0.5 else (0.0, 0.0),
            nv12=True,
            tensor=TensorSpec(int(rng.integers(8, 60)), int(rng.integers(8, 60))),
        )
        run_and_compare(kernel_backend, raw, params, f"{w}x{h} {pattern} directional")


@pytest.mark.parametrize("method", DEMOSAIC_METHODS)
def test_natural_scene_with_noise_matches_reference(kernel_backend, rng, method):
    """Smooth content (where rounding, not clipping, decides) through the sensor model."""
    img = natural_image(rng, 62, 98)
    sp = model.SensorParams(
        isp=IspParams(demosaic=method, nv12=True), noise=True, seed=int(rng.integers(1 << 31))
    )
    raw = model.reference(img, sp)
    run_and_compare(kernel_backend, raw, sp.isp, f"natural {method}")


@pytest.mark.parametrize(
    "method, patterns",
    [("mhc", ("RGGB", "BGGR")), ("directional", BAYER_PATTERNS)],
)
def test_kodak_crop_matches_reference(kernel_backend, rng, method, patterns):
    img = cv2.imread(str(shared_data("kodak/kodim05.png")))[..., ::-1]
    y, x = 2 * int(rng.integers(0, 160)), 2 * int(rng.integers(0, 250))
    crop = np.ascontiguousarray(img[y : y + 192, x : x + 256])
    for pattern in patterns:
        sp = model.SensorParams(
            isp=IspParams(pattern=pattern, demosaic=method, nv12=True, tensor=TensorSpec(96, 96)),
            noise=True,
            seed=int(rng.integers(1 << 31)),
        )
        raw = model.reference(crop, sp)
        run_and_compare(kernel_backend, raw, sp.isp, f"kodak crop {pattern} {method}")


def test_real_raw_crop_matches_reference(kernel_backend, rng):
    full = np.fromfile(shared_data(REAL_RAW), dtype="<u2").reshape(1080, 1920)
    y, x = 2 * int(rng.integers(0, 440)), 2 * int(rng.integers(0, 830))
    crop = np.ascontiguousarray(full[y : y + 200, x : x + 254])
    frame = RawFrame(crop, pattern="RGGB", bit_depth=10, black_level=0)
    params = IspParams(wb="auto", nv12=True, tensor=TensorSpec(64, 48, dtype="float16"))
    run_and_compare(kernel_backend, frame, params, "real RAW crop")


@pytest.mark.parametrize(
    "spec",
    [
        TensorSpec(57, 31, resize="area"),
        TensorSpec(40, 40, resize="bilinear", channel_order="BGR"),
        TensorSpec(100, 90, resize="bilinear"),  # upscaling
        TensorSpec(
            33, 50, letterbox=False, mean=(123.7, 116.3, 103.5), scale=(0.017, 0.0175, 0.0174)
        ),
    ],
    ids=["area", "bilinear-bgr", "upscale", "stretch-meanstd"],
)
def test_tensor_against_float64(kernel_backend, rng, spec):
    raw = rng.integers(200, 4000, (46, 70)).astype(np.uint16)
    params = IspParams(tensor=spec)
    out = IspPipeline(params, kernel_backend).process(raw)
    want = ref.make_tensor(out.rgb8, spec, np.float64)
    assert out.tensor.shape == (1, 3, spec.height, spec.width) and out.tensor.dtype == np.float32
    np.testing.assert_allclose(
        out.tensor, want, atol=1e-5 * max(1.0, np.abs(want).max()), rtol=1e-5
    )
    # The letterbox bars hold the pad value, normalised.
    cw, ch, px, py = spec.geometry(70, 46)
    if py > 0:
        assert np.allclose(
            out.tensor[0, :, 0, :].T, (spec.pad_value - np.array(spec.mean)) * spec.scale
        )


def test_bilinear_tensor_of_larger_frames_against_float64(kernel_backend, rng):
    """Source coordinates of a few hundred pixels: the weights must not lose float32 bits in
    the coordinate's product (they had, up to 5e-5 of the range at 448x216 -> 195x155)."""
    cases = [((448, 216), (195, 155))]
    for _ in range(2):
        frame = (2 * int(rng.integers(150, 500)), 2 * int(rng.integers(100, 300)))
        cases.append((frame, (int(rng.integers(30, 250)), int(rng.integers(30, 250)))))
    for (w, h), (tw, th) in cases:
        spec = TensorSpec(tw, th, resize="bilinear")
        raw = rng.integers(0, 4096, (h, w)).astype(np.uint16)  # neighbours far apart
        out = IspPipeline(IspParams(tensor=spec), kernel_backend).process(raw)
        want = ref.make_tensor(out.rgb8, spec, np.float64)
        np.testing.assert_allclose(out.tensor, want, atol=1e-6, rtol=0, err_msg=f"{w}x{h} {spec}")


def test_tensor_of_random_geometry_against_float64(kernel_backend, rng):
    """Fresh geometry each run: extreme upscales (a block's footprint one unit wide), extreme
    downscales (footprints of hundreds of rows), anything between; both resamplers, letterbox
    or stretch. (A reciprocal division without its one-unit guard passed every fixed shape.)"""
    for kind in (0, 0, 0, 1, 1, 2, 2, 2):
        if kind == 0:  # a tiny frame, a large tensor
            w, h = 2 * int(rng.integers(2, 12)), 2 * int(rng.integers(2, 12))
            tw, th = int(rng.integers(50, 600)), int(rng.integers(50, 600))
        elif kind == 1:  # a large frame, a tiny tensor
            w, h = 2 * int(rng.integers(100, 800)), 2 * int(rng.integers(50, 500))
            tw, th = int(rng.integers(1, 12)), int(rng.integers(1, 12))
        else:
            w, h = 2 * int(rng.integers(2, 400)), 2 * int(rng.integers(2, 300))
            tw, th = int(rng.integers(1, 300)), int(rng.integers(1, 300))
        spec = TensorSpec(
            tw,
            th,
            resize=str(rng.choice(["area", "bilinear"])),
            letterbox=bool(rng.random() < 0.8),
            channel_order=str(rng.choice(["RGB", "BGR"])),
        )
        raw = rng.integers(0, 4096, (h, w)).astype(np.uint16)
        out = IspPipeline(IspParams(tensor=spec), kernel_backend).process(raw)
        want = ref.make_tensor(out.rgb8, spec, np.float64)
        # Exact integer footprints: only float32 rounding is left (it was up to 6e-5 with
        # float coordinates at extreme upscales). A footprint of tens of thousands of pixels
        # (1026x768 -> 8x2: 128 x 384) sums its fractional-weight rows in float32: a few
        # 1e-6 relative (2.9e-6 seen once in 2400 geometries); a wrong footprint is ~1e-2 off.
        cw, ch, _, _ = spec.geometry(w, h)
        rtol = 1e-6 if (w / cw) * (h / ch) < 4096 else 1e-5
        np.testing.assert_allclose(
            out.tensor, want, atol=1e-6, rtol=rtol, err_msg=f"{w}x{h} -> {spec}"
        )


def test_float16_tensor_rounds_like_numpy(kernel_backend, rng):
    """The kernel's own float -> half conversion, bit for bit against NumPy's, on the very
    float32 values the kernel converts (its float32 output): normal, subnormal, overflow."""
    raw = rng.integers(0, 4096, (46, 70)).astype(np.uint16)
    for scale in (1 / 255, 3e-7, 1e-9, 300.0, float(rng.uniform(0.001, 1000))):
        spec = TensorSpec(24, 24, scale=(scale,) * 3, mean=(0.5, 0.0, 128.0), dtype="float16")
        half = IspPipeline(IspParams(tensor=spec), kernel_backend).process(raw).tensor
        single = IspPipeline(IspParams(tensor=replace(spec, dtype="float32")), kernel_backend)
        f32 = single.process(raw).tensor
        assert half.dtype == np.float16 and f32.dtype == np.float32
        with np.errstate(over="ignore"):  # scale 300 overflows half on purpose
            want = f32.astype(np.float16)
        assert np.array_equal(half.view(np.uint16), want.view(np.uint16)), f"scale {scale}"
        if scale == 300.0:
            assert np.isinf(half).any() and np.isfinite(half).any()
        if scale == 1e-9:
            assert (np.abs(half[half != 0]) < 6.1e-5).all()  # subnormal halves


# 16-byte loads only when 8 | width, the rest by 4-byte words: widths of every residue mod 8,
# cell-row counts that do and do not fill a thread's AWB_ROWS, 16-bit data (the widest sums).
@pytest.mark.parametrize("shape", [(62, 98), (84, 128), (1040, 64), (38, 260), (70, 534)])
def test_awb_statistics_are_exact(kernel_backend, rng, shape):
    raw = rng.integers(0, 1024, shape).astype(np.uint16)
    raw[:10, :10] = 1023  # saturated cells are left out
    for pattern in BAYER_PATTERNS:  # red and blue sit at each of the cell's four places
        frame = RawFrame(raw, pattern=pattern, bit_depth=10, black_level=16)
        params = IspParams(wb="auto")
        pipe = IspPipeline(params, kernel_backend)
        out = pipe.process(frame)
        want = ref.awb_stats(raw, IspPipeline(params, get_backend("cpu")).effective(frame))
        got = kernel_backend.to_host(pipe._buffers["awb"])
        assert got[:4].tolist() == want.tolist(), pattern
        assert got[4:].tolist() == [0] * (AWB_WORDS - 4), f"{pattern}: not reset for the next"
        assert out.gains == ref.awb_gains(want), pattern


def test_awb_statistics_of_consecutive_frames_are_each_their_own(kernel_backend, rng):
    """The reduction resets itself (its last block zeroes the running sums): a second and third
    frame through the same pipeline get their own sums, not the sum of all frames."""
    params = IspParams(wb="auto")
    pipe = IspPipeline(params, kernel_backend)
    cpu = IspPipeline(params, get_backend("cpu"))
    for scale in (4096, 1024, 2048):
        raw = rng.integers(0, scale, (46, 70)).astype(np.uint16)
        out = pipe.process(raw)
        want = ref.awb_stats(raw, cpu.effective(raw))
        assert kernel_backend.to_host(pipe._buffers["awb"])[:4].tolist() == want.tolist()
        assert out.gains == ref.awb_gains(want)


def test_buffers_are_reused_between_frames(kernel_backend, rng):
    pipe = IspPipeline(IspParams(nv12=True), kernel_backend)
    a = rng.integers(0, 4096, (46, 70)).astype(np.uint16)
    b = rng.integers(0, 4096, (46, 70)).astype(np.uint16)
    first = pipe.process(a, download=False).rgb8
    second = pipe.process(b, download=False).rgb8
    assert first is second  # the same device buffer, no allocation per frame
    assert_u8_close(
        kernel_backend.to_host(second), ref.process(b, IspParams()).rgb8, "second frame"
    )


def test_device_input_without_download(kernel_backend, rng):
    raw = rng.integers(0, 4096, (46, 70)).astype(np.uint16)
    dev = kernel_backend.to_device(raw)
    out = IspPipeline(IspParams(), kernel_backend).process(dev, download=False)
    assert kernel_backend.is_device_array(out.rgb8)
    assert_u8_close(kernel_backend.to_host(out.rgb8), ref.process(raw, IspParams()).rgb8, "device")


def test_real_raw_with_auto_white_balance_is_plausible_on_cpu():
    check_real_raw_awb(get_backend("cpu"))


def test_real_raw_with_auto_white_balance_is_plausible(kernel_backend):
    check_real_raw_awb(kernel_backend)


def check_real_raw_awb(backend) -> None:
    """The openISP chart: its grey patches come out near-neutral with grey world (CIELAB
    chroma C* under 7; 21-33 without white balance), and the image uses the tonal range."""
    import colour

    raw = np.fromfile(shared_data(REAL_RAW), dtype="<u2").reshape(1080, 1920)
    frame = RawFrame(raw, pattern="RGGB", bit_depth=10, black_level=0)
    grey_patches = [  # (rows, cols) inside grey patches of the chart, found by looking
        (slice(500, 600), slice(840, 870)),
        (slice(830, 920), slice(570, 660)),
        (slice(830, 920), slice(690, 780)),
        (slice(830, 920), slice(810, 910)),
        (slice(580, 670), slice(440, 520)),
        (slice(700, 790), slice(440, 520)),
        (slice(700, 790), slice(1200, 1280)),
        (slice(700, 790), slice(1320, 1400)),
    ]

    def chroma(img: np.ndarray) -> np.ndarray:
        means = np.array([img[r].reshape(-1, 3).mean(0) for r in grey_patches]) / 255.0
        lab = colour.XYZ_to_Lab(colour.sRGB_to_XYZ(means))
        return np.hypot(lab[:, 1], lab[:, 2])

    awb = IspPipeline(IspParams(wb="auto"), backend).process(frame)
    plain = IspPipeline(IspParams(wb=(1.0, 1.0, 1.0)), backend).process(frame)
    c_awb, c_plain = chroma(awb.rgb8), chroma(plain.rgb8)
    print(
        "grey patches C* with AWB", c_awb.round(2), "without", c_plain.round(2), "gains", awb.gains
    )
    assert c_awb.max() < 7.0 and c_awb.mean() < 5.0
    assert c_plain.mean() > 15.0
    assert 1.2 < awb.gains[0] < 2.0 and 0.9 < awb.gains[2] < 1.4  # a red-poor sensor, as usual
    assert awb.rgb8.min() < 30 and awb.rgb8.max() > 240


def test_cpu_backend_agrees_with_float64_and_with_the_kernels(kernel_backend, rng):
    """The `cpu` backend runs the reference in float32: the same 8-bit tolerance, both ways."""
    img = natural_image(rng, 64, 96)
    sp = model.SensorParams(isp=IspParams(nv12=True, wb="auto"), noise=True)
    raw = model.reference(img, sp)
    cpu = IspPipeline(sp.isp, get_backend("cpu")).process(raw)
    dev = IspPipeline(sp.isp, kernel_backend).process(raw)
    want = ref.process(raw, sp.isp, dtype=np.float64)
    assert_u8_close(cpu.rgb8, want.rgb8, "cpu backend rgb8")
    assert_u8_close(cpu.nv12, want.nv12, "cpu backend nv12")
    assert_u8_close(dev.rgb8, cpu.rgb8, f"{kernel_backend.name} vs cpu rgb8")
    assert_u8_close(dev.nv12, cpu.nv12, f"{kernel_backend.name} vs cpu nv12")


def test_custom_tone_lut_matches_reference(kernel_backend, rng):
    """A short custom LUT: isp_main stages only its samples in shared memory."""
    lut = tuple(np.sort(rng.uniform(0, 1, 33)))
    raw = rng.integers(0, 4096, (38, 70)).astype(np.uint16)
    params = IspParams(lut=lut, demosaic=str(rng.choice(["mhc", "bilinear"])))
    run_and_compare(kernel_backend, raw, params, f"custom LUT, {params.demosaic}")


@pytest.mark.parametrize("size", [1, 5000])
def test_custom_tone_lut_size_is_checked(size):
    with pytest.raises(GputrackError, match="custom tone LUT needs 2 to 4097 samples"):
        IspParams(lut=tuple(np.linspace(0, 1, size)))


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("changes, message", [
    ({"wb": (NAN, 1, 1)}, "white balance gains"),
    ({"wb": (INF, 1, 1)}, "white balance gains"),
    ({"wb": (1e39, 1, 1)}, "white balance gains"),
    ({"wb": (0, 1, 1)}, "white balance gains"),
    ({"awb_clip": NAN}, "awb_clip"),
    ({"awb_clip": 0}, "awb_clip"),
    ({"awb_clip": 5}, "awb_clip"),
    ({"ccm": ((1e300, 0, 0), (0, 1, 0), (0, 0, 1))}, "within \\+-16"),
    ({"ccm": ((NAN, 0, 0), (0, 1, 0), (0, 0, 1))}, "within \\+-16"),
    ({"lens_shading": (0, 1e308)}, "at most 64"),
    ({"lut": (0.0, NAN, 1.0)}, "finite numbers"),
])
def test_colour_parameters_out_of_range_are_refused(changes, message):
    """Caught where they are made: a NaN gain had passed and the backends disagreed on it."""
    with pytest.raises(GputrackError, match=message):
        IspParams(**changes)


@pytest.mark.parametrize("changes", [
    {"mean": (NAN, 0, 0)}, {"scale": (1, 1)}, {"scale": (1, INF, 1)}, {"pad_value": NAN},
])
def test_tensor_normalisation_must_be_finite(changes):
    with pytest.raises(GputrackError, match="tensor"):
        TensorSpec(**changes)


@pytest.mark.parametrize(
    "size, tensor",
    [
        ((384, 216), TensorSpec(64, 64)),  # scale 6 as 4K -> 640: one pass, letterbox rows
        ((400, 160), TensorSpec(40, 16)),  # scale 10: 6 of a block's 8 rows per pass
        ((404, 162), TensorSpec(40, 16)),  # width a multiple of 4, not 8: 4-byte units
        ((1400, 120), TensorSpec(32, 16)),  # scale 43.75: one row per pass, fractional weights
        ((2112, 264), TensorSpec(16, 16)),  # footprint over isp.cu's TEN_VS: direct reads
        ((198, 150), TensorSpec(40, 36, resize="area")),  # width not a multiple of 4: direct
        ((64, 40), TensorSpec(150, 90)),  # upscaling: a footprint of one or two pixels
        ((520, 1040), TensorSpec(8, 4)),  # 260 whole rows: more than 16-bit byte sums hold
        ((8, 8), TensorSpec(512, 512)),  # 64x upscale: a block's footprint one 8-byte unit
        ((4, 6), TensorSpec(300, 200)),  # the same in 4-byte units
    ],
)
def test_tensor_area_paths_match_reference(kernel_backend, rng, size, tensor):
    w, h = size
    raw = rng.integers(0, 4096, (h, w)).astype(np.uint16)
    run_and_compare(kernel_backend, raw, IspParams(tensor=tensor), f"{w}x{h} -> {tensor}")


@pytest.mark.parametrize(
    "schedule",
    [
        {"ISP_STRIP": 1},
        {"ISP_STRIP": 3, "ISP_MIN_BLOCKS": 2},
        {"ISP_DIRECT_STORE": 1},
        {"ISP_DIRECT_STORE": 1, "ISP_STRIP": 3},
        {"ISP_CELLS": 1},  # one cell per thread: 16-row tiles
        {"ISP_CELLS": 1, "ISP_STRIP": 3, "ISP_MIN_BLOCKS": 5},
        {"ISP_CELLS": 1, "ISP_DIRECT_STORE": 1},
        {"AWB_ROWS": 1},
        {"AWB_ROWS": 3},
        {"AWB_ROWS": 16},
    ],
    ids=lambda knobs: ",".join(f"{k}={v}" for k, v in knobs.items()),
)
def test_schedule_knobs_leave_the_result_alone(kernel_backend, rng, schedule):
    methods = ("mhc", "directional") if "ISP_DIRECT_STORE" in schedule else ("mhc",)
    # 16-byte RAW loads only where the width is a multiple of 8; a frame shorter than a
    # 32-row tile, and a single row of cells per thread
    shapes = [(150, 70), (150, 128), (22, 64), (6, 128)]
    cases = [(m, shape) for m in methods for shape in shapes]
    for method, shape in cases:
        params = IspParams(nv12=True, wb="auto", demosaic=method)
        raw = rng.integers(0, 4096, shape).astype(np.uint16)
        base = IspPipeline(params, kernel_backend, float_output=True)
        want = base.process(raw)
        tuned = IspPipeline(params, kernel_backend, float_output=True, schedule=schedule)
        tuned.process(raw)
        tuned.poison()  # whatever the knob, every output byte is written each frame
        got = tuned.process(raw)
        assert np.array_equal(got.rgb8, want.rgb8) and np.array_equal(got.nv12, want.nv12)
        assert np.array_equal(got.rgb, want.rgb)
        sums = [kernel_backend.to_host(p._buffers["awb"]).tolist() for p in (base, tuned)]
        assert sums[0] == sums[1], shape


def test_awb_statistics_of_16_bit_data_at_the_largest_sums(kernel_backend, rng):
    """Every cell just under the saturation threshold of a 16-bit sensor: the largest values
    a thread's and a warp's 32-bit sums can meet, in whole blocks and a ragged edge."""
    params = IspParams(wb="auto", bit_depth=16, black_level=0)
    top = ref.awb_threshold(params) - 1
    raw = (top - rng.integers(0, 3, (260, 520))).astype(np.uint16)
    pipe = IspPipeline(params, kernel_backend)
    pipe.process(raw)
    want = ref.awb_stats(raw, params)
    assert want[3] == raw.size // 4  # no cell left out: the sums are as large as they get
    assert kernel_backend.to_host(pipe._buffers["awb"])[:4].tolist() == want.tolist()


def test_unknown_schedule_knob_is_refused():
    with pytest.raises(GputrackError, match="unknown ISP schedule knobs: TILE"):
        IspPipeline(IspParams(), get_backend("cpu"), schedule={"TILE": 8})


@pytest.mark.parametrize(
    "knobs", [{"ISP_STRIP": 0}, {"ISP_CELLS": 3}, {"AWB_ROWS": 17}, {"ISP_MIN_BLOCKS": -1},
              {"ISP_DIRECT_STORE": True}, {"ISP_STRIP": 2.5}],
)
def test_schedule_knob_outside_its_range_is_refused(knobs):
    """Before any build: a strip of 0 tiles divided by zero, 3 cells failed a static_assert
    in the compiler's words."""
    with pytest.raises(GputrackError, match=f"ISP schedule knob {next(iter(knobs))}="):
        IspPipeline(IspParams(), get_backend("cpu"), schedule=knobs)


def test_pipeline_strip_is_the_kernels_default():
    """IspPipeline sizes isp_main's grid by STRIP and CELLS; a kernel default smaller than
    either would leave rows unprocessed, a larger one would only waste blocks: keep them
    equal."""
    import re

    from gputrack.device.kernel_source import resolve
    from gputrack.isp.pipeline import CELLS, STRIP

    text = resolve("isp.cu").read_text()
    assert int(re.search(r"#define ISP_STRIP (\d+)", text).group(1)) == STRIP
    assert int(re.search(r"#define ISP_CELLS (\d+)", text).group(1)) == CELLS


def test_a_device_mosaic_that_starts_misaligned_is_copied_first(kernel_backend, rng):
    """A contiguous view that starts 2 bytes into its allocation would make the kernels'
    16-byte RAW loads fault on a GPU: the pipeline copies such a mosaic into an aligned
    buffer (and leaves an aligned one alone)."""
    raw = rng.integers(0, 4096, (48, 64)).astype(np.uint16)
    flat = kernel_backend.to_device(np.concatenate([[7], raw.ravel()]).astype(np.uint16))
    view = flat[1:].reshape(raw.shape)
    assert kernel_backend.address(view) % 16 == 2
    pipe = IspPipeline(IspParams(wb="auto"), kernel_backend)
    fixed = pipe._aligned(view, None)
    assert kernel_backend.address(fixed) % 16 == 0
    assert np.array_equal(kernel_backend.to_host(fixed), raw)
    aligned = kernel_backend.to_device(raw)
    assert pipe._aligned(aligned, None) is aligned
    want = IspPipeline(IspParams(wb="auto"), kernel_backend).process(raw)
    got = pipe.process(view)
    assert np.array_equal(got.rgb8, want.rgb8)


def test_tensor_geometry_past_32_bit_footprints_is_refused(kernel_backend):
    """isp.cu's exact area footprints multiply frame and content sizes in 32 bits."""
    raw = np.full((4, 65536), 1000, np.uint16)
    pipe = IspPipeline(IspParams(tensor=TensorSpec(32768, 2)), kernel_backend)
    with pytest.raises(GputrackError, match="must stay below 2\\^31"):
        pipe.process(raw)
