"""One clip: decode, restore its faces, encode (:func:`restore_video`).

The clip streams through bounded queues, so memory does not grow with its length::

    decode (thread) -> track faces (thread) -> crops, restorer (thread) -> review + paste -> encode (thread)

``video`` decodes and encodes, ``tracking`` finds the faces, ``pipeline`` does the per-frame
work and ``threads`` joins the stages. Frames are uint8 RGB (H, W, 3) at the video boundary and
crops float32 RGB (N, S, S, 3) in [0, 1] at the model boundary (``DEVELOPERS.md``). Files and
folders of clips are ``batch.py``'s.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framefusion_video.base.errors import FfvError
from framefusion_video.base.outputs import OutputBusy, OutputClaim, claim_output, make_output_folder, same_file
from framefusion_video.base.threads import BackgroundWriter, prefetch, queue_length
from framefusion_video.restore.config import RestoreConfig
from framefusion_video.restore.pipeline import Restorer, RestoredFrame, passed_through, paste_restored, restored_crops
from framefusion_video.video.probe import check_input

if TYPE_CHECKING:
    from framefusion_video.faces.detection import FaceDetectorConfig
    from framefusion_video.faces.tracking import TrackingConfig
    from framefusion_video.video.probe import VideoInfo

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, "int | None"], None]
"""``progress(frames_done, faces_restored, total_frames_or_None)``, called after each frame."""

#: Box side (px) below which a face counts as small in a run's totals: the same-size generator's
#: 128 px crop enlarges it more than twice, so the generator is given interpolated pixels and has
#: little to gain from; ``--upscale 2`` super-resolves it from its own pixels instead.
SMALL_FACE_PX = 64


def small_faces(boxes: Sequence[Sequence[float]], limit: float = SMALL_FACE_PX) -> int:
    """How many of ``boxes`` (x0, y0, x1, y1, frame pixels) have a longer side below ``limit``."""
    return sum(max(x1 - x0, y1 - y0) < limit for x0, y0, x1, y1 in boxes)


@dataclass
class FileResult:
    """The outcome of one input file; ``status`` is "done", "skipped" or "failed".

    ``faces`` counts the face-frames restored, ``faces_left_alone`` those the generator's gate
    returned unchanged, ``faces_refused`` those the safety checks kept out (``safety.py``), and
    ``faces_small`` those of all three smaller than :data:`SMALL_FACE_PX`.
    """

    input: Path
    output: Path
    frames: int = 0
    faces: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    status: str = "done"
    error: str | None = None

    faces_left_alone: int = 0
    faces_refused: int = 0
    faces_small: int = 0

    def where(self) -> str:
        """Where the clip was processed, as its log line ends ("": in this process)."""
        return ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (paths as strings, times rounded)."""
        out = asdict(self)
        out.update(input=str(self.input), output=str(self.output),
                   seconds=round(self.seconds, 3), fps=round(self.fps, 2))
        return out


def check_output_name(dst: Path) -> None:
    """Raise FfvError when ``dst``'s name is longer than a file system takes (every call on it
    would fail with an OSError)."""
    from framefusion_video.base.outputs import NAME_MAX

    if len(os.fsencode(dst.name)) > NAME_MAX:
        raise FfvError(dst, f"file name too long (a name may have at most {NAME_MAX} bytes); choose a shorter output")


def check_output(src: Path, dst: Path) -> None:
    """Raise FfvError when ``dst`` would overwrite the input, its name is longer than a file
    system takes, or its folder cannot be written."""
    check_output_name(dst)
    if same_file(src, dst):
        raise FfvError(dst, "the output would overwrite the input; choose another output")
    make_output_folder(dst.parent)
    if dst.is_dir():
        raise FfvError(dst, "the output is a folder, expected a file name")


def tracking_config(config: RestoreConfig) -> TrackingConfig:
    """``tracking.TrackingConfig`` with the options of ``config`` that it knows about."""
    from dataclasses import fields

    from framefusion_video.faces.tracking import TrackingConfig

    names = {f.name for f in fields(TrackingConfig)}
    wanted = {"detect_every": config.detect_every}
    return TrackingConfig(**{k: v for k, v in wanted.items() if k in names})


def detector_config(config: RestoreConfig) -> FaceDetectorConfig:
    """``faces.FaceDetectorConfig`` with the options of ``config``.

    A frame to be upscaled is also searched in :data:`UPSCALE_TILE_GRID` squared overlapping tiles,
    whatever its size: its faces are small (what ``--upscale`` is for), and MediaPipe sees a whole
    frame at 192 px, where a face of 20 px in a 640x360 frame is 6 px and is missed (a quarter of
    the synthetic clip's faces at x2 and x4; none with the tiles).
    """
    from framefusion_video.faces.detection import FaceDetectorConfig

    tiles = dict(tile_grid=UPSCALE_TILE_GRID, tile_min_side=0) if config.upscale > 1 else {}
    return FaceDetectorConfig(min_confidence=config.min_confidence, min_face=config.min_face,
                              max_faces=config.max_faces, **tiles)


#: Tiles per side in which a frame to be upscaled is searched for faces (``detector_config``).
UPSCALE_TILE_GRID = 3


def load_default_restorer(config: RestoreConfig) -> Restorer:
    """The restorer named by ``config.model_path``; errors as FfvError.

    None = the shipped weights: with ``upscale`` N > 1, the shipped super-resolution generator
    (``inference.shipped_sr_restorer``: ×2 networks, small windows to one and the rest to the
    other, enlarged to ×N by bicubic where N is larger), else the default same-size generator. A
    super-resolution model given by path must match ``upscale`` (:func:`checked_restorer`). At
    ``upscale`` 1 with ``soft_faces``, a same-size restorer of aligned crops comes with the shipped
    restorer of soft faces (``soft_faces.WithSoftFaces``).
    """
    from framefusion_video.restore.inference import (default_sr_model_path, load_restorer, shipped_soft_face_restorer,
                                                     shipped_sr_restorer)
    from framefusion_video.restore.soft_faces import SoftFaceConfig, WithSoftFaces

    path = config.model_path
    threads = config.auto_model_threads()
    try:
        restorer = None
        if path is None and config.upscale > 1:
            restorer = shipped_sr_restorer(config.upscale, config.batch_size, threads)
            path = default_sr_model_path(config.upscale)
        if restorer is None:
            restorer = load_restorer(path, batch_size=config.batch_size, threads=threads)
        if config.soft_faces and config.upscale == 1 and restorer.crop_size is not None:
            soft = SoftFaceConfig()
            network = shipped_soft_face_restorer(soft.reduction, config.batch_size,
                                                 config.auto_model_threads(super_resolving=True))
            restorer = WithSoftFaces(restorer, network, soft)
    except FfvError:
        raise
    except (OSError, ValueError) as exc:
        raise FfvError(path or "default model", f"cannot load the model ({exc})") from exc
    return checked_restorer(restorer, config.upscale, path or "the shipped model")


def check_config(config: RestoreConfig) -> RestoreConfig:
    """``config`` if it is a :class:`RestoreConfig`; a TypeError naming what was given otherwise
    (a preset name or a dict is not one: ``config.preset_config`` makes one from a name)."""
    if not isinstance(config, RestoreConfig):
        raise TypeError(f"config must be a RestoreConfig, got {config!r} ({type(config).__name__}); "
                        "RestoreConfig(**options) or preset_config(name) makes one")
    return config


def checked_restorer(restorer: Restorer, upscale: int, source: str | os.PathLike) -> Restorer:
    """``restorer`` where the pipeline can run it at ``upscale``; the one check of a restorer's
    scale, made where it is chosen, so that ``pipeline`` relies on it.

    A super-resolution restorer (``scale`` N > 1) runs only at ``upscale`` N; a same-size one of
    any input size (``crop_size`` None) takes windows at the frame's own resolution, and so only at
    ``upscale`` 1.

    Raises:
        FfvError: naming ``source`` (the model file) and what to do.
    """
    from framefusion_video.restore.pipeline import restorer_scale

    if not callable(getattr(restorer, "restore", None)) or not hasattr(restorer, "crop_size"):
        raise TypeError(f"restorer must have crop_size and restore(crops), got {restorer!r} "
                        f"({type(restorer).__name__})")
    scale = restorer_scale(restorer)
    if scale > 1 and scale != upscale:
        raise FfvError(source, f"a x{scale} super-resolution model: restore with --upscale {scale}")
    if scale == 1 and restorer.crop_size is None and upscale > 1:
        raise FfvError(source, "a same-size restorer of windows runs at the frame's own size: restore without --upscale")
    return restorer


def restore_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    config: RestoreConfig = RestoreConfig(),
    *,
    restorer: Restorer | None = None,
    detector=None,
    progress: ProgressCallback | None = None,
    on_frame: Callable[[RestoredFrame], None] | None = None,
    claim: OutputClaim | None = None,
) -> FileResult:
    """Restore the faces of one clip ``src`` into ``dst`` (H.264 MP4, MOV or MKV by ``dst``'s
    suffix, with the source's audio and subtitles).

    Streams the clip (memory does not depend on its length). ``dst`` is claimed (``claim``, or one
    taken here: :func:`outputs.claim_output`), written under a temporary name of its own, checked
    and renamed when complete, so an interruption leaves no partial ``dst``; ``src`` is never
    modified.

    Args:
        restorer: any object with ``crop_size`` and ``restore`` (and ``scale``, for super-resolution:
            ``config.upscale``'s, :func:`checked_restorer`); None loads ``config.model_path``.
        detector: a ``faces.FaceDetector`` (or anything with ``detect(frame) -> [Face]``) that the
            caller owns; None opens one for this clip and closes it afterwards.
        progress: called as ``progress(frames_done, faces_restored, total_frames_or_None)``.
        on_frame: called with each :class:`RestoredFrame` before it is encoded (measurements,
            e.g. which faces were restored).
        claim: the caller's claim on ``dst``, when it holds one.

    At ``strength`` 0 (``config.passes_through``) no model is loaded and no face is looked at:
    the frames are only decoded, upscaled if asked (bicubic) and encoded, and the result counts
    no face (0 restored, 0 left alone, 0 refused), since finding them would mean running the
    detector for nothing.

    Returns:
        A :class:`FileResult` with status "done".

    Raises:
        FfvError: missing, unreadable, empty or non-video input, unwritable output, output equal
            to the input, or a decoding/encoding failure. ``outputs.OutputBusy`` (an FfvError)
            when another run holds ``dst``.
    """
    from framefusion_video.video.encode import VideoWriter, check_frame_size
    from framefusion_video.video.probe import probe

    check_config(config)
    src, dst = Path(src), Path(dst)
    started = time.perf_counter()
    check_input(src)
    check_output(src, dst)
    info = probe(src)
    size = output_size(info, config.upscale)
    check_frame_size(dst, size or info.size)
    if not config.passes_through:
        restorer = load_default_restorer(config) if restorer is None else \
            checked_restorer(restorer, config.upscale, "the given restorer")
    from framefusion_video.restore.safety import LEFT_ALONE, REFUSED

    frames_done = faces_done = left_alone = refused = small = 0
    total = getattr(info, "n_frames", None) or None
    audio = src if getattr(info, "has_audio", False) else None
    out_bytes = 3 * info.width * info.height * config.upscale**2
    with VideoWriter(dst, info, size=size, crf=config.crf, preset=config.preset, audio_from=audio,
                     claim=claim) as writer:
        with BackgroundWriter(writer, queue_length(out_bytes)) as encoder:
            stream = iter_restored(src, info, restorer, config, detector=detector)
            try:
                for out in stream:
                    if on_frame is not None:
                        on_frame(out)
                    encoder.put(out.restored)
                    frames_done += 1
                    faces_done += out.restored_faces
                    left_alone += out.count(LEFT_ALONE)
                    refused += out.count(REFUSED)
                    small += small_faces([o.box for o in out.outcomes])
                    if progress is not None:
                        progress(frames_done, faces_done, total)
            finally:
                stream.close()
        if frames_done == 0:
            raise FfvError(src, "no video frames could be decoded")
    seconds = time.perf_counter() - started
    return FileResult(src, dst, frames_done, faces_done, seconds, frames_done / max(seconds, 1e-9), "done",
                      faces_left_alone=left_alone, faces_refused=refused, faces_small=small)


def iter_restored(
    src: str | os.PathLike,
    info,
    restorer: Restorer,
    config: RestoreConfig = RestoreConfig(),
    *,
    detector=None,
    select: Callable[[int], bool] | None = None,
) -> Iterator[RestoredFrame]:
    """Decode ``src`` and restore its faces: :func:`restore_frames` fed by threaded decode + tracking.

    ``info`` is ``video.probe.probe(src)``. ``detector`` is borrowed if given, else one is opened for
    this clip and closed when the generator ends or is closed (close it to stop early: the decoder
    subprocess and threads are stopped too). At ``strength`` 0 the frames pass straight through
    (``pipeline.passed_through``): no detector is opened and ``restorer`` may be None.
    """
    from framefusion_video.faces.tracking import track_faces
    from framefusion_video.video.decode import read_frames

    if config.passes_through:  # strength 0: nothing would be pasted; no detector, network or review
        frames = read_frames(src, info)
        try:
            yield from passed_through(frames, config.upscale)
        finally:
            frames.close()
        return
    owned = None
    if detector is None:
        from framefusion_video.faces.detection import FaceDetector

        owned = detector = FaceDetector(detector_config(config))
        detector.__enter__()
    decoded = tracked = modelled = None
    try:
        length = queue_length(3 * info.width * info.height)
        decoded = prefetch(read_frames(src, info), length, name="ffv-decode")
        tracked = prefetch(track_faces(decoded, detector, tracking_config(config)), length, name="ffv-track")
        # The model runs in its own thread, the paste-back in this one.
        modelled = prefetch(restored_crops(tracked, restorer, config, select=select), length, name="ffv-model")
        yield from paste_restored(modelled, config, restorer)
    finally:
        if modelled is not None:
            modelled.close()  # each thread is stopped before the one that feeds it
        if tracked is not None:
            tracked.close()
        if decoded is not None:
            decoded.close()
        if owned is not None:
            owned.__exit__(None, None, None)


def output_size(info: VideoInfo, factor: int) -> tuple[int, int] | None:
    """(width, height) of the output frames, or None to keep the decoded size."""
    if factor == 1:
        return None
    return int(info.width) * factor, int(info.height) * factor


def restore_output(src: Path, dst: Path, config: RestoreConfig, *, overwrite: bool,
                   get_restorer: Callable[[], Restorer], progress: ProgressCallback | None = None) -> FileResult:
    """:func:`restore_video` of one planned pair under the claim on ``dst``.

    Skipped (status "skipped") when ``dst`` exists and not ``overwrite``, checked again once the
    claim is held, or when another run holds the claim (``error`` then says so). ``get_restorer``
    is called only when the clip is restored (never at ``strength`` 0).

    Raises:
        FfvError: as :func:`restore_video`; whatever ``get_restorer`` raises.
    """
    if dst.exists() and not overwrite:
        return FileResult(src, dst, status="skipped")
    check_input(src)
    check_output(src, dst)
    try:
        claim = claim_output(dst)
    except OutputBusy as exc:
        return FileResult(src, dst, status="skipped", error=str(exc))
    with claim:
        if dst.exists() and not overwrite:  # another run finished it in the meantime
            return FileResult(src, dst, status="skipped")
        restorer = None if config.passes_through else get_restorer()
        return restore_video(src, dst, config, restorer=restorer, progress=progress, claim=claim)
