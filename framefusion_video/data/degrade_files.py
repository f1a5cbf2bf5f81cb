"""``ffv degrade``: damaged copies of an image, a folder of images or a video, written to files with
the pure functions of :mod:`~framefusion_video.data.degradations`; the reading, the writing and
the per-file random generators live here, outside those functions.
"""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

import numpy as np

from framefusion_video.base.errors import FfvError
from framefusion_video.base.filetypes import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from framefusion_video.base.outputs import write_image
from framefusion_video.base.pixels import to_uint8
from framefusion_video.data.dataset import read_rgb
from framefusion_video.data.degradations import KINDS, DegradationConfig, apply_degradation, degrade_kind, sample_params

log = logging.getLogger(__name__)


def _read_image(path: Path) -> np.ndarray:
    """float32 RGB (H, W, 3) in [0, 1] of the image file ``path`` (FfvError when unreadable)."""
    return read_rgb(path).astype(np.float32) / np.float32(255.0)


def _file_rng(seed: int, name: str) -> np.random.Generator:
    """A generator per file from the seed and its relative name: adding files to a folder does not
    change the damage of the others."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


def _degrade_video(src: Path, dst: Path, config: DegradationConfig, seed: int, kind: str) -> None:
    from framefusion_video.video.decode import read_frames
    from framefusion_video.video.encode import VideoWriter
    from framefusion_video.video.probe import probe

    rng = _file_rng(seed, src.name)
    params = sample_params(rng, config, kind)
    log.info("degrading %s -> %s with %s", src, dst, params)
    info = probe(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(dst, info, audio_from=src) as writer:
        for frame in read_frames(src, info):
            img = frame.astype(np.float32) / np.float32(255.0)
            writer.write(to_uint8(apply_degradation(img, params, rng)))


def _file_id(path: Path) -> tuple[int, int]:
    """The (device, inode) of the file at ``path``: one for every name of the file."""
    info = os.stat(path)
    return info.st_dev, info.st_ino


def degrade_path(src: str | os.PathLike, dst: str | os.PathLike, *, config: DegradationConfig = DegradationConfig(),
                 seed: int = 0, kind: str = "mixed", overwrite: bool = False) -> list[Path]:
    """Write damaged copies of an image, a folder of images (mirrored, recursively) or a video.

    ``dst`` is the output file when ``src`` is a file and ``dst`` has a suffix, else a folder that
    receives files of the same names (videos as ``<stem>.mp4``: H.264 MP4 is what
    ``encode.VideoWriter`` writes). A video gets one set of parameters for the whole clip (no
    flicker) with fresh noise on every frame, and keeps its audio. Returns the files written.

    Raises:
        FfvError: ``src`` missing or unsupported, ``dst`` is ``src`` or would replace an input,
            an output exists and ``overwrite`` is false, or a file cannot be read or written.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown degradation kind {kind!r}; use one of {', '.join(KINDS)}")
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise FfvError(src, "no such file or folder")
    if src.resolve() == dst.resolve():
        raise FfvError(dst, "output is the input; choose another output path")

    jobs: list[tuple[Path, Path]] = []
    if src.is_dir():
        if dst.exists() and not dst.is_dir():
            raise FfvError(dst, "input is a folder, so the output must be a folder")
        inside = dst.resolve().is_relative_to(src.resolve())
        for path in sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
            if inside and path.resolve().is_relative_to(dst.resolve()):
                continue  # a previous run's outputs inside the input folder
            jobs.append((path, dst / path.relative_to(src)))
        if not jobs:
            raise FfvError(src, f"no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    else:
        suffix = src.suffix.lower()
        if suffix not in IMAGE_EXTENSIONS and suffix not in VIDEO_EXTENSIONS:
            raise FfvError(src, f"unsupported file type {suffix or '(none)'}; expected an image or a video")
        is_video = suffix in VIDEO_EXTENSIONS
        if dst.suffix and not dst.is_dir():
            if is_video and dst.suffix.lower() != ".mp4":
                raise FfvError(dst, "a video is written as H.264 MP4; give the output a .mp4 name or a folder")
            if not is_video and dst.suffix.lower() not in IMAGE_EXTENSIONS:
                raise FfvError(dst, f"an image is written as {', '.join(IMAGE_EXTENSIONS)}; "
                                    "give the output one of those suffixes or a folder")
            jobs.append((src, dst))
        else:
            jobs.append((src, dst / (src.stem + ".mp4" if is_video else src.name)))

    inputs = {s.resolve() for s, _ in jobs}
    input_files = {_file_id(s) for s, _ in jobs}
    for s, d in jobs:
        if d.resolve() in inputs or (d.exists() and _file_id(d) in input_files):  # a name, or a hard link
            raise FfvError(d, "output would replace an input; choose another output path")
        if d.exists() and not overwrite:
            raise FfvError(d, "already exists (use --overwrite to replace it)")

    written = []
    for s, d in jobs:
        if s.suffix.lower() in VIDEO_EXTENSIONS:
            _degrade_video(s, d, config, seed, kind)
        else:
            name = s.relative_to(src).as_posix() if src.is_dir() else s.name
            rng = _file_rng(seed, name)
            write_image(d, to_uint8(degrade_kind(_read_image(s), kind, rng, config)))
        log.debug("wrote %s", d)
        written.append(d)
    return written
