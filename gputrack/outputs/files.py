"""Writing files so that nothing half-written ever has the final name, and an error loses
nothing: an output is written beside its final name under a unique hidden temporary name
(`.NAME.PID.RANDOM.part.SUFFIX`, created exclusively, so never an existing file), renamed over
the final name when complete (keeping the mode bits of the file it replaces), and removed on
any error, which leaves an earlier file of that name as it was.

A path that names an open descriptor (`/dev/stdout`, `/dev/stderr`, `/dev/fd/N`,
`/proc/self/fd/N`, or a link to one) is written through that descriptor, in place: a shell's
`>> app.txt` keeps its earlier content and its append mode, a pipe stays a pipe. A device or a
FIFO is written in place too: renaming over it would replace it with a plain file.

`OutputFile` writes as it goes (a log, a result); `atomic_path` gives a path for writers that
want one (OpenCV's video writer). Both create their temporary file with `_temporary_beside`."""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from gputrack.errors import GputrackError, UsageError
from gputrack.opencv_files import encode_image

_STD_STREAMS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
# /dev/fd/N, /proc/self/fd/N, /proc/PID/fd/N, /proc/PID/task/TID/fd/N
_FD_PATH = re.compile(r"/(?:dev/fd|proc/(self|thread-self|\d+)(?:/task/\d+)?/fd)/(\d+)")


def _descriptor(path: str | Path) -> int | str | None:
    """The open descriptor `path` names: its number when it is this process's, its /proc path
    when another process's, None when `path` names no descriptor. Links are followed one at a
    time: the last one (/proc/self/fd/1 -> /tmp/app.txt or 'pipe:[N]') is where the file the
    descriptor has open would be reopened, truncated or not found (a pipe)."""
    p = os.path.abspath(path)
    for _ in range(40):  # as many links as the kernel follows
        parent = os.path.realpath(os.path.dirname(p))  # /dev/fd -> /proc/PID/fd
        for spelling in (p, os.path.join(parent, os.path.basename(p))):
            if spelling in _STD_STREAMS:
                return _STD_STREAMS[spelling]
            m = _FD_PATH.fullmatch(spelling)
            if m:
                pid = m.group(1)
                mine = pid in (None, "self", "thread-self") or int(pid) == os.getpid()
                return int(m.group(2)) if mine else spelling
        if not os.path.islink(p):
            return None
        p = os.path.normpath(os.path.join(parent, os.readlink(p)))
    return None


def written_in_place(path: str | Path) -> bool:
    """Whether an output `path` is written where it is (a descriptor, a device, a FIFO) rather
    than replaced by a rename: nothing earlier is lost by writing it."""
    p = Path(path)
    return _descriptor(p) is not None or (p.exists() and not p.is_file() and not p.is_dir())


def check_descriptor(label: str, path: str | Path) -> bool:
    """For a path naming a descriptor: a UsageError unless it is open for writing; True.
    False for any other path (for the caller's own checks)."""
    fd = _descriptor(path)
    if fd is None:
        return False
    if isinstance(fd, str):  # another process's: only the permission can be told
        if not os.access(fd, os.W_OK):
            raise UsageError(f"{label}: cannot write there (permission denied)")
        return True
    import fcntl

    try:
        mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError as err:
        raise UsageError(f"{label}: descriptor {fd} is not open ({err.strerror})") from None
    if mode == os.O_RDONLY:
        raise UsageError(f"{label}: descriptor {fd} is open for reading only")
    return True


@dataclass
class _Target:
    """Where an output goes: through this process's descriptor `fd`, into `in_place` (a
    device, a FIFO, another process's descriptor) as it is, or onto the regular `file` by a
    rename."""

    fd: int | None = None
    in_place: Path | None = None
    file: Path | None = None


def _target(path: str | Path, label: str) -> _Target:
    out = Path(path)
    fd = _descriptor(out)
    if isinstance(fd, int):
        return _Target(fd=fd)
    if fd is not None:
        return _Target(in_place=Path(fd))
    if out.is_dir():
        raise GputrackError(f"{label}: is a folder, give a file name")
    if out.exists() and not out.is_file():
        return _Target(in_place=out)
    if out.is_symlink():
        out = out.resolve()  # the link stays; its target is what gets replaced
    if not out.parent.resolve().is_dir():
        raise GputrackError(f"{label}: folder {out.parent} does not exist")
    return _Target(file=out)


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (os.umask() can
    only be read by setting it, which races with other threads creating files)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def is_stdout(path: str | Path | None) -> bool:
    """`path` is where stdout goes (/dev/stdout, /dev/fd/1, or the file stdout is redirected
    to): a summary printed there would be mixed into that output."""
    if path is None:
        return False
    try:
        a, b = os.stat(path), os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no such file, or stdout has no descriptor
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _temporary_beside(out: Path, label: str, directory: Path | None = None) -> tuple[int, Path]:
    """A new, empty, uniquely named hidden file beside `out` (in `directory` if given), open
    for writing: (descriptor, path). Created exclusively (mkstemp), so it is never an existing
    file: not an input, not another output, not another run's temporary file. The suffix
    stays last, for writers that choose a format by it."""
    suffix = out.suffix if len(out.suffix) <= 16 else ""
    where = directory if directory is not None else out.parent
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{out.name[:64]}.{os.getpid()}.", suffix=f".part{suffix}", dir=where
        )
    except OSError as err:  # fail now, naming the user's path, not after the work is done
        raise GputrackError(f"{label}: cannot write here ({err.strerror})") from None
    return fd, Path(name)


def _install(tmp: Path, out: Path) -> None:
    """Rename the finished `tmp` over `out`, with the mode bits of the file it replaces (a
    private log stays private), or those a new file gets (0666 less the umask; mkstemp made
    it 0600)."""
    try:
        mode = stat.S_IMODE(os.stat(out).st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    with suppress(OSError):  # a file system without modes (FAT, some FUSE) has its default
        os.chmod(tmp, mode)
    os.replace(tmp, out)


def _unlink(path: Path | None) -> None:
    if path is not None:
        with suppress(OSError):
            path.unlink(missing_ok=True)


def _flush_std_streams() -> None:
    """Python's own buffers go out before anything written past them through a descriptor
    (else a line printed earlier would appear after the output)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


class OutputFile:
    """An output written as it goes: `with OutputFile(path, "--mot") as f: f.write(...)`.

    A regular file is written under a temporary name and renamed when complete; a descriptor,
    device or FIFO is written in place. A write that fails raises a GputrackError naming the
    file (`cannot write --mot r.txt: No space left on device (...)`) and the temporary file is
    then never renamed: the final name keeps what it had, not a half-written line.
    `keep_on_error`: what was written (whole records, flushed one at a time) is renamed into
    place when the run fails for another reason; a callable decides when the error comes (a
    run that failed before its first record replaces nothing)."""

    def __init__(
        self,
        path: str | Path,
        what: str = "",
        *,
        keep_on_error: bool | Callable[[], bool] = False,
    ) -> None:
        self.path = Path(path)
        self.label = f"{what} {path}" if what else str(path)
        self.failed = False  # a write failed: never renamed into place
        self.installed = False  # renamed into place
        self._keep = keep_on_error
        self._tmp: Path | None = None
        target = _target(self.path, self.label)
        self._final = target.file  # None: written in place, nothing to rename
        try:
            if target.fd is not None:
                _flush_std_streams()
                fd = os.dup(target.fd)  # shares the offset and O_APPEND of the shell's `>>`
            elif target.in_place is not None:  # no O_TRUNC: another process's file stays
                fd = os.open(target.in_place, os.O_WRONLY | os.O_APPEND | os.O_NOCTTY)
            else:
                assert self._final is not None
                fd, self._tmp = _temporary_beside(self._final, self.label)
        except OSError as err:
            raise GputrackError(f"{self.label}: cannot write there ({err.strerror})") from None
        self._file = open(fd, "wb")  # noqa: SIM115 (closed in close() or discard())

    @property
    def kept(self) -> bool:
        """What was written is under the final name (renamed, or written in place)."""
        return not self.failed and (self._final is None or self.installed)

    def _cannot_write(self, err: OSError) -> GputrackError:
        self.failed = True
        why = err.strerror or str(err)
        if self._final is None:
            return GputrackError(f"cannot write {self.label}: {why}")
        earlier = "the earlier file is kept unchanged" if self._final.exists() else "not saved"
        return GputrackError(f"cannot write {self.label}: {why} ({earlier})")

    def write(self, data: str | bytes) -> int:
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        try:
            return self._file.write(data)
        except BrokenPipeError:  # a reader that left: not an error of this program
            self.failed = True
            raise
        except OSError as err:
            raise self._cannot_write(err) from None

    def writelines(self, lines: Iterable[str | bytes]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._file.flush()
        except BrokenPipeError:
            self.failed = True
            raise
        except OSError as err:
            raise self._cannot_write(err) from None

    def mark(self) -> int | None:
        """Where the next record starts, for `rollback`; None where there is no going back
        (a descriptor, device or FIFO, written in place)."""
        if self._tmp is None or self._file.closed:
            return None
        return self._file.tell()

    def rollback(self, mark: int | None) -> None:
        """Cut the temporary file back to `mark`: a record that the run could not finish in
        its other outputs goes, so that every output kept ends on the same frame."""
        if mark is None or self._file.closed:
            return
        with suppress(OSError):  # a failed write's unflushed bytes: that file is not kept
            self._file.seek(mark)
            self._file.truncate()

    def close(self) -> None:
        """Flush, close, and rename into place (a file written in place is just closed)."""
        if self._file.closed:
            return
        try:
            self._file.close()
        except OSError as err:
            self.discard()
            if isinstance(err, BrokenPipeError):
                self.failed = True
                raise
            raise self._cannot_write(err) from None
        if self._final is not None and self._tmp is not None and not self.failed:
            try:
                _install(self._tmp, self._final)
            except OSError as err:
                _unlink(self._tmp)
                raise self._cannot_write(err) from None
            self.installed = True

    def discard(self) -> None:
        """Close and remove the temporary file: the final name keeps what it had."""
        if not self._file.closed:
            with suppress(OSError):  # unflushed bytes of a failed write: going away anyway
                self._file.close()
        _unlink(self._tmp)

    def __enter__(self) -> OutputFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
            return
        keep = self._keep() if callable(self._keep) else self._keep
        if keep and not self.failed:
            # Not kept if this fails (`kept` says so); the error that stopped the run is the news.
            with suppress(GputrackError):
                self.close()
        else:
            self.discard()


@contextmanager
def atomic_path(
    path: str | Path, keep_on_error: bool | Callable[[], bool] = False, what: str = ""
) -> Iterator[Path]:
    """`with atomic_path(out) as tmp: write(tmp)` -> `out` appears only when complete.

    For writers that need a path (OpenCV's video writer); `OutputFile` for those that write
    as they go. `keep_on_error` as in OutputFile. A device or FIFO is given as it is; a
    descriptor (/dev/stdout) gets a temporary file whose content is written through the
    descriptor at the end."""
    label = f"{what} {path}" if what else str(path)
    target = _target(path, label)
    if target.in_place is not None and _descriptor(path) is None:
        yield target.in_place  # a device or a FIFO: written where it is
        return
    final = target.file
    fd, tmp = _temporary_beside(
        final or Path(path), label, None if final else Path(tempfile.gettempdir())
    )
    os.close(fd)
    try:
        yield tmp
    except BaseException:
        keep = keep_on_error() if callable(keep_on_error) else keep_on_error
        if keep and tmp.exists():
            _finish(tmp, final, path, label)
        raise
    else:
        _finish(tmp, final, path, label)
    finally:
        _unlink(tmp)


def _finish(tmp: Path, final: Path | None, path: str | Path, label: str) -> None:
    if final is not None:
        _install(tmp, final)
        return
    with tmp.open("rb") as src, OutputFile(path, label) as out:  # through the descriptor
        shutil.copyfileobj(src, out)


def write_image(path: str | Path, bgr: np.ndarray, what: str = "image") -> None:
    """A BGR image, 8 or 16 bits (as the format takes), by the extension's format; one-line
    errors naming the file."""
    out = Path(path)
    data = encode_image(out.suffix, bgr)  # in memory: any file name, not only UTF-8 ones
    if data is None:
        raise GputrackError(f"{what} {out}: OpenCV cannot write this image as "
                            f"'{out.suffix or 'no suffix'}'")  # fmt: skip
    with OutputFile(out, what) as f:
        f.write(data)


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
    (None: not given). An input folder takes no file with a suffix in `folder_reads`: an
    existing one is a frame the run reads, a new one would become a frame of the next run
    over the folder. Two outputs written in place (`/dev/stdout` and
    `/dev/stderr` on one terminal) replace nothing and may share it."""
    reads = {s.lower() for s in folder_reads}
    given = [(name, Path(p).expanduser()) for name, p in outputs.items() if p]
    sources = [(name, Path(p).expanduser()) for name, p in inputs.items() if p]
    for i, (name, out) in enumerate(given):
        for what, src in sources:
            if src.is_dir():
                if out.suffix.lower() in reads and _same_file(out.parent, src):
                    why = ("is one of the files of the input folder {}; writing it would lose "
                           "it" if out.exists() else "is in the input folder {}, which a later "
                           "run would read it from as one of its frames; write it elsewhere")
                    raise UsageError(f"{name} {out}: " + why.format(src))
            elif _same_file(out, src):
                raise UsageError(f"{name} {out}: is the {what}; writing it would lose it")
        for other, earlier in given[:i]:
            if written_in_place(out) and written_in_place(earlier):
                continue
            if _same_file(out, earlier):
                raise UsageError(f"{name} and {other} name the same file {out}: one would be "
                                 "lost")  # fmt: skip
