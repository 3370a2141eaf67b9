"""The ISP and the sensor model at the corners of their parameters, on every backend that runs
kernels, against the float64 references: a black level one or two codes below the white level
(at every bit depth, the white level at and below the bit depth's maximum), extreme white
balance gains, colour matrices and lens shading, tone curves at their bounds and custom LUTs of
2 and 4097 samples, frames all black, all white or above white; float scenes far past white
through the sensor model; parameters the kernels' float32 cannot hold, refused."""

from __future__ import annotations

import numpy as np
import pytest

from gputrack.errors import GputrackError
from gputrack.isp import IspParams, TensorSpec
from gputrack.isp.params import BAYER_PATTERNS, DEMOSAIC_METHODS
from gputrack.sensor import model
from tests.test_isp_kernels import run_and_compare


@pytest.mark.parametrize("depth", [8, 10, 14, 16])
def test_black_level_next_to_the_white_level(kernel_backend, rng, depth):
    """A range of 1 or 2 codes: m = (raw - black) / (white - black) is 0, 1/2 or 1 times the
    gain. isp_main normalised as the fused raw a - black a (a = gain / range), whose float32
    rounding of black a cost half its ulp: at 16 bits with black 65534 that was 0.004, 27
    12-bit codes, and the 8-bit image came out up to 23 codes off (144 with directional;
    8 bits, black 251: 28 with directional)."""
    top = (1 << depth) - 1
    for white in (top, top - int(rng.integers(1, 4))):
        for span in (1, 2):
            black = white - span
            methods = (*DEMOSAIC_METHODS, str(rng.choice(DEMOSAIC_METHODS)))
            for pattern, method in zip(rng.permutation(BAYER_PATTERNS), methods, strict=True):
                raw = rng.integers(max(0, black - 2), top + 1, (34, 66)).astype(np.uint16)
                shading = (0.4, 0.2) if rng.random() < 0.3 else (0.0, 0.0)
                params = IspParams(
                    pattern=str(pattern),
                    bit_depth=depth,
                    black_level=black,
                    white_level=white,
                    wb=tuple(rng.uniform(0.3, 3.0, 3)),
                    demosaic=method,
                    lens_shading=shading,
                    nv12=True,
                )
                what = f"{depth}-bit black {black} white {white} {pattern} {method} {shading}"
                run_and_compare(kernel_backend, raw, params, what)


def test_black_level_next_to_white_through_the_sensor_model(kernel_backend, rng):
    """The same on a real image: a Kodak crop read out by the sensor model at 14 and 16 bits
    with the black level 1 and 2 codes below white (nearly every pixel clips: a binary image
    whose transitions the demosaic must place as the reference does)."""
    import cv2

    from tests.conftest import shared_data

    img = cv2.imread(str(shared_data("kodak/kodim05.png")))[..., ::-1]
    y, x = 2 * int(rng.integers(0, 160)), 2 * int(rng.integers(0, 250))
    crop = np.ascontiguousarray(img[y : y + 48, x : x + 64])
    for depth, span in ((14, 1), (16, 2)):
        white = (1 << depth) - 1
        isp = IspParams(bit_depth=depth, black_level=white - span, demosaic="mhc", nv12=True)
        raw = model.reference(crop, model.SensorParams(isp=isp))
        run_and_compare(kernel_backend, raw, isp, f"kodak {depth}-bit range {span}")


IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


@pytest.mark.parametrize("method", DEMOSAIC_METHODS)
def test_colour_parameters_at_their_bounds(kernel_backend, rng, method):
    """White-balance gains of 1/64 and 64, colour matrix entries of +-16 (rows not summing to
    1), lens shading with a gain of 64 at the corners or down to 0.01 (and a minimum inside),
    gamma 0.1, linear and custom LUTs of 2 and 4097 samples, every pattern; frames all black,
    all at the white level, above it (white below the bit depth's maximum), or random."""
    luts = [(0.0, 1.0), (1.0, 0.2), tuple(np.sort(rng.uniform(0, 1, 4097)) ** 0.8)]
    for pattern in BAYER_PATTERNS:
        depth = int(rng.choice([10, 12, 14, 16]))
        top = (1 << depth) - 1
        white = top - int(rng.integers(0, 2)) * int(rng.integers(1, top // 4))
        kind = int(rng.integers(0, 4))
        raw = rng.integers(0, top + 1, (34, 66)).astype(np.uint16)
        if kind == 0:
            raw[:] = 0
        elif kind == 1:
            raw[:] = white
        elif kind == 2:
            raw[:] = top
        wb = tuple(float(g) for g in rng.choice([1 / 64, 64.0, 1.0, 2.5], 3))
        wb_or_auto = "auto" if rng.random() < 0.25 else wb
        strong = rng.random() < 0.5
        ccm = tuple(map(tuple, rng.choice([-16.0, 16.0, 0.5], (3, 3)))) if strong else IDENTITY
        tone = {}
        if strong:
            # x^10 and the custom LUTs have slopes up to 10: float32 rounding, amplified by a
            # matrix of +-16 entries (48x), would exceed the float image's 2e-5 there
            tone["tone"] = "linear"
        elif rng.random() < 0.5:
            tone["tone"] = str(rng.choice(["gamma0.1", "linear", "srgb"]))
        else:
            tone["lut"] = luts[int(rng.integers(0, len(luts)))]
        shading = [(0.0, 0.0), (63.0, 0.0), (-0.99, 0.0), (-3.0, 2.5)][int(rng.integers(0, 4))]
        params = IspParams(
            pattern=pattern,
            bit_depth=depth,
            white_level=white,
            wb=wb_or_auto,
            ccm=ccm,
            demosaic=method,
            lens_shading=shading,
            nv12=True,
            tensor=TensorSpec(
                int(rng.integers(1, 90)),
                int(rng.integers(1, 4)),
                dtype=str(rng.choice(["float32", "float16"])),
            ),
            **tone,
        )
        what = f"{pattern} {depth}-bit white {white} frame {kind} wb {wb_or_auto} {tone} {shading}"
        run_and_compare(kernel_backend, raw, params, what)


@pytest.mark.parametrize("shading", [(200.0, -150.0), (1e6, 62.0 - 1e6), (1e308, -1e308)])
def test_lens_shading_with_a_peak_inside_the_frame_is_refused(shading):
    """With k2 < 0 the gain 1 + k1 x + k2 x^2 (x = r^2) peaks inside: (200, -150) reaches 67.7
    at x = 2/3, (1e6, 62 - 1e6) is 63 at the corners and 250016 between. Only the ends were
    checked then ((1e308, -1e308) was refused only because 1 + 1e308 - 1e308 rounds to 0)."""
    with pytest.raises(GputrackError, match="at most 64"):
        IspParams(lens_shading=shading)


def test_lens_shading_peaking_at_64_on_the_corner_is_taken():
    assert IspParams(lens_shading=(126.0, -63.0)).lens_shading == (126.0, -63.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: IspParams(lut=(0.0, 1e39)),
        lambda: IspParams(lut=(-3e38, 0.5, 3e38)),
        lambda: TensorSpec(mean=(1e39, 0.0, 0.0), scale=(1e-39, 1.0, 1.0)),
        lambda: TensorSpec(scale=(1e39, 1.0, 1.0)),
        lambda: TensorSpec(pad_value=1e39),
    ],
    ids=["lut", "lut-range", "mean", "scale", "pad"],
)
def test_values_past_float32_are_refused(make):
    """The kernels hold the custom LUT and the tensor's normalisation as float32: a LUT sample
    of 1e39 made every value of the float image NaN (inf - inf), a mean, scale or pad value
    of 1e39 made the tensor +-inf where float64 has -1, 1e41 or 4e36."""
    with pytest.raises(GputrackError, match="within \\+-1e\\+06"):
        make()


def test_sensor_model_of_a_float_scene_far_past_white(kernel_backend, rng):
    """A float scene of values up to 3e38 (finite, so accepted): the float32 response overflowed
    to inf, and with noise (inf + inf z) or a matrix of both signs (inf - inf) to NaN, which
    came out as 0, black, where the float64 reference saturates at white."""
    for noise in (True, False):
        for _ in range(3):
            isp = IspParams(
                pattern=str(rng.choice(BAYER_PATTERNS)),
                bit_depth=int(rng.choice([10, 12, 16])),
                wb=tuple(float(g) for g in rng.choice([1 / 64, 64.0, 1.0], 3)),
                ccm=tuple(map(tuple, rng.uniform(-4, 4, (3, 3)))),
            )
            sp = model.SensorParams(isp=isp, noise=noise, seed=int(rng.integers(1 << 40)))
            sensor = model.SensorModel(sp, kernel_backend)
            mag = 10.0 ** rng.uniform(0, 38.5, (24, 40, 3))
            scene = (rng.choice([-1.0, 1.0], mag.shape) * mag).astype(np.float32)
            scene[0, :4] = [3.4e38, -3.4e38, 1.0]
            sensor.render(scene, 5)
            sensor._buffers["raw"][...] = 0xA5A5
            got = sensor.render(scene, 5).data
            want = model.reference(scene, sp, 5)
            d = np.abs(got.astype(np.int64) - want.astype(np.int64))
            bad = np.argwhere(d > 1)
            assert len(bad) == 0, (
                f"noise={noise}: {len(bad)} pixels off, first {tuple(bad[0])}: "
                f"{got[tuple(bad[0])]} vs {want[tuple(bad[0])]}"
            )
