"""Image quality measures (CPSNR, CIEDE2000) and test charts for the ISP: a ColorChecker,
a grey ramp, and natural-like images for checking demosaicing on images it was not tuned on."""

from __future__ import annotations

import cv2
import numpy as np

# The 24 ColorChecker patches as commonly published sRGB 8-bit values (X-Rite, D65).
MACBETH_SRGB = np.array(
    [
        (115, 82, 68), (194, 150, 130), (98, 122, 157), (87, 108, 67), (133, 128, 177),
        (103, 189, 170), (214, 126, 44), (80, 91, 166), (193, 90, 99), (94, 60, 108),
        (157, 188, 64), (224, 163, 46), (56, 61, 150), (70, 148, 73), (175, 54, 60),
        (231, 199, 31), (187, 86, 149), (8, 133, 161), (243, 243, 242), (200, 200, 200),
        (160, 160, 160), (122, 122, 121), (85, 85, 85), (52, 52, 52),
    ],
    dtype=np.uint8,
)  # fmt: skip


def cpsnr(out: np.ndarray, ref: np.ndarray, border: int = 8) -> float:
    """Colour PSNR over all three channels, 8-bit scale, `border` pixels excluded."""
    if out.shape != ref.shape:
        raise ValueError(f"cpsnr: shapes differ, {out.shape} and {ref.shape}")
    if min(out.shape[:2]) <= 2 * border:
        # An empty comparison would be NaN, which reads as neither a figure nor a failure.
        raise ValueError(f"cpsnr: a {border}-pixel border leaves nothing of {out.shape[:2]}")
    inner = (slice(border, out.shape[0] - border), slice(border, out.shape[1] - border))
    a = out[inner].astype(np.float64)
    b = ref[inner].astype(np.float64)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def round_trip_cpsnr(out: np.ndarray, ref: np.ndarray, border: int = 8) -> tuple[float, int]:
    """CPSNR of a round trip and the border it excluded: `border` pixels, as the literature
    does, else the whole image (0) where the image has no inside or where the inside came
    back exactly. So the figure is infinite only when every pixel came back: an exact inside
    must not hide a border that is off (as a strong lens shading leaves it)."""
    if min(out.shape[:2]) <= 2 * border:
        border = 0
    db = cpsnr(out, ref, border)
    if border and not np.isfinite(db):
        return cpsnr(out, ref, 0), 0
    return db, border


def _field(rng: np.random.Generator, h: int, w: int, power: float) -> np.ndarray:
    """Zero-mean unit-variance random field with a 1/f^power amplitude spectrum."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    spec = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f**power
    spec[0, 0] = 0.0
    x = np.fft.irfft2(spec, s=(h, w))
    return (x - x.mean()) / x.std()


def natural_image(rng: np.random.Generator, h: int = 256, w: int = 384) -> np.ndarray:
    """uint8 RGB with the statistics demosaicing relies on in photographs: detail mostly in
    luminance (1/f texture, object edges, smooth gradients), colour varying more slowly, a
    mild optical blur. Objects are drawn at 4x and area-downsampled (anti-aliased edges)."""
    ss = 4
    lum = np.empty((h * ss, w * ss), np.float32)
    col = np.empty((h * ss, w * ss, 3), np.float32)
    yy, xx = np.mgrid[0 : h * ss, 0 : w * ss] / float(max(h, w) * ss)
    lum[:] = 0.45 + 0.2 * np.sin(3 * xx + rng.uniform(0, 6)) * np.cos(2 * yy + rng.uniform(0, 6))
    c0 = rng.normal(size=3)
    col[:] = c0 / np.linalg.norm(c0)
    for _ in range(14):
        level = rng.uniform(0.1, 0.85)
        c = rng.normal(size=3)
        mask = np.zeros((h * ss, w * ss), np.uint8)
        if rng.random() < 0.5:
            centre = (int(rng.uniform(0, w * ss)), int(rng.uniform(0, h * ss)))
            cv2.circle(mask, centre, int(rng.uniform(15, 120) * ss / 2), 1, -1)
        else:
            pts = rng.uniform(0, 1, (5, 2)) * [w * ss, h * ss]
            cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
        sel = mask.astype(bool)
        lum[sel] = level
        col[sel] = c / np.linalg.norm(c)
    lum = cv2.resize(lum, (w, h), interpolation=cv2.INTER_AREA)
    col = cv2.resize(col, (w, h), interpolation=cv2.INTER_AREA)
    lum = lum * (1 + 0.25 * _field(rng, h, w, 1.0))
    chroma = 0.5 * col + 0.05 * np.stack([_field(rng, h, w, 2.0) for _ in range(3)], -1)
    img = cv2.GaussianBlur((lum[..., None] * (1 + chroma)).astype(np.float32), (0, 0), 0.5)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def macbeth_chart(patch: int = 32, gap: int = 8) -> tuple[np.ndarray, list[tuple[slice, slice]]]:
    """The 24 patches in 4 rows of 6 on a mid-grey surround; with each patch's inner region."""
    h = 4 * patch + 5 * gap
    w = 6 * patch + 7 * gap
    img = np.full((h, w, 3), 118, np.uint8)
    regions = []
    m = patch // 4  # keep clear of the demosaicing at the patch edges
    for k, rgb in enumerate(MACBETH_SRGB):
        r, c = divmod(k, 6)
        y, x = gap + r * (patch + gap), gap + c * (patch + gap)
        img[y : y + patch, x : x + patch] = rgb
        regions.append((slice(y + m, y + patch - m), slice(x + m, x + patch - m)))
    return img, regions


def grey_ramp(h: int = 32, w: int = 512) -> np.ndarray:
    """A horizontal 0..255 grey ramp."""
    row = np.round(np.linspace(0, 255, w)).astype(np.uint8)
    return np.repeat(np.repeat(row[None, :, None], h, 0), 3, 2)


def delta_e2000(srgb_a: np.ndarray, srgb_b: np.ndarray) -> np.ndarray:
    """CIEDE2000 between two arrays of 8-bit sRGB colours (..., 3)."""
    import colour

    d65 = colour.CCS_ILLUMINANTS["CIE 1931 2 Degree Standard Observer"]["D65"]

    def lab(x: np.ndarray) -> np.ndarray:
        xyz = colour.sRGB_to_XYZ(np.asarray(x, dtype=np.float64) / 255.0)
        return colour.XYZ_to_Lab(xyz, d65)

    return colour.delta_E(lab(srgb_a), lab(srgb_b), method="CIE 2000")
