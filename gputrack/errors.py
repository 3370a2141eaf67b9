"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""


class GputrackError(Exception):
    """Bad input or an unusable environment: printed as one line, no traceback."""

    exit_code = 1


class UsageError(GputrackError):
    """A command-line argument is wrong (exit code 2, as argparse uses)."""

    exit_code = 2


class BackendUnavailable(GputrackError):
    """A backend was asked for by name and cannot run here; the message says why."""


class KernelError(GputrackError):
    """A kernel failed to compile or load, or was launched with wrong arguments."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (timeout, systemd, docker stop), raised where Ctrl-C's KeyboardInterrupt would
    be, so that every verb stops as cleanly; its exit code is the shell's for SIGTERM."""

    exit_code = 143


def interrupted_by(stop: KeyboardInterrupt) -> tuple[str, int]:
    """What stopped a run, in words for its summary, and the exit code it ends with."""
    if isinstance(stop, Terminated):
        return "SIGTERM", Terminated.exit_code
    return "Ctrl-C", 130
