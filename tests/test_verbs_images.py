"""`gputrack isp` and `gputrack detect` on real-world image files: EXIF orientation, 16-bit
and float images, alpha, damaged files, .npy, output formats, and where the boxes land."""

from __future__ import annotations

import json
import struct

import cv2
import numpy as np
import pytest

from gputrack.cli import main
from gputrack.commands.detect import annotate
from gputrack.isp.quality import cpsnr, natural_image

MODEL = "gputrack/models/synthetic_det.onnx"  # bundled: no shared data needed


def _json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _error(capsys, argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return code, err[0]


def _jpeg_with_orientation(rgb: np.ndarray, orientation: int) -> bytes:
    """A JPEG whose pixels are `rgb` as stored, with an EXIF Orientation tag (a phone photo
    held upright is stored on its side with 6)."""
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 98])
    assert ok
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    app1 = b"Exif\x00\x00" + tiff
    data = buf.tobytes()
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


@pytest.fixture
def scene(rng) -> np.ndarray:
    return natural_image(rng, 48, 64)  # 64 wide, 48 high


# ---- EXIF orientation ------------------------------------------------------------------------


def test_isp_turns_a_photo_as_viewers_show_it(tmp_path, capsys, scene):
    photo = tmp_path / "phone.jpg"
    photo.write_bytes(_jpeg_with_orientation(scene, 6))  # shown turned 90 degrees clockwise
    shown = cv2.imdecode(np.fromfile(photo, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    assert shown.shape == (64, 48, 3)
    out = tmp_path / "isp.png"
    info = _json(capsys, ["isp", str(photo), "--out", str(out), "--backend", "cpu", "--json"])
    assert (info["width"], info["height"]) == (48, 64)
    got = cv2.imread(str(out))[..., ::-1]
    assert got.shape == shown.shape
    # the figure is against the image as shown, and says what the file holds
    assert info["cpsnr_db"] == pytest.approx(cpsnr(got, shown), abs=1e-3)
    assert info["cpsnr_db"] > 20


def test_detect_boxes_follow_the_orientation(tmp_path, capsys, scene):
    photo = tmp_path / "phone.jpg"
    photo.write_bytes(_jpeg_with_orientation(scene, 8))
    info = _json(capsys, ["detect", str(photo), "--model", MODEL, "--backend", "cpu", "--json",
                          "--score", "0.05"])  # fmt: skip
    assert info["frame"] == [48, 64]


# ---- 16-bit and float images ----------------------------------------------------------------


def _sixteen(scene: np.ndarray, rng) -> np.ndarray:
    low = rng.integers(0, 257, scene.shape)  # detail below the 8-bit step
    return np.minimum(scene.astype(np.int64) * 257 + low, 65535).astype(np.uint16)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_isp_keeps_16_bits_and_scores_what_it_wrote(tmp_path, capsys, scene, rng, ext):
    img16 = _sixteen(scene, rng)
    src = tmp_path / f"deep{ext}"
    cv2.imwrite(str(src), img16[..., ::-1])
    out, npy = tmp_path / f"isp{ext}", tmp_path / "isp.npy"
    info = _json(capsys, ["isp", str(src), "--out", str(out), "--backend", "cpu", "--json"])
    _json(capsys, ["isp", str(src), "--out", str(npy), "--backend", "cpu", "--json"])
    got = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert got.dtype == np.uint16 and info["output_bits"] == 16 and info["notes"] == []
    assert np.array_equal(got, np.rint(np.load(npy) * 65535.0).astype(np.uint16))
    assert info["cpsnr_db"] == pytest.approx(cpsnr(got / 257.0, img16 / 257.0), abs=1e-3)


def test_isp_16_bit_input_into_an_8_bit_format_says_so(tmp_path, capsys, scene, rng):
    img16 = _sixteen(scene, rng)
    src = tmp_path / "deep.npy"
    np.save(src, img16)
    out = tmp_path / "isp.bmp"  # lossless, 8 bits
    info = _json(capsys, ["isp", str(src), "--out", str(out), "--backend", "cpu", "--json"])
    got = cv2.imread(str(out))[..., ::-1]
    assert info["output_bits"] == 8 and "8-bit" in " ".join(info["notes"])
    assert info["cpsnr_db"] == pytest.approx(cpsnr(got, img16 / 257.0), abs=1e-3)


def test_isp_exact_means_the_file_holds_every_16_bit_value(tmp_path, capsys):
    flat = np.full((32, 32, 3), 1000, np.uint16)  # not a multiple of 257: no 8-bit code
    src = tmp_path / "flat.png"
    cv2.imwrite(str(src), flat)
    base = ["isp", str(src), "--backend", "cpu", "--json", "--stages", "demosaic", "--out"]
    info = _json(capsys, [*base, str(tmp_path / "o.png")])
    assert info["exact"] and np.array_equal(cv2.imread(str(tmp_path / "o.png"), -1), flat)
    info = _json(capsys, [*base, str(tmp_path / "o.bmp")])
    assert not info["exact"] and info["cpsnr_db"] > 40


def test_isp_float_tiff_is_linear_light_and_hdr_clips_with_a_note(tmp_path, capsys, scene):
    from gputrack.isp.params import IspParams

    lut = IspParams().tone_lut()
    linear = np.interp(scene / 255.0, lut, np.linspace(0, 1, lut.size)).astype(np.float32)
    src = tmp_path / "linear.tif"
    assert cv2.imwrite(str(src), linear[..., ::-1])
    out = tmp_path / "isp.png"
    info = _json(capsys, ["isp", str(src), "--out", str(out), "--backend", "cpu", "--json"])
    got = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert info["notes"] == [] and info["output_bits"] == 16
    # linear light through the sensor and back: the sRGB image it encodes, as well as that
    # image itself makes the trip
    assert info["cpsnr_db"] == pytest.approx(cpsnr(got / 257.0, scene.astype(float)), abs=0.05)
    png = tmp_path / "srgb.png"
    cv2.imwrite(str(png), scene[..., ::-1])
    eight = _json(capsys, ["isp", str(png), "--out", str(out), "--backend", "cpu", "--json"])
    assert info["cpsnr_db"] == pytest.approx(eight["cpsnr_db"], abs=0.5)
    hdr = tmp_path / "hdr.tif"
    assert cv2.imwrite(str(hdr), (linear * 3)[..., ::-1])
    info = _json(capsys, ["isp", str(hdr), "--out", str(out), "--backend", "cpu", "--json"])
    assert any("outside [0, 1]" in n for n in info["notes"])


def test_detect_refuses_a_float_image_rather_than_guess(tmp_path, capsys):
    src = tmp_path / "linear.tif"
    assert cv2.imwrite(str(src), np.full((32, 32, 3), 2.5, np.float32))
    code, err = _error(capsys, ["detect", str(src), "--model", MODEL, "--backend", "cpu"])
    assert code == 1 and "float32" in err


# ---- alpha ------------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["isp", "detect"])
def test_transparency_is_noted_not_dropped_silently(tmp_path, capsys, scene, verb):
    alpha = np.full(scene.shape[:2], 255, np.uint8)
    opaque = tmp_path / "opaque.png"
    cv2.imwrite(str(opaque), np.dstack([scene[..., ::-1], alpha]))
    alpha[:, :16] = 0
    cut = tmp_path / "cut.png"
    cv2.imwrite(str(cut), np.dstack([scene[..., ::-1], alpha]))
    extra = ["--out", str(tmp_path / "o.png")] if verb == "isp" else ["--model", MODEL]
    for src, noted in ((opaque, False), (cut, True)):
        info = _json(capsys, [verb, str(src), "--backend", "cpu", "--json", *extra])
        assert bool(info["notes"]) == noted, info["notes"]
    assert "25 %" in info["notes"][0] and "alpha" in info["notes"][0]
    # in words, on stderr, when not --json
    assert main([verb, str(cut), "--backend", "cpu", *extra]) == 0
    assert f"gputrack {verb}: note: {cut}: has transparency" in capsys.readouterr().err


# ---- damaged files, .npy, output formats -----------------------------------------------------


def test_detect_refuses_a_truncated_jpeg_instead_of_decoding_half(tmp_path, capsys, scene):
    ok, buf = cv2.imencode(".jpg", scene)
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(buf.tobytes()[: buf.size // 2])
    code, err = _error(capsys, ["detect", str(bad), "--model", MODEL, "--backend", "cpu"])
    assert code == 1 and "damaged" in err


def test_detect_reads_an_rgb_npy_as_isp_does(tmp_path, capsys, scene):
    png, npy = tmp_path / "s.png", tmp_path / "s.npy"
    cv2.imwrite(str(png), scene[..., ::-1])
    np.save(npy, scene)
    argv = ["--model", MODEL, "--backend", "cpu", "--json", "--score", "0.05"]
    a = _json(capsys, ["detect", str(png), *argv])
    b = _json(capsys, ["detect", str(npy), *argv])
    assert a["detections"] == b["detections"] and b["frame"] == [64, 48]


def test_isp_writes_webp_and_names_the_formats_it_knows(tmp_path, capsys, scene):
    src = tmp_path / "s.png"
    cv2.imwrite(str(src), scene[..., ::-1])
    out = tmp_path / "o.webp"
    assert main(["isp", str(src), "--out", str(out), "--backend", "cpu"]) == 0
    assert cv2.imread(str(out)).shape == scene.shape
    capsys.readouterr()
    code, err = _error(capsys, ["isp", str(src), "--out", str(tmp_path / "o.xyz")])
    assert code == 2 and ".tif" in err and ".webp" in err and ".npy" in err


# ---- where the boxes land -------------------------------------------------------------------


def test_letterbox_maps_boxes_back_exactly_at_any_aspect(tmp_path):
    """A frame and the same frame blown up k times (each pixel k x k) make the same network
    input: the boxes must be exactly k times as large, at any aspect ratio."""
    from gputrack.device import get_backend
    from gputrack.dsp.detector import Detector
    from gputrack.models import SYNTHETIC_DET
    from gputrack.sensor.synthetic import SyntheticWorld

    det = Detector(SYNTHETIC_DET, get_backend("cpu"))
    for w, h, k in ((384, 224, 2), (384, 100, 3), (100, 300, 2), (96, 56, 5), (50, 224, 3)):
        small = SyntheticWorld(w, h, seed=3).render(10)
        a = det(small)
        b = det(np.repeat(np.repeat(small, k, 0), k, 1))
        assert len(a) == len(b) and len(a) > 0, (w, h)
        np.testing.assert_allclose(b[:, :4], k * a[:, :4], atol=1e-3)


def test_boxes_are_drawn_where_they_are_and_show_on_big_images():
    for h, w in ((49, 65), (3000, 4000)):  # odd, and a big photo viewed whole
        box = np.array([[w * 0.25, h * 0.25, w * 0.75, h * 0.75, 0.9, 0]], np.float32)
        green = annotate(np.zeros((h, w, 3), np.uint8), box, lambda i: "x")[..., 1] > 0
        half = max(1.0, max(h, w) / 1000)  # half the line's width, as it grows
        cols = np.flatnonzero(green[int(h * 0.6)])  # below the label
        rows = np.flatnonzero(green[:, int(w * 0.5)])
        assert abs(cols[0] - box[0, 0]) <= 1 + half and abs(cols[-1] - box[0, 2]) <= 1 + half
        assert abs(rows[-1] - box[0, 3]) <= 1 + half
        # lines thick enough to see when the image is shown 1000 pixels across
        assert green[int(h * 0.6), cols[0] : cols[0] + 40].sum() >= 2 * int(half)


def test_detect_out_json_points_to_json_rather_than_opencv(tmp_path, capsys, scene):
    src = tmp_path / "s.png"
    cv2.imwrite(str(src), scene[..., ::-1])
    code, err = _error(capsys, ["detect", str(src), "--model", MODEL, "--backend", "cpu",
                                "--out", str(tmp_path / "boxes.json")])  # fmt: skip
    assert code == 2 and "--json >" in err
