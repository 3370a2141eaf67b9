"""The sensor model against sensor physics: photon transfer, independence and shape of the
noise, levels (black with read noise around it, white, rounding), negative light, seeds
(docs/ISP.md, "The sensor model")."""

from __future__ import annotations

import numpy as np
import pytest

from gputrack.errors import GputrackError
from gputrack.isp import IspParams
from gputrack.isp import reference as ref
from gputrack.isp.params import cfa_channels
from gputrack.sensor import model

# Box-Muller's largest radius: u1 = 2^-24, sqrt(-2 log 2^-24) = sqrt(48 log 2)
TAIL_LIMIT = float(np.sqrt(48 * np.log(2.0)))


def _flat(value: float, h: int = 128, w: int = 128) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.float64)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize("depth", [10, 12, 14])
def test_photon_transfer_variance_is_k_mean_plus_read_variance(depth):
    """Temporal variance (two frames of one seed) against the mean above black, on flat
    fields below white: a straight line of slope K = (white - black) / full well and
    intercept (K read_e)^2 + 1/12 (the rounding) where the read noise spans codes."""
    sp = model.SensorParams(isp=IspParams(bit_depth=depth), noise=True, seed=21)
    k, read_var = sp.noise_gain()
    means, variances = [], []
    for level in (0.02, 0.1, 0.25, 0.45):  # green below 0.45 of the range; red, blue below
        a = model.reference(_flat(level), sp, frame=100).astype(np.float64)
        b = model.reference(_flat(level), sp, frame=101).astype(np.float64)
        for py, px in ((0, 0), (0, 1), (1, 0), (1, 1)):
            sa, sb = a[py::2, px::2], b[py::2, px::2]
            means.append((sa.mean() + sb.mean()) / 2 - sp.isp.black)
            variances.append(np.var(sa - sb) / 2)
    slope = np.polyfit(means, variances, 1)[0]
    assert slope == pytest.approx(k, rel=0.03)
    want = k * np.array(means) + read_var + 1 / 12
    # a variance of n = 64^2 differences scatters by sqrt(2 / n) = 2.2 % of itself
    np.testing.assert_allclose(variances, want, rtol=5 * np.sqrt(2 / 64**2))


def test_noise_is_zero_mean_and_uncorrelated_between_pixels_channels_frames_and_seeds():
    h = w = 256
    idx = np.arange(h * w, dtype=np.uint64)
    a = model.gaussian(3, 10, idx).reshape(h, w)
    bound = 5 / np.sqrt(h * w // 4)  # 5 sigma of a correlation over the smallest sample here
    assert abs(a.mean()) < 5 / np.sqrt(h * w)
    assert abs(_corr(a[:, :-1], a[:, 1:])) < bound  # right neighbour
    assert abs(_corr(a[:-1], a[1:])) < bound  # the row below
    assert abs(_corr(a[:-1, :-1], a[1:, 1:])) < bound
    assert abs(_corr(a[0::2, 0::2], a[0::2, 1::2])) < bound  # R against G
    assert abs(_corr(a[0::2, 0::2], a[1::2, 1::2])) < bound  # R against B
    for other in (model.gaussian(3, 11, idx), model.gaussian(4, 10, idx)):  # f + 1, seed + 1
        assert abs(_corr(a, other)) < bound
        assert abs(_corr(a.ravel()[1:], other[:-1])) < bound  # and shifted by a pixel
    # over many consecutive frame (and seed) pairs the correlations scatter as independent
    # noise's do: mean 0, spread 1 / sqrt(n)
    small = np.arange(32 * 32, dtype=np.uint64)
    frames = [((0, f), (0, f + 1)) for f in range(300)]
    seeds = [((s, 0), (s + 1, 0)) for s in range(300)]
    for pairs in (frames, seeds):
        c = [_corr(model.gaussian(*p, small), model.gaussian(*q, small)) for p, q in pairs]
        c = np.array(c)
        assert abs(c.mean()) < 5 / 32 / np.sqrt(300) and 0.8 / 32 < c.std() < 1.2 / 32


def test_gaussian_shape_and_its_documented_tail_limit():
    """A good normal to 5 sigma; nothing beyond sqrt(48 log 2) = 5.77 sigma (u1 >= 2^-24), where
    a normal has 8e-9 of its mass: 0.1 pixel of a 12 MP frame."""
    z = model.gaussian(1, 0, np.arange(1 << 21, dtype=np.uint64))
    assert abs(z.mean()) < 0.004 and abs(z.var() - 1) < 0.005
    for t, p in ((2.0, 0.0455), (3.0, 0.0027), (4.0, 6.33e-5)):
        assert (np.abs(z) > t).mean() == pytest.approx(p, rel=5 / np.sqrt(p * z.size))
    # the extremes: the smallest u1 (bits 40..63 all 0) gives the largest radius
    h = np.array([0, 1 << 39, (1 << 40) - 1], dtype=np.uint64)  # u2 = 0, 1/2, ~1
    extreme = model.gaussian_of_hash(h)
    assert np.abs(extreme) == pytest.approx(TAIL_LIMIT, rel=1e-6)
    assert abs(TAIL_LIMIT - 5.768) < 1e-3


@pytest.mark.parametrize("depth", [10, 12, 14])
def test_dark_frame_mean_is_black_with_read_noise_below_it(depth):
    """Readings below black are kept (down to 0), not clipped at black: the dark frame's mean
    is black. At 10 bits the read noise is 0.29 DN, so 92 % of a dark frame reads black."""
    sp = model.SensorParams(isp=IspParams(bit_depth=depth), noise=True, seed=5)
    _, read_var = sp.noise_gain()
    dark = model.reference(_flat(0.0, 256, 256), sp, frame=2).astype(np.float64)
    black = sp.isp.black
    assert abs(dark.mean() - black) < 5 * np.sqrt((read_var + 1 / 12) / dark.size)
    assert dark.min() < black
    if depth >= 12:
        assert dark.std() == pytest.approx(np.sqrt(read_var + 1 / 12), rel=0.03)


def test_rounding_is_unbiased_and_the_range_is_respected():
    sp = model.SensorParams(noise=True, seed=8)
    rng = np.random.default_rng(4)
    level = rng.uniform(0.05, 0.4, (256, 256, 1)) * np.ones(3)  # grey: every site well inside
    clean = model.reference(level, sp.with_(noise=False)).astype(np.float64)
    noisy = model.reference(level, sp).astype(np.float64)
    k, read_var = sp.noise_gain()
    sd = np.sqrt(k * 0.4 * (sp.isp.white - sp.isp.black) + read_var)
    assert abs((noisy - clean).mean()) < 5 * sd / 256
    assert model.reference(_flat(50.0, 8, 8), sp).max() == sp.isp.white


@pytest.mark.parametrize("noise", [False, True])
def test_negative_light_reads_black_not_below_it(noise):
    """A response below 0 (a negative float scene; a matrix whose inverse has negative entries
    on a saturated colour) is no light: it read far below black (down to 0 at -0.1), as if the
    pixel could give back photons. Now black, with read noise around it only."""
    sp = model.SensorParams(noise=noise, seed=3)
    raw = model.reference(_flat(-0.1), sp, frame=1).astype(np.float64)
    black = sp.isp.black
    if not noise:
        assert np.all(raw == black)
    else:
        _, read_var = sp.noise_gain()
        assert abs(raw.mean() - black) < 0.05
        assert raw.std() == pytest.approx(np.sqrt(read_var + 1 / 12), rel=0.05)


def test_saturated_colour_outside_the_sensor_gamut_reads_black_on_the_other_channels():
    """With a desaturating matrix (its inverse has negative entries) a saturated red needs
    negative green and blue responses: they read black. The ISP's image is the one it made of
    the old below-black values (it clips the mosaic at 0): no round trip is possible there."""
    isp = IspParams(ccm=((0.6, 0.2, 0.2), (0.2, 0.6, 0.2), (0.2, 0.2, 0.6)))
    sp = model.SensorParams(isp=isp)
    assert sp.colour_matrix().min() < 0
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 160
    raw = model.reference(red, sp)
    cfa = cfa_channels(isp.pattern)
    for py, px in ((0, 1), (1, 0), (1, 1)):
        assert cfa[py, px] != 0 and np.all(raw[py::2, px::2] == isp.black)
    assert np.all(raw[0::2, 0::2] > isp.black)
    below = raw.copy()
    below[raw == isp.black] = isp.black // 3
    np.testing.assert_array_equal(ref.process(raw, isp).rgb8, ref.process(below, isp).rgb8)


def test_kernel_reads_negative_light_as_black(kernel_backend):
    sp = model.SensorParams(noise=False)
    scene = np.full((16, 32, 3), -0.1, np.float32)
    got = model.SensorModel(sp, kernel_backend).render(scene, 3).data
    assert np.all(got == sp.isp.black)
    noisy = sp.with_(noise=True, seed=9, read_noise_e=40.0)
    got = model.SensorModel(noisy, kernel_backend).render(scene, 3).data
    want = model.reference(scene, noisy, 3)
    d = np.abs(got.astype(np.int64) - want.astype(np.int64))
    assert d.max() <= 1 and (d > 0).mean() <= 0.002


def test_a_seed_beyond_64_bits_is_refused_not_wrapped():
    """The noise hashes the seed as 64 bits: 2**64 + 5 made the very frames of seed 5."""
    assert model.SensorParams(seed=2**64 - 1).seed == 2**64 - 1
    with pytest.raises(GputrackError, match="below 2\\*\\*64"):
        model.SensorParams(seed=2**64 + 5)


def test_same_seed_and_frame_agree_on_every_backend(kernel_backend):
    """cpu is the float64 reference itself (bit-exact); a kernel in float32 differs by 1 DN
    only where a value lies within float32's error of a rounding boundary."""
    sp = model.SensorParams(isp=IspParams(bit_depth=14), noise=True, seed=123)
    scene = np.random.default_rng(2).integers(0, 256, (64, 128, 3)).astype(np.uint8)
    got = model.SensorModel(sp, kernel_backend).render(scene, 7).data
    want = model.reference(scene, sp, 7)
    d = np.abs(got.astype(np.int64) - want.astype(np.int64))
    assert d.max() <= 1 and (d > 0).mean() <= 0.008
