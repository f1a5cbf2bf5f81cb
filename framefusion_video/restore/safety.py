"""Never worse than the input: which faces to align, and which restored faces to paste.

Pure functions on arrays, used by the pipeline whatever the restorer does (with the landmark
check, ``alignment.landmark_problem``, that refuses a face before it is aligned):

- :func:`refuse`: a restored face whose change, beyond a lighting or colour repair
  (:func:`change_size`), is larger than what the input's estimated damage explains
  (:func:`estimate_damage`: noise, missing detail and darkness of the face's own pixels in the
  frame, :func:`face_region`) is refused: the original pixels stay.

Each face of a frame ends with one :data:`STATUSES`: restored, left alone by the generator's gate
(its output is its input, bit-identical), or refused by these checks.

Conventions (``DEVELOPERS.md``): crops float32 RGB (S, S, 3) in [0, 1]; landmarks float (5, 2) and
boxes (x0, y0, x1, y1) in frame pixels; masks float32 (S, S) weights; changes and damage in grey
levels (0-255).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from framefusion_video.base.pixels import to_unit_float

RESTORED = "restored"
LEFT_ALONE = "left alone"
REFUSED = "refused"
#: The outcome of each face, in the order reports list them.
STATUSES = (RESTORED, LEFT_ALONE, REFUSED)

# Immerkaer's noise-estimation kernel (the difference of two Laplacians): zero on any plane,
# so that it sees noise rather than shading.
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
# From the median |response|: the kernel's response to white noise of sigma s has sigma 6 s, and
# the median of |N(0, 1)| is 0.6745.
_NOISE_SCALE = float(1.0 / (6.0 * 0.6745))
# The restored/original gain a lighting repair may have, per channel (see change_size).
_GAIN_LIMITS = (0.25, 4.0)


@dataclass(frozen=True)
class SafetyConfig:
    """Thresholds of the refusal of restored faces.

    Attributes:
        enable: False pastes every restored face and aligns every face (the checks, the
            landmark check included, are off).
        tolerance: change (grey levels, RMS over the face, beyond a lighting repair: see
            :func:`change_size`) that a face with no visible damage may still receive. A clean
            face in a good encode is about 3 grey levels from the truth (39 dB on the quality
            clip's transcode, ``benchmarks/RESULTS.md``); an unrelated change of c costs it
            10 log10(1 + c^2 / 9) dB, so that 1.5 dB at most allows about 1.9 grey levels:
            0.5 + 2 x 0.7 for a face whose damage is estimated at 0.7.
        damage_factor: further change allowed per grey level of estimated damage.
        detail_ratio: fine detail (luma above a 1 px Gaussian) a sharp face has, as a share of its
            coarse detail (4 to 8 px); less is counted as missing detail (blur, low resolution).
            0.5 is about the 1st percentile of 244 sharp unseen studio faces (5th: 0.54).
        detail_weight: weight of the missing detail in the damage (a deblurred face changes by
            about three times the detail its input lacks).
        window_band: Gaussian sigma (input pixels) applied to a super-resolved window, reduced to
            its input's grid, and to the input before they are compared: the review judges the
            face's shape and tones, not its finest detail, where a network that removes blur and
            compression changes its input by design (``scripts/review_bands.py``). 0 compares them
            as they are.

    The defaults were chosen on the seeded 720p clip of ``benchmarks/quality_clip.py``: keep the
    clean clip's faces, keep the damaged clip's gain (sections ``quality_clip`` and
    ``quality_clip_safety_false`` of ``benchmarks/RESULTS.md``).
    """

    enable: bool = True
    tolerance: float = 0.5
    damage_factor: float = 2.0
    detail_ratio: float = 0.5
    detail_weight: float = 3.0
    window_band: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if min(self.tolerance, self.damage_factor, self.detail_ratio, self.detail_weight, self.window_band) < 0:
            problems.append("tolerance, damage_factor, detail_ratio, detail_weight and window_band must be 0 or more")
        if problems:
            raise ValueError("; ".join(problems))


# --------------------------------------------------------------------------- restored faces


def _luma(crop: np.ndarray) -> np.ndarray:
    """Grey levels (0-255), float32 (S, S), of a float32 RGB crop in [0, 1]."""
    grey = cv2.cvtColor(np.asarray(crop, dtype=np.float32), cv2.COLOR_RGB2GRAY)
    grey *= np.float32(255.0)
    return grey


def _weighted_rms(values: np.ndarray, weights: np.ndarray) -> float:
    """sqrt(sum(w * v^2)) of float (S, S) values and weights summing to 1."""
    return float(np.sqrt(max(float(np.einsum("ij,ij->", weights, values * values)), 0.0)))


def face_region(frame: np.ndarray, box: tuple[float, float, float, float],
                max_side: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """The face in ``box`` at its own resolution, and weights over it, for :func:`estimate_damage`.

    ``frame``: uint8 RGB (H, W, 3); ``box``: (x0, y0, x1, y1) frame pixels. Returns the box's
    pixels as float32 RGB (h, w, 3) in [0, 1] (reduced with area averaging, which keeps the
    balance of fine and coarse detail, when the longer side exceeds ``max_side``) and float32
    (h, w) weights summing to 1: a soft ellipse inscribed in the box. No resampling otherwise,
    so that the estimate sees the face's own detail, not an interpolation's smoothness. Empty
    boxes give (0, 0) arrays.
    """
    height, width = frame.shape[:2]
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return np.zeros((0, 0, 3), np.float32), np.zeros((0, 0), np.float32)
    region = frame[y0:y1, x0:x1]
    longest = max(x1 - x0, y1 - y0)
    if longest > max_side:
        size = (max(8, round((x1 - x0) * max_side / longest)), max(8, round((y1 - y0) * max_side / longest)))
        region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
    region = to_unit_float(region)
    return region, _ellipse_weights(region.shape[0], region.shape[1])


@functools.lru_cache(maxsize=64)
def _ellipse_weights(height: int, width: int) -> np.ndarray:
    """A soft ellipse inscribed in (height, width), float32, summing to 1 (read-only)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u = (x + 0.5) / width * 2.0 - 1.0
    v = (y + 0.5) / height * 2.0 - 1.0
    weights = np.clip(1.0 - (u * u + v * v), 0.0, None).astype(np.float32)
    weights /= max(float(weights.sum()), 1e-12)
    weights.setflags(write=False)
    return weights


def estimate_damage(region: np.ndarray, weights: np.ndarray, config: SafetyConfig = SafetyConfig(),
                    lit_luma: float | None = None) -> float:
    """How damaged a face looks, in grey levels: the root sum of squares of its noise, its missing
    fine detail (times ``config.detail_weight``) and how far its luma lies below a lit face's.

    ``region``: float32 RGB (h, w, 3) in [0, 1], the face at its own resolution
    (:func:`face_region`); ``weights``: float32 (h, w) summing to 1.

    - Noise: Immerkaer's estimate on luma, from the median response over the face (the mean takes
      skin texture and edges for noise).
    - Missing detail: how much less fine detail (luma minus a 1 px Gaussian blur) the face has
      than ``config.detail_ratio`` times its coarse detail (4 px blur minus 8 px blur): blur, low
      resolution and compression remove the first and leave the second. A natural face's balance
      of the two hardly depends on its size.
    - Darkness: how far the face's mean luma lies below ``blending``'s plausible range, in grey
      levels: a darkened face's repair is not only a gain (gamma, crushed shadows). (A bright
      mean is not counted: the box often holds a bright background.) ``lit_luma`` (in [0, 1]) is
      where that range starts for this face (``blending.scene_plausible_means``); None: the
      fixed range's.
    """
    from framefusion_video.restore.blending import PLAUSIBLE_FACE_MEANS

    if region.size == 0:
        return 0.0
    luma = _luma(region)
    weights = np.asarray(weights, dtype=np.float32)
    response = np.abs(cv2.filter2D(luma, -1, _NOISE_KERNEL))
    noise = float(np.median(response[weights > 0.5 * float(weights.max())])) * _NOISE_SCALE
    fine = _weighted_rms(luma - cv2.GaussianBlur(luma, (0, 0), 1.0), weights)
    # The coarse band (4 to 8 px) at half resolution (2 to 4 px there): the same band, a quarter
    # of the work.
    half = (max(4, luma.shape[1] // 2), max(4, luma.shape[0] // 2))
    small = cv2.resize(luma, half, interpolation=cv2.INTER_AREA)
    small_weights = cv2.resize(weights, half, interpolation=cv2.INTER_AREA)
    small_weights *= np.float32(1.0 / max(float(small_weights.sum()), 1e-12))
    coarse = _weighted_rms(cv2.GaussianBlur(small, (0, 0), 2.0) - cv2.GaussianBlur(small, (0, 0), 4.0), small_weights)
    missing = config.detail_weight * max(0.0, config.detail_ratio * coarse - fine)
    lit = PLAUSIBLE_FACE_MEANS[0, 0] if lit_luma is None else lit_luma
    darkness = max(0.0, 255.0 * lit - float(np.einsum("ij,ij->", weights, luma)))
    return float(np.sqrt(noise * noise + missing * missing + darkness * darkness))


@functools.lru_cache(maxsize=8)
def _ramps(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y across a ``height`` x ``width`` crop, float32 (height * width,) each, from -0.5 to
    0.5 (read-only)."""
    def ramp(n: int) -> np.ndarray:
        return (np.arange(n, dtype=np.float32) + np.float32(0.5)) / np.float32(n) - np.float32(0.5)

    x = np.ascontiguousarray(np.broadcast_to(ramp(width)[None, :], (height, width))).reshape(-1)
    y = np.ascontiguousarray(np.broadcast_to(ramp(height)[:, None], (height, width))).reshape(-1)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def change_size(restored: np.ndarray, original: np.ndarray, weights: np.ndarray) -> float:
    """RMS (grey levels) over the face of what the restorer changed beyond a lighting repair.

    Per RGB channel, the restored crop is fitted (weighted least squares over the face) as
    ``gain * original + offset + a * x + b * y``: a change of exposure, contrast, colour balance
    or a light falling off across the face (what lighting and colour-cast repairs do, and what the
    colour matching judges). What the fit leaves is the change of the face itself (detail, shape,
    texture). The gain is held within [1/4, 4], so that a negative or flattened face is not
    "explained". ``restored``, ``original``: float32 RGB (h, w, 3) in [0, 1]; ``weights``: float32
    (h, w) summing to 1. The sums are 1-D ``einsum`` dot products over the face's pixels (no BLAS)
    and each channel's 4x4 system is solved directly.
    """
    restored = np.asarray(restored, dtype=np.float32)
    original = np.asarray(original, dtype=np.float32)
    flat_w = np.asarray(weights, dtype=np.float32).reshape(-1)
    inside = flat_w > 0
    w = flat_w[inside]
    ramp_x, ramp_y = _ramps(*restored.shape[:2])
    x, y = ramp_x[inside], ramp_y[inside]
    wx, wy = w * x, w * y
    sw, swx, swy = float(w.sum()), float(wx.sum()), float(wy.sum())
    sxx, sxy, syy = _dot(wx, x), _dot(wx, y), _dot(wy, y)
    flat_r, flat_o = restored.reshape(-1, 3)[inside], original.reshape(-1, 3)[inside]
    total = 0.0
    for channel in range(3):
        o, r = np.ascontiguousarray(flat_o[:, channel]), np.ascontiguousarray(flat_r[:, channel])
        wo = w * o
        swo, swox, swoy = float(wo.sum()), _dot(wo, x), _dot(wo, y)
        gram = np.array([[_dot(wo, o), swo, swox, swoy],
                         [swo, sw, swx, swy],
                         [swox, swx, sxx, sxy],
                         [swoy, swy, sxy, syy]]) + 1e-9 * np.eye(4)
        rhs = np.array([_dot(wo, r), _dot(w, r), _dot(wx, r), _dot(wy, r)])
        coef = np.linalg.solve(gram, rhs)
        if not _GAIN_LIMITS[0] <= coef[0] <= _GAIN_LIMITS[1]:  # refit the rest with the gain held
            coef[0] = np.clip(coef[0], *_GAIN_LIMITS)
            coef[1:] = np.linalg.solve(gram[1:, 1:], rhs[1:] - coef[0] * gram[1:, 0])
        a, b, c, d = (np.float32(v) for v in coef)
        residual = r - (a * o + b + c * x + d * y)
        total += _dot(w * residual, residual)
    return 255.0 * float(np.sqrt(max(total, 0.0) / 3.0))


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """sum(a * b) of two float32 vectors, without BLAS."""
    return float(np.einsum("i,i->", a, b))


def coarse_band(image: np.ndarray, sigma: float) -> np.ndarray:
    """``image`` (float32 (h, w, 3)) under a Gaussian of ``sigma`` px; itself for 0."""
    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0 else image


def refuse(restored: np.ndarray, original: np.ndarray, weights: np.ndarray, damage: float,
           config: SafetyConfig = SafetyConfig()) -> bool:
    """Whether a restored crop changes its ``original`` by more than the original's ``damage``
    (grey levels, :func:`estimate_damage`) explains.

    Allowed: ``config.tolerance + config.damage_factor * damage`` grey levels of
    :func:`change_size`. ``restored``, ``original``: float32 RGB crops (S, S, 3) in [0, 1];
    ``weights``: the face mask, float32 (S, S), summing to 1.
    """
    if not config.enable:
        return False
    return change_size(restored, original, weights) > config.tolerance + config.damage_factor * damage
