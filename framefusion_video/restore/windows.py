"""Super-resolution on the frame's own pixel grid: each face's window, its review and its paste.

A super-resolution restorer is given a window of the low-resolution frame around each face, at
the frame's own pixels (never resampled: a face resampled onto another grid loses detail that no
network restores), sized to the face: the face box grown by :data:`WINDOW_MARGIN` of its side on
every side, so that no face is too large and none is squeezed below its resolution. A network
exported for one input size (``ffv export --input-size``) gets a window of that size centred on
the face instead, and faces that do not fit in it keep their bicubic upscale.

Its output lies on the upscaled frame's grid, shifted by whole pixels; it is pasted there with a
mask that is 1 over the face and the inner half of its margin and falls to 0 at the margin's outer
edge (the window's edge, where the network saw zero padding), so that no seam shows.

All functions are pure: uint8 frames at the video boundary, float32 RGB in [0, 1] inside.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

#: Context around a face box, as a share of its longer side on each side of the window: windows of
#: 1.3 times the face rather than 1.5 gain as much on the synthetic clip
#: (``benchmarks/quality_clip.py --upscale 2|4``) for three quarters of the network's work.
WINDOW_MARGIN = 0.15
#: The least context (low-resolution px) on each side: the network's edge effects stay out of the face.
MIN_MARGIN = 6

#: Sides of a same-size restorer's windows are multiples of this: SPAN runs there on 2x2 or 4x4
#: area means (``ffv train --span 1 --unshuffle 2|4``).
SAME_SIZE_MULTIPLE = 4

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels, end-exclusive


def grown_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    """The face ``box`` (x0, y0, x1, y1) grown by its margin on every side: what its window holds."""
    x0, y0, x1, y1 = (float(v) for v in box)
    margin = max(float(MIN_MARGIN), WINDOW_MARGIN * max(x1 - x0, y1 - y0))
    return x0 - margin, y0 - margin, x1 + margin, y1 + margin


def window_rect(box: Sequence[float], frame_hw: tuple[int, int], side: int | None = None,
                multiple: int = 1) -> Rect | None:
    """The window (x0, y0, x1, y1, whole pixels) a window restorer is given for the face in
    ``box`` (x0, y0, x1, y1, frame pixels) of a frame of ``frame_hw`` (height, width).

    ``side`` None: the box grown by its margin on each side, clipped to the frame, each side then
    grown to a ``multiple`` of px (moved inside the frame; None where the frame is smaller).
    ``side`` N (a network of fixed input size): the N x N window centred on the face and moved
    inside the frame; None where the grown box does not fit in it or the frame is smaller than N.
    """
    height, width = frame_hw
    gx0, gy0, gx1, gy1 = grown_box(box)
    if side is None:
        rect = (max(0, int(np.floor(gx0))), max(0, int(np.floor(gy0))),
                min(width, int(np.ceil(gx1))), min(height, int(np.ceil(gy1))))
        if rect[2] - rect[0] < 2 or rect[3] - rect[1] < 2:
            return None
        if multiple > 1:
            xs = _whole_multiple(rect[0], rect[2], width, multiple)
            ys = _whole_multiple(rect[1], rect[3], height, multiple)
            return None if xs is None or ys is None else (xs[0], ys[0], xs[1], ys[1])
        return rect
    if side > min(width, height) or max(gx1 - gx0, gy1 - gy0) > side:
        return None
    left = int(np.clip(round(0.5 * (gx0 + gx1 - side)), 0, width - side))
    top = int(np.clip(round(0.5 * (gy0 + gy1 - side)), 0, height - side))
    return left, top, left + side, top + side


def _whole_multiple(lo: int, hi: int, limit: int, multiple: int) -> tuple[int, int] | None:
    """[lo, hi) grown to the next multiple of ``multiple`` px, as evenly on both ends as the
    frame's [0, limit) allows; None where the frame is shorter than that."""
    length = -(-(hi - lo) // multiple) * multiple
    if length > limit:
        return None
    start = min(max(0, lo - (length - (hi - lo)) // 2), limit - length)
    return start, start + length


def feather_mask(rect: Rect, frame_hw: tuple[int, int], box: Sequence[float], scale: int) -> np.ndarray:
    """The paste mask of a window's ×``scale`` output, float32 (scale·h, scale·w) in [0, 1].

    1 over the face ``box`` and the inner half of its margin (:func:`grown_box`), a smooth step
    down to 0 at the margin's outer edge; no step on a side where the margin reaches the frame's
    border (there is nothing there to blend with).
    """
    height, width = frame_hw
    x0, y0, x1, y1 = rect
    grown = grown_box(box)

    def ramp(n: int, origin: int, lo: float, hi: float, face_lo: float, face_hi: float, limit: int) -> np.ndarray:
        """Along one axis: 1 from halfway between ``lo`` and ``face_lo`` to halfway between
        ``face_hi`` and ``hi`` (frame px), 0 beyond ``lo`` and ``hi``, on output pixels."""
        t = (np.arange(n, dtype=np.float32) + 0.5) / scale + origin  # output pixel centres, frame px
        rise = np.ones(n, np.float32) if lo <= 0 else np.clip((t - lo) / max(0.5 * (face_lo - lo), 1e-3), 0, 1)
        fall = np.ones(n, np.float32) if hi >= limit else np.clip((hi - t) / max(0.5 * (hi - face_hi), 1e-3), 0, 1)
        v = np.minimum(rise, fall)
        return v * v * (3.0 - 2.0 * v)

    cols = ramp(scale * (x1 - x0), x0, grown[0], grown[2], float(box[0]), float(box[2]), width)
    rows = ramp(scale * (y1 - y0), y0, grown[1], grown[3], float(box[1]), float(box[3]), height)
    return np.ascontiguousarray(rows[:, None] * cols[None, :])


def cut_window(frame: np.ndarray, rect: Rect) -> np.ndarray:
    """The frame's pixels in ``rect``, float32 RGB (h, w, 3) in [0, 1]."""
    x0, y0, x1, y1 = rect
    return frame[y0:y1, x0:x1].astype(np.float32) * np.float32(1.0 / 255.0)


def reduce_output(restored: np.ndarray, scale: int) -> np.ndarray:
    """A ×``scale`` output reduced by area to its input's grid: what it says the input was."""
    h, w = restored.shape[0] // scale, restored.shape[1] // scale
    return cv2.resize(restored, (w, h), interpolation=cv2.INTER_AREA)


def box_weights(rect: Rect, box: Sequence[float]) -> np.ndarray:
    """Weights over a window (float32 (h, w), summing to 1): the ellipse inscribed in the face
    ``box``, where the review compares a restored face with its input."""
    x0, y0, x1, y1 = rect
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    cx, cy = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
    rx, ry = max(0.5 * (box[2] - box[0]), 1.0), max(0.5 * (box[3] - box[1]), 1.0)
    inside = (((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0).astype(np.float32)
    if inside.sum() == 0:
        inside[:] = 1.0
    return inside / np.float32(inside.sum())


def paste_window(base: np.ndarray, restored: np.ndarray, rect: Rect, mask: np.ndarray, scale: int,
                 strength: float = 1.0) -> None:
    """Blend a window's ×``scale`` output into the upscaled frame ``base`` (uint8, in place) with
    ``mask`` times ``strength``."""
    x0, y0, x1, y1 = (scale * v for v in rect)
    region = base[y0:y1, x0:x1]
    alpha = (np.float32(strength) * mask)[..., None]
    mixed = region.astype(np.float32) + alpha * (restored * np.float32(255.0) - region)
    region[:] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
