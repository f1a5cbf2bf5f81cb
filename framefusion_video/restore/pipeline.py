"""The per-frame pipeline: faces -> aligned crops -> restored crops -> reviewed -> pasted frames.

One frame's work, in order:

1. the restorer's cutter (``cutting.cutter_for``: made once from the restorer's own scale) cuts
   the faces whose landmarks can be trusted into what it is given (:class:`~cutting.FaceCuts`):
   aligned crops (float32 RGB (S, S, 3) in [0, 1]) for a same-size restorer; the others are
   refused (:class:`FaceOutcome`).
2. :func:`restored_crops`: the crops of consecutive frames are gathered into batches for the
   restorer (:func:`restore_in_batches`) and stabilised per face track (``stabilize.py``); each
   frame waits as a :class:`PendingFrame` until its crops are back.
3. :func:`paste_restored` / :func:`finish_frame`: each restored face is reviewed
   (:func:`review_crops`: left alone, colour-matched, refused by ``safety.py``) and pasted back
   into the frame (``blending.py``), upscaled first if asked, giving a :class:`RestoredFrame`.

A super-resolution restorer (``scale`` > 1), and a same-size one that takes inputs of any size
(``crop_size`` None), take the other road at 1 and 3, as their cutter decided: each is given a
window of the frame's own pixels around each face, sized to the face (``windows.py``), and its
output is reviewed against that window and pasted into the frame (upscaled) on the same grid, with
no colour matching and no stabilisation.

With ``--soft-faces`` the restorer carries a second, same-size restorer of windows
(``soft_faces.WithSoftFaces``): after 3, each face still soft is restored again on a window of the
output at its effective resolution (``soft_faces.refine_soft_faces``).

:func:`restore_frames` chains 2 and 3. Any object with a ``crop_size`` (int) and a
``restore(crops) -> crops`` method can act as the restorer (:class:`Restorer`), so tests can use
a fake one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from framefusion_video.restore.config import RestoreConfig
from framefusion_video.restore.cutting import FaceCuts, FaceOutcome, cutter_for

if TYPE_CHECKING:
    from framefusion_video.restore.blending import BlendConfig
    from framefusion_video.restore.safety import SafetyConfig
    from framefusion_video.restore.stabilize import StabilizeConfig

log = logging.getLogger(__name__)


class Restorer(Protocol):
    """What the pipeline needs from a restorer (``inference.LiteRestorer``, ``KerasRestorer``, ``EnlargedRestorer`` or a test fake).

    ``crop_size``: the side S of the crops it takes. An optional ``scale`` (default 1) makes it a
    super-resolution network: its outputs are ``scale`` times its inputs, the pipeline gives it a
    window of the frame around each face (``windows.py``) and pastes its output into the frame
    upscaled by the same factor (``RestoreConfig.upscale``); its ``crop_size`` None means windows
    of any size (a fully convolutional network).
    """

    crop_size: int | None

    def restore(self, crops: np.ndarray) -> np.ndarray:
        """float32 (N, S, S, 3) in [0, 1] -> float32 (N, scale * S, scale * S, 3) in [0, 1]."""


def restorer_scale(restorer: Restorer) -> int:
    """The output side of ``restorer`` over its input side (1: it restores crops in place)."""
    return int(getattr(restorer, "scale", 1))


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


@dataclass(frozen=True)
class PendingFrame:
    """A frame cut for the restorer, waiting for it (inputs are batched across frames, so several
    frames wait at once) until :func:`finish_frame` pastes its restored faces.

    Attributes:
        index: 0-based position in the clip.
        frame: the decoded frame, uint8 RGB (H, W, 3).
        faces: the frame's tracked faces (``tracking.TrackedFace``).
        cuts: what the restorer's cutter made of them (``cutting.FaceCuts``: its inputs, the faces
            they were cut from, the faces refused, and the frame to paste into).
    """

    index: int
    frame: np.ndarray
    faces: list
    cuts: FaceCuts


def restore_in_batches(restorer: Restorer, crops: list[np.ndarray], batch_size: int
                       ) -> tuple[list[np.ndarray], list[bool]]:
    """Run ``restorer.restore`` over ``crops`` in batches of at most ``batch_size`` consecutive
    crops of one shape (a super-resolution restorer's windows differ in size): the restored crops
    (clipped to [0, 1]) in the same order, and per crop whether the generator's gate left it alone
    (``inference.left_alone``)."""
    from framefusion_video.restore.inference import left_alone

    out: list[np.ndarray] = []
    flags: list[bool] = []
    scale = restorer_scale(restorer)
    start = 0
    while start < len(crops):
        stop = start + 1
        while stop < len(crops) and stop - start < batch_size and crops[stop].shape == crops[start].shape:
            stop += 1
        batch = np.stack(crops[start:stop]).astype(np.float32, copy=False)
        restored = np.asarray(restorer.restore(batch), dtype=np.float32)
        n, height, width = batch.shape[:3]
        if restored.shape != (n, height * scale, width * scale, 3):
            raise RuntimeError(f"restorer returned shape {restored.shape} for crops of shape {batch.shape}")
        restored = np.clip(restored, 0.0, 1.0)
        out.extend(restored)
        flags.extend(bool(f) for f in left_alone(restored, batch))
        start = stop
    return out, flags


def blend_config(config: RestoreConfig) -> BlendConfig:
    """The paste-back's options; colours are matched before the safety review (:func:`review_crops`)."""
    from framefusion_video.restore.blending import BlendConfig

    return BlendConfig(strength=config.strength)


def safety_config(config: RestoreConfig) -> SafetyConfig:
    """The safety checks' options of ``config``."""
    from framefusion_video.restore.safety import SafetyConfig

    return SafetyConfig(enable=config.safety)


#: Why the review refuses a restored face.
REFUSAL = "the restored face differs from its input more than its damage explains"


def review_windows(restored: Sequence[np.ndarray], windows: Sequence[np.ndarray], rects: Sequence, boxes: Sequence,
                   scale: int, *, safety: SafetyConfig | None = None, damages: Sequence[float] | None = None
                   ) -> tuple[list[str], list[str]]:
    """The status and refusal reason ("" if none) of each super-resolved window.

    With an enabled ``safety.SafetyConfig``, a window whose output, reduced by area to its
    input's grid, differs over the face (``windows.box_weights``) from the input more than the
    face's estimated damage (``damages``, grey levels; None: 0) explains is refused: the detail a
    network adds above the input's resolution is not a change of the input, a different face is.
    Both are compared in the band below the input's finest detail (``safety.window_band``).
    """
    from framefusion_video.restore.safety import REFUSED, RESTORED, coarse_band, refuse
    from framefusion_video.restore.windows import box_weights, reduce_output

    statuses, reasons = [], []
    for k, (out, window, rect, box) in enumerate(zip(restored, windows, rects, boxes)):
        if safety is not None and safety.enable and refuse(
                coarse_band(reduce_output(out, scale), safety.window_band), coarse_band(window, safety.window_band),
                box_weights(rect, box), 0.0 if damages is None else damages[k], safety):
            statuses.append(REFUSED)
            reasons.append(REFUSAL)
        else:
            statuses.append(RESTORED)
            reasons.append("")
    return statuses, reasons


def review_crops(restored: Sequence[np.ndarray], originals: Sequence[np.ndarray], left_alone: Sequence[bool],
                 colour_ranges: Sequence[np.ndarray] | None, *, safety: SafetyConfig | None = None,
                 damages: Sequence[float] | None = None) -> tuple[list[np.ndarray], list[str], list[str]]:
    """The crops to paste, the status and the refusal reason ("" if none) of each restored face.

    ``restored`` and ``originals``: float32 (S, S, 3) in [0, 1], pairwise; ``left_alone``: per
    crop, whether it is its original as it came (the generator's gate left the face alone, and
    stabilisation added nothing): its original is kept as it is. Otherwise its colours are matched
    (``blending.match_face_colour``, with each face's ``colour_ranges``: ``blending.face_colour_range``;
    None: not matched), and with an enabled ``safety.SafetyConfig`` a face that changes more than its
    estimated damage (``damages``, grey levels, one per face, ``safety.estimate_damage``; None: 0)
    explains is refused: its original crop is pasted instead, which leaves the frame as it was.
    """
    from framefusion_video.restore.blending import face_mask, match_face_colour
    from framefusion_video.restore.safety import LEFT_ALONE, REFUSED, RESTORED, refuse

    out, statuses, reasons = [], [], []
    for k, (crop, original, alone) in enumerate(zip(restored, originals, left_alone)):
        if alone:
            out.append(original)
            statuses.append(LEFT_ALONE)
            reasons.append("")
            continue
        if colour_ranges is not None:
            crop = match_face_colour(crop, original, colour_ranges[k])
        if safety is not None and safety.enable:
            mask = face_mask(crop.shape[0])
            weights = mask * np.float32(1.0 / max(float(mask.sum()), 1e-6))
            if refuse(crop, original, weights, 0.0 if damages is None else damages[k], safety):
                out.append(original)
                statuses.append(REFUSED)
                reasons.append(REFUSAL)
                continue
        out.append(crop)
        statuses.append(RESTORED)
        reasons.append("")
    return out, statuses, reasons


def _damages(frame: np.ndarray, boxes: Sequence, left_alone: Sequence[bool], safety: SafetyConfig,
             lit_lumas: Sequence[float]) -> list[float]:
    """``safety.estimate_damage`` of each face's own pixels, dark below its ``lit_lumas`` entry
    (0: darkness is no damage) (0 where it is not needed: a face left alone, or the checks off)."""
    from framefusion_video.restore.safety import estimate_damage, face_region

    if not safety.enable:
        return [0.0] * len(boxes)
    return [0.0 if alone else estimate_damage(*face_region(frame, box), safety, lit)
            for box, alone, lit in zip(boxes, left_alone, lit_lumas)]


def _colour_ranges(frame: np.ndarray, boxes: Sequence, left_alone: Sequence[bool]) -> list[np.ndarray]:
    """Each face's range of lit-face colours (``blending.face_colour_range``; the fixed range for a
    face left alone, which is neither matched nor checked)."""
    from framefusion_video.restore.blending import PLAUSIBLE_FACE_MEANS, face_colour_range

    return [PLAUSIBLE_FACE_MEANS if alone else face_colour_range(frame, box) for box, alone in zip(boxes, left_alone)]


def finish_frame(item: PendingFrame, restored: list[np.ndarray], left_alone: list[bool], config: RestoreConfig,
                 blending: BlendConfig | None = None) -> RestoredFrame:
    """Review and paste the restored crops of one pending frame into its cuts' base (the frame,
    upscaled first if asked).

    ``restored`` and ``left_alone``: one entry per crop of ``item``, as :func:`restored_crops`
    gives them. Only the faces the review keeps as restored are pasted; the others keep the
    frame's pixels.

    ``blending``: the paste-back's options, :func:`blend_config` of ``config`` when None (pass it
    to reuse one across frames).
    """
    from framefusion_video.restore.blending import paste_faces, scale_matrix
    from framefusion_video.restore.safety import RESTORED

    cuts = item.cuts
    if not restored:
        return RestoredFrame(item.index, item.frame, cuts.base, item.faces, 0, outcomes=list(cuts.outcomes))
    if cuts.windowed:
        return _finish_windowed_frame(item, restored, config)
    safety = safety_config(config)
    ranges = _colour_ranges(item.frame, cuts.boxes, left_alone)
    damages = _damages(item.frame, cuts.boxes, left_alone, safety, [float(r[0, 0]) for r in ranges])
    crops, statuses, reasons = review_crops(restored, cuts.inputs, left_alone, ranges if config.colour_match else None,
                                            safety=safety, damages=damages)
    factor = config.upscale
    matrices = cuts.matrices if factor == 1 else [scale_matrix(m, factor) for m in cuts.matrices]
    pasted = [k for k, status in enumerate(statuses) if status == RESTORED]
    out = paste_faces(cuts.base, [(crops[k], matrices[k]) for k in pasted], config=blending or blend_config(config),
                      original_crops=[cuts.inputs[k] for k in pasted])
    return _restored_frame(item, out, statuses, reasons)


def _restored_frame(item: PendingFrame, out: np.ndarray, statuses: Sequence[str], reasons: Sequence[str]
                    ) -> RestoredFrame:
    """The :class:`RestoredFrame` of ``item`` with output ``out`` and its faces' review."""
    from framefusion_video.restore.safety import RESTORED

    cuts = item.cuts
    ids = cuts.track_ids or [None] * len(statuses)
    outcomes = [FaceOutcome(box, status, track_id, reason)
                for box, status, track_id, reason in zip(cuts.boxes, statuses, ids, reasons)]
    outcomes += cuts.outcomes
    kept = [box for box, status in zip(cuts.boxes, statuses) if status == RESTORED]
    return RestoredFrame(item.index, item.frame, out, item.faces, len(kept), kept, outcomes)


def _finish_windowed_frame(item: PendingFrame, restored: list[np.ndarray], config: RestoreConfig) -> RestoredFrame:
    """Review each restored window of ``item`` against its input and paste those kept into the
    (upscaled) frame of its cuts (``windows.paste_window``), on the grid they were cut from.

    No colour matching: the network keeps its input's colours (the review refuses a face whose
    output, reduced to the input's grid, is not its input)."""
    from framefusion_video.restore.safety import RESTORED
    from framefusion_video.restore.windows import feather_mask, paste_window

    scale = config.upscale
    safety = safety_config(config)
    # Darkness is no damage here: a super-resolution network does not relight a face, and a dark
    # face's allowance would let through what it invents.
    cuts = item.cuts
    n = len(cuts.boxes)
    damages = _damages(item.frame, cuts.boxes, [False] * n, safety, [0.0] * n)
    statuses, reasons = review_windows(restored, cuts.inputs, cuts.rects, cuts.boxes, scale,
                                       safety=safety, damages=damages)
    for status, window_out, rect, box in zip(statuses, restored, cuts.rects, cuts.boxes):
        if status == RESTORED:  # into the frame's own upscale, made for this frame alone
            paste_window(cuts.base, window_out, rect, feather_mask(rect, item.frame.shape[:2], box, scale), scale,
                         config.strength)
    return _restored_frame(item, cuts.base, statuses, reasons)


def stabilize_config(config: RestoreConfig) -> StabilizeConfig:
    """The temporal term's options of ``config`` (``temporal`` 0 = off)."""
    from framefusion_video.restore.stabilize import StabilizeConfig

    return StabilizeConfig(enable=config.temporal > 0.0, alpha=config.temporal)


def _stabilize(tracks: dict, item: PendingFrame, restored: list[np.ndarray], left_alone: list[bool],
               options: StabilizeConfig) -> tuple[list[np.ndarray], list[bool], dict]:
    """Temporal term on one frame's restored crops: ``(crops, left-alone flags, new track states)``.

    A crop left alone stays so unless stabilisation fades in what earlier restorations of its
    track added (its state's ``excess`` is then not None).
    """
    from framefusion_video.restore.stabilize import stabilize_tracks

    track_ids = item.cuts.track_ids
    if not track_ids:
        return restored, left_alone, {}
    out, states = stabilize_tracks(tracks, item.index, track_ids, item.cuts.inputs, restored, options,
                                   left_alone=left_alone)
    first = {track_id: k for k, track_id in reversed(list(enumerate(track_ids)))}
    flags = [alone and (first[t] != k or states[t].excess is None)
             for k, (t, alone) in enumerate(zip(track_ids, left_alone))]
    return out, flags, states


def passed_through(frames: Iterable[np.ndarray], factor: int) -> Iterator[RestoredFrame]:
    """Each frame (uint8 RGB (H, W, 3)) as it came, upscaled by ``factor`` (bicubic): what
    ``strength`` 0 gives, with no face looked at (``RestoreConfig.passes_through``)."""
    from framefusion_video.restore.blending import upscale_frame

    for index, frame in enumerate(frames):
        yield RestoredFrame(index, frame, upscale_frame(frame, factor))


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
            (upscaled if asked) without calling the restorer; at ``strength`` 0 every frame does.

    Yields:
        :class:`RestoredFrame` in clip order. Crops are gathered across consecutive frames until
        ``batch_size`` are waiting, so at most about ``2 * batch_size`` frames are held.
    """
    return paste_restored(restored_crops(tracked_frames, restorer, config, select=select), config, restorer)


def paste_restored(items: Iterable[tuple[PendingFrame, list[np.ndarray], list[bool]]],
                   config: RestoreConfig = RestoreConfig(), restorer: Restorer | None = None
                   ) -> Iterator[RestoredFrame]:
    """The second half of :func:`restore_frames`: paste each ``(frame, restored crops, left-alone
    flags)`` of :func:`restored_crops` back into its frame; then, where ``restorer`` has a
    restorer of soft faces (``soft_faces.WithSoftFaces``), restore those again at their
    effective resolution (``soft_faces.refine_soft_faces``)."""
    blending = blend_config(config)
    frames = (finish_frame(item, restored, left_alone, config, blending) for item, restored, left_alone in items)
    if getattr(restorer, "soft", None) is None:
        yield from frames
        return
    from framefusion_video.restore.soft_faces import refine_soft_faces

    yield from refine_soft_faces(frames, restorer, config)


def _none(index: int) -> bool:
    """A ``select`` that restores no frame."""
    return False


def restored_crops(
    tracked_frames: Iterable[tuple[np.ndarray, list]],
    restorer: Restorer,
    config: RestoreConfig = RestoreConfig(),
    *,
    select: Callable[[int], bool] | None = None,
) -> Iterator[tuple[PendingFrame, list[np.ndarray], list[bool]]]:
    """The first half of :func:`restore_frames`: align, restore in batches and stabilise.

    Yields ``(frame with its faces and crops, restored crops, left-alone flags)`` in clip order, ready for
    :func:`finish_frame` (the paste-back), so that the model and the paste-back can run in different threads.
    ``restorer`` is one that ``restore.checked_restorer`` accepts for ``config.upscale`` (what
    ``restore.load_default_restorer`` returns): a super-resolution one at its own scale.
    """
    if config.passes_through:  # strength 0: nothing would be pasted, so no face is cut or restored
        select = _none
    cutter = cutter_for(restorer, config.upscale)
    pending: list[PendingFrame] = []
    n_crops = 0
    stabilizing = stabilize_config(config)
    safety = safety_config(config)
    tracks: dict = {}  # track id -> stabilize.TrackState of its latest restored frame

    def flush() -> Iterator[tuple[PendingFrame, list[np.ndarray], list[bool]]]:
        nonlocal n_crops, tracks
        inputs = [c for item in pending for c in item.cuts.inputs]
        restored, left_alone = restore_in_batches(restorer, inputs, config.batch_size) if inputs else ([], [])
        start = 0
        for item in pending:
            n = len(item.cuts.inputs)
            mine, alone = restored[start:start + n], left_alone[start:start + n]
            start += n
            # Stabilisation works on aligned crops; a super-resolution network's output follows its
            # input's own grid and has no generated detail to boil.
            if mine and stabilizing.active and not item.cuts.windowed:
                mine, alone, tracks = _stabilize(tracks, item, mine, alone, stabilizing)
            yield item, mine, alone
        pending.clear()
        n_crops = 0

    for index, (frame, faces) in enumerate(tracked_frames):
        faces = list(faces)
        chosen = faces if select is None or select(index) else []
        item = PendingFrame(index, frame, faces, cutter.cut(frame, chosen, safety))
        if not item.cuts.inputs and not pending:  # nothing to wait for: pass straight through
            yield item, [], []
            continue
        pending.append(item)
        n_crops += len(item.cuts.inputs)
        if n_crops >= config.batch_size or len(pending) >= 2 * config.batch_size:
            yield from flush()
    if pending:
        yield from flush()
