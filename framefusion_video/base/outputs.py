"""Claiming an output file, so that one run at a time writes it, and naming its temporaries.

Every run that writes an output first takes an exclusive lock on a hidden lock file beside it
(``.<name>.ffv-lock``, ``flock``). A second run on the same output does not wait: it is told that
the output is in progress elsewhere (:class:`OutputBusy`), and a folder run moves on to the next
file. Temporaries are named ``.<name>.ffv-tmp-<token>-...`` with a token of their own per writer,
so two writers can never share one. Whoever holds the lock is the only live writer of that
output, so what other temporaries of it exist were left by a run that was killed (``kill -9``, a
power cut); they are removed when the lock is taken.

Nothing is ever written through a link. Temporaries and new files are created with
``O_CREAT|O_EXCL|O_NOFOLLOW`` (:func:`create_new`); a lock file is opened with ``O_NOFOLLOW`` and
refused unless it is a plain file of one name; finished files are renamed onto their names, which
replaces a link planted there instead of following it. Hidden names stay within ``NAME_MAX`` for
any legal output name (:func:`hidden_base`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import logging
import os
import socket
import stat
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from framefusion_video.base.errors import FfvError

log = logging.getLogger(__name__)

_TMP_MARKER = ".ffv-tmp-"
_LOCK_SUFFIX = ".ffv-lock"
_PROBE_MARKER = ".ffv-probe-"
#: The longest file name (bytes) of the file systems ffv writes to.
NAME_MAX = 255
#: Bytes a hidden name may add to its output's name: the dot, the marker, a token and a tail.
_HIDDEN_ROOM = 64
_DIGEST_CHARS = 16
#: How a new file is created: never over an existing one, never through a link.
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class OutputBusy(FfvError):
    """Another process holds the output's lock: the output is in progress elsewhere."""


def hidden_base(dst: Path) -> str:
    """What the hidden names of output ``dst`` start with: its name, or, when that leaves less than
    ``_HIDDEN_ROOM`` bytes under ``NAME_MAX``, the name's first bytes and a hash of the whole name,
    so that a legal output name never gets a lock or temporary name the file system refuses."""
    raw = os.fsencode(dst.name)
    if len(raw) + _HIDDEN_ROOM <= NAME_MAX:
        return dst.name
    digest = hashlib.sha256(raw).hexdigest()[:_DIGEST_CHARS]
    keep = NAME_MAX - _HIDDEN_ROOM - _DIGEST_CHARS - 1
    return f"{os.fsdecode(raw[:keep])}~{digest}"


def lock_path(dst: Path) -> Path:
    """The hidden lock file of output ``dst``: ``.<name>.ffv-lock`` (:func:`hidden_base`)."""
    return dst.with_name(f".{hidden_base(dst)}{_LOCK_SUFFIX}")


def temp_path(dst: Path, token: str, tail: str) -> Path:
    """A hidden temporary of output ``dst``: ``.<name>.ffv-tmp-<token><tail>`` (:func:`hidden_base`)."""
    return dst.with_name(f".{hidden_base(dst)}{_TMP_MARKER}{token}{tail}")


def create_new(path: Path) -> int:
    """Create the file ``path`` for writing and return its descriptor; an existing file or a link
    at ``path`` is an error (``O_CREAT|O_EXCL|O_NOFOLLOW``), so nothing else is ever written."""
    return os.open(path, _CREATE_FLAGS, 0o644)


def create_temp(dst: Path, token: str, tail: str) -> Path:
    """Create the empty hidden temporary :func:`temp_path` of ``dst`` (:func:`create_new`), for a
    writer that opens it by name (ffmpeg).

    Raises:
        FfvError: it cannot be created (folder not writable, disk full, a name in the way).
    """
    path = temp_path(dst, token, tail)
    try:
        os.close(create_new(path))
    except OSError as exc:
        raise FfvError(dst, f"cannot create its temporary file ({os_reason(exc)})") from exc
    return path


def new_token() -> str:
    """A token no other writer uses: the process id and 8 random hex digits."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _stale_temporaries(dst: Path) -> list[Path]:
    """Temporaries of ``dst``: this module's names, and the fixed names (``.<stem>.ffv-tmp.mp4``,
    ``.<stem>.ffv-ray-*``) that ffv 0.1 wrote before output claiming, so that they are cleaned too."""
    name, stem = glob.escape(hidden_base(dst)), glob.escape(dst.stem)
    found = set(dst.parent.glob(f".{name}{_TMP_MARKER}*"))
    found |= set(dst.parent.glob(f".{stem}.ffv-ray-*")) | set(dst.parent.glob(f"..{stem}.ffv-ray-*"))
    for legacy in (f".{dst.stem}.ffv-tmp-video.mp4", f".{dst.stem}.ffv-tmp{dst.suffix or '.mp4'}"):
        if len(os.fsencode(legacy)) <= NAME_MAX:  # ffv 0.1 could not have written a longer one
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


def _open_lock(dst: Path, lock: Path) -> int:
    """Open (or create) the lock file ``lock`` of ``dst`` without following a link, and refuse
    anything but a plain file of one name: a link, a device or a second name of another file
    planted there must never be truncated.

    Raises:
        FfvError: the lock file cannot be created, or what is at its name is not an ffv lock file.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(lock, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FfvError(dst, f"its lock file {lock.name} is a link, which ffv never follows; "
                                "remove it and run again") from exc
        raise FfvError(dst, f"cannot create its lock file {lock.name} ({os_reason(exc)})") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        what = "another name of some file" if stat.S_ISREG(info.st_mode) else "not a plain file"
        raise FfvError(dst, f"its lock file {lock.name} is {what}; left alone (remove it and run again)")
    return fd


def claim_output(dst: str | os.PathLike) -> OutputClaim:
    """Take the exclusive claim on output ``dst`` and remove what killed runs left of it.

    Raises:
        OutputBusy: another process (this machine, or another one on shared storage) holds it.
        FfvError: the lock file cannot be created (folder missing, read-only, disk full).
    """
    dst = Path(dst)
    lock = lock_path(dst)
    while True:
        fd = _open_lock(dst, lock)
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


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether paths ``a`` and ``b`` name one file: the same file on disk, or, when either does
    not exist yet, the same name in the same folder (links to folders followed)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return _where(a) == _where(b)


def _where(path: Path) -> str:
    """``path`` as its real folder and its own name (the name itself not resolved), normalised."""
    absolute = Path(os.path.abspath(path))
    return os.path.normcase(os.path.join(os.path.realpath(absolute.parent), absolute.name))


def make_output_folder(folder: Path, named: Path | None = None) -> None:
    """Create ``folder`` (and its parents) and check that it can be written; FfvError naming
    ``named`` (default ``folder``) otherwise."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FfvError(named or folder, f"cannot create the output folder ({os_reason(exc)})") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FfvError(named or folder, "cannot write to the output folder (permission denied)")


def check_folder_can_be_made(folder: Path, what: str) -> None:
    """Raise FfvError unless ``folder`` is, or can be created as, a folder ffv can write to.

    The nearest existing folder is tried for real (a hidden file created and removed at once):
    permissions alone do not tell, e.g. for root under ``/proc`` or on a read-only file system.
    """
    existing = folder
    while not existing.exists():
        if existing.is_symlink():  # a dangling link
            raise FfvError(folder, f"cannot create the {what} ({existing} is a broken link)")
        existing = existing.parent
    if not existing.is_dir():
        raise FfvError(folder, f"cannot create the {what} ({existing} is a file)")
    probe = existing / f"{_PROBE_MARKER}{new_token()}"
    try:
        os.close(create_new(probe))
    except OSError as exc:
        raise FfvError(existing, f"cannot write to the {what} ({os_reason(exc)})") from exc
    probe.unlink(missing_ok=True)


def check_new_file(path: str | os.PathLike, what: str, others: Iterable[str | os.PathLike] = ()) -> Path:
    """Check, before any work, that the ``what`` file (a report, a JSON file) can be written at
    ``path``: not a folder, not one of ``others`` (the run's inputs and outputs), not read-only,
    and in a folder that can be written (:func:`check_folder_can_be_made`). Returns ``path``.

    Raises:
        FfvError: naming ``path`` and what is wrong.
    """
    path = Path(path)
    if path.is_dir():
        raise FfvError(path, f"the {what} path is a folder, expected a file name")
    for other in others:
        if same_file(path, other):
            raise FfvError(path, f"the {what} would replace {other}, a file of this run; choose another name")
    if path.exists() and not path.is_symlink() and not os.access(path, os.W_OK):
        raise FfvError(path, f"cannot write the {what} (permission denied)")
    check_folder_can_be_made(path.parent, f"{what}'s folder")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A hidden temporary beside ``path`` (same suffix) to write the file to; it is renamed onto
    ``path`` when the block ends without an error and removed otherwise, so that ``path`` is
    never seen half-written. The folder is created if needed.

    The temporary is created here, empty (:func:`create_new`: never a file or a link that was
    there), and the rename replaces whatever is at ``path``, a link included, without following
    it: nothing but ``path`` itself is ever written.

    Raises:
        OSError: the folder or the temporary cannot be created, or the rename fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path, new_token(), path.suffix)
    os.close(create_new(tmp))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` as the file ``path`` through :func:`atomic_path` (a new temporary, renamed).

    Raises:
        OSError: as :func:`atomic_path`; ENOSPC when the disk is full (:func:`os_reason`).
    """
    with atomic_path(path) as tmp, open(tmp, "wb", opener=no_follow) as handle:
        _write_all(handle, data)


def write_file(path: str | os.PathLike, data: bytes, what: str) -> None:
    """:func:`write_atomic`, its errors as FfvError: "cannot write the <what> (<reason>)"."""
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise FfvError(path, f"cannot write the {what} ({os_reason(exc)})") from exc


def write_image(path: str | os.PathLike, rgb) -> None:
    """Write the uint8 RGB image ``rgb`` (H, W, 3) in the format ``path``'s suffix names, with
    :func:`write_file` (a new file renamed into place, never through a link); JPEG at quality 100,
    so that saving adds no damage of its own."""
    import cv2

    suffix = Path(path).suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, 100] if suffix in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise FfvError(path, f"OpenCV cannot write {suffix} images")
    write_file(path, buf.tobytes(), "image")


def append_line(path: str | os.PathLike, line: str, what: str) -> None:
    """Append ``line`` (and a newline) to the log file ``path``, created if missing; never through
    a link: a symbolic link there, or a file with another name too (a hard link), is an FfvError,
    as is a write that fails ("cannot write the <what> (<reason>)")."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        reason = "it is a link, which ffv never follows" if exc.errno == errno.ELOOP else os_reason(exc)
        raise FfvError(path, f"cannot write the {what} ({reason})") from exc
    with os.fdopen(fd, "ab") as handle:
        if os.fstat(handle.fileno()).st_nlink > 1:
            raise FfvError(path, f"cannot write the {what} (it has another name too, a hard link ffv never writes through)")
        try:
            _write_all(handle, (line + "\n").encode("utf-8"))
        except OSError as exc:
            raise FfvError(path, f"cannot write the {what} ({os_reason(exc)})") from exc


def no_follow(path: str, flags: int) -> int:
    """An ``open(..., opener=no_follow)`` that never follows a link at ``path``."""
    return os.open(path, flags | os.O_NOFOLLOW, 0o644)


def _write_all(handle, data: bytes) -> None:
    """Write ``data`` to the open file ``handle`` and flush it, so that a full disk shows here."""
    handle.write(data)
    handle.flush()
