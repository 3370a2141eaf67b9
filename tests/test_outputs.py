"""Files appear under their final name only when complete; logs survive errors."""

from __future__ import annotations

import numpy as np
import pytest

from gputrack.errors import GputrackError
from gputrack.outputs.files import atomic_path, write_image
from gputrack.outputs.tracklog import TrackLogWriter


def test_atomic_path_renames_when_complete_and_removes_on_error(tmp_path):
    out = tmp_path / "a.txt"
    with atomic_path(out) as tmp:
        tmp.write_text("done")
        assert not out.exists(), "the final name appears only at the end"
    assert out.read_text() == "done"
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "b.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == [out]


def test_a_log_is_kept_when_the_run_fails(tmp_path):
    out = tmp_path / "log.txt"
    with pytest.raises(RuntimeError), atomic_path(out, keep_on_error=True) as tmp:
        tmp.write_text("frame 1\n")
        raise RuntimeError
    assert out.read_text() == "frame 1\n"


def test_write_image_errors_name_the_file(tmp_path):
    img = np.full((8, 8, 3), 200, np.uint8)
    write_image(tmp_path / "ok.png", img)
    assert (tmp_path / "ok.png").stat().st_size > 0
    with pytest.raises(GputrackError, match="--image .*x.unknownext"):
        write_image(tmp_path / "x.unknownext", img, "--image")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.png"]


def test_track_log_is_flushed_per_frame_and_complete_after_an_error(tmp_path):
    path = tmp_path / "t.jsonl"
    with pytest.raises(RuntimeError), TrackLogWriter(path) as log:
        log.write(0, 0.0, [], {"total": 1.0})
        (part,) = tmp_path.glob(".t.jsonl.*.part.jsonl")  # hidden, unique, beside the log
        assert part.read_text().count("\n") == 1, "flushed at once"
        raise RuntimeError
    assert path.read_text().count("\n") == 1 and sorted(tmp_path.iterdir()) == [path]


def test_track_log_failing_before_its_first_frame_leaves_the_old_log(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("earlier run\n")
    with pytest.raises(RuntimeError), TrackLogWriter(path):
        raise RuntimeError
    assert path.read_text() == "earlier run\n" and sorted(tmp_path.iterdir()) == [path]


def test_atomic_path_asks_at_the_error_whether_to_keep(tmp_path):
    out = tmp_path / "mot.txt"
    out.write_text("earlier\n")
    wrote = {"frames": 0}

    def any_frame() -> bool:
        return wrote["frames"] > 0

    with pytest.raises(RuntimeError), atomic_path(out, keep_on_error=any_frame):
        raise RuntimeError
    assert out.read_text() == "earlier\n"
    with pytest.raises(RuntimeError), atomic_path(out, keep_on_error=any_frame) as tmp:
        tmp.write_text("frame 1\n")
        wrote["frames"] = 1
        raise RuntimeError
    assert out.read_text() == "frame 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_outputs_through_a_link_or_into_a_pipe_keep_the_link_and_the_pipe(tmp_path):
    import os
    import threading

    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    for name in ("a.txt", "b.jsonl"):
        (tmp_path / name).symlink_to(target)
    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("new\n")
    assert (tmp_path / "a.txt").is_symlink() and target.read_text() == "new\n"
    with TrackLogWriter(tmp_path / "b.jsonl") as log:
        log.write(0, 0.0, [], {"total": 1.0})
    assert (tmp_path / "b.jsonl").is_symlink() and target.read_text().startswith('{"frame":0')

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    for writer in ("atomic", "log"):
        reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
        reader.start()
        if writer == "atomic":
            with atomic_path(fifo) as tmp:
                tmp.write_text("through the pipe\n")
        else:
            with TrackLogWriter(fifo) as log:
                log.write(3, 0.1, [], {"total": 1.0})
        reader.join(timeout=30)
        assert fifo.is_fifo()
    assert got[0] == "through the pipe\n" and got[1].startswith('{"frame":3')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.jsonl", "pipe",
                                                          "real.jsonl"]


def test_file_names_that_are_not_utf8_are_read_and_written_or_refused(tmp_path, rng):
    """OpenCV's file functions crash on such names; images go through Python's file I/O,
    and the summary prints the name as the bytes it is (a UTF-8 locale, strict by default)."""
    import os
    import subprocess
    import sys

    import cv2

    photo, out = tmp_path / "photo\udcff.png", tmp_path / "isp\udcfe.png"  # b"\xff", b"\xfe"
    ok, png = cv2.imencode(".png", rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    photo.write_bytes(png.tobytes())
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONUTF8": "0"}

    def gputrack(*argv):
        return subprocess.run([sys.executable, "-m", "gputrack", *map(os.fsencode, argv)],
                              capture_output=True, env=env, timeout=300)  # fmt: skip

    done = gputrack("isp", photo, "--out", out, "--backend", "cpu")
    assert done.returncode == 0, done.stderr
    assert os.fsencode(out) in done.stdout
    assert cv2.imdecode(np.fromfile(out, np.uint8), cv2.IMREAD_COLOR).shape == (32, 48, 3)
    video = tmp_path / "v\udcfe.avi"
    done = gputrack("run", photo, "--backend", "cpu", "--no-ui", "--video", video)
    assert done.returncode == 2
    assert b"OpenCV cannot open a file whose name is not UTF-8" in done.stderr
