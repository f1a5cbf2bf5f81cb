"""Faces softer than their pixels, restored at their effective resolution (``--upscale 1``).

Old TV, a soft lens, footage enlarged before it reached us: a face 200 px wide may hold the detail
of one 70 px wide. The same-size U-Net sees every face through a 128 px aligned crop and gives it
back as soft as it came. After the crops are pasted, a face whose track is still soft there
(:func:`softness` of the output: it loses little when reduced by :attr:`SoftFaceConfig.reduction`
and enlarged back) is given a
window of the frame reduced by that factor and super-resolved back by the shipped ×2 network that
learnt to deblur (``inference.ReducedRestorer``); the window is reviewed and pasted as on the
window road (``pipeline``).

A track's road is decided by the mean softness of its faces so far, so that a face does not
switch roads from frame to frame (a switch would flicker).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from framefusion_video.restore.config import RestoreConfig
from framefusion_video.restore.pipeline import (PendingFrame, RestoredFrame, Restorer, finish_frame,
                                                restore_in_batches, restorer_scale, safety_config)


@dataclass(frozen=True)
class SoftFaceConfig:
    """Which faces are soft, and how far they are reduced.

    Attributes:
        reduction: the factor a soft face's window is reduced by before the ×2 network enlarges it
            (then bicubic to the window's size).
        threshold: the least mean :func:`softness` (dB, at ``reduction``) of a soft face's track.
        min_side: faces whose box is narrower (px) keep the crops' road: their reduced window would
            be too small for the network to see a face in.
    """

    reduction: int = 2
    threshold: float = 42.0
    min_side: int = 48


def softness(face: np.ndarray, factor: int) -> float:
    """PSNR (dB) of a uint8 RGB face's luma against itself reduced by ``factor`` (area) and
    enlarged back (bicubic): high where the face holds no detail above 1/``factor`` of its
    pixels' resolution."""
    from framefusion_video.restore.inference import reduced

    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY).astype(np.float32)
    height, width = grey.shape
    back = cv2.resize(reduced(grey, factor), (width, height), interpolation=cv2.INTER_CUBIC)
    mse = max(float(np.mean((grey - back) ** 2)), 1e-6)
    return float(10.0 * np.log10(255.0**2 / mse))


def face_pixels(frame: np.ndarray, box) -> np.ndarray:
    """The pixels of ``frame`` inside ``box`` (x0, y0, x1, y1), clipped to the frame."""
    height, width = frame.shape[:2]
    x0, y0 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
    x1, y1 = min(width, int(round(box[2]))), min(height, int(round(box[3])))
    return frame[y0:max(y0, y1), x0:max(x0, x1)]


@dataclass
class SoftTracks:
    """Each track's softness so far: the sum and count of its faces' (a face without a track is
    judged alone)."""

    config: SoftFaceConfig = SoftFaceConfig()
    sums: dict = field(default_factory=dict)

    def is_soft(self, frame: np.ndarray, tracked) -> bool:
        """Whether ``tracked`` (a ``tracking.TrackedFace``) takes the soft road in this frame, its
        softness read in ``frame`` (uint8 RGB: the crops' road's output, so that a face the U-Net
        made sharp stays on its road)."""
        box = tracked.face.box
        if min(box[2] - box[0], box[3] - box[1]) < self.config.min_side:
            return False
        pixels = face_pixels(frame, box)
        if min(pixels.shape[:2]) < self.config.min_side:
            return False
        value = softness(pixels, self.config.reduction)
        track_id = getattr(tracked, "track_id", None)
        if track_id is None:
            return value >= self.config.threshold
        total, count = self.sums.get(track_id, (0.0, 0))
        self.sums[track_id] = (total + value, count + 1)
        return (total + value) / (count + 1) >= self.config.threshold


class WithSoftFaces:
    """A same-size restorer of aligned crops (``restorer``) and the restorer of its soft faces'
    windows (``soft``: ``inference.ReducedRestorer``), which the pipeline runs after the crops are
    pasted (:func:`refine_soft_faces`). Acts as ``restorer`` for everything else."""

    def __init__(self, restorer: Restorer, soft: Restorer, config: SoftFaceConfig = SoftFaceConfig()) -> None:
        if restorer_scale(restorer) != 1 or restorer_scale(soft) != 1 or soft.crop_size is not None:
            raise ValueError("soft faces are restored at the frame's own size, by a restorer of windows of any size")
        self.restorer, self.soft, self.soft_config = restorer, soft, config
        self.crop_size, self.scale = restorer.crop_size, 1
        self.path = getattr(restorer, "path", None)

    def restore(self, crops: np.ndarray) -> np.ndarray:
        """``restorer``'s restore."""
        return self.restorer.restore(crops)


def refine_soft_faces(frames: Iterable[RestoredFrame], restorer: WithSoftFaces, config: RestoreConfig
                      ) -> Iterator[RestoredFrame]:
    """``frames`` (the pipeline's, at the same size) with each soft face of a selected frame
    restored again on a window of the output at its effective resolution (``restorer.soft``),
    reviewed against that window and pasted with the window's feather mask. A face restored there
    counts as restored; one the review refuses keeps the crops' outcome."""
    from framefusion_video.restore.cutting import WindowCutter

    cutter = WindowCutter(None, 1)
    tracks = SoftTracks(restorer.soft_config)
    safety = safety_config(config)
    for frame in frames:
        soft = [f for f in frame.faces if tracks.is_soft(frame.restored, f)] if frame.outcomes else []
        cuts = cutter.cut(frame.restored, soft, safety) if soft else None
        if cuts is None or not cuts.inputs:
            yield frame
            continue
        restored, alone = restore_in_batches(restorer.soft, cuts.inputs, config.batch_size)
        second = finish_frame(PendingFrame(frame.index, frame.restored, soft, cuts), restored, alone, config)
        yield merged(frame, second)


def merged(first: RestoredFrame, second: RestoredFrame) -> RestoredFrame:
    """``first`` (the crops' road) with the output of ``second`` (its soft faces' windows): a face
    ``second`` restored is restored, the others keep ``first``'s outcome."""
    from framefusion_video.restore.safety import RESTORED

    again = {o.box for o in second.outcomes if o.status == RESTORED}
    outcomes = [replace(o, status=RESTORED, reason="") if o.box in again else o for o in first.outcomes]
    boxes = [o.box for o in outcomes if o.status == RESTORED]
    return RestoredFrame(first.index, first.original, second.restored, first.faces, len(boxes), boxes, outcomes)
