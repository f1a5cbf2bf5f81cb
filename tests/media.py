"""Tiny synthetic media for tests, made with the ffmpeg bundled in imageio-ffmpeg.

``make_clip`` writes a short H.264 MP4 (ffmpeg's ``testsrc2`` pattern, or a still face image)
with optional AAC audio (a 440 Hz tone); ``short_copy`` cuts the first seconds of a real clip
without re-encoding. Both take about a tenth of a second for the default sizes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np


def ffmpeg(*args: str) -> None:
    """Run the bundled ffmpeg quietly; raise with its stderr if it fails."""
    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {proc.stderr.strip()}")


def make_clip(
    path: str | os.PathLike,
    size: tuple[int, int] = (64, 48),
    frames: int = 10,
    fps: float = 10.0,
    *,
    audio: bool = True,
    audio_first: bool = False,
    vfr: bool = False,
    face_image: str | os.PathLike | np.ndarray | None = None,
    audio_delay: float = 0.0,
    rotation: int = 0,
) -> Path:
    """Write a test clip of ``frames`` frames at ``size`` = (width, height) and return its path.

    Args:
        audio: add a stereo AAC 440 Hz tone as long as the video.
        audio_first: put the audio stream before the video stream (stream 0 is audio).
        vfr: variable frame rate: frame ``n`` is shown at ``(n + 0.4 * (n % 2)) / fps`` seconds
            (intervals alternate 1.4 and 0.6 frame periods; the average rate stays ``fps``).
        face_image: frames show this image (path, or uint8 RGB array) resized to ``size``
            instead of the test pattern, so face detection has something to find.
        audio_delay: the video starts this many seconds after the audio (an offset to preserve).
        rotation: display rotation tag, degrees counter-clockwise (ffmpeg's ``-display_rotation``).

    Odd sizes are encoded 4:4:4 (H.264 4:2:0 needs even sizes). Video is H.264 with B-frames,
    in an MP4 whose index (moov) is at the end, as ffmpeg writes by default.
    """
    path = Path(path)
    width, height = size
    seconds = frames / fps
    if face_image is None:
        video_in = ["-f", "lavfi", "-i", f"testsrc2=s={width}x{height}:r={fps}"]
    else:
        if isinstance(face_image, np.ndarray):
            import cv2

            image_path = path.with_name(path.stem + "_face.png")
            cv2.imwrite(str(image_path), cv2.cvtColor(face_image, cv2.COLOR_RGB2BGR))
            face_image = image_path
        video_in = ["-loop", "1", "-framerate", str(fps), "-i", str(face_image)]
    if audio_delay:
        video_in = ["-itsoffset", str(audio_delay), *video_in]
    filters = [f"scale={width}:{height}", "setsar=1"]
    if vfr:
        filters += ["settb=1/90000", f"setpts='(N+0.4*mod(N,2))/({fps}*TB)'"]
    pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    args = [*video_in]
    if audio:
        tone = f"sine=frequency=440:sample_rate=44100:duration={seconds + audio_delay}"
        args += ["-f", "lavfi", "-i", tone]
    maps = ["-map", "0:v:0"]
    if audio:
        maps = ["-map", "1:a:0", *maps] if audio_first else [*maps, "-map", "1:a:0"]
    args += [*maps, "-frames:v", str(frames), "-vf", ",".join(filters), "-fps_mode", "passthrough",
             "-enc_time_base", "1/90000", "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "5",
             "-pix_fmt", pix_fmt,
             "-video_track_timescale", "90000"]
    if audio:
        args += ["-c:a", "aac", "-ac", "2", "-b:a", "64k"]
    target = path if not rotation else path.with_name(path.stem + "_unrotated" + path.suffix)
    ffmpeg(*args, str(target))
    if rotation:
        ffmpeg("-display_rotation", str(rotation), "-i", str(target), "-map", "0", "-c", "copy", str(path))
        target.unlink()
    return path


def short_copy(src: str | os.PathLike, dst: str | os.PathLike, seconds: float = 2.0) -> Path:
    """Copy the first ``seconds`` of ``src`` to ``dst`` without re-encoding (all streams).

    Stream start times relative to each other are kept (an audio lead stays a lead).
    """
    ffmpeg("-i", str(src), "-map", "0", "-c", "copy", "-t", str(seconds), str(dst))
    return Path(dst)
