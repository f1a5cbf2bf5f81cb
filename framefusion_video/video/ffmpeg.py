"""The ffmpeg binary that ships in imageio-ffmpeg: finding it, naming files to it, running it and
reading its errors (imageio-ffmpeg's ``_utils.py`` is the model). Every ffmpeg process of the
``video`` package starts through :func:`ffmpeg_exe`, so a test can stand another binary in its place.
"""

from __future__ import annotations

import os
import re
import subprocess

from framefusion_video.base.errors import FfvError

# The first video stream that is not cover art (ffmpeg's capital V); used for every read.
VIDEO_MAP = "0:V:0"


def ffmpeg_path(path: str | os.PathLike) -> str:
    """``path`` as ffmpeg must be given it: a ``file:`` URL of the absolute path, so that a name
    with a colon (``10:30.mp4``, ``file:x.mp4``) is never taken for a protocol."""
    return "file:" + os.path.abspath(path)


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg (or ``IMAGEIO_FFMPEG_EXE``)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()



def run(args: list[str], path: str | os.PathLike) -> subprocess.CompletedProcess:
    """ffmpeg with ``args`` (no stdin, output captured, exit status not checked); FfvError about
    ``path`` when ffmpeg cannot be started."""
    try:
        return subprocess.run(
            [ffmpeg_exe(), "-nostdin", "-hide_banner", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
    except OSError as exc:  # ffmpeg missing or not executable
        raise FfvError(path, f"cannot run ffmpeg: {exc}") from exc


def last_error(stderr: str | bytes) -> str:
    """The most telling line of ffmpeg's stderr, without the ``[module @ 0x...]`` prefixes."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    lines = [re.sub(r"^(\[[^\]]*\]\s*)+", "", ln).strip() for ln in stderr.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("Terminating thread", "Task finished"))]
    return lines[-1] if lines else "ffmpeg failed without a message"
