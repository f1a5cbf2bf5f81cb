"""The one error type users see: a file and the reason it could not be processed."""

from __future__ import annotations

import os


class FfvError(Exception):
    """A problem with one input or output, reported as ``<path>: <reason>`` on one line."""

    def __init__(self, path: str | os.PathLike | None, reason: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.reason = " ".join(str(reason).split())
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason
