"""`gputrack run --nv12 FILE`: the ISP's own video, unannotated, as raw NV12 frames for an
encoder (the IMX500's ISP-image output, in the format video encoders take)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from gputrack.device import get_backend, probe
from gputrack.dsp.standin import NoisyTruthDetector
from gputrack.isp import IspParams
from gputrack.isp.reference import KB, KG, KR
from gputrack.pipeline import Pipeline
from gputrack.sensor.sources import open_source
from gputrack.track import Tracker


@pytest.mark.parametrize("backend", ["cpu", "emu"])
def test_the_nv12_frame_is_the_isp_image(backend):
    """Y from each pixel and Cb, Cr from each 2x2 cell of the frame's RGB8 image (BT.709,
    limited range), within the rounding of an 8-bit image."""
    if not probe(backend).available:
        pytest.skip(f"{backend} unavailable: {probe(backend).reason}")
    pipe = Pipeline(get_backend(backend), NoisyTruthDetector(0), Tracker(fps=30),
                    isp_params=IspParams(nv12=True))  # fmt: skip
    with open_source("synthetic:96x64,seed=2") as src:
        for _ in range(2):
            pipe.process(next(src))
    nv12, rgb = pipe.last_nv12(), pipe.last_image()
    assert nv12 is not None and rgb is not None and nv12.shape == (96, 96)
    v = rgb.astype(np.float64) / 255.0
    luma = 16 + 219 * (KR * v[..., 0] + KG * v[..., 1] + KB * v[..., 2])
    assert np.abs(nv12[:64].astype(float) - luma).max() <= 1.0
    q = 0.25 * (v[0::2, 0::2] + v[0::2, 1::2] + v[1::2, 0::2] + v[1::2, 1::2])
    yq = KR * q[..., 0] + KG * q[..., 1] + KB * q[..., 2]
    cb = 128 + 224 * (q[..., 2] - yq) / (2 * (1 - KB))
    cr = 128 + 224 * (q[..., 0] - yq) / (2 * (1 - KR))
    uv = nv12[64:].reshape(32, 48, 2).astype(float)
    assert np.abs(uv[..., 0] - cb).max() <= 1.0 and np.abs(uv[..., 1] - cr).max() <= 1.0


def test_run_streams_nv12_frames_to_a_file_or_a_pipe(tmp_path):
    base = [sys.executable, "-m", "gputrack", "run", "synthetic:64x48", "--frames", "3",
            "--backend", "cpu", "--no-ui", "--detector", "truth", "--json"]  # fmt: skip
    out = tmp_path / "isp.yuv"
    done = subprocess.run([*base, "--nv12", str(out)], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    summary = json.loads(done.stdout)
    assert summary["nv12"] == str(out) and summary["frame_size"] == [64, 48]
    assert out.stat().st_size == 3 * 64 * 48 * 3 // 2
    # into a pipe: stdout holds the frames alone, the summary goes to stderr
    done = subprocess.run([*base, "--nv12", "/dev/stdout"], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert len(done.stdout) == 3 * 64 * 48 * 3 // 2
    assert json.loads(done.stderr[done.stderr.index(b"{"):])["frames"] == 3
    assert done.stdout == out.read_bytes()  # the same frames (the world and seed are fixed)


def test_the_summary_says_what_the_headerless_nv12_frames_are(tmp_path):
    """Raw NV12 states neither size nor rate: the summary says both, on a pipe too (where it
    goes to stderr), with a command that plays them."""
    base = [sys.executable, "-m", "gputrack", "run", "synthetic:64x48", "--frames", "2",
            "--backend", "cpu", "--no-ui", "--detector", "truth", "--fps", "25"]  # fmt: skip
    for target, stream in ((str(tmp_path / "isp.yuv"), "stdout"), ("/dev/stdout", "stderr")):
        done = subprocess.run([*base, "--nv12", target], capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        said = getattr(done, stream).decode(errors="replace")
        assert "--nv12 is 64x48 at 25 fps" in said, said
        assert "-video_size 64x48 -framerate 25" in said


def test_a_reader_that_leaves_the_pipe_is_exit_141_not_success(tmp_path):
    """An encoder that stops reading (crashed, or `| head`) cut the stream short: the run
    exited 0 in silence, so a pipeline under `set -o pipefail` looked like a whole recording.
    Now it exits as SIGPIPE would (141), says why, and the log keeps the frames done."""
    log = tmp_path / "t.jsonl"
    cmd = [sys.executable, "-m", "gputrack", "run", "synthetic:64x48", "--frames", "300",
           "--backend", "cpu", "--no-ui", "--detector", "truth", "--nv12", "/dev/stdout",
           "--log", str(log)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert len(proc.stdout.read(3 * 64 * 48 * 3 // 2)) == 3 * 64 * 48 * 3 // 2  # 3 frames
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "the reader of an output pipe closed it" in err
    frames = [json.loads(line)["frame"] for line in log.read_text().splitlines()]
    assert len(frames) >= 3 and frames == list(range(len(frames))) and len(frames) < 300


def test_the_play_command_is_quoted_for_the_shell(tmp_path):
    out = tmp_path / "my isp.yuv"
    cmd = [sys.executable, "-m", "gputrack", "run", "synthetic:64x48", "--frames", "1",
           "--backend", "cpu", "--no-ui", "--detector", "truth", "--nv12", str(out)]
    done = subprocess.run(cmd, capture_output=True, timeout=120)
    said = done.stdout.decode()
    assert done.returncode == 0 and f"-framerate 30 '{out}'\n" in said, said
