"""The one error type users see: a file and the reason it could not be processed."""

from __future__ import annotations

import os
from pathlib import Path


class FfvError(Exception):
    """A problem with one input or output, reported as ``<path>: <reason>`` on one line."""

    def __init__(self, path: str | os.PathLike | None, reason: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.reason = " ".join(str(reason).split())
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


def read_head(path: Path, n: int, kind: str, missing: str = "no such file") -> bytes:
    """The first ``n`` bytes of the ``kind`` file (e.g. "video file") at ``path``.

    Raises:
        FfvError: ``missing`` when there is nothing at ``path``; a folder; a file that cannot be read.
    """
    if not path.exists():
        raise FfvError(path, missing)
    if path.is_dir():
        raise FfvError(path, f"is a folder, not a {kind}")
    try:
        with open(path, "rb") as handle:
            return handle.read(n)
    except OSError as exc:
        raise FfvError(path, f"cannot be read: {exc.strerror or exc}") from exc
