"""Streamed decode: every frame of a video, once, in display order, as uint8 RGB (H, W, 3) in the
displayed orientation, converted with the stream's own matrix and range (``colour.decode_filter``).
Memory does not grow with the clip.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from typing import IO, Iterator

import numpy as np

from framefusion_video.base.errors import FfvError
from framefusion_video.video import ffmpeg
from framefusion_video.video.colour import decode_filter
from framefusion_video.video.probe import VideoInfo, has_clock, probe

log = logging.getLogger(__name__)


def _read_exactly(stream: IO[bytes], view: memoryview) -> int:
    """Fill ``view`` from ``stream``; the number of bytes read (short only at end of stream)."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def read_frames(path: str | os.PathLike, info: VideoInfo | None = None) -> Iterator[np.ndarray]:
    """Yield every decoded frame once, in display order, as uint8 RGB (H, W, 3), streamed.

    Converted to RGB with the stream's own matrix and range (:func:`decode_filter`). No frame-rate conversion (``-fps_mode passthrough``); the file's rotation is applied as ffmpeg
    does by default. Each frame is a fresh, writable array. Closing the generator early stops
    ffmpeg. Raises FfvError when decoding fails part-way (corrupt or truncated data).
    """
    info = info if info is not None else probe(path)
    frame_shape = (info.height, info.width, 3)
    strict = [] if has_clock(info) else ["-xerror"]  # damaged TS packets: decoded as ffmpeg does
    cmd = [ffmpeg.ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", *strict, "-i", ffmpeg.ffmpeg_path(path),
           "-map", ffmpeg.VIDEO_MAP, "-fps_mode", "passthrough", "-vf", decode_filter(info),
           "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    count = 0
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        try:
            while True:
                frame = np.empty(frame_shape, dtype=np.uint8)
                got = _read_exactly(proc.stdout, memoryview(frame).cast("B"))
                if got == 0:
                    break
                if got < frame.nbytes:
                    raise FfvError(path, f"decoding stopped inside frame {count} (frame size changed?)")
                count += 1
                yield frame
            if proc.wait() != 0:
                err.seek(0)
                raise FfvError(path, f"decoding failed after {count} frames: {ffmpeg.last_error(err.read())}")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()
    if info.n_frames is not None and count != info.n_frames:
        log.warning("%s: decoded %d frames, expected %d", path, count, info.n_frames)
