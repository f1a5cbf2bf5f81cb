"""Cutting a frame's faces for the restorer, the one place that decides how.

A same-size restorer is given aligned crops (:class:`CropCutter`: ``faces.alignment``), a
super-resolution one windows of the frame's own pixels around each face, on the frame's grid
(:class:`WindowCutter`: ``windows.py``). :func:`cutter_for` makes the cutter once from the
restorer's own ``scale`` and ``crop_size``; both cutters give a :class:`FaceCuts`, so the pipeline
never asks again which road a frame takes.

Conventions (``DEVELOPERS.md``): frames uint8 RGB (H, W, 3); crops and windows float32 RGB in
[0, 1]; boxes (x0, y0, x1, y1) and landmarks in frame pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from framefusion_video.base.pixels import to_unit_float
from framefusion_video.faces.alignment import estimate_alignment, landmark_problem, warp_to_crop

if TYPE_CHECKING:
    from framefusion_video.restore.safety import SafetyConfig

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class FaceCuts:
    """The faces of one frame as a cutter cuts them: one type for both roads.

    Attributes:
        base: the frame the restored faces are pasted into: the frame itself, or its bicubic
            upscale (uint8 RGB) when the output is upscaled.
        windowed: True for a window restorer's windows (:class:`WindowCutter`), False for aligned crops.
        inputs: what the restorer is given, one per face: aligned crops (S, S, 3) or windows
            (h, w, 3) of the frame's own pixels, float32 RGB in [0, 1].
        boxes: the face each input was cut from.
        track_ids: one per input; empty when some face has none (no stabilisation).
        outcomes: the faces not cut: refused (landmarks not trusted) or left alone (too large for a
            super-resolution network of fixed input size; kept as their bicubic upscale).
        matrices: aligned crops: the frame -> crop alignment matrices (float64 (2, 3)).
        rects: windows: where each lies in the frame (x0, y0, x1, y1, whole pixels).
    """

    base: np.ndarray
    windowed: bool = False
    inputs: list[np.ndarray] = field(default_factory=list)
    boxes: list = field(default_factory=list)
    track_ids: list = field(default_factory=list)
    outcomes: list[FaceOutcome] = field(default_factory=list)
    matrices: list[np.ndarray] = field(default_factory=list)
    rects: list[tuple[int, int, int, int]] = field(default_factory=list)


def _upscaled(frame: np.ndarray, factor: int) -> np.ndarray:
    """``frame`` itself at factor 1, else its bicubic upscale (``blending.upscale_frame``)."""
    if factor == 1:
        return frame
    from framefusion_video.restore.blending import upscale_frame

    return upscale_frame(frame, factor)


def trusted_faces(faces: Sequence, crop_size: int, safety: SafetyConfig | None
                  ) -> tuple[list[np.ndarray], list, list, list[FaceOutcome]]:
    """Alignment matrices (float64 (2, 3), to ``crop_size`` px crops), boxes and track ids of the
    ``faces`` that can be aligned, and the outcomes of those refused.

    With a ``safety.SafetyConfig`` (enabled), a face whose landmarks do not fit its box is refused
    rather than aligned on them; a face with degenerate landmarks is skipped.
    """
    from framefusion_video.restore.safety import REFUSED

    matrices, boxes, ids, refused = [], [], [], []
    for tracked in faces:
        landmarks = tracked.face.landmarks
        box = tuple(float(v) for v in tracked.face.box)
        track_id = getattr(tracked, "track_id", None)
        problem = landmark_problem(landmarks, box) if safety is not None and safety.enable else None
        if problem is not None:
            log.debug("leaving alone the face at %s: %s", box, problem)
            refused.append(FaceOutcome(box, REFUSED, track_id, problem))
            continue
        try:
            matrix = estimate_alignment(landmarks, crop_size)
        except ValueError:  # degenerate landmarks: nothing sensible to restore
            log.debug("skipping a face with degenerate landmarks: %s", landmarks)
            continue
        matrices.append(matrix)
        boxes.append(box)
        ids.append(track_id)
    return matrices, boxes, ids, refused


def _ids(track_ids: list) -> list:
    """``track_ids``, or none at all when some face has no track (no stabilisation then)."""
    return [] if None in track_ids else track_ids


@dataclass(frozen=True)
class CropCutter:
    """Aligned crops of ``crop_size`` px for a same-size restorer; the restored crops go back
    through the inverse alignment into the frame, upscaled by ``upscale`` (bicubic) first."""

    crop_size: int
    upscale: int = 1

    def cut(self, frame: np.ndarray, faces: Sequence, safety: SafetyConfig | None = None) -> FaceCuts:
        """The aligned crops of the faces of ``frame`` whose landmarks can be trusted."""
        base = _upscaled(frame, self.upscale)
        if not faces:
            return FaceCuts(base)
        matrices, boxes, ids, refused = trusted_faces(faces, self.crop_size, safety)
        crops = [to_unit_float(warp_to_crop(frame, m, self.crop_size)) for m in matrices]
        return FaceCuts(base, False, crops, boxes, _ids(ids), refused, matrices=matrices)


@dataclass(frozen=True)
class WindowCutter:
    """Windows of the frame's own pixels around each face for a window restorer taking windows of
    ``side`` px (None: any size): a ×``scale`` super-resolution network, its output pasted into the
    frame's bicubic upscale on the grid the window was cut from, or (``scale`` 1) a same-size
    restorer, given windows whose sides are multiples of ``windows.SAME_SIZE_MULTIPLE`` and pasted
    into a copy of the frame."""

    side: int | None
    scale: int

    def cut(self, frame: np.ndarray, faces: Sequence, safety: SafetyConfig | None = None) -> FaceCuts:
        """A window around each face of ``frame`` whose landmarks can be trusted
        (``windows.window_rect``); a face too large for a fixed-size network is left alone."""
        from framefusion_video.restore.safety import LEFT_ALONE
        from framefusion_video.restore.windows import SAME_SIZE_MULTIPLE, cut_window, window_rect

        base = _upscaled(frame, self.scale)
        if not faces:
            return FaceCuts(base, True)
        multiple = SAME_SIZE_MULTIPLE if self.scale == 1 else 1
        _, trusted, trusted_ids, outcomes = trusted_faces(faces, 8, safety)
        windows, rects, boxes, ids = [], [], [], []
        for box, track_id in zip(trusted, trusted_ids):
            rect = window_rect(box, frame.shape[:2], self.side, multiple)
            if rect is None:
                outcomes.append(FaceOutcome(box, LEFT_ALONE, track_id, f"too large for the {self.side} px "
                                            "super-resolution network: upscaled by bicubic" if self.side
                                            else "the frame is smaller than its window"))
                continue
            windows.append(cut_window(frame, rect))
            rects.append(rect)
            boxes.append(box)
            ids.append(track_id)
        if windows and base is frame:  # the windows are pasted into the base in place, never into the frame
            base = frame.copy()
        return FaceCuts(base, True, windows, boxes, _ids(ids), outcomes, rects=rects)


def cutter_for(restorer, upscale: int) -> CropCutter | WindowCutter:
    """The cutter of ``restorer`` (``pipeline.Restorer``) at output ``upscale``, decided once from
    the restorer's own ``scale`` and ``crop_size``: windows for a super-resolution network (its
    ``scale`` is the upscale: ``restore.checked_restorer``) and for a same-size network that takes
    inputs of any size (``crop_size`` None: restored at the frame's own resolution), aligned crops
    for a same-size network of fixed crop size."""
    scale = int(getattr(restorer, "scale", 1))
    side = None if restorer.crop_size is None else int(restorer.crop_size)
    return WindowCutter(side, scale) if scale > 1 or side is None else CropCutter(side, upscale)
