"""Synthetic damage for training and evaluation: the defects real footage has, as pure functions.

Images are float32 RGB in [0, 1], shape (H, W, 3). Every function returns a new image of the same
shape, dtype and range, and is deterministic for a given ``rng: np.random.Generator`` (the only
source of randomness; nothing here touches global random state).

Three layers:

- primitives (``gaussian_blur``, ``jpeg``, ``occlude``...) take explicit parameters;
- ``sample_params(rng, config, kind)`` draws a :class:`DegradationParams` value describing which
  degradations to apply and how, and ``apply_degradation(img, params, rng)`` applies it; a video
  samples once per clip and applies the same parameters to every frame (only the noise is fresh),
  so the damage does not flicker;
- ``degrade`` (the mixed training pipeline) and ``degrade_kind`` (one named category, for
  evaluation) combine the two. ``degrade_files.degrade_path`` writes damaged copies of files with them
  (``ffv degrade``).

The mixed pipeline follows GFPGAN / Real-ESRGAN (scene → blur → downscale → noise → compression →
upscale back): noise and compression happen at the low resolution, as in a camera that records
small, so their artefacts are enlarged with the face. Sizes in pixels (blur sigma, motion length,
shift) are given for a ``reference_size``-pixel image (GFPGAN's 512) and scaled to the image at
hand, so the same configuration gives the same look on a 128-pixel crop and on a 512-pixel one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from framefusion_video.base.pixels import to_uint8
from framefusion_video.data.kinds import KINDS

_INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # BT.601, as JPEG and MPEG use
# A few skin tones (RGB, [0, 1]) from light to dark, for hand-like occluders.
_SKIN_TONES = np.array(
    [[0.95, 0.80, 0.70], [0.87, 0.68, 0.55], [0.78, 0.57, 0.44], [0.62, 0.43, 0.31], [0.42, 0.28, 0.20]],
    dtype=np.float32,
)


# --------------------------------------------------------------------------------------------------
# Configuration and parameters
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DegradationConfig:
    """Ranges and probabilities of the synthetic damage; ranges are (low, high), inclusive.

    Reference values: GFPGAN samples blur sigma 0.1–10, downscale ×0.8–8, noise 0–20/255 and
    JPEG quality 60–100 uniformly; Real-ESRGAN adds anisotropic kernels, Poisson noise and grey
    noise. We use the same ranges (JPEG down to 30, as web video is worse than web photos); blur
    sigma is drawn uniformly as in GFPGAN, but downscale factor and motion length log-uniformly,
    so heavy damage stays possible without being the typical case (median ×2.8 rather than ×4.5),
    and the typical training pair remains a realistic one.

    Pixel sizes (``blur_sigma``, ``motion_length``, ``shift_px``) are for a ``reference_size``
    square image and are scaled by ``min(H, W) / reference_size``; ``None`` uses them as given.
    Probabilities are those of the mixed pipeline; a named kind (``degrade_kind``) always applies
    its own stage and nothing else.
    """

    reference_size: int | None = 512
    # Blur: probability, then the share of each kernel type among blurred images.
    blur_prob: float = 0.7
    blur_sigma: tuple[float, float] = (0.2, 10.0)
    anisotropic_share: float = 0.35
    motion_share: float = 0.15
    motion_length: tuple[float, float] = (4.0, 40.0)
    # Downscale by a factor, then back up to the original size.
    downscale_prob: float = 0.6
    downscale_factor: tuple[float, float] = (1.0, 8.0)
    down_interpolations: tuple[str, ...] = ("area", "linear", "cubic")
    up_interpolations: tuple[str, ...] = ("linear", "cubic")
    # Noise: gaussian std (in [0, 1] units) or Poisson shot noise (photon count at white).
    noise_prob: float = 0.6
    noise_sigma: tuple[float, float] = (0.0, 20.0 / 255.0)
    poisson_share: float = 0.4
    poisson_peak: tuple[float, float] = (80.0, 2000.0)
    grey_noise_prob: float = 0.4
    # Compression: JPEG, or a video-like codec (4:2:0 chroma + flat-quantised 8x8 DCT) at a QP.
    compression_prob: float = 0.8
    jpeg_quality: tuple[int, int] = (30, 95)
    video_share: float = 0.3
    video_qp: tuple[int, int] = (22, 40)
    # Scene: hands and objects in front of the face, or missing regions to inpaint.
    occlusion_prob: float = 0.1
    occlusion_area: tuple[float, float] = (0.03, 0.2)
    # Lighting: at least one of gamma, colour cast, uneven lighting, low light.
    lighting_prob: float = 0.3
    gamma: tuple[float, float] = (0.6, 1.6)
    colour_cast: float = 0.15
    uneven_strength: tuple[float, float] = (0.1, 0.6)
    vignette: tuple[float, float] = (0.0, 0.5)
    low_light_prob: float = 0.25
    low_light_brightness: tuple[float, float] = (0.25, 0.6)
    low_light_noise: tuple[float, float] = (2.0 / 255.0, 10.0 / 255.0)
    # Misalignment: the detector's jitter, as a sub-pixel affine.
    shift_prob: float = 0.3
    shift_px: float = 6.0
    shift_degrees: float = 2.0
    shift_scale: float = 0.02


@dataclass(frozen=True)
class BlurParams:
    """``kind`` "gaussian" (sigma_x), "anisotropic" (sigma_x, sigma_y, theta radians) or "motion"
    (length pixels, angle degrees); pixel sizes at the reference size."""

    kind: str
    sigma_x: float = 0.0
    sigma_y: float = 0.0
    theta: float = 0.0
    length: float = 0.0
    angle: float = 0.0


@dataclass(frozen=True)
class ResizeParams:
    """Downscale by ``factor`` (≥ 1) with ``down``, then back to full size with ``up``."""

    factor: float
    down: str = "area"
    up: str = "cubic"


@dataclass(frozen=True)
class NoiseParams:
    """``kind`` "gaussian" (std ``sigma`` in [0, 1] units) or "poisson" (``peak`` photons at white)."""

    kind: str
    sigma: float = 0.0
    peak: float = 0.0
    grey: bool = False


@dataclass(frozen=True)
class CompressionParams:
    """``kind`` "jpeg" (``quality`` 1–100) or "video" (``qp``, H.264's quantiser scale)."""

    kind: str
    quality: int = 75
    qp: int = 30


@dataclass(frozen=True)
class LightingParams:
    """Gamma, per-channel colour gains, a darkening gradient + vignette, and low light."""

    gamma: float = 1.0
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)
    gradient_angle: float = 0.0
    gradient_strength: float = 0.0
    vignette: float = 0.0
    brightness: float = 1.0
    low_light_noise: float = 0.0


@dataclass(frozen=True)
class OcclusionParams:
    """An occluder in relative coordinates, so one value fits every frame of a clip.

    ``polygons``: vertices (x / W, y / H). ``ellipses``: (cx / W, cy / H, semi-axis a / min(H, W),
    semi-axis b / min(H, W), angle degrees). ``fill``: "flat" (``colour``), "black", "noise"
    (uniform noise) or "skin" (``colour`` with soft edges and shading, for hands).
    """

    shape: str
    fill: str
    colour: tuple[float, float, float] = (0.0, 0.0, 0.0)
    polygons: tuple[tuple[tuple[float, float], ...], ...] = ()
    ellipses: tuple[tuple[float, float, float, float, float], ...] = ()


@dataclass(frozen=True)
class ShiftParams:
    """Sub-pixel similarity: translation (pixels at the reference size), rotation, scale."""

    dx: float = 0.0
    dy: float = 0.0
    degrees: float = 0.0
    scale: float = 1.0


@dataclass(frozen=True)
class DegradationParams:
    """Which degradations to apply and how; ``None`` skips a stage. Stages run in field order,
    except that noise and compression happen at the reduced size when ``resize`` is set."""

    shift: ShiftParams | None = None
    occlusion: OcclusionParams | None = None
    lighting: LightingParams | None = None
    blur: BlurParams | None = None
    resize: ResizeParams | None = None
    noise: NoiseParams | None = None
    compression: CompressionParams | None = None
    reference_size: int | None = 512


# --------------------------------------------------------------------------------------------------
# Primitives
# --------------------------------------------------------------------------------------------------


def _check(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.float32 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(
            f"expected a float32 (H, W, 3) image, got {getattr(img, 'dtype', type(img))} "
            f"{getattr(img, 'shape', '')}"
        )


def _finish(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0.0, 1.0).astype(np.float32, copy=False)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Isotropic gaussian blur with std ``sigma`` pixels (reflected borders)."""
    _check(img)
    if sigma <= 0:
        return img.copy()
    k = 2 * max(1, math.ceil(3.0 * sigma)) + 1  # ±3 sigma, and never the 1-tap no-op
    return _finish(cv2.GaussianBlur(img, (k, k), float(sigma), borderType=cv2.BORDER_REFLECT_101))


def anisotropic_gaussian_kernel(sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """Normalised float32 (k, k) gaussian kernel with stds ``sigma_x``/``sigma_y`` pixels along
    axes rotated by ``theta`` radians; k = 2·ceil(3·max sigma) + 1 (Real-ESRGAN's kernel)."""
    sx, sy = max(float(sigma_x), 1e-3), max(float(sigma_y), 1e-3)
    radius = max(1, math.ceil(3.0 * max(sx, sy)))
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    inv_cov = np.linalg.inv(rot @ np.diag([sx * sx, sy * sy]) @ rot.T)
    ax = np.arange(-radius, radius + 1, dtype=np.float64)
    xy = np.stack(np.meshgrid(ax, ax), axis=-1)  # (k, k, 2), x then y
    kernel = np.exp(-0.5 * np.einsum("...i,ij,...j->...", xy, inv_cov, xy))
    return (kernel / kernel.sum()).astype(np.float32)


def motion_blur_kernel(length: float, angle: float) -> np.ndarray:
    """Normalised float32 (k, k) kernel of a straight, centred stroke ``length`` pixels long at
    ``angle`` degrees (counter-clockwise from the x axis), drawn with sub-pixel (bilinear) splats."""
    length = max(float(length), 1.0)
    radius = math.ceil(length / 2.0) + 1
    size = 2 * radius + 1
    t = np.linspace(-length / 2.0, length / 2.0, max(2, math.ceil(4 * length)))
    a = math.radians(angle)
    xs, ys = radius + t * math.cos(a), radius - t * math.sin(a)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    kernel = np.zeros((size, size), dtype=np.float64)
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(kernel, (np.clip(y0 + dy, 0, size - 1), np.clip(x0 + dx, 0, size - 1)), w)
    return (kernel / kernel.sum()).astype(np.float32)


def apply_kernel(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel with a normalised 2-D ``kernel`` (reflected borders)."""
    _check(img)
    return _finish(cv2.filter2D(img, -1, np.asarray(kernel, np.float32), borderType=cv2.BORDER_REFLECT_101))


def _resize_to(img: np.ndarray, size_wh: tuple[int, int], interpolation: str) -> np.ndarray:
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; use one of {sorted(_INTERPOLATIONS)}")
    if (img.shape[1], img.shape[0]) == tuple(size_wh):
        return img
    return cv2.resize(img, size_wh, interpolation=_INTERPOLATIONS[interpolation])


def _low_size(shape: tuple[int, ...], factor: float) -> tuple[int, int]:
    h, w = shape[:2]
    return max(1, round(w / factor)), max(1, round(h / factor))


def downscale(img: np.ndarray, factor: float, down: str = "area", up: str = "cubic") -> np.ndarray:
    """Shrink by ``factor`` (≥ 1) with interpolation ``down``, then back to full size with ``up``
    ("nearest", "linear", "cubic" or "area"): the look of footage recorded or streamed small."""
    _check(img)
    if factor <= 1.0:
        return img.copy()
    small = _resize_to(img, _low_size(img.shape, factor), down)
    return _finish(_resize_to(small, (img.shape[1], img.shape[0]), up))


def gaussian_noise(img: np.ndarray, rng: np.random.Generator, sigma: float, grey: bool = False) -> np.ndarray:
    """Add zero-mean gaussian noise of std ``sigma`` ([0, 1] units); ``grey`` uses one noise field
    for all three channels (luminance noise) instead of one per channel (colour noise)."""
    _check(img)
    shape = img.shape[:2] + ((1,) if grey else (3,))
    return _finish(img + np.float32(sigma) * rng.standard_normal(shape, dtype=np.float32))


def poisson_noise(img: np.ndarray, rng: np.random.Generator, peak: float, grey: bool = False) -> np.ndarray:
    """Shot noise: counts ~ Poisson(intensity · ``peak``) / ``peak``; fewer photons (smaller
    ``peak``) means more noise, and more in the highlights than in the shadows. ``grey`` draws the
    noise on the luminance and adds it to every channel."""
    _check(img)
    peak = max(float(peak), 1e-3)
    base = (img @ _LUMA)[..., None] if grey else img
    noise = rng.poisson(np.clip(base, 0, 1).astype(np.float64) * peak) / peak - base
    return _finish(img + noise.astype(np.float32))


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip through OpenCV at ``quality`` (1–100; 4:2:0 chroma, libjpeg's default)."""
    _check(img)
    bgr = cv2.cvtColor(to_uint8(img), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(np.clip(quality, 1, 100))])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out.astype(np.float32) / np.float32(255.0)


def _dct_matrix(n: int = 8) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.astype(np.float32)


_DCT8 = _dct_matrix(8)
# Mild frequency weighting (1 at DC to 2 at the highest frequency), between H.264's flat default
# scaling and MPEG's steep intra matrices.
_FREQ_WEIGHT = (1.0 + np.add.outer(np.arange(8), np.arange(8)) / 14.0).astype(np.float32)


def _quantise_blocks(plane: np.ndarray, step: float) -> np.ndarray:
    """8x8 orthonormal DCT, dead-zone quantisation (H.264's intra rounding 1/3), inverse DCT."""
    h, w = plane.shape
    ph, pw = -h % 8, -w % 8
    padded = np.pad(plane, ((0, ph), (0, pw)), mode="edge")
    blocks = padded.reshape(padded.shape[0] // 8, 8, padded.shape[1] // 8, 8).transpose(0, 2, 1, 3)
    coef = _DCT8 @ blocks @ _DCT8.T
    q = np.float32(step) * _FREQ_WEIGHT
    coef = np.sign(coef) * np.floor(np.abs(coef) / q + np.float32(1.0 / 3.0)) * q
    rec = (_DCT8.T @ coef @ _DCT8).transpose(0, 2, 1, 3).reshape(padded.shape)
    return rec[:h, :w]


def video_compression(img: np.ndarray, qp: int) -> np.ndarray:
    """Intra-frame video-codec artefacts: BT.601 YCbCr, 4:2:0 chroma subsampling, 8x8 DCT blocks
    quantised with H.264's step for ``qp`` (0.625·2^(qp/6) on the 0–255 scale; ~22 good, ~40 bad)
    and no deblocking filter: the blocks and colour bleeding of old (MPEG-4 Part 2) and
    low-bitrate footage."""
    _check(img)
    h, w = img.shape[:2]
    rgb = img * np.float32(255.0)
    y = rgb @ _LUMA
    cb = 128.0 + (-0.168736 * rgb[..., 0] - 0.331264 * rgb[..., 1] + 0.5 * rgb[..., 2])
    cr = 128.0 + (0.5 * rgb[..., 0] - 0.418688 * rgb[..., 1] - 0.081312 * rgb[..., 2])
    step = 0.625 * 2.0 ** (float(qp) / 6.0)
    y = _quantise_blocks(y, step)
    chroma_size = (max(1, (w + 1) // 2), max(1, (h + 1) // 2))
    planes = []
    for c in (cb, cr):
        small = cv2.resize(c.astype(np.float32), chroma_size, interpolation=cv2.INTER_AREA)
        small = _quantise_blocks(small, step)
        planes.append(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) - 128.0)
    cb, cr = planes
    out = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], axis=-1)
    return _finish(out.astype(np.float32) / np.float32(255.0))


def occlusion_mask(shape_hw: tuple[int, int], occ: OcclusionParams) -> np.ndarray:
    """The occluder's hard mask, bool (H, W), True where it covers the image."""
    h, w = int(shape_hw[0]), int(shape_hw[1])
    side = min(h, w)
    mask = np.zeros((h, w), dtype=np.uint8)
    for poly in occ.polygons:
        pts = np.round(np.asarray(poly, dtype=np.float64) * [w, h] * 16).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_8, shift=4)
    for cx, cy, a, b, angle in occ.ellipses:
        centre = (int(round(cx * w * 16)), int(round(cy * h * 16)))
        axes = (max(1, int(round(a * side * 16))), max(1, int(round(b * side * 16))))
        cv2.ellipse(mask, centre, axes, float(angle), 0, 360, 255, -1, cv2.LINE_8, 4)
    return mask > 0


def occlude(img: np.ndarray, occ: OcclusionParams, rng: np.random.Generator) -> np.ndarray:
    """Cover the region of ``occ`` with its fill; pixels away from it are unchanged. "skin" (hands)
    has a soft edge (2 pixels) and a gentle shading so it reads as an object, not a hole."""
    _check(img)
    h, w = img.shape[:2]
    mask = occlusion_mask((h, w), occ).astype(np.float32)
    colour = np.asarray(occ.colour, dtype=np.float32)
    if occ.fill == "black":
        fill = np.zeros_like(img)
    elif occ.fill == "noise":
        fill = rng.random(img.shape, dtype=np.float32)
    elif occ.fill == "flat":
        fill = np.broadcast_to(colour, img.shape)
    elif occ.fill == "skin":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy = (occ.ellipses[0][0] * w, occ.ellipses[0][1] * h) if occ.ellipses else (w / 2, h / 2)
        dist = np.hypot(xx - cx, yy - cy) / max(h, w)
        fill = colour * (1.0 - 0.35 * np.clip(dist, 0, 1))[..., None]
        mask = cv2.GaussianBlur(mask, (5, 5), 1.0, borderType=cv2.BORDER_REFLECT_101)
    else:
        raise ValueError(f"unknown occlusion fill {occ.fill!r}")
    return _finish(img * (1.0 - mask[..., None]) + fill * mask[..., None])


def adjust_gamma(img: np.ndarray, gamma: float) -> np.ndarray:
    """``img ** gamma``: > 1 darkens the mid-tones, < 1 brightens them (a wrong camera curve)."""
    _check(img)
    return _finish(np.power(np.clip(img, 0, 1), np.float32(gamma)))


def colour_cast(img: np.ndarray, gains: tuple[float, float, float]) -> np.ndarray:
    """Multiply R, G, B by ``gains`` (a wrong white balance)."""
    _check(img)
    return _finish(img * np.asarray(gains, dtype=np.float32))


def uneven_lighting(img: np.ndarray, angle: float, strength: float, vignette: float = 0.0) -> np.ndarray:
    """Darken along a smooth linear gradient (``strength`` 0–1 at the far side, towards ``angle``
    degrees) and towards the corners (``vignette`` 0–1): side light and cheap lenses. Never brightens."""
    _check(img)
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (2 * xx - (w - 1)) / max(w - 1, 1)
    v = (2 * yy - (h - 1)) / max(h - 1, 1)
    a = math.radians(angle)
    along = (u * math.cos(a) - v * math.sin(a)) / math.sqrt(2.0)  # [-1, 1]
    gain = (1.0 - strength * 0.5 * (along + 1.0)) * (1.0 - vignette * 0.5 * (u * u + v * v))
    return _finish(img * np.clip(gain, 0, 1)[..., None])


def low_light(img: np.ndarray, rng: np.random.Generator, brightness: float, gamma: float = 1.0,
              noise_sigma: float = 0.0) -> np.ndarray:
    """A dark scene: scale by ``brightness`` (< 1), apply ``gamma``, then add the sensor's
    gaussian noise ``noise_sigma`` (luminance), which is large relative to the dim signal."""
    _check(img)
    out = np.power(np.clip(img * np.float32(brightness), 0, 1), np.float32(gamma))
    if noise_sigma > 0:
        out = out + np.float32(noise_sigma) * rng.standard_normal(img.shape[:2] + (1,), dtype=np.float32)
    return _finish(out)


def shift(img: np.ndarray, dx: float, dy: float, degrees: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """Sub-pixel similarity transform about the centre (translation in pixels): the few-pixel
    misalignment of a jittery face detector. Borders are reflected, as in ``alignment``."""
    _check(img)
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(degrees), float(scale))
    m[:, 2] += (dx, dy)
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return _finish(out)


# --------------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------------


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    lo, hi = float(lo), float(hi)
    if lo <= 0:
        return float(rng.uniform(lo, hi))
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _sample_blur(rng: np.random.Generator, c: DegradationConfig, kind: str) -> BlurParams:
    if kind == "motion":
        return BlurParams("motion", length=_log_uniform(rng, *c.motion_length), angle=float(rng.uniform(0, 180)))
    if kind == "anisotropic":
        return BlurParams("anisotropic", sigma_x=float(rng.uniform(*c.blur_sigma)),
                          sigma_y=float(rng.uniform(*c.blur_sigma)), theta=float(rng.uniform(0, math.pi)))
    return BlurParams("gaussian", sigma_x=float(rng.uniform(*c.blur_sigma)))


def _sample_noise(rng: np.random.Generator, c: DegradationConfig) -> NoiseParams:
    grey = bool(rng.random() < c.grey_noise_prob)
    if rng.random() < c.poisson_share:
        return NoiseParams("poisson", peak=_log_uniform(rng, *c.poisson_peak), grey=grey)
    return NoiseParams("gaussian", sigma=float(rng.uniform(*c.noise_sigma)), grey=grey)


def _sample_compression(rng: np.random.Generator, c: DegradationConfig) -> CompressionParams:
    if rng.random() < c.video_share:
        return CompressionParams("video", qp=int(rng.integers(c.video_qp[0], c.video_qp[1] + 1)))
    return CompressionParams("jpeg", quality=int(rng.integers(c.jpeg_quality[0], c.jpeg_quality[1] + 1)))


def _sample_lighting(rng: np.random.Generator, c: DegradationConfig) -> LightingParams:
    use = rng.random(4) < (0.5, 0.4, 0.4, c.low_light_prob)
    if not use.any():
        use[int(rng.integers(4))] = True
    values: dict = {}
    if use[0]:
        values["gamma"] = _log_uniform(rng, *c.gamma)
    if use[1]:
        values["gains"] = tuple(float(g) for g in 1.0 + rng.uniform(-c.colour_cast, c.colour_cast, 3))
    if use[2]:
        values.update(gradient_angle=float(rng.uniform(0, 360)),
                      gradient_strength=float(rng.uniform(*c.uneven_strength)),
                      vignette=float(rng.uniform(*c.vignette)))
    if use[3]:
        values.update(brightness=float(rng.uniform(*c.low_light_brightness)),
                      low_light_noise=float(rng.uniform(*c.low_light_noise)))
    return LightingParams(**values)


def _sample_occlusion(rng: np.random.Generator, c: DegradationConfig) -> OcclusionParams:
    area = float(rng.uniform(*c.occlusion_area))
    shape = ("polygon", "bar", "hand")[int(rng.choice(3, p=(0.35, 0.25, 0.4)))]
    if shape == "hand":
        # A palm ellipse with four fingers fanned out from one side and a thumb: skin over the face.
        r = math.sqrt(area / math.pi) * 0.75
        cx, cy = rng.uniform(0.15, 0.85, 2)
        phi = float(rng.uniform(0, 2 * math.pi))
        palm = (float(cx), float(cy), r, r * 0.8, math.degrees(phi))
        fingers = []
        for k, spread in enumerate(np.linspace(-0.5, 0.5, 4)):
            a = phi + spread + rng.normal(0, 0.05)
            flen = r * (0.8 + 0.15 * (1 - abs(k - 1.5) / 1.5))
            fx, fy = cx + (r + flen * 0.8) * math.cos(a), cy + (r + flen * 0.8) * math.sin(a)
            fingers.append((float(fx), float(fy), flen, r * 0.2, math.degrees(a)))
        a = phi + rng.choice([-1, 1]) * 1.4
        fingers.append((float(cx + 1.2 * r * math.cos(a)), float(cy + 1.2 * r * math.sin(a)), r * 0.6, r * 0.22,
                        math.degrees(a)))
        tone = _SKIN_TONES[int(rng.integers(len(_SKIN_TONES)))] * rng.uniform(0.9, 1.1, 3)
        return OcclusionParams("hand", "skin", tuple(float(v) for v in np.clip(tone, 0, 1)),
                               ellipses=(palm, *fingers))
    fill = ("flat", "noise", "black")[int(rng.choice(3, p=(0.45, 0.25, 0.3)))]
    colour = tuple(float(v) for v in rng.random(3))
    if shape == "bar":
        # A band across the image (scarf, microphone, caption bar), ``area`` of it thick.
        angle = float(rng.uniform(0, math.pi))
        cx, cy = rng.uniform(0.2, 0.8, 2)
        half_len, half_thick = 1.0, area / 2.0
        d = np.array([math.cos(angle), math.sin(angle)])
        n = np.array([-d[1], d[0]])
        centre = np.array([cx, cy])
        corners = [centre + sl * half_len * d + st * half_thick * n for sl, st in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
        return OcclusionParams("bar", fill, colour, polygons=(tuple((float(x), float(y)) for x, y in corners),))
    n_vertices = int(rng.integers(3, 9))
    angles = np.sort(rng.uniform(0, 2 * math.pi, n_vertices))
    r = math.sqrt(area / math.pi) * rng.uniform(0.7, 1.3, n_vertices)
    cx, cy = rng.uniform(0.2, 0.8, 2)
    poly = tuple((float(cx + ri * math.cos(a)), float(cy + ri * math.sin(a))) for ri, a in zip(r, angles))
    return OcclusionParams("polygon", fill, colour, polygons=(poly,))


def _sample_resize(rng: np.random.Generator, c: DegradationConfig) -> ResizeParams:
    return ResizeParams(
        factor=_log_uniform(rng, *c.downscale_factor),
        down=str(rng.choice(c.down_interpolations)),
        up=str(rng.choice(c.up_interpolations)),
    )


def sample_params(rng: np.random.Generator, config: DegradationConfig = DegradationConfig(),
                  kind: str = "mixed") -> DegradationParams:
    """Draw the degradations for one image (or one whole clip) from ``config``.

    ``kind`` "mixed" is the training pipeline: each stage with its probability, and at least one
    of blur/downscale/noise/compression, so no sample is left clean. Any other name in ``KINDS``
    applies only that category (always).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown degradation kind {kind!r}; use one of {', '.join(KINDS)}")
    c = config
    if kind != "mixed":
        values: dict = {}
        if kind == "blur":
            values["blur"] = _sample_blur(rng, c, "anisotropic" if rng.random() < c.anisotropic_share else "gaussian")
        elif kind == "motion_blur":
            values["blur"] = _sample_blur(rng, c, "motion")
        elif kind == "noise":
            values["noise"] = _sample_noise(rng, c)
        elif kind == "jpeg":
            values["compression"] = _sample_compression(rng, c)
        elif kind == "lowres":
            values["resize"] = _sample_resize(rng, c)
        elif kind == "occlusion":
            values["occlusion"] = _sample_occlusion(rng, c)
        elif kind == "lighting":
            values["lighting"] = _sample_lighting(rng, c)
        return DegradationParams(reference_size=c.reference_size, **values)

    use = rng.random(7) < (c.shift_prob, c.occlusion_prob, c.lighting_prob, c.blur_prob, c.downscale_prob,
                           c.noise_prob, c.compression_prob)
    if not use[3:7].any():
        use[6] = True  # compression is the damage nearly every real clip has
    blur = None
    if use[3]:
        u = rng.random()
        blur_kind = "motion" if u < c.motion_share else "anisotropic" if u < c.motion_share + c.anisotropic_share \
            else "gaussian"
        blur = _sample_blur(rng, c, blur_kind)
    shift_p = None
    if use[0]:
        dx, dy = rng.uniform(-c.shift_px, c.shift_px, 2)
        shift_p = ShiftParams(float(dx), float(dy), float(rng.uniform(-c.shift_degrees, c.shift_degrees)),
                              float(1.0 + rng.uniform(-c.shift_scale, c.shift_scale)))
    return DegradationParams(
        shift=shift_p,
        occlusion=_sample_occlusion(rng, c) if use[1] else None,
        lighting=_sample_lighting(rng, c) if use[2] else None,
        blur=blur,
        resize=_sample_resize(rng, c) if use[4] else None,
        noise=_sample_noise(rng, c) if use[5] else None,
        compression=_sample_compression(rng, c) if use[6] else None,
        reference_size=c.reference_size,
    )


# --------------------------------------------------------------------------------------------------
# Application
# --------------------------------------------------------------------------------------------------


def _apply_lighting(img: np.ndarray, p: LightingParams, rng: np.random.Generator) -> np.ndarray:
    out = img
    if p.gamma != 1.0:
        out = adjust_gamma(out, p.gamma)
    if tuple(p.gains) != (1.0, 1.0, 1.0):
        out = colour_cast(out, p.gains)
    if p.gradient_strength > 0 or p.vignette > 0:
        out = uneven_lighting(out, p.gradient_angle, p.gradient_strength, p.vignette)
    if p.brightness < 1.0 or p.low_light_noise > 0:
        out = low_light(out, rng, p.brightness, 1.0, p.low_light_noise)
    return out


def _apply_blur(img: np.ndarray, p: BlurParams, scale: float) -> np.ndarray:
    if p.kind == "gaussian":
        return gaussian_blur(img, p.sigma_x * scale)
    if p.kind == "anisotropic":
        return apply_kernel(img, anisotropic_gaussian_kernel(p.sigma_x * scale, p.sigma_y * scale, p.theta))
    if p.kind == "motion":
        return apply_kernel(img, motion_blur_kernel(p.length * scale, p.angle))
    raise ValueError(f"unknown blur kind {p.kind!r}")


def _apply_noise(img: np.ndarray, p: NoiseParams, rng: np.random.Generator) -> np.ndarray:
    if p.kind == "gaussian":
        return gaussian_noise(img, rng, p.sigma, p.grey)
    if p.kind == "poisson":
        return poisson_noise(img, rng, p.peak, p.grey)
    raise ValueError(f"unknown noise kind {p.kind!r}")


def _apply_compression(img: np.ndarray, p: CompressionParams) -> np.ndarray:
    if p.kind == "jpeg":
        return jpeg(img, p.quality)
    if p.kind == "video":
        return video_compression(img, p.qp)
    raise ValueError(f"unknown compression kind {p.kind!r}")


def apply_degradation(img: np.ndarray, params: DegradationParams, rng: np.random.Generator) -> np.ndarray:
    """Apply ``params`` to a float32 RGB [0, 1] (H, W, 3) image; ``rng`` draws only the noise.

    Order: shift → occlusion → lighting → blur → downscale → noise → compression → upscale.
    """
    _check(img)
    h, w = img.shape[:2]
    scale = 1.0 if params.reference_size is None else min(h, w) / float(params.reference_size)
    out = img.copy()
    if params.shift is not None:
        s = params.shift
        out = shift(out, s.dx * scale, s.dy * scale, s.degrees, s.scale)
    if params.occlusion is not None:
        out = occlude(out, params.occlusion, rng)
    if params.lighting is not None:
        out = _apply_lighting(out, params.lighting, rng)
    if params.blur is not None:
        out = _apply_blur(out, params.blur, scale)
    resize = params.resize if params.resize is not None and params.resize.factor > 1.0 else None
    if resize is not None:
        out = _resize_to(out, _low_size(out.shape, resize.factor), resize.down)
    if params.noise is not None:
        out = _apply_noise(out, params.noise, rng)
    if params.compression is not None:
        out = _apply_compression(out, params.compression)
    if resize is not None:
        out = _finish(_resize_to(out, (w, h), resize.up))
    return _finish(out)


def degrade(img: np.ndarray, rng: np.random.Generator, config: DegradationConfig = DegradationConfig()) -> np.ndarray:
    """The mixed training degradation of one float32 RGB [0, 1] (H, W, 3) image."""
    return apply_degradation(img, sample_params(rng, config, "mixed"), rng)


def degrade_kind(img: np.ndarray, kind: str, rng: np.random.Generator,
                 config: DegradationConfig = DegradationConfig()) -> np.ndarray:
    """Only the damage of category ``kind`` (one of ``KINDS``; "mixed" is :func:`degrade`)."""
    return apply_degradation(img, sample_params(rng, config, kind), rng)


def training_damage(img: np.ndarray, rng: np.random.Generator,
                    config: DegradationConfig = DegradationConfig(), single_prob: float = 0.5,
                    clean_prob: float = 0.0) -> tuple[str, np.ndarray]:
    """(category, damaged copy) of one training sample: "clean" (the image unchanged) with
    probability ``clean_prob``, one kind of ``KINDS`` alone with probability ``single_prob``, else
    "mixed" (the mixed pipeline).

    Footage is often damaged in one main way (only compression, only blur), or hardly at all;
    training on the mixture alone would teach the model that every input is heavily damaged, and
    clean pairs teach it to leave good faces alone.
    """
    if not (0.0 <= clean_prob and 0.0 <= single_prob and clean_prob + single_prob <= 1.0):
        raise ValueError(f"need 0 <= clean_prob, single_prob and their sum <= 1, got {clean_prob}, {single_prob}")
    u = rng.random()
    if u < clean_prob:
        return "clean", np.array(img, dtype=np.float32, copy=True)
    if u < clean_prob + single_prob:
        singles = [k for k in KINDS if k != "mixed"]
        kind = singles[int(rng.integers(len(singles)))]
        return kind, degrade_kind(img, kind, rng, config)
    return "mixed", degrade(img, rng, config)


def degrade_for_training(img: np.ndarray, rng: np.random.Generator,
                         config: DegradationConfig = DegradationConfig(), single_prob: float = 0.5,
                         clean_prob: float = 0.0) -> np.ndarray:
    """The damaged image of :func:`training_damage` (what ``ffv train`` trains on)."""
    return training_damage(img, rng, config, single_prob, clean_prob)[1]
