"""The `gputrack` command. Each verb lives in `gputrack/commands/<verb>.py` and provides
`register(subparsers)`, which adds its parser and sets `func(args) -> int`."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence

from gputrack import __version__
from gputrack.errors import GputrackError, Terminated, interrupted_by

# The verbs, in the order `gputrack --help` lists them.
VERBS = ["run", "check", "track", "isp", "detect"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (naming it) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gputrack",
        description="An IMX500-style AI camera sensor on a GPU: ISP and detector in CUDA "
        "kernels, a Kalman tracker, a terminal UI.",
    )
    parser.add_argument("--version", action="version", version=f"gputrack {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for verb in VERBS:
        importlib.import_module(f"gputrack.commands.{verb}").register(sub)
    return parser


def _stop_on_sigterm() -> None:
    """SIGTERM (timeout, systemd, docker stop) stops a run as cleanly as Ctrl-C does: logs
    complete and renamed, summary printed."""

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


# Options whose value is a list of numbers that may begin with a minus sign: argparse would
# take "--ccm -0.2,1.3,..." for an option "-0.2,..." and report a missing value.
_SIGNED_LISTS = ("--ccm", "--lens-shading", "--wb", "--roi")  # a negative value: its own error


def _attach_signed_values(argv: Sequence[str]) -> list[str]:
    """["--ccm", "-0.2,..."] -> ["--ccm=-0.2,..."], for the options in _SIGNED_LISTS."""
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        if a in _SIGNED_LISTS and i + 1 < len(args) and args[i + 1][:1] == "-":
            nxt = args[i + 1]
            if len(nxt) > 1 and (nxt[1].isdigit() or nxt[1] == "."):
                out.append(f"{a}={nxt}")
                i += 2
                continue
        out.append(a)
        i += 1
    return out


def _quiet_opencv() -> None:
    """OpenCV's own log lines ('[ WARN:0@0.7] global grfmt_png.cpp ...') say again, less
    clearly, what a gputrack error line says about a bad input: off, unless the user set
    OPENCV_LOG_LEVEL. FFmpeg's own lines (one per bad packet, 'Invalid PNG signature' while
    probing) likewise, for every verb: it reads its level once, when OpenCV first loads it,
    and a value the user set wins."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    if "OPENCV_LOG_LEVEL" not in os.environ:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def _safe_streams() -> None:
    """A file name that is not UTF-8 reaches Python with surrogates; printed, it goes out as
    the bytes it was, not as an error. A closed stdin, stdout or stderr (`<&-`, `>&-`, `2>&-`)
    is /dev/null: what goes there is swallowed (an error still sets the exit code), and no
    file the run opens takes its descriptor (where a library's own prints would land)."""
    for fd in (0, 1, 2):  # in order: open() takes the lowest free descriptor, this one
        try:
            os.fstat(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.open(os.devnull, os.O_RDWR)
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 (lives as long as the process)
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="surrogateescape")


def _drop_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered for a pipe nobody reads would raise
    again when Python flushes it at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    _safe_streams()
    try:
        parser = build_parser()  # imports every verb (NumPy, OpenCV...): Ctrl-C may come here
        args = parser.parse_args(_attach_signed_values(sys.argv[1:] if argv is None else argv))
    except SystemExit as done:  # --help, --version, or a bad argument (already printed)
        return int(done.code or 0)
    except KeyboardInterrupt:
        sys.stderr.write("gputrack: interrupted\n")
        return 130
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _stop_on_sigterm()
    _quiet_opencv()
    try:
        return int(args.func(args) or 0)
    except GputrackError as err:
        sys.stderr.write(f"gputrack {args.verb}: error: {err}\n")
        return err.exit_code
    except KeyboardInterrupt as stop:
        by, code = interrupted_by(stop)
        sys.stderr.write(f"gputrack {args.verb}: interrupted by {by}\n")
        return code
    except BrokenPipeError:
        # The reader of an output pipe left (`| head`, an encoder that stopped): exit as a
        # program SIGPIPE ends does, 141, so `set -o pipefail` sees the stream was cut short.
        _drop_stdout()
        with contextlib.suppress(OSError):  # stderr may be that pipe
            sys.stderr.write(f"gputrack {args.verb}: stopped: the reader of an output pipe "
                             "closed it\n")  # fmt: skip
        return 141
    except OSError as err:  # an unwritable output, a full disk: one line, not a traceback
        where = f"{err.filename}: " if err.filename else ""
        sys.stderr.write(f"gputrack {args.verb}: error: {where}{err.strerror or err}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
