"""Quieting what native libraries print on the process's stderr past any log level of theirs
(FFmpeg probing a broken file: 'moov atom not found'; LibRaw: 'Unexpected end of file'):
gputrack's own one-line error says it better."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_native_stderr(unless_env: str | None = None) -> Iterator[None]:
    """File descriptor 2 points at /dev/null inside the block (Python's own sys.stderr is
    flushed first and goes there too). Left alone where `unless_env` is set: a user who set
    a library's log level wants its lines."""
    saved = -1
    if unless_env is None or unless_env not in os.environ:
        sys.stderr.flush()
        try:
            saved = os.dup(2)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        except OSError:  # no stderr to quieten (2>&-)
            pass
    try:
        yield
    finally:
        if saved >= 0:
            os.dup2(saved, 2)
            os.close(saved)
