"""Writing files so that nothing half-written ever has the final name: write beside it under
a temporary name (same suffix, so writers that choose a format by it still do), rename when
complete, remove the temporary file on any error."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from gputrack.errors import GputrackError, UsageError
from gputrack.opencv_files import encode_image


@contextmanager
def atomic_path(
    path: str | Path, keep_on_error: bool | Callable[[], bool] = False
) -> Iterator[Path]:
    """`with atomic_path(out) as tmp: write(tmp)` -> `out` appears only when complete.

    `keep_on_error`: a log of whole records (flushed one at a time) is worth keeping when
    the run fails, so it is renamed then too; a half-written image is not. A callable decides
    when the error comes (a run that failed before its first record replaces nothing)."""
    out = Path(path)
    if out.is_dir():
        raise GputrackError(f"{out}: is a folder, give a file name")
    if out.exists() and not out.is_file():
        # A device or a pipe (/dev/null, /dev/stdout, a FIFO): renaming over it would
        # replace it with a plain file, so it is written in place.
        yield out
        return
    if out.is_symlink():
        out = out.resolve()  # the link stays; its target is what gets replaced
    if not out.resolve().parent.is_dir():
        raise GputrackError(f"{out}: folder {out.parent} does not exist")
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")
    try:
        tmp.touch()  # fail now, naming the user's path, not after the work is done
    except OSError as err:
        raise GputrackError(f"{out}: cannot write here ({err.strerror})") from None
    try:
        yield tmp
    except BaseException:
        keep = keep_on_error() if callable(keep_on_error) else keep_on_error
        if keep and tmp.exists():
            os.replace(tmp, out)
        raise
    else:
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_image(path: str | Path, bgr: np.ndarray, what: str = "image") -> None:
    """An 8-bit BGR image, by the extension's format; one-line errors naming the file."""
    out = Path(path)
    data = encode_image(out.suffix, bgr)  # in memory: any file name, not only UTF-8 ones
    if data is None:
        raise GputrackError(f"{what} {out}: OpenCV cannot write this image as "
                            f"'{out.suffix or 'no suffix'}'")  # fmt: skip
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)


def _same_file(a: Path, b: Path) -> bool:
    """One file under two names (spelling, symlink or hard link), or one path not yet made."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def refuse_overwriting_inputs(
    inputs: Mapping[str, str | Path | None],
    outputs: Mapping[str, str | Path | None],
    folder_reads: Iterable[str] = (),
) -> None:
    """Before any work: an output that names one of the inputs, or another output, would
    overwrite it (an input lost, or one result written over another), so it is refused.
    `inputs` and `outputs` map what the user called each (`'input'`, `'--out'`) to its path
    (None: not given). An input folder loses only the files the run would read from it: those
    with a suffix in `folder_reads`."""
    reads = {s.lower() for s in folder_reads}
    given = [(name, Path(p).expanduser()) for name, p in outputs.items() if p]
    sources = [(name, Path(p).expanduser()) for name, p in inputs.items() if p]
    for i, (name, out) in enumerate(given):
        for what, src in sources:
            if src.is_dir():
                clash = (out.exists() and out.suffix.lower() in reads
                         and _same_file(out.parent, src))  # fmt: skip
                if clash:
                    raise UsageError(f"{name} {out}: is one of the files of the input folder "
                                     f"{src}; writing it would lose it")  # fmt: skip
            elif _same_file(out, src):
                raise UsageError(f"{name} {out}: is the {what}; writing it would lose it")
        for other, earlier in given[:i]:
            if _same_file(out, earlier):
                raise UsageError(f"{name} and {other} name the same file {out}: one would be "
                                 "lost")  # fmt: skip
