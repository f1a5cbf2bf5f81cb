"""Orchestration: restore the faces of one video, of a list of files, or of whole folders.

The per-clip pipeline streams frames through bounded queues, so memory does not grow with the
clip's length::

    decode (thread) -> track faces (thread) -> align + crop, restore in batches (thread) -> paste -> encode (thread)

Frames are uint8 RGB (H, W, 3) at the video boundary and crops float32 RGB (N, S, S, 3) in [0, 1]
at the model boundary (``DEVELOPERS.md``). Any object with a ``crop_size`` (int) and a
``restore(crops) -> crops`` method can act as the restorer, so tests can use a fake one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .alignment import estimate_alignment, warp_to_crop
from .errors import FfvError
from .outputs import OutputBusy, OutputClaim, claim_output, os_reason

log = logging.getLogger(__name__)

#: File extensions (lower case, with the dot) taken as videos when a folder is scanned.
VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .avi .webm .mpg .mpeg .mpe .m2v .wmv .asf .flv .f4v .ts .mts .m2ts "
    ".3gp .3g2 .ogv .vob .dv .mxf .y4m".split()
)
UPSCALE_FACTORS = (1, 2, 4)
#: Suffix of the default output name of a single file, and of the default output folder.
RESTORED_SUFFIX = "_restored"

# Frames waiting in each inter-thread queue: enough to absorb jitter; fewer for huge (upscaled)
# frames, so that the queues stay within about _QUEUE_BYTES.
_QUEUE_FRAMES = 8
_QUEUE_BYTES = 256 * 2**20


def _queue_length(frame_bytes: int) -> int:
    """Queue length for frames of ``frame_bytes``: 2 to ``_QUEUE_FRAMES``."""
    return max(2, min(_QUEUE_FRAMES, _QUEUE_BYTES // max(frame_bytes, 1)))


class Restorer(Protocol):
    """What the pipeline needs from a restorer (``inference.Restorer`` or a test fake)."""

    crop_size: int

    def restore(self, crops: np.ndarray) -> np.ndarray:
        """float32 (N, S, S, 3) in [0, 1] -> the same shape, dtype and range."""


ProgressCallback = Callable[[int, int, "int | None"], None]
"""``progress(frames_done, faces_restored, total_frames_or_None)``, called after each frame."""


@dataclass(frozen=True)
class RestoreConfig:
    """Options of ``ffv restore`` and ``ffv preview``; the CLI flags map onto these fields.

    Attributes:
        model_path: generator weights; None = the shipped default (``framefusion_video/weights/``).
        batch_size: face crops per call to the restorer (crops are gathered across frames).
        strength: 0 keeps the original face, 1 pastes the restored face fully.
        upscale: 1, 2 or 4; the whole frame is resized and faces are pasted at that resolution.
        min_face: ignore faces smaller than this many pixels (0 = no limit).
        max_faces: restore at most this many faces per frame, largest first (0 = all).
        crf, preset: x264 quality (lower crf = better, bigger) and speed preset of the output.
        detect_every: run the face detector every N frames, tracking in between (1 = every frame).
        colour_match: match the restored face's colours to the original's before pasting.
        min_confidence: face detector score threshold in [0, 1].
        temporal: weight in [0, 1) of the previous frame's restored face where the input did not
            change (motion-compensated, ``stabilize.py``): removes the restorer's flicker; 0 = off.
        model_threads: LiteRT (XNNPACK) threads of the generator; 0 = half the cores, at least
            one: the model has a thread of its own beside decoding, tracking, the paste-back and
            x264, and a second XNNPACK thread mostly spins waiting for a busy core.
        safety: leave alone faces whose landmarks do not fit their box, and refuse restored faces
            that change their input by more than its estimated damage explains (``safety.py``).
    """

    model_path: str | None = None
    batch_size: int = 8
    strength: float = 1.0
    upscale: int = 1
    min_face: int = 0
    max_faces: int = 0
    crf: int = 18
    preset: str = "veryfast"
    detect_every: int = 2
    colour_match: bool = True
    min_confidence: float = 0.5
    temporal: float = 0.7
    model_threads: int = 0
    safety: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.batch_size < 1:
            problems.append(f"batch_size must be at least 1, got {self.batch_size}")
        if not 0.0 <= self.strength <= 1.0:
            problems.append(f"strength must be between 0 and 1, got {self.strength}")
        if self.upscale not in UPSCALE_FACTORS:
            problems.append(f"upscale must be 1, 2 or 4, got {self.upscale}")
        if self.min_face < 0:
            problems.append(f"min_face must be 0 or more pixels, got {self.min_face}")
        if self.max_faces < 0:
            problems.append(f"max_faces must be 0 (all) or more, got {self.max_faces}")
        if not 0 <= self.crf <= 51:
            problems.append(f"crf must be between 0 and 51, got {self.crf}")
        if self.detect_every < 1:
            problems.append(f"detect_every must be at least 1, got {self.detect_every}")
        if not 0.0 <= self.min_confidence <= 1.0:
            problems.append(f"min_confidence must be between 0 and 1, got {self.min_confidence}")
        if self.model_threads < 0:
            problems.append(f"model_threads must be 0 (auto) or more, got {self.model_threads}")
        if not 0.0 <= self.temporal < 1.0:
            problems.append(f"temporal must be at least 0 and below 1, got {self.temporal}")
        if problems:
            raise ValueError("; ".join(problems))


#: Speed/quality presets of ``ffv restore --fast`` / ``--quality``: RestoreConfig fields they set
#: (options given explicitly on the command line still win). The default sits between the two.
PRESETS: dict[str, dict[str, object]] = {
    "fast": {"detect_every": 4, "batch_size": 16, "preset": "superfast", "crf": 20},
    "default": {},
    "quality": {"detect_every": 1, "preset": "medium", "crf": 16},
}


def preset_config(name: str, **overrides) -> RestoreConfig:
    """The RestoreConfig of preset ``name`` (``fast``, ``default``, ``quality``) with ``overrides``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    return RestoreConfig(**{**PRESETS[name], **overrides})


@dataclass
class FileResult:
    """The outcome of one input file; ``status`` is "done", "skipped" or "failed".

    ``faces`` counts the face-frames restored, ``faces_left_alone`` those the generator's gate
    returned unchanged, ``faces_refused`` those the safety checks kept out (``safety.py``).
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (paths as strings, times rounded)."""
        out = asdict(self)
        out.update(input=str(self.input), output=str(self.output),
                   seconds=round(self.seconds, 3), fps=round(self.fps, 2))
        return out


@dataclass(frozen=True)
class FaceOutcome:
    """What happened to one face of one frame.

    Attributes:
        box: (x0, y0, x1, y1) in the original frame's pixels.
        status: one of ``safety.STATUSES``: "restored", "left alone" (the generator's gate returned
            it unchanged) or "refused" (its landmarks or its restored face failed a safety check).
        track_id: the face's track, or None.
        reason: why it was refused, or "".
    """

    box: tuple[float, float, float, float]
    status: str
    track_id: int | None = None
    reason: str = ""


@dataclass
class RestoredFrame:
    """One frame out of :func:`restore_frames`.

    Attributes:
        index: 0-based position in the clip.
        original: the decoded frame, uint8 RGB (H, W, 3).
        restored: the output frame, uint8 RGB (H*upscale, W*upscale, 3); ``original`` itself when
            no face was restored and upscale is 1.
        faces: the tracked faces of this frame (``tracking.TrackedFace``), in frame pixels.
        restored_faces: how many of them were restored (0 for frames not selected).
        restored_boxes: the boxes (x0, y0, x1, y1, frame pixels) of the faces restored, so that
            callers can check which faces were left alone.
        outcomes: one :class:`FaceOutcome` per face of a selected frame: restored, left alone or
            refused.
    """

    index: int
    original: np.ndarray
    restored: np.ndarray
    faces: list = field(default_factory=list)
    restored_faces: int = 0
    restored_boxes: list = field(default_factory=list)
    outcomes: list[FaceOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        """How many faces of this frame ended with ``status`` (one of ``safety.STATUSES``)."""
        return sum(o.status == status for o in self.outcomes)


# --------------------------------------------------------------------------- the per-frame pipeline


@dataclass
class _Pending:
    """A frame waiting for its crops to come back from the restorer."""

    index: int
    frame: np.ndarray
    faces: list
    matrices: list[np.ndarray]
    crops: list[np.ndarray]  # float32 (S, S, 3) in [0, 1], cut from the original frame
    track_ids: list[int] = field(default_factory=list)  # one per crop; empty = do not stabilise
    boxes: list = field(default_factory=list)  # one per crop: the box of the face it was cut from
    refused: list[FaceOutcome] = field(default_factory=list)  # faces whose landmarks were not used


def _frame_crops(frame: np.ndarray, faces: Sequence, crop_size: int, safety=None
                 ) -> tuple[list[np.ndarray], list[np.ndarray], list, list, list[FaceOutcome]]:
    """Alignment matrices (float64 (2, 3)), aligned crops (float32 (S, S, 3) in [0, 1]), boxes and
    track ids of the ``faces`` that can be aligned, and the outcomes of those refused.

    With a ``safety.SafetyConfig`` (enabled), a face whose landmarks do not fit its box is refused
    rather than aligned on them.
    """
    from .safety import REFUSED, landmark_problem

    matrices, crops, boxes, ids, refused = [], [], [], [], []
    for tracked in faces:
        landmarks = tracked.face.landmarks
        box = tuple(float(v) for v in tracked.face.box)
        track_id = getattr(tracked, "track_id", None)
        problem = landmark_problem(landmarks, box, safety) if safety is not None and safety.enable else None
        if problem is not None:
            log.debug("leaving alone the face at %s: %s", box, problem)
            refused.append(FaceOutcome(box, REFUSED, track_id, problem))
            continue
        try:
            matrix = estimate_alignment(landmarks, crop_size)
        except ValueError:  # degenerate landmarks: nothing sensible to restore
            log.debug("skipping a face with degenerate landmarks: %s", landmarks)
            continue
        crop = warp_to_crop(frame, matrix, crop_size)
        matrices.append(matrix)
        crops.append(crop.astype(np.float32) * np.float32(1.0 / 255.0))
        boxes.append(box)
        ids.append(track_id)
    return matrices, crops, boxes, ids, refused


def _restore_in_batches(restorer: Restorer, crops: list[np.ndarray], batch_size: int) -> list[np.ndarray]:
    """Run ``restorer.restore`` over ``crops`` in batches of at most ``batch_size``; same order."""
    out: list[np.ndarray] = []
    for start in range(0, len(crops), batch_size):
        batch = np.stack(crops[start:start + batch_size]).astype(np.float32, copy=False)
        restored = np.asarray(restorer.restore(batch), dtype=np.float32)
        if restored.shape != batch.shape:
            raise RuntimeError(f"restorer returned shape {restored.shape} for crops of shape {batch.shape}")
        out.extend(np.clip(restored, 0.0, 1.0))
    return out


def _blend_config(config: RestoreConfig):
    """The paste-back's options; colours are matched before the safety review, not in the paste."""
    from .blending import BlendConfig

    return BlendConfig(colour_match=False, strength=config.strength)


def _safety_config(config: RestoreConfig):
    from .safety import SafetyConfig

    return SafetyConfig(enable=config.safety)


def review_crops(restored: Sequence[np.ndarray], originals: Sequence[np.ndarray], *, colour_match: bool = True,
                 safety=None, damages: Sequence[float] | None = None,
                 plausible: Sequence[np.ndarray] | None = None) -> tuple[list[np.ndarray], list[str], list[str]]:
    """The crops to paste, the status and the refusal reason ("" if none) of each restored face.

    ``restored`` and ``originals``: float32 (S, S, 3) in [0, 1], pairwise. A crop bit-identical to
    its original was left alone by the generator's gate. Otherwise its colours are matched
    (``blending.match_colour``) when ``colour_match``, and with an enabled ``safety.SafetyConfig``
    a face that changes more than its estimated damage (``damages``, grey levels, one per face,
    ``safety.estimate_damage``; None: 0) explains is refused: its original crop is pasted instead,
    which leaves the frame as it was. ``plausible``: each face's range of lit-face colours for the
    matching (``blending.scene_plausible_means``); None: ``blending.PLAUSIBLE_FACE_MEANS`` for all.
    """
    from .blending import PLAUSIBLE_FACE_MEANS, face_mask, match_colour
    from .safety import LEFT_ALONE, REFUSED, RESTORED, refuse

    out, statuses, reasons = [], [], []
    for k, (crop, original) in enumerate(zip(restored, originals)):
        if np.array_equal(crop, original):
            out.append(original)
            statuses.append(LEFT_ALONE)
            reasons.append("")
            continue
        mask = face_mask(crop.shape[0])
        if colour_match:
            crop = match_colour(crop, original, mask, PLAUSIBLE_FACE_MEANS if plausible is None else plausible[k])
        if safety is not None and safety.enable:
            weights = mask * np.float32(1.0 / max(float(mask.sum()), 1e-6))
            if refuse(crop, original, weights, 0.0 if damages is None else damages[k], safety):
                out.append(original)
                statuses.append(REFUSED)
                reasons.append("the restored face differs from its input more than its damage explains")
                continue
        out.append(crop)
        statuses.append(RESTORED)
        reasons.append("")
    return out, statuses, reasons


def _damages(frame: np.ndarray, boxes: Sequence, restored: Sequence[np.ndarray], originals: Sequence[np.ndarray],
             safety, plausible: Sequence[np.ndarray]) -> list[float]:
    """``safety.estimate_damage`` of each face's own pixels, dark as its ``plausible`` range says
    (0 where it is not needed: a face left alone, or the checks off)."""
    from .safety import estimate_damage, face_region

    if not safety.enable:
        return [0.0] * len(boxes)
    return [0.0 if np.array_equal(r, o) else estimate_damage(*face_region(frame, box), safety, float(p[0, 0]))
            for box, r, o, p in zip(boxes, restored, originals, plausible)]


def _plausible_means(frame: np.ndarray, boxes: Sequence) -> list[np.ndarray]:
    """Each face's range of lit-face colours, from the luma of the frame around it."""
    from .blending import scene_plausible_means, surround_luma

    return [scene_plausible_means(surround_luma(frame, box)) for box in boxes]


def _finish(item: _Pending, restored: list[np.ndarray], config: RestoreConfig, blend_config) -> RestoredFrame:
    """Review and paste the restored crops of one pending frame (upscaling it first if asked)."""
    from .blending import paste_faces, scale_matrix, upscale_frame
    from .safety import RESTORED

    factor = config.upscale
    base = item.frame if factor == 1 else upscale_frame(item.frame, factor)
    if not restored:
        return RestoredFrame(item.index, item.frame, base, item.faces, 0, outcomes=list(item.refused))
    safety = _safety_config(config)
    plausible = _plausible_means(item.frame, item.boxes)
    damages = _damages(item.frame, item.boxes, restored, item.crops, safety, plausible)
    crops, statuses, reasons = review_crops(restored, item.crops, colour_match=config.colour_match,
                                            safety=safety, damages=damages, plausible=plausible)
    ids = item.track_ids or [None] * len(crops)
    outcomes = [FaceOutcome(box, status, track_id, reason)
                for box, status, track_id, reason in zip(item.boxes, statuses, ids, reasons)]
    outcomes += item.refused
    matrices = item.matrices if factor == 1 else [scale_matrix(m, factor) for m in item.matrices]
    out = paste_faces(base, list(zip(crops, matrices)), config=blend_config, original_crops=item.crops)
    kept = [box for box, status in zip(item.boxes, statuses) if status == RESTORED]
    return RestoredFrame(item.index, item.frame, out, item.faces, len(kept), kept, outcomes)


def _stabilize_config(config: RestoreConfig):
    from .stabilize import StabilizeConfig

    return StabilizeConfig(enable=config.temporal > 0.0, alpha=config.temporal)


def _stabilize(tracks: dict, item: _Pending, restored: list[np.ndarray], stabilize_config):
    """Temporal term on one frame's restored crops: ``(crops, new track states)``."""
    from .stabilize import stabilize_tracks

    if not item.track_ids:
        return restored, {}
    return stabilize_tracks(tracks, item.index, item.track_ids, item.crops, restored, stabilize_config)


def restore_frames(
    tracked_frames: Iterable[tuple[np.ndarray, list]],
    restorer: Restorer,
    config: RestoreConfig = RestoreConfig(),
    *,
    select: Callable[[int], bool] | None = None,
) -> Iterator[RestoredFrame]:
    """Restore the faces of a stream of tracked frames; the pipeline shared by restore and preview.

    Args:
        tracked_frames: ``(frame uint8 RGB (H, W, 3), [TrackedFace, ...])`` in clip order, as
            ``tracking.track_faces`` yields them.
        restorer: anything with ``crop_size`` and ``restore(float32 (N, S, S, 3) in [0, 1])``.
        config: batch size, strength, upscale, colour matching, temporal stabilisation (per
            ``track_id``; a new id, e.g. after a scene cut, or a frame gap starts afresh).
        select: frame index -> whether to restore it (None = all). Unselected frames pass through
            (upscaled if asked) without calling the restorer.

    Yields:
        :class:`RestoredFrame` in clip order. Crops are gathered across consecutive frames until
        ``batch_size`` are waiting, so at most about ``2 * batch_size`` frames are held.
    """
    return paste_restored(restored_crops(tracked_frames, restorer, config, select=select), config)


def paste_restored(pairs: Iterable[tuple[_Pending, list[np.ndarray]]],
                   config: RestoreConfig = RestoreConfig()) -> Iterator[RestoredFrame]:
    """The second half of :func:`restore_frames`: paste each ``(frame, restored crops)`` pair
    of :func:`restored_crops` back into its frame."""
    blend_config = _blend_config(config)
    for item, restored in pairs:
        yield _finish(item, restored, config, blend_config)


def restored_crops(
    tracked_frames: Iterable[tuple[np.ndarray, list]],
    restorer: Restorer,
    config: RestoreConfig = RestoreConfig(),
    *,
    select: Callable[[int], bool] | None = None,
) -> Iterator[tuple[_Pending, list[np.ndarray]]]:
    """The first half of :func:`restore_frames`: align, restore in batches and stabilise.

    Yields ``(frame with its faces and crops, restored crops)`` in clip order, ready for
    ``_finish`` (the paste-back), so that the model and the paste-back can run in different threads.
    """
    crop_size = int(restorer.crop_size)
    pending: list[_Pending] = []
    n_crops = 0
    stabilize_config = _stabilize_config(config)
    safety_config = _safety_config(config)
    tracks: dict = {}  # track id -> stabilize.TrackState of its latest restored frame

    def flush() -> Iterator[tuple[_Pending, list[np.ndarray]]]:
        nonlocal n_crops, tracks
        crops = [c for item in pending for c in item.crops]
        restored = _restore_in_batches(restorer, crops, config.batch_size) if crops else []
        start = 0
        for item in pending:
            mine = restored[start:start + len(item.crops)]
            start += len(item.crops)
            if mine and stabilize_config.active:
                mine, tracks = _stabilize(tracks, item, mine, stabilize_config)
            yield item, mine
        pending.clear()
        n_crops = 0

    for index, (frame, faces) in enumerate(tracked_frames):
        faces = list(faces)
        if faces and (select is None or select(index)):
            matrices, crops, boxes, ids, refused = _frame_crops(frame, faces, crop_size, safety_config)
        else:
            matrices, crops, boxes, ids, refused = [], [], [], [], []
        if not crops and not pending:  # nothing to wait for: pass straight through
            yield _Pending(index, frame, faces, [], [], refused=refused), []
            continue
        pending.append(_Pending(index, frame, faces, matrices, crops, [] if None in ids else ids, boxes, refused))
        n_crops += len(crops)
        if n_crops >= config.batch_size or len(pending) >= 2 * config.batch_size:
            yield from flush()
    if pending:
        yield from flush()


# --------------------------------------------------------------------------- threads and queues

_DONE = object()


class _ThreadError:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(iterable: Iterable, maxsize: int = _QUEUE_FRAMES, name: str = "ffv-prefetch") -> Iterator:
    """Iterate ``iterable`` in a background thread, ``maxsize`` items ahead; same items, same order.

    Errors raised by the producer are re-raised here. Closing this generator early (or an error in
    the consumer) stops the producer and closes its iterator in its own thread, so a decoder's
    subprocess is always cleaned up. Used to overlap decoding and face tracking with the model.
    """
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(iterable)
        try:
            for item in iterator:
                if not put(item):
                    break
            else:
                put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed over to the consumer, re-raised there
            put(_ThreadError(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _ThreadError):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()


class _BackgroundWriter:
    """Feeds ``writer.write`` from a bounded queue in a thread, so encoding overlaps the model.

    ``put`` re-raises an error of the writer thread (e.g. ffmpeg died); leaving the ``with`` block
    waits for every queued frame to be written, or, on an exception, drops them and stops.
    """

    def __init__(self, writer, maxsize: int = _QUEUE_FRAMES) -> None:
        self._writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ffv-encode", daemon=True)

    def __enter__(self) -> _BackgroundWriter:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is _DONE or self._stop.is_set():
                    return
                self._writer.write(item)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            self._error = exc
            self._stop.set()

    def put(self, frame: np.ndarray) -> None:
        while True:
            if self._error is not None:
                raise self._error
            if not self._thread.is_alive():
                raise RuntimeError("the encoder thread stopped")
            try:
                self._queue.put(frame, timeout=0.1)
                return
            except queue.Full:
                continue

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._stop.set()
            while True:  # unblock the thread if it waits on a full queue / let it see the stop
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
        while self._thread.is_alive():
            try:
                self._queue.put(_DONE, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join()
        if exc_type is None and self._error is not None:
            raise self._error


# --------------------------------------------------------------------------- one clip


def check_input(src: Path) -> None:
    """Raise FfvError for inputs that cannot be videos before starting ffmpeg on them."""
    if not src.exists():
        raise FfvError(src, "no such file")
    if src.is_dir():
        raise FfvError(src, "is a folder, not a video file")
    if not os.access(src, os.R_OK):
        raise FfvError(src, "cannot read the file (permission denied)")
    if src.stat().st_size == 0:
        raise FfvError(src, "the file is empty (0 bytes)")


def _check_output(src: Path, dst: Path) -> None:
    """Raise FfvError when ``dst`` would overwrite the input or its folder cannot be written."""
    if _same_file(src, dst):
        raise FfvError(dst, "the output would overwrite the input; choose another output")
    parent = dst.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FfvError(parent, f"cannot create the output folder ({exc.strerror or exc})") from exc
    if not os.access(parent, os.W_OK | os.X_OK):
        raise FfvError(parent, "cannot write to the output folder (permission denied)")
    if dst.is_dir():
        raise FfvError(dst, "the output is a folder, expected a file name")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def _tracking_config(config: RestoreConfig):
    """``tracking.TrackingConfig`` with the options of ``config`` that it knows about."""
    from dataclasses import fields

    from .tracking import TrackingConfig

    names = {f.name for f in fields(TrackingConfig)}
    wanted = {"detect_every": config.detect_every}
    return TrackingConfig(**{k: v for k, v in wanted.items() if k in names})


def _detector_config(config: RestoreConfig):
    from .faces import FaceDetectorConfig

    return FaceDetectorConfig(min_confidence=config.min_confidence, min_face=config.min_face,
                              max_faces=config.max_faces)


def load_default_restorer(config: RestoreConfig) -> Restorer:
    """The restorer named by ``config.model_path`` (None = shipped weights); errors as FfvError."""
    from .inference import load_restorer

    try:
        threads = config.model_threads or max(1, (os.cpu_count() or 1) // 2)
        return load_restorer(config.model_path, batch_size=config.batch_size, threads=threads)
    except FfvError:
        raise
    except (OSError, ValueError) as exc:
        raise FfvError(config.model_path or "default model", f"cannot load the model ({exc})") from exc


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
        restorer: any object with ``crop_size`` and ``restore``; None loads ``config.model_path``.
        detector: a ``faces.FaceDetector`` (or anything with ``detect(frame) -> [Face]``) that the
            caller owns; None opens one for this clip and closes it afterwards.
        progress: called as ``progress(frames_done, faces_restored, total_frames_or_None)``.
        on_frame: called with each :class:`RestoredFrame` before it is encoded (measurements,
            e.g. which faces were restored).
        claim: the caller's claim on ``dst``, when it holds one.

    Returns:
        A :class:`FileResult` with status "done".

    Raises:
        FfvError: missing, unreadable, empty or non-video input, unwritable output, output equal
            to the input, or a decoding/encoding failure. ``outputs.OutputBusy`` (an FfvError)
            when another run holds ``dst``.
    """
    from .video_io import VideoWriter, probe

    src, dst = Path(src), Path(dst)
    started = time.perf_counter()
    check_input(src)
    _check_output(src, dst)
    info = probe(src)
    if restorer is None:
        restorer = load_default_restorer(config)
    from .safety import LEFT_ALONE, REFUSED

    frames_done = faces_done = left_alone = refused = 0
    total = getattr(info, "n_frames", None) or None
    size = _output_size(info, config.upscale)
    audio = src if getattr(info, "has_audio", False) else None
    out_bytes = 3 * info.width * info.height * config.upscale**2
    with VideoWriter(dst, info, size=size, crf=config.crf, preset=config.preset, audio_from=audio,
                     claim=claim) as writer:
        with _BackgroundWriter(writer, _queue_length(out_bytes)) as encoder:
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
                    if progress is not None:
                        progress(frames_done, faces_done, total)
            finally:
                stream.close()
        if frames_done == 0:
            raise FfvError(src, "no video frames could be decoded")
    seconds = time.perf_counter() - started
    return FileResult(src, dst, frames_done, faces_done, seconds, frames_done / max(seconds, 1e-9), "done",
                      faces_left_alone=left_alone, faces_refused=refused)


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

    ``info`` is ``video_io.probe(src)``. ``detector`` is borrowed if given, else one is opened for
    this clip and closed when the generator ends or is closed (close it to stop early: the decoder
    subprocess and threads are stopped too).
    """
    from .tracking import track_faces
    from .video_io import read_frames

    owned = None
    if detector is None:
        from .faces import FaceDetector

        owned = detector = FaceDetector(_detector_config(config))
        detector.__enter__()
    decoded = tracked = modelled = None
    try:
        length = _queue_length(3 * info.width * info.height)
        decoded = prefetch(read_frames(src, info), length, name="ffv-decode")
        tracked = prefetch(track_faces(decoded, detector, _tracking_config(config)), length, name="ffv-track")
        # The model runs in its own thread, the paste-back in this one.
        modelled = prefetch(restored_crops(tracked, restorer, config, select=select), length, name="ffv-model")
        yield from paste_restored(modelled, config)
    finally:
        if modelled is not None:
            modelled.close()  # each thread is stopped before the one that feeds it
        if tracked is not None:
            tracked.close()
        if decoded is not None:
            decoded.close()
        if owned is not None:
            owned.__exit__(None, None, None)


def _output_size(info, factor: int) -> tuple[int, int] | None:
    """(width, height) of the output frames, or None to keep the decoded size."""
    if factor == 1:
        return None
    return int(info.width) * factor, int(info.height) * factor


# --------------------------------------------------------------------------- files and folders


def is_video_file(path: Path) -> bool:
    """Whether ``path`` has a video file extension (case-insensitive); not a hidden file."""
    return path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def _looks_like_folder(path: Path, raw: str) -> bool:
    return path.is_dir() or raw.endswith((os.sep, "/")) or (not path.exists() and not path.suffix)


def _scan_folder(folder: Path, recursive: bool, exclude: Path | None) -> list[Path]:
    """Video files of ``folder`` (sorted), descending into sub-folders when ``recursive``."""
    found = []
    walker = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
    for root, dirs, names in walker:
        root_path = Path(root)
        # Never descend into the output folder (a previous run's results) or hidden folders.
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and not (exclude is not None and _same_file(root_path / d, exclude)))
        stems = {Path(name).stem for name in names if is_video_file(Path(name))}
        for name in names:
            path = root_path / name
            if not (is_video_file(path) and path.is_file()):
                continue
            stem = path.stem
            if stem.endswith(RESTORED_SUFFIX) and stem[:-len(RESTORED_SUFFIX)] in stems:
                log.info("%s: not an input, the output of an earlier run on %s*", path,
                         root_path / stem[:-len(RESTORED_SUFFIX)])
                continue
            found.append(path)
    return sorted(found)


def plan_outputs(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike | None = None,
    *,
    recursive: bool = False,
) -> list[tuple[Path, Path]]:
    """Pair every input video with its output path.

    - A file becomes ``<stem>_restored.mp4`` beside it, or ``output`` itself when a single file is
      given with ``-o FILE``, or ``output/<stem>_restored.mp4`` when ``output`` is a folder (an
      existing folder, a name ending with ``/``, a name without an extension, or several inputs).
    - A folder's video files (by extension) are mirrored under ``output`` (default
      ``<folder>_restored/``) as ``<relative path>.mp4``; sub-folders only with ``recursive``.
    - A path that does not exist is kept as a file, so that its run reports it as missing.
    - ``<stem>_restored.*`` files beside a video ``<stem>.*`` in a scanned folder are earlier
      single-file outputs, not inputs.

    Raises:
        FfvError: an output equal to an input, two inputs that would write the same output, or an
            output suffix ffv cannot write (see ``video_io.OUTPUT_CONTAINERS``).
    """
    raw_inputs = [os.fspath(p) for p in inputs]
    paths = [Path(p) for p in raw_inputs]
    out_path = None if output is None else Path(output)
    out_is_folder = out_path is not None and (
        len(paths) > 1 or any(p.is_dir() for p in paths) or _looks_like_folder(out_path, os.fspath(output))
    )
    pairs: list[tuple[Path, Path]] = []
    for path in paths:
        if path.is_dir():
            root = out_path if out_path is not None else path.with_name(path.resolve().name + RESTORED_SUFFIX)
            if out_path is not None and len([p for p in paths if p.is_dir()]) > 1:
                root = out_path / path.resolve().name  # several folders: keep them apart
            files = _scan_folder(path, recursive, exclude=root)
            if not files:
                log.warning("%s: no video files found%s", path, "" if recursive else " (--recursive looks in sub-folders)")
            for f in files:
                pairs.append((f, root / f.relative_to(path).with_suffix(".mp4")))
        elif out_path is None:
            pairs.append((path, path.with_name(path.stem + RESTORED_SUFFIX + ".mp4")))
        elif out_is_folder:
            pairs.append((path, out_path / (path.stem + RESTORED_SUFFIX + ".mp4")))
        else:
            pairs.append((path, out_path))

    from .video_io import output_container

    sources = [src for src, _ in pairs]
    seen: dict[str, Path] = {}
    for src, dst in pairs:
        output_container(dst)
        for other in sources:
            if _same_file(other, dst):
                raise FfvError(dst, "the output would overwrite an input; choose another output")
        key = os.path.normcase(os.path.abspath(dst))
        if key in seen:
            raise FfvError(dst, f"both {seen[key]} and {src} would be written here; rename one or use separate runs")
        seen[key] = src
    return pairs


def write_report(path: Path, results: list[FileResult], config: RestoreConfig, seconds: float) -> None:
    """Write the JSON run report atomically (temp file, then rename)."""
    from . import __version__

    report = {
        "ffv_version": __version__,
        "config": asdict(config),
        "summary": summarize(results, seconds),
        "files": [r.to_dict() for r in results],
    }
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise FfvError(path, f"cannot write the report ({os_reason(exc)})") from exc


def _check_folder_can_be_made(folder: Path, what: str) -> None:
    """Raise FfvError unless ``folder`` is, or can be created as, a writable folder."""
    existing = folder
    while not existing.exists():
        if existing.is_symlink():  # a dangling link
            raise FfvError(folder, f"cannot create the {what} ({existing} is a broken link)")
        existing = existing.parent
    if not existing.is_dir():
        raise FfvError(folder, f"cannot create the {what} ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FfvError(existing, f"cannot write to the {what} (permission denied)")


def check_report_path(path: str | os.PathLike) -> None:
    """Raise FfvError when a report could not be written at ``path`` (checked before a run)."""
    path = Path(path)
    if path.is_dir():
        raise FfvError(path, "the report path is a folder, expected a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise FfvError(path, "cannot write the report (permission denied)")
    _check_folder_can_be_made(path.parent, "report's folder")


def check_run(pairs: Sequence[tuple[Path, Path]], config: RestoreConfig,
              report: str | os.PathLike | None = None) -> None:
    """Every option of a run checked before any work starts: the model file, the report path and
    the output folders. Raises FfvError naming the first problem."""
    from .inference import check_model_file

    check_model_file(config.model_path)
    if report is not None:
        check_report_path(report)
    for folder in sorted({dst.parent for _, dst in pairs}):
        _check_folder_can_be_made(folder, "output folder")


def faces_line(restored: int, left_alone: int, refused: int) -> str:
    """``"12 faces restored, 3 left alone, 1 refused"``: the face counts of a summary line
    (face-frames: a face seen in 25 frames counts 25 times)."""
    return f"{restored} faces restored, {left_alone} left alone, {refused} refused"


def summarize(results: list[FileResult], seconds: float) -> dict[str, Any]:
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    return {"files": len(results), **counts,
            "frames": sum(r.frames for r in results if r.status == "done"),
            "faces": sum(r.faces for r in results if r.status == "done"),
            "faces_left_alone": sum(r.faces_left_alone for r in results if r.status == "done"),
            "faces_refused": sum(r.faces_refused for r in results if r.status == "done"),
            "seconds": round(seconds, 3)}


class _Bar:
    """A tqdm bar for one file, fed by :data:`ProgressCallback` calls."""

    def __init__(self, name: str, disable: bool) -> None:
        from tqdm import tqdm

        self._bar = tqdm(desc=name, unit="frame", disable=disable, leave=False, dynamic_ncols=True)

    def __call__(self, frames: int, faces: int, total: int | None) -> None:
        if total and self._bar.total != total:
            self._bar.total = total
            self._bar.refresh()
        self._bar.update(frames - self._bar.n)
        self._bar.set_postfix(faces=faces, refresh=False)

    def close(self) -> None:
        self._bar.close()


def restore_output(src: Path, dst: Path, config: RestoreConfig, *, overwrite: bool,
                   get_restorer: Callable[[], Restorer], progress: ProgressCallback | None = None) -> FileResult:
    """:func:`restore_video` of one planned pair under the claim on ``dst``.

    Skipped (status "skipped") when ``dst`` exists and not ``overwrite``, checked again once the
    claim is held, or when another run holds the claim (``error`` then says so). ``get_restorer``
    is called only when the clip is restored.

    Raises:
        FfvError: as :func:`restore_video`; whatever ``get_restorer`` raises.
    """
    if dst.exists() and not overwrite:
        return FileResult(src, dst, status="skipped")
    check_input(src)
    _check_output(src, dst)
    try:
        claim = claim_output(dst)
    except OutputBusy as exc:
        return FileResult(src, dst, status="skipped", error=str(exc))
    with claim:
        if dst.exists() and not overwrite:  # another run finished it in the meantime
            return FileResult(src, dst, status="skipped")
        return restore_video(src, dst, config, restorer=get_restorer(), progress=progress, claim=claim)


def log_skipped(tag: str, result: FileResult) -> None:
    """The log line of a skipped file: its output exists, or another run is writing it."""
    if result.error:
        log.warning("%s: skipped, %s", tag, result.error)
    else:
        log.info("%s: skipped, %s exists (--overwrite to redo it)", tag, result.output)


class _ModelError(Exception):
    """The model could not be loaded: carries the FfvError through a file's error handling."""

    def __init__(self, error: FfvError) -> None:
        super().__init__(str(error))
        self.error = error


def _restore_one(src: Path, dst: Path, tag: str, config: RestoreConfig, *, overwrite: bool, quiet: bool,
                 get_restorer: Callable[[], Restorer]) -> FileResult:
    """One file of :func:`restore_paths`: skipped, done or failed, with its log line."""
    if dst.exists() and not overwrite:
        result = FileResult(src, dst, status="skipped")
        log_skipped(tag, result)
        return result
    bar = _Bar(src.name, disable=quiet)
    try:
        # get_restorer raises FfvError when the model cannot be loaded: the run stops
        result = restore_output(src, dst, config, overwrite=overwrite, get_restorer=get_restorer, progress=bar)
    except _ModelError as exc:
        raise exc.error from exc
    except FfvError as exc:
        log.error("%s: failed: %s", tag, exc if exc.path != str(src) else exc.reason)
        return FileResult(src, dst, status="failed", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop a folder run
        log.debug("%s: unexpected error", tag, exc_info=True)
        log.error("%s: failed: %s: %s", tag, type(exc).__name__, exc)
        return FileResult(src, dst, status="failed", error=f"{src}: {type(exc).__name__}: {exc}")
    finally:
        bar.close()
    if result.status == "skipped":
        log_skipped(tag, result)
        return result
    log.info("%s -> %s: %d frames, %s, %.1f s (%.1f fps)",
             tag, dst, result.frames, faces_line(result.faces, result.faces_left_alone, result.faces_refused),
             result.seconds, result.fps)
    return result


def restore_paths(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike | None = None,
    config: RestoreConfig = RestoreConfig(),
    *,
    recursive: bool = False,
    overwrite: bool = False,
    report: str | os.PathLike | None = None,
    quiet: bool = False,
    restorer: Restorer | None = None,
) -> list[FileResult]:
    """Restore files and folders (see :func:`plan_outputs` for where outputs go).

    Existing outputs are skipped unless ``overwrite`` (so a stopped run resumes where it stopped);
    the model is loaded once, and only if some file needs it; a file that fails is reported and the
    run goes on. Logs one line per file and a summary; writes a JSON report to ``report`` if given.

    Returns:
        One :class:`FileResult` per planned input, in order.

    Raises:
        FfvError: the plan itself is impossible (output equal to an input), an option is wrong
            (model file, report path, output folder: checked before any work), the model cannot
            be loaded, or the report cannot be written. Failures of single files do not raise.
    """
    started = time.perf_counter()
    pairs = plan_outputs(inputs, output, recursive=recursive)
    if not pairs:
        raise FfvError(os.fspath(inputs[0]) if len(inputs) == 1 else None, "no video files to restore")
    from tqdm.contrib.logging import logging_redirect_tqdm

    check_run(pairs, config, report)
    loaded: list[Restorer] = [] if restorer is None else [restorer]

    def get_restorer() -> Restorer:
        if not loaded:  # once, and only when a file needs it; failing here stops the run
            try:
                loaded.append(load_default_restorer(config))
            except FfvError as exc:
                raise _ModelError(exc) from exc
        return loaded[0]

    results: list[FileResult] = []
    # While bars are shown, console log lines go through tqdm.write so that they do not break them.
    with contextlib.nullcontext() if quiet else logging_redirect_tqdm():
        for i, (src, dst) in enumerate(pairs, 1):
            tag = f"[{i}/{len(pairs)}] {src}"
            results.append(_restore_one(src, dst, tag, config, overwrite=overwrite, quiet=quiet,
                                        get_restorer=get_restorer))
    seconds = time.perf_counter() - started
    s = summarize(results, seconds)
    log.info("%d file(s): %d done, %d skipped, %d failed; %d frames, %s in %.1f s",
             s["files"], s["done"], s["skipped"], s["failed"], s["frames"],
             faces_line(s["faces"], s["faces_left_alone"], s["faces_refused"]), seconds)
    if report is not None:
        write_report(Path(report), results, config, seconds)
    return results
