"""Pasting restored face crops back into frames: face masks, colour matching, upscaling.

Pure functions on arrays, following the GFPGAN/facexlib paste-back: warp the restored crop and a
soft mask through the inverse of the frame->crop similarity transform, then alpha-blend. Unlike
facexlib the mask is head-shaped (an ellipse fitted to the alignment template) rather than the
whole square, it is computed once per crop size in crop space, and all the work happens inside
each face's bounding box, so that a 720p frame costs about a millisecond per face. A smaller
ellipse, the face's own (forehead to chin), weighs its colours and the review's measures.

Conventions (see DEVELOPERS.md): frames are uint8 RGB (H, W, 3); crops are float32 RGB in [0, 1],
(S, S, 3); matrices map frame pixels to crop pixels, float64 (2, 3).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from framefusion_video.faces import alignment

from framefusion_video.base.pixels import to_unit_float

log = logging.getLogger(__name__)

# Face extent in the template, in eye-to-mouth distances (vertical) and eye distances
# (horizontal): the forehead is about one eye-mouth distance above the eyes, the chin a bit more
# than half of one below the mouth, and a face is a little over twice as wide as its eye distance.
_FOREHEAD_ABOVE_EYES = 1.05
_CHIN_BELOW_MOUTH = 0.55
_HALF_WIDTH_IN_EYE_DISTANCES = 1.15
# The head's ellipse, what is pasted, in the same units: the whole face box a detector draws (and
# a dim or blurred face's damage reaches) with the hairline and jaw. Nearly inscribed in the crop:
# pasting the face's own ellipse alone left the face box's rim as damaged as it came, half the
# gain the network makes on the crop (``benchmarks/breakdown.py``'s "whole crop" row).
_HEAD_ABOVE_EYES = 1.5
_HEAD_BELOW_MOUTH = 0.8
_HEAD_HALF_WIDTH_IN_EYE_DISTANCES = 1.5

# Mask-weighted mean of each YCrCb channel (OpenCV's float convention: all in [0, 1], chroma
# centred on 0.5) of a well-lit face. Chroma: a little wider than the 1st to 99th percentiles of
# 244 unseen studio faces (shared/data/faces/frl, aligned crops: Cr 0.532-0.645, Cb 0.435-0.478),
# to hold the sample's astronaut (0.641, 0.571, 0.427) too. Luma: up to a little above their 99th
# percentile (0.65), and from 0.40 (their 5th percentile is 0.30, their median 0.54): with the
# lower bound at 0.30, a darkened face whose mean is still above it counts as lit, and its repair
# is undone. Outside this range a restorer's move back towards it is taken for a lighting or
# colour-cast repair and kept.
PLAUSIBLE_FACE_MEANS = np.array([[0.40, 0.68], [0.52, 0.66], [0.42, 0.49]])
PLAUSIBLE_FACE_MEANS.setflags(write=False)


@dataclass(frozen=True)
class BlendConfig:
    """How restored faces are blended into the frame.

    Attributes:
        erode: how far the ellipses (face and head) are shrunk, as a fraction of the crop side,
            so that the restored crop's edges (background beyond the head) are left to the frame.
        feather: width of the soft transition from 1 to 0 at the mask's edge, as a fraction of
            the crop side; wider hides seams better but blends in more of the degraded original.
        strength: alpha multiplier in [0, 1]; 0 leaves the frame untouched.

    Colours are pasted as given: match them first with :func:`match_face_colour`.
    """

    erode: float = 0.02
    feather: float = 0.1
    strength: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.erode < 0.25:
            raise ValueError(f"erode must be in [0, 0.25), got {self.erode}")
        if not 0.0 <= self.feather <= 0.5:
            raise ValueError(f"feather must be in [0, 0.5], got {self.feather}")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {self.strength}")


def _face_ellipse(crop_size: int, head: bool = False) -> tuple[float, float, float, float]:
    """(cx, cy, semi-axis x, semi-axis y) of the face, or of the ``head``, in pixels of a
    ``crop_size`` crop."""
    above, below, half = ((_HEAD_ABOVE_EYES, _HEAD_BELOW_MOUTH, _HEAD_HALF_WIDTH_IN_EYE_DISTANCES) if head else
                          (_FOREHEAD_ABOVE_EYES, _CHIN_BELOW_MOUTH, _HALF_WIDTH_IN_EYE_DISTANCES))
    pts = alignment.template(crop_size).astype(np.float64)
    eye_y = 0.5 * (pts[0, 1] + pts[1, 1])
    mouth_y = 0.5 * (pts[3, 1] + pts[4, 1])
    eye_to_mouth = mouth_y - eye_y
    eye_distance = float(np.linalg.norm(pts[1] - pts[0]))
    top = eye_y - above * eye_to_mouth
    bottom = mouth_y + below * eye_to_mouth
    # The template is left-right symmetric to 1e-3; centring on the crop (pixel centres
    # at integer coordinates) keeps the mask exactly so.
    return (crop_size - 1) / 2.0, 0.5 * (top + bottom), half * eye_distance, 0.5 * (bottom - top)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, and a C1 cubic in between."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@functools.lru_cache(maxsize=16)
def _cached_mask(crop_size: int, erode: float, feather: float, head: bool = False) -> np.ndarray:
    s = float(crop_size)
    cx, cy, ax, ay = _face_ellipse(crop_size, head)
    ax, ay = max(ax - erode * s, 1.0), max(ay - erode * s, 1.0)
    # Pixel centres sit at integer coordinates (OpenCV's convention, used by warpAffine).
    y, x = np.mgrid[0:crop_size, 0:crop_size].astype(np.float64)
    u, v = (x - cx) / ax, (y - cy) / ay
    r = np.sqrt(u * u + v * v)
    # First-order signed distance to the ellipse, in pixels (negative inside): (r - 1) / |grad r|.
    grad = np.sqrt((u / ax) ** 2 + (v / ay) ** 2) / np.maximum(r, 1e-9)
    dist = (r - 1.0) / np.maximum(grad, 1e-9)
    width = max(feather * s, 1.0)
    mask = 1.0 - _smoothstep(dist / width + 0.5)
    # Exactly 0 on the crop border (and a soft ramp towards it), whatever the configuration, so
    # that the warped crop's edge is never pasted.
    to_border = np.minimum(np.minimum(x, s - 1.0 - x), np.minimum(y, s - 1.0 - y))
    mask *= _smoothstep(to_border / max(0.5 * width, 1.0))
    mask = mask.astype(np.float32)
    mask.setflags(write=False)
    return mask


def face_mask(crop_size: int, config: BlendConfig = BlendConfig()) -> np.ndarray:
    """Soft face-shaped mask, float32 (S, S) in [0, 1], read-only (it is cached per size).

    An ellipse fitted to the alignment template (forehead to chin, cheek to cheek), shrunk by
    ``config.erode`` and feathered over ``config.feather`` (both fractions of S) with a smooth
    step, so that no seam or box shows. It is exactly 0 on the crop border and 1 in the middle,
    and left-right symmetric.
    """
    return _mask(crop_size, config, head=False)


def paste_mask(crop_size: int, config: BlendConfig = BlendConfig()) -> np.ndarray:
    """What :func:`paste_faces` blends with before ``config.strength``: :func:`face_mask`'s shape
    for the whole head (hairline to below the chin, ear to ear), so that the face box a detector
    draws is restored to its rim; float32 (S, S), read-only, 0 on the crop border."""
    return _mask(crop_size, config, head=True)


def _mask(crop_size: int, config: BlendConfig, head: bool) -> np.ndarray:
    if crop_size < 8:
        raise ValueError(f"crop_size must be at least 8, got {crop_size}")
    return _cached_mask(int(crop_size), float(config.erode), float(config.feather), head)


def colour_targets(mean_o: np.ndarray, mean_r: np.ndarray,
                   plausible: np.ndarray | None = PLAUSIBLE_FACE_MEANS) -> np.ndarray:
    """The per-channel mean (float64 (3,)) that :func:`match_colour` gives the restored crop, from
    the original's (``mean_o``) and the restored crop's (``mean_r``), YCrCb.

    A channel's mean goes back to the original's (the restorer's drift is undone) unless the
    original lies outside the ``plausible`` range (float (3, 2): low, high per channel) and the
    restorer moved it towards that range: such a move is a lighting or colour-cast repair, and is
    kept, as far as the range's far edge. How far it may go grows smoothly with how far outside
    the original lies (full beyond a tenth of the range's width), so that a face near an edge
    does not flip between the two. When luma moves by a gain, the chroma's distance from grey may
    move by the same gain (darkening a face also takes its saturation). ``plausible=None`` matches
    everything (the repair is undone).
    """
    mean_o, mean_r = (np.asarray(v, dtype=np.float64) for v in (mean_o, mean_r))
    if plausible is None:
        return mean_o.copy()
    low, high = np.asarray(plausible, dtype=np.float64).T
    ramp = 0.1 * (high - low)
    below = np.clip((low - mean_o) / ramp, 0.0, 1.0)  # 0 inside the range, 1 well below it
    above = np.clip((mean_o - high) / ramp, 0.0, 1.0)
    lo = np.minimum(mean_o, mean_o - above * (mean_o - low))
    hi = np.maximum(mean_o, mean_o + below * (high - mean_o))
    target = mean_o.copy()
    target[0] = np.clip(mean_r[0], lo[0], hi[0])
    gain = target[0] / mean_o[0] if mean_o[0] > 1e-3 else 1.0
    rescaled = 0.5 + gain * (mean_o[1:] - 0.5)
    target[1:] = np.clip(mean_r[1:], np.minimum(lo[1:], rescaled), np.maximum(hi[1:], rescaled))
    return target


def surround_luma(frame: np.ndarray, box: Sequence[float], inner: float = 1.35, outer: float = 1.7) -> float | None:
    """Median luma (in [0, 1]) of the frame around a face: the ring between ``inner`` and
    ``outer`` box sides from the box centre, beyond the head and hair; None where the frame holds
    too little of it (a close-up).

    ``frame``: uint8 RGB (H, W, 3); ``box``: (x0, y0, x1, y1) frame pixels. A face as dark as its
    surroundings is lit as its scene is (a dark stage, a night scene), not under-exposed.
    """
    height, width = frame.shape[:2]
    cx, cy = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
    side = max(box[2] - box[0], box[3] - box[1], 1.0)
    x0, x1 = max(0, int(cx - outer * side)), min(width, int(np.ceil(cx + outer * side)))
    y0, y1 = max(0, int(cy - outer * side)), min(height, int(np.ceil(cy + outer * side)))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    step = max(1, int(side // 16))  # the median of a ring needs no more than ~1,000 samples
    region = frame[y0:y1:step, x0:x1:step]
    yy, xx = np.mgrid[y0:y1:step, x0:x1:step]
    ring = np.maximum(np.abs(xx + 0.5 - cx), np.abs(yy + 0.5 - cy)) >= inner * side
    if int(ring.sum()) < 16:
        return None
    luma = cv2.cvtColor(np.ascontiguousarray(region), cv2.COLOR_RGB2GRAY)[ring]
    return float(np.median(luma)) / 255.0


def scene_plausible_means(surround: float | None) -> np.ndarray:
    """:data:`PLAUSIBLE_FACE_MEANS` for a face whose surroundings have median luma ``surround``:
    its luma range starts no higher than the surroundings' luma, so that a face only as dark as its
    scene is not taken for an under-exposed one and brightened. None: the fixed range."""
    if surround is None:
        return PLAUSIBLE_FACE_MEANS
    means = PLAUSIBLE_FACE_MEANS.copy()
    means[0, 0] = min(means[0, 0], max(float(surround), 0.0))
    means.setflags(write=False)
    return means


def match_colour(restored: np.ndarray, original: np.ndarray, mask: np.ndarray,
                 plausible: np.ndarray | None = PLAUSIBLE_FACE_MEANS) -> np.ndarray:
    """The restored crop with its mean colour moved to the original's, float32 (S, S, 3).

    ``restored`` and ``original`` are float32 RGB crops in [0, 1], (S, S, 3); ``mask`` is float
    (S, S) weights. Per channel in YCrCb (luma and two chroma channels; about 60 times cheaper to
    convert than Lab, which matters at 25 fps), the restored crop is shifted so that its
    mask-weighted mean is :func:`colour_targets`' : the original's, except where the original's
    colours lie outside the ``plausible`` range and the restorer moved them back towards it (a
    lighting or colour-cast repair, which is kept). Spreads are left as restored: the original's
    is its damage (noise makes it larger, blur smaller), and matching it would undo part of the
    repair. The result is clipped to [0, 1]. A mask with no weight returns the restored crop
    unchanged (as float32).
    """
    restored = np.asarray(restored, dtype=np.float32)
    original = np.asarray(original, dtype=np.float32)
    if restored.shape != original.shape or restored.ndim != 3 or restored.shape[2] != 3:
        raise ValueError(f"crops must both be (S, S, 3), got {restored.shape} and {original.shape}")
    weights = np.asarray(mask, dtype=np.float32).reshape(-1)
    if weights.size != restored.shape[0] * restored.shape[1]:
        raise ValueError(f"mask {np.shape(mask)} does not match crops {restored.shape}")
    total = float(weights.sum(dtype=np.float64))
    if total <= 1e-6:
        return restored.copy()
    weights = weights * np.float32(1.0 / total)
    ycc_r = cv2.cvtColor(np.clip(restored, 0.0, 1.0), cv2.COLOR_RGB2YCrCb)
    ycc_o = cv2.cvtColor(np.clip(original, 0.0, 1.0), cv2.COLOR_RGB2YCrCb)
    # einsum, not @: a matrix product this size goes to OpenBLAS, whose threads then spin against
    # the pipeline's own (1.5 CPU-s wasted per 120 frames of 720p, half a core).
    mean_r = np.einsum("i,ij->j", weights, ycc_r.reshape(-1, 3))
    mean_o = np.einsum("i,ij->j", weights, ycc_o.reshape(-1, 3))
    ycc_r += (colour_targets(mean_o, mean_r, plausible) - mean_r).astype(np.float32)
    rgb = cv2.cvtColor(ycc_r, cv2.COLOR_YCrCb2RGB)
    return np.clip(rgb, 0.0, 1.0, out=rgb)


def face_colour_range(frame: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The range of lit-face colours (float (3, 2), YCrCb low/high) for the face at ``box``
    ((x0, y0, x1, y1), pixels of the uint8 RGB ``frame``): :data:`PLAUSIBLE_FACE_MEANS`, its luma
    starting no higher than the face's surroundings (:func:`scene_plausible_means`)."""
    return scene_plausible_means(surround_luma(frame, box))


def match_face_colour(restored: np.ndarray, original: np.ndarray, colour_range: np.ndarray) -> np.ndarray:
    """The restored face crop with the colours ``ffv restore`` pastes: its mean colour over the
    face (:func:`face_mask`) moved back to its original's, except a lighting or colour-cast repair
    towards ``colour_range`` (:func:`face_colour_range` of the face; :func:`match_colour`).

    The one colour rule of the product: the pipeline's review and library callers of
    :func:`paste_faces` alike. Both crops float32 RGB (S, S, 3) in [0, 1]; returns the same.
    """
    return match_colour(restored, original, face_mask(np.shape(restored)[0]), colour_range)


@functools.lru_cache(maxsize=16)
def _mask_support(crop_size: int, erode: float, feather: float) -> np.ndarray:
    """Corners (4, 2) of the box around the paste mask's non-zero pixels, in crop pixels."""
    mask = _cached_mask(crop_size, erode, feather, True)
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return np.zeros((4, 2))
    x0, x1, y0, y1 = xs.min() - 1.0, xs.max() + 1.0, ys.min() - 1.0, ys.max() + 1.0
    return np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], dtype=np.float64)


def _frame_box(matrix: np.ndarray, corners: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer (x0, y0, x1, y1), end-exclusive and clipped to the frame, covering crop ``corners``."""
    pts = alignment.transform_points(corners, alignment.invert_affine(matrix))
    x0 = max(int(np.floor(pts[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(pts[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(pts[:, 0].max())) + 2, width)
    y1 = min(int(np.ceil(pts[:, 1].max())) + 2, height)
    return x0, y0, x1, y1


def paste_faces(
    frame: np.ndarray,
    faces: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    config: BlendConfig = BlendConfig(),
    original_crops: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """A new uint8 RGB frame (H, W, 3) with the restored faces blended in.

    ``faces`` holds ``(restored_crop, matrix)`` pairs: the crop float32 RGB (S, S, 3) in [0, 1]
    and the frame->crop matrix float64 (2, 3) it was aligned with. What the restorer changed (the
    restored crop minus the crop it was given: ``original_crops``, float32 (S, S, 3) in [0, 1],
    one per face, or when those are not given the crops cut from ``frame`` with
    :func:`alignment.warp_to_crop`) is warped back through the inverse transform and added to the
    frame's own pixels (:func:`restored_at_frame_resolution`), so that a face larger than the crop
    keeps its detail above the crop's resolution; that face is then blended in with
    alpha = :func:`paste_mask` * ``config.strength``, inside the head's bounding box only; later
    faces are pasted over earlier ones where they overlap. Colours are pasted as given: match them
    first with :func:`match_face_colour`, as ``ffv restore`` does. Pass only the faces to paste:
    the pipeline leaves out those left alone or refused.

    ``frame`` is not modified; every pixel where alpha is 0, or where the restorer changed
    nothing, is bit-identical to the input. The mask is warped as uint8 and blended with integer
    arithmetic.
    """
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    if original_crops is not None and len(original_crops) != len(faces):
        raise ValueError(f"{len(original_crops)} original crops for {len(faces)} faces")
    out = frame.copy()
    if config.strength <= 0.0 or not faces:
        return out
    height, width = frame.shape[:2]
    for index, (crop, matrix) in enumerate(faces):
        crop = np.asarray(crop, dtype=np.float32)
        if crop.ndim != 3 or crop.shape[0] != crop.shape[1] or crop.shape[2] != 3:
            raise ValueError(f"restored crop must be (S, S, 3), got {crop.shape}")
        matrix = np.asarray(matrix, dtype=np.float64)
        size = crop.shape[0]
        if original_crops is not None:
            original = np.asarray(original_crops[index], dtype=np.float32)
        else:
            original = to_unit_float(alignment.warp_to_crop(frame, matrix, size))
        x0, y0, x1, y1 = _frame_box(matrix, _mask_support(size, config.erode, config.feather), width, height)
        if x1 <= x0 or y1 <= y0:
            continue  # the face lies outside the frame
        # The same transform for the box: crop = A (p + (x0, y0)) + t.
        box_matrix = matrix.copy()
        box_matrix[:, 2] += matrix[:, :2] @ np.array([x0, y0], dtype=np.float64)
        box_size = (x1 - x0, y1 - y0)
        new = restored_at_frame_resolution(frame[y0:y1, x0:x1], crop, original, box_matrix)
        alpha = alignment.warp_to_frame(_alpha_u8(size, config.erode, config.feather, config.strength),
                                        box_matrix, box_size)
        region = out[y0:y1, x0:x1]
        region[...] = _blend_u8(region, new, alpha)
    return out


def correction(restored: np.ndarray, original: np.ndarray) -> np.ndarray:
    """What the restorer changed, in grey levels: float32 (S, S, 3), ``255 * (restored - original)``.

    Both crops float32 RGB (S, S, 3) in [0, 1].
    """
    diff = cv2.subtract(np.asarray(restored, dtype=np.float32), np.asarray(original, dtype=np.float32))
    diff *= np.float32(255.0)
    return diff


def restored_at_frame_resolution(region: np.ndarray, restored: np.ndarray, original: np.ndarray,
                                 matrix: np.ndarray) -> np.ndarray:
    """The frame ``region`` (uint8 RGB (h, w, 3)) plus the restorer's correction, uint8 (h, w, 3).

    ``matrix`` maps ``region``'s pixels to crop pixels; ``restored`` and ``original`` are the
    restored crop and the crop the restorer was given (float32 (S, S, 3) in [0, 1]). Only the
    difference between them is warped back (and resampled); the frame's own pixels are kept, so a
    face larger than the crop keeps its detail above the crop's resolution, and a face the
    restorer did not change comes back bit-identical. Outside the crop the correction is 0.
    """
    delta = alignment.warp_to_frame(correction(restored, original), matrix, region.shape[1::-1])
    return cv2.add(region, delta, dtype=cv2.CV_8U)


@functools.lru_cache(maxsize=16)
def _alpha_u8(crop_size: int, erode: float, feather: float, strength: float) -> np.ndarray:
    """``paste_mask * strength`` as uint8 alpha in [0, 255], (S, S, 3) (3 equal channels), read-only.

    Three channels so that the blend is one OpenCV call per step; 0 stays exactly 0 and 1 exactly
    255, so that the paste leaves the frame bit-identical where the mask is 0 and replaces it
    where the mask is 1.
    """
    alpha = np.rint(_cached_mask(crop_size, erode, feather, True) * (255.0 * strength)).astype(np.uint8)
    alpha = np.ascontiguousarray(np.repeat(alpha[..., None], 3, axis=2))
    alpha.setflags(write=False)
    return alpha


def _blend_u8(base: np.ndarray, new: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """round((base * (255 - alpha) + new * alpha) / 255), uint8 (H, W, 3); all three uint8 (H, W, 3).

    Exact integer arithmetic in uint16 (the sum is at most 255 * 255): ``base`` is returned
    bit-identical where ``alpha`` is 0 and ``new`` where it is 255. Five OpenCV passes, several
    times faster than the same blend in float32 with numpy temporaries.
    """
    mixed = cv2.multiply(base, cv2.bitwise_not(alpha), dtype=cv2.CV_16U)
    cv2.add(mixed, cv2.multiply(new, alpha, dtype=cv2.CV_16U), dst=mixed)
    # t / 255 is never within 1/510 of a half-integer, so float rounding here is exact.
    return cv2.convertScaleAbs(mixed, alpha=1.0 / 255.0)


def scale_matrix(matrix: np.ndarray, factor: float) -> np.ndarray:
    """The frame->crop matrix (float64 (2, 3)) for the frame resized by ``factor``.

    Uses OpenCV's resize convention (pixel centres: x' = (x + 0.5) * factor - 0.5), so that
    ``warp_to_crop(upscale_frame(frame, f), scale_matrix(m, f), S)`` sees the same face as
    ``warp_to_crop(frame, m, S)``.
    """
    if factor <= 0:
        raise ValueError(f"factor must be positive, got {factor}")
    matrix = np.asarray(matrix, dtype=np.float64)
    linear = matrix[:, :2] / factor
    out = np.empty((2, 3), dtype=np.float64)
    out[:, :2] = linear
    out[:, 2] = matrix[:, 2] + matrix[:, :2] @ np.full(2, 0.5 / factor - 0.5)
    return out


def upscale_frame(frame: np.ndarray, factor: int) -> np.ndarray:
    """The frame (uint8, or float32 values that may then overshoot) resized by the integer
    ``factor`` with bicubic interpolation.

    Bicubic rather than Lanczos: nearly as sharp on video and several times faster at 4x. A
    factor of 1 returns the frame itself.
    """
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    if factor == 1:
        return frame
    height, width = frame.shape[:2]
    return cv2.resize(frame, (width * factor, height * factor), interpolation=cv2.INTER_CUBIC)
