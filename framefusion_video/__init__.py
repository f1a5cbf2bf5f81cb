"""Frame Fusion Video: restore the faces in videos on a plain CPU.

The library face of ``ffv restore``::

    from framefusion_video import RestoreConfig, restore_paths, restore_video

    result = restore_video("clip.mp4", "clip_restored.mp4", RestoreConfig(strength=0.8))
    results = restore_paths(["footage/"], "restored/", RestoreConfig(model_path="mine.tflite"))

``RestoreConfig`` holds the options (its fields are the CLI flags; ``model_path`` points at a
generator, None = the shipped one); ``restore_video`` restores one clip and ``restore_paths`` files
and folders; both return :class:`FileResult` values and raise :class:`FfvError` for a file they
cannot process. The names are imported on first use (PEP 562), so that ``import framefusion_video``,
``ffv --help`` and ``ffv --version`` stay fast: nothing here imports TensorFlow or MediaPipe until
a clip is restored.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from framefusion_video.base.errors import FfvError
from framefusion_video.version import __version__  # noqa: F401  (framefusion_video.__version__)

#: The public API: name -> the module under framefusion_video that defines it.
_LAZY = {
    "FileResult": "restore.clip",
    "RestoreConfig": "restore.config",
    "restore_paths": "restore.batch",
    "restore_video": "restore.clip",
}

__all__ = ["FfvError", "FileResult", "RestoreConfig", "restore_paths", "restore_video"]

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports them
    from framefusion_video.restore.batch import restore_paths
    from framefusion_video.restore.config import RestoreConfig
    from framefusion_video.restore.clip import FileResult, restore_video


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (``framefusion_video.restore_video``)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later accesses skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
