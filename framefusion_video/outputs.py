"""Claiming an output file, so that one run at a time writes it, and naming its temporaries.

Every run that writes an output first takes an exclusive lock on a hidden lock file beside it
(``.<name>.ffv-lock``, ``flock``). A second run on the same output does not wait: it is told that
the output is in progress elsewhere (:class:`OutputBusy`), and a folder run moves on to the next
file. Temporaries are named ``.<name>.ffv-tmp-<token>-...`` with a token of their own per writer,
so two writers can never share one. Whoever holds the lock is the only live writer of that
output, so what other temporaries of it exist were left by a run that was killed (``kill -9``, a
power cut); they are removed when the lock is taken.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import FfvError

log = logging.getLogger(__name__)

_TMP_MARKER = ".ffv-tmp-"
_LOCK_SUFFIX = ".ffv-lock"


class OutputBusy(FfvError):
    """Another process holds the output's lock: the output is in progress elsewhere."""


def lock_path(dst: Path) -> Path:
    """The hidden lock file of output ``dst``."""
    return dst.with_name(f".{dst.name}{_LOCK_SUFFIX}")


def temp_path(dst: Path, token: str, tail: str) -> Path:
    """A hidden temporary of output ``dst``: ``.<name>.ffv-tmp-<token><tail>``."""
    return dst.with_name(f".{dst.name}{_TMP_MARKER}{token}{tail}")


def new_token() -> str:
    """A token no other writer uses: the process id and 8 random hex digits."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _stale_temporaries(dst: Path) -> list[Path]:
    """Temporaries of ``dst``: this module's names, and the fixed names (``.<stem>.ffv-tmp.mp4``,
    ``.<stem>.ffv-ray-*``) that ffv 0.1 wrote before output claiming, so that they are cleaned too."""
    name, stem = glob.escape(dst.name), glob.escape(dst.stem)
    found = set(dst.parent.glob(f".{name}{_TMP_MARKER}*"))
    found |= set(dst.parent.glob(f".{stem}.ffv-ray-*")) | set(dst.parent.glob(f"..{stem}.ffv-ray-*"))
    for legacy in (f".{dst.stem}.ffv-tmp-video.mp4", f".{dst.stem}.ffv-tmp{dst.suffix or '.mp4'}"):
        found.add(dst.with_name(legacy))
    return sorted(p for p in found if p.is_file())


def _holder(path: Path) -> str:
    """``pid N on HOST`` as the lock's holder wrote it, or "" when unknown."""
    with contextlib.suppress(OSError, ValueError):
        text = path.read_text(encoding="utf-8").strip()
        if text:
            return f" ({text})"
    return ""


class OutputClaim:
    """An exclusive claim on output ``path``; release it (or leave the ``with`` block) when done.

    Use :func:`claim_output` to take one.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file and unlock (in that order, so no one locks a removed file)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            lock_path(self.path).unlink()
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = None

    def __enter__(self) -> OutputClaim:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release()


def claim_output(dst: str | os.PathLike) -> OutputClaim:
    """Take the exclusive claim on output ``dst`` and remove what killed runs left of it.

    Raises:
        OutputBusy: another process (this machine, or another one on shared storage) holds it.
        FfvError: the lock file cannot be created (folder missing, read-only, disk full).
    """
    dst = Path(dst)
    lock = lock_path(dst)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise FfvError(dst, f"cannot create its lock file {lock.name} ({os_reason(exc)})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputBusy(dst, f"in progress in another ffv run{_holder(lock)}; "
                                      "left to it (run again once it has finished)") from exc
            raise FfvError(dst, f"cannot lock {lock.name} ({os_reason(exc)})") from exc
        # The holder before us may have removed the file between our open and our lock: then we
        # hold a lock on a file no one else can find, and must lock the new one instead.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    claim = OutputClaim(dst, fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        for stale in _stale_temporaries(dst):
            stale.unlink(missing_ok=True)
            log.info("%s: removed %s, left by an ffv run that was killed", dst, stale.name)
    except OSError as exc:
        claim.release()
        raise FfvError(dst, f"cannot prepare the output ({os_reason(exc)})") from exc
    return claim


def os_reason(exc: OSError) -> str:
    """A short reason for an OSError; "no space left on device" for ENOSPC."""
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    return (exc.strerror or str(exc)).lower()


def same_file(a: Path, b: Path) -> bool:
    """Whether paths ``a`` and ``b`` name one file: the same file on disk, or, when either does
    not exist yet, the same absolute path."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A hidden temporary beside ``path`` (same suffix) to write the file to; it is renamed onto
    ``path`` when the block ends without an error and removed otherwise, so that ``path`` is
    never seen half-written. The folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path, new_token(), path.suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
