"""The `gputrack` command. Each verb lives in `gputrack/commands/<verb>.py` and provides
`register(subparsers)`, which adds its parser and sets `func(args) -> int`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gputrack import __version__
from gputrack.errors import GputrackError

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GputrackError as err:
        sys.stderr.write(f"gputrack {args.verb}: error: {err}\n")
        return err.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"gputrack {args.verb}: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
