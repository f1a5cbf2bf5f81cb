"""Face alignment maths: 5 landmarks -> similarity transform -> aligned crop, and back.

Pure functions on arrays. Landmark order everywhere in ffv (image coordinates, x then y):
0 eye on the image's left, 1 eye on the image's right, 2 nose tip,
3 mouth corner on the image's left, 4 mouth corner on the image's right.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# The FFHQ 5-point template (as used by GFPGAN/facexlib, in units of the crop side), zoomed by 1.2
# about the centre so that a small crop spends its pixels on the face rather than on hair and
# background. Derived, not measured: see ``_TEMPLATE_ZOOM``.
_FFHQ_5 = np.array(
    [[0.37692, 0.46864], [0.62286, 0.46913], [0.50124, 0.61332], [0.39309, 0.72541], [0.61150, 0.72490]],
    dtype=np.float64,
)
_TEMPLATE_ZOOM = 1.2
TEMPLATE_5 = (0.5 + _TEMPLATE_ZOOM * (_FFHQ_5 - 0.5)).astype(np.float32)

# Mouth width over eye distance in the template: used to place mouth corners when only the
# mouth centre is known (MediaPipe's short/full-range detector key points).
MOUTH_TO_EYE_RATIO = float(
    np.linalg.norm(TEMPLATE_5[4] - TEMPLATE_5[3]) / np.linalg.norm(TEMPLATE_5[1] - TEMPLATE_5[0])
)


def template(crop_size: int) -> np.ndarray:
    """The canonical 5 landmarks, float32 (5, 2), in pixels of a ``crop_size`` square crop."""
    return TEMPLATE_5 * np.float32(crop_size)


def five_points_from_keypoints(left_eye, right_eye, nose, mouth_centre) -> np.ndarray:
    """Five landmarks (float32 (5, 2)) from four detector key points, mouth corners estimated.

    The corners are put on either side of the mouth centre, parallel to the eye line, at the
    template's mouth-to-eye width ratio.
    """
    le, re, nose, mc = (np.asarray(p, dtype=np.float32) for p in (left_eye, right_eye, nose, mouth_centre))
    half = 0.5 * MOUTH_TO_EYE_RATIO * (re - le)
    return np.stack([le, re, nose, mc - half, mc + half]).astype(np.float32)


def estimate_alignment(landmarks: np.ndarray, crop_size: int) -> np.ndarray:
    """Similarity transform (float64 (2, 3)) mapping frame pixels to aligned-crop pixels.

    Least-squares fit (Umeyama) of rotation, uniform scale and translation from ``landmarks``
    (float (5, 2), frame coordinates) to the template at ``crop_size``. Closed form, so it is
    deterministic and never fails on a valid, non-degenerate set of points.
    """
    src = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    dst = template(crop_size).astype(np.float64)
    if src.shape != dst.shape:
        raise ValueError(f"expected {dst.shape[0]} landmarks, got {src.shape[0]}")
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var <= 1e-12:
        raise ValueError("degenerate landmarks: all points coincide")
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = (s * d).sum() / src_var
    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rot
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine transform, as float64 (2, 3)."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def warp_to_crop(frame: np.ndarray, matrix: np.ndarray, crop_size: int) -> np.ndarray:
    """The aligned crop (``crop_size`` square, frame's dtype and channels) cut from ``frame``.

    Pixels outside the frame are filled by reflection so that the generator never sees hard
    black borders it was not trained on.
    """
    return cv2.warpAffine(
        frame, np.asarray(matrix, dtype=np.float64), (crop_size, crop_size),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101,
    )


def warp_to_frame(crop: np.ndarray, matrix: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """Warp an aligned crop (or a mask) back into frame space; ``frame_size`` is (width, height).

    ``matrix`` is the frame->crop transform from :func:`estimate_alignment`. Outside the crop
    the result is 0.
    """
    return cv2.warpAffine(
        crop, np.asarray(matrix, dtype=np.float64), tuple(int(v) for v in frame_size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine transform to float points (N, 2)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ np.asarray(matrix, dtype=np.float64)[:, :2].T + np.asarray(matrix, dtype=np.float64)[:, 2]


# --------------------------------------------------------------------------- landmark check


@dataclass(frozen=True)
class LandmarkLimits:
    """What five landmarks must look like to align a face on them (:func:`landmark_problem`).

    Attributes:
        max_fit_error: RMS distance of the landmarks from the alignment template after the best
            similarity fit, as a share of the template's eye-to-mouth distance; more is not a face's
            geometry (a point far off, eyes below the mouth). The template itself fits to 0; a
            head turned so far that the far eye and mouth corner move in by a fifth of the box
            side fits to 0.32, by an eighth to 0.18: 0.3 keeps heads turned that far or less.
        eyes_to_box: (low, high) of the eye distance over the box side. Below the low end (a
            profile), the similarity transform would scale the crop to cover several times the
            face, so the face is left alone.
        box_margin: landmarks may lie this share of the box side outside the box.
    """

    max_fit_error: float = 0.3
    eyes_to_box: tuple[float, float] = (0.15, 0.8)
    box_margin: float = 0.25

    def __post_init__(self) -> None:
        problems = []
        if self.max_fit_error <= 0:
            problems.append(f"max_fit_error must be positive, got {self.max_fit_error}")
        low, high = self.eyes_to_box
        if not 0 <= low < high:
            problems.append(f"eyes_to_box must be (low, high) with 0 <= low < high, got {self.eyes_to_box}")
        if self.box_margin < 0:
            problems.append(f"box_margin must be 0 or more, got {self.box_margin}")
        if problems:
            raise ValueError("; ".join(problems))


def landmark_problem(landmarks: np.ndarray, box: tuple[float, float, float, float],
                     limits: LandmarkLimits = LandmarkLimits()) -> str | None:
    """Why ``landmarks`` (float (5, 2), ffv order) should not align the face in ``box``, or None.

    Landmarks that do not fit their detection box (a face size, place or eye-mouth geometry unlike
    the box's) would align a crop covering something else than the face. Three checks, each
    against what any face, frontal or turned, looks like: every point lies in the box (with
    ``limits.box_margin``); the eye distance is a plausible share of the box side
    (``limits.eyes_to_box``); and the five points are a face's shape: after the best similarity
    fit to the alignment template they are within ``limits.max_fit_error`` eye-to-mouth distances
    of it (RMS).
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    x0, y0, x1, y1 = (float(v) for v in box)
    side = float(np.sqrt(max(x1 - x0, 0.0) * max(y1 - y0, 0.0)))
    if points.shape != (5, 2) or not np.all(np.isfinite(points)) or side <= 0.0:
        return "no usable landmarks or box"
    margin = limits.box_margin * side
    if np.any(points[:, 0] < x0 - margin) or np.any(points[:, 0] > x1 + margin) \
            or np.any(points[:, 1] < y0 - margin) or np.any(points[:, 1] > y1 + margin):
        return "a landmark lies outside the face box"
    eyes = float(np.linalg.norm(points[1] - points[0]))
    low, high = limits.eyes_to_box
    if not low * side <= eyes <= high * side:
        return f"eye distance {eyes:.0f} px does not fit a {side:.0f} px face box"
    if fit_error(points) > limits.max_fit_error:
        return "the landmarks do not have a face's shape"
    return None


def fit_error(landmarks: np.ndarray) -> float:
    """RMS distance of ``landmarks`` (float (5, 2)) from the template after the best similarity
    fit, in template eye-to-mouth distances (0 for a perfect fit; inf for coincident points)."""
    size = 128
    try:
        matrix = estimate_alignment(landmarks, size)
    except ValueError:
        return float("inf")
    tpl = template(size).astype(np.float64)
    moved = transform_points(landmarks, matrix)
    eye_mouth = float(np.linalg.norm(0.5 * (tpl[3] + tpl[4]) - 0.5 * (tpl[0] + tpl[1])))
    return float(np.sqrt(((moved - tpl) ** 2).sum(1).mean()) / eye_mouth)
