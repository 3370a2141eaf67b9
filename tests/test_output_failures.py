"""Outputs under failure: a full disk, a descriptor, permissions. A write that fails leaves
the earlier file as it was and no temporary file, says so in one line naming the file; a
descriptor (/dev/stdout, /dev/fd/N) is written in place, never replaced by a rename; a
replaced file keeps its mode bits."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gputrack.cli import main
from gputrack.errors import GputrackError, UsageError
from gputrack.outputs import files
from gputrack.outputs.files import OutputFile, atomic_path, write_image
from gputrack.outputs.sinks import check_output_path
from gputrack.outputs.tracklog import TrackLogWriter

RUN = ["run", "synthetic:64x48", "--frames", "3", "--backend", "cpu", "--detector", "truth",
       "--no-ui"]  # fmt: skip
ROOT = Path(__file__).resolve().parent.parent


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---- a full disk, simulated --------------------------------------------------------------


def _file_size_limit(limit: int):
    """A child whose files cannot grow past `limit` bytes: a write then fails with EFBIG,
    as with ENOSPC on a full disk (SIGXFSZ ignored, as CPython does anyway)."""

    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def _gputrack_limited(tmp_path: Path, limit: int, *runs: list[str]) -> list[dict]:
    """Each of `runs` through main() in one child under the file size limit (one interpreter
    start for all): [{"rc", "err"}]."""
    code = (
        "import io, json, sys\n"
        "from gputrack.cli import main\n"
        "out = []\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    sys.stderr = io.StringIO()\n"
        "    sys.stdout = io.StringIO()\n"
        "    out.append({'rc': main(argv), 'err': sys.stderr.getvalue()})\n"
        "sys.__stdout__.write(json.dumps(out))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(list(runs))],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env,
        preexec_fn=_file_size_limit(limit),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines, err
    return lines[-1]


def test_log_and_mot_that_cannot_be_written_leave_the_earlier_file(tmp_path):
    """A log or result the disk cannot hold is not renamed (no half line under the final
    name), the earlier file stays, no temporary file is left, and no 'kept' note lies about
    it; the output that could be written is kept and said so."""
    log, mot = tmp_path / "fs.jsonl", tmp_path / "fs.txt"
    log.write_text("old log\n")
    mot.write_text("old mot\n")
    small = tmp_path / "small.txt"  # MOT lines are shorter than log lines: it fits
    first, second = _gputrack_limited(
        tmp_path, 4096,
        [*RUN[:3], "30", *RUN[4:], "--log", str(log), "--mot", str(small)],
        [*RUN[:3], "80", *RUN[4:], "--mot", str(mot)],
    )  # fmt: skip
    assert first["rc"] == 1
    assert _one_error_line(first["err"]) == (
        f"gputrack run: error: cannot write --log {log}: File too large (the earlier file is "
        "kept unchanged)"
    )
    assert (
        f"--mot {small}: kept, with the" in first["err"]
        and "--log" not in (first["err"].splitlines()[0])
    )
    assert small.read_text().startswith("1,") and small.read_text().endswith("-1,-1,-1\n")
    assert second["rc"] == 1 and "kept, with" not in second["err"]
    assert _one_error_line(second["err"]).endswith(
        f"cannot write --mot {mot}: File too large (the earlier file is kept unchanged)"
    )
    assert log.read_text() == "old log\n" and mot.read_text() == "old mot\n"
    assert _names(tmp_path) == ["fs.jsonl", "fs.txt", "small.txt"], "no temporary file left"


def test_a_video_the_disk_could_not_hold_does_not_replace_the_earlier_one(tmp_path):
    """OpenCV's video writer reports no error: the video is reopened and its frames counted
    before it is renamed over an earlier one."""
    videos = {ext: tmp_path / f"fs{ext}" for ext in (".mp4", ".avi")}
    for path in videos.values():
        path.write_text("old video\n")
    results = _gputrack_limited(
        tmp_path, 20000,
        *[[*RUN[:1], "synthetic:160x120", "--frames", "12", *RUN[4:], "--video", str(p)]
          for p in videos.values()],
    )  # fmt: skip
    for (ext, path), got in zip(videos.items(), results, strict=True):
        assert got["rc"] == 1, (ext, got)
        line = _one_error_line(got["err"])
        assert line.startswith(f"gputrack run: error: cannot write --video {path}: "), line
        assert line.endswith("(the earlier file is kept unchanged)")
        assert "moov atom" not in got["err"], "FFmpeg's own lines are quiet"
        assert path.read_text() == "old video\n"
    assert _names(tmp_path) == ["fs.avi", "fs.mp4"]


def test_isp_and_track_write_errors_name_the_file(tmp_path, rng):
    """Not numpy's '36864 requested and 2016 written' or a bare 'File too large'."""
    import cv2

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    det = tmp_path / "det.txt"
    det.write_text("".join(f"{i},-1,{10 + i % 40},10,20,20,0.9,-1,-1,-1\n" for i in range(1, 400)))
    npy, result = tmp_path / "o.npy", tmp_path / "r.txt"
    for path in (npy, result):
        path.write_text("old\n")
    isp, track = _gputrack_limited(
        tmp_path, 8192,
        ["isp", str(photo), "--out", str(npy), "--backend", "cpu"],
        ["track", str(det), "--out", str(result)],
    )  # fmt: skip
    for verb, got, path in (("isp", isp, npy), ("track", track, result)):
        assert got["rc"] == 1
        assert _one_error_line(got["err"]) == (
            f"gputrack {verb}: error: cannot write --out {path}: File too large (the earlier "
            "file is kept unchanged)"
        )
        assert path.read_text() == "old\n"
    assert _names(tmp_path) == ["det.txt", "o.npy", "photo.png", "r.txt"]


def test_a_failed_write_in_process_is_one_line_and_keeps_the_earlier_file(tmp_path, monkeypatch):
    """The same as a full disk, in process: every temporary file is opened on /dev/full."""
    real = files._temporary_beside

    def on_dev_full(out: Path, label: str, directory: Path | None = None):
        fd, tmp = real(out, label, directory)
        os.dup2(os.open("/dev/full", os.O_WRONLY), fd)  # writes fail with ENOSPC
        return fd, tmp

    monkeypatch.setattr(files, "_temporary_beside", on_dev_full)
    out = tmp_path / "a.png"
    out.write_bytes(b"earlier")
    with pytest.raises(GputrackError) as err:
        write_image(out, np.zeros((8, 8, 3), np.uint8), "--image")
    assert str(err.value) == (
        f"cannot write --image {out}: No space left on device (the earlier file is kept unchanged)"
    )
    full = r"new.jsonl: No space left on device \(not saved"
    with pytest.raises(GputrackError, match=full), TrackLogWriter(tmp_path / "new.jsonl") as log:
        log.write(0, 0.0, [], {"total": 1.0})
    assert out.read_bytes() == b"earlier" and _names(tmp_path) == ["a.png"]


# ---- descriptors, devices and FIFOs are written in place --------------------------------


def test_a_descriptor_onto_a_file_is_appended_to_not_replaced(tmp_path, capsys):
    """`--log /dev/fd/N` (what /dev/stdout is after `>> app.txt`): written through the open
    descriptor, so its earlier content and append mode stay, and the file is the same one."""
    app = tmp_path / "app.txt"
    app.write_text("precious earlier content\n")
    inode = app.stat().st_ino
    fd = os.open(app, os.O_WRONLY | os.O_APPEND)
    try:
        for spelling in (f"/dev/fd/{fd}", f"/proc/self/fd/{fd}"):
            assert main([*RUN, "--log", spelling, "--json"]) == 0
        assert main([*RUN, "--mot", f"/proc/{os.getpid()}/fd/{fd}", "--json"]) == 0
    finally:
        os.close(fd)
    capsys.readouterr()
    lines = app.read_text().splitlines()
    assert app.stat().st_ino == inode and lines[0] == "precious earlier content"
    assert [json.loads(x)["frame"] for x in lines[1:7]] == [0, 1, 2, 0, 1, 2]
    assert lines[7].startswith("1,") and lines[-1].endswith(",-1,-1,-1")
    assert _names(tmp_path) == ["app.txt"]


def test_a_descriptor_onto_a_pipe_is_written(tmp_path, capsys):
    """A piped /dev/stdout resolves to '/proc/PID/fd/pipe:[N]', which no file can be made
    beside: it is written through the descriptor."""
    read, write = os.pipe()
    try:
        assert main([*RUN, "--log", f"/dev/fd/{write}", "--json"]) == 0
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            got = pipe.read().decode().splitlines()
    finally:
        for fd in (read, write):
            with contextlib.suppress(OSError):  # closed already when all went well
                os.close(fd)
    capsys.readouterr()
    assert [json.loads(x)["frame"] for x in got] == [0, 1, 2]


@pytest.mark.parametrize("into", [">>", "| cat >"])
def test_dev_stdout_redirected_by_the_shell_keeps_earlier_content(tmp_path, into):
    """The audit's case: `--log /dev/stdout >> app.txt` lost app.txt's content and the
    summary (app.txt was replaced by a rename); through a pipe it failed ('pipe:[N].part')."""
    app = tmp_path / "app.txt"
    app.write_text("precious earlier content\n")
    cmd = " ".join([sys.executable, "-m", "gputrack", *RUN, "--json", "--log", "/dev/stdout"])
    done = subprocess.run(
        ["bash", "-c", f"{cmd} {into} {app}"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = app.read_text()
    if into == ">>":
        assert text.startswith("precious earlier content\n")
        text = text.split("\n", 1)[1]
    # The stream holds the log only; the summary went beside it, to stderr.
    assert [json.loads(x)["frame"] for x in text.splitlines()] == [0, 1, 2]
    assert json.loads(done.stderr[done.stderr.index("{"):])["log"] == "/dev/stdout"
    assert _names(tmp_path) == ["app.txt"]


def test_descriptor_checks_before_the_run(tmp_path):
    closed = os.open(os.devnull, os.O_WRONLY)
    os.close(closed)
    with pytest.raises(UsageError, match=f"descriptor {closed} is not open"):
        check_output_path("--log", f"/dev/fd/{closed}")
    with open(tmp_path / "r.txt", "w") as f, open(tmp_path / "r.txt") as reading:
        check_output_path("--log", f"/dev/fd/{f.fileno()}")
        with pytest.raises(UsageError, match="open for reading only"):
            check_output_path("--log", f"/dev/fd/{reading.fileno()}")


def test_devices_are_written_in_place_and_their_errors_name_them(tmp_path):
    with OutputFile("/dev/null", "--log") as f:
        f.write("nothing\n")
    assert Path("/dev/null").is_char_device()
    full = "^cannot write --mot /dev/full: No space left"
    with pytest.raises(GputrackError, match=full), OutputFile("/dev/full", "--mot") as f:
        f.write("x" * 10000)
        f.flush()
    with atomic_path(tmp_path / "a.txt") as tmp:  # a path-taking writer through /dev/fd/N
        tmp.write_text("x\n")
    target = tmp_path / "b.txt"
    target.write_text("earlier\n")
    fd = os.open(target, os.O_WRONLY | os.O_APPEND)
    try:
        with atomic_path(f"/dev/fd/{fd}") as tmp:
            tmp.write_text("through the descriptor\n")
    finally:
        os.close(fd)
    assert target.read_text() == "earlier\nthrough the descriptor\n"
    assert _names(tmp_path) == ["a.txt", "b.txt"]


# ---- modes --------------------------------------------------------------------------------


def test_a_replaced_output_keeps_its_mode_and_a_new_one_honours_the_umask(tmp_path, capsys):
    log, mot, image, ro = (tmp_path / n for n in ("p.jsonl", "p.txt", "p.png", "ro.jsonl"))
    for path in (log, mot, image, ro):
        path.write_text("x\n")
        path.chmod(0o600)
    ro.chmod(0o444)
    old = os.umask(0o027)
    try:
        argv = [*RUN, "--log", str(log), "--mot", str(mot), "--image", str(image), "--json"]
        assert main(argv) == 0
        assert main([*RUN, "--log", str(ro), "--mot", str(tmp_path / "new.txt"), "--json"]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    for path in (log, mot, image):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
        assert path.read_bytes() != b"x\n"
    assert stat.S_IMODE(ro.stat().st_mode) == 0o444 and ro.read_text().startswith('{"frame"')
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640  # 0666 less 027
