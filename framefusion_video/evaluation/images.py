"""Quality figures for ``ffv eval``: PSNR and SSIM of restored faces against clean ones, per kind
of synthetic damage, for the damaged input, a classical OpenCV baseline and the model.

Images are float32 RGB in [0, 1], (H, W, 3); batches (N, S, S, 3). Every method sees exactly
the same damaged images: each kind is degraded once with a generator seeded from ``seed`` and
the kind's name, so figures are reproducible and comparable between runs and models.

With ``identity=True`` (the optional extra ``identity``, dlib), :func:`evaluate` also measures how
far each face is from the person: the distance of dlib's face-recognition descriptors of the
damaged input and of the model's output to the clean face's (``identity.py``; lower is better,
below 0.6 is the same person by dlib's threshold).

``evaluate_super_resolution`` scores upscaling instead: faces downscaled ×2 or ×4 by area and
brought back by bicubic interpolation and by any ``upscale_fn`` (SPAN, or bicubic then a restorer).
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from framefusion_video.base.pixels import to_uint8
from framefusion_video.data.degradations import KINDS, DegradationConfig, degrade_kind

log = logging.getLogger(__name__)

METHODS = ("input", "classical", "model")
#: The methods whose identity distance ``evaluate(..., identity=True)`` measures: the classical
#: baseline only sharpens or denoises what the input has, and is left out to save time.
IDENTITY_METHODS = ("input", "model")
#: Per-image PSNR of identical images is infinite; it counts as this many dB in means.
PSNR_CAP_DB = 100.0
_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 5  # 11x11 window: skimage's truncate=3.5 at sigma 1.5, Wang et al.'s size
_C1, _C2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return a, b


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1] (any equal shapes); inf if equal."""
    a, b = _pair(a, b)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def per_image_psnr(images: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """PSNR in dB of each image of a batch (N, ...) against ``clean``, capped at ``PSNR_CAP_DB``."""
    diff = np.asarray(images, dtype=np.float64) - np.asarray(clean, dtype=np.float64)
    mse = np.mean(diff * diff, axis=tuple(range(1, diff.ndim)))
    with np.errstate(divide="ignore"):
        return np.minimum(PSNR_CAP_DB, -10.0 * np.log10(mse))


def _ssim_plane(x: np.ndarray, y: np.ndarray) -> float:
    def blur(img: np.ndarray) -> np.ndarray:
        k = 2 * _SSIM_RADIUS + 1
        return cv2.GaussianBlur(img, (k, k), _SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    ssim_map = ((2 * mx * my + _C1) * (2 * cxy + _C2)) / ((mx * mx + my * my + _C1) * (vx + vy + _C2))
    r = _SSIM_RADIUS
    return float(ssim_map[r:-r, r:-r].mean())


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two images in [0, 1]: (H, W) or (H, W, C), H and W > 10.

    Wang et al. (2004) with an 11x11 gaussian window (sigma 1.5), K1 0.01, K2 0.03, computed per
    RGB channel and averaged (not on luminance), ignoring the 5-pixel border where the window
    leaves the image: the same as ``skimage.metrics.structural_similarity(a, b, data_range=1,
    channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.
    """
    a, b = _pair(a, b)
    if min(a.shape[:2]) <= 2 * _SSIM_RADIUS:
        raise ValueError(f"images of {a.shape[:2]} are smaller than the 11x11 SSIM window")
    if a.ndim == 2:
        return _ssim_plane(a, b)
    return float(np.mean([_ssim_plane(a[..., c], b[..., c]) for c in range(a.shape[-1])]))


# --------------------------------------------------------------------------------------------------
# Classical baseline
# --------------------------------------------------------------------------------------------------


def estimate_noise_sigma(img: np.ndarray) -> float:
    """Gaussian noise std (in [0, 1] units) of an image's luminance, by Immerkær's fast method
    (a Laplacian-difference filter that cancels smooth image content)."""
    grey = np.asarray(img, dtype=np.float32)
    if grey.ndim == 3:
        grey = grey @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    h, w = grey.shape
    if h < 3 or w < 3:
        return 0.0
    m = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
    response = cv2.filter2D(grey, -1, m)[1:-1, 1:-1]
    return float(math.sqrt(math.pi / 2.0) * np.abs(response).sum() / (6.0 * (w - 2) * (h - 2)))


def unsharp_mask(img: np.ndarray, sigma: float = 1.0, amount: float = 0.5) -> np.ndarray:
    """``img + amount · (img − gaussian(img, sigma))``, clipped to [0, 1]."""
    soft = cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
    return np.clip(img + np.float32(amount) * (img - soft), 0.0, 1.0).astype(np.float32)


def denoise(img: np.ndarray) -> np.ndarray:
    """OpenCV non-local means (``fastNlMeansDenoisingColored``) with its strength ``h`` set from
    the estimated noise level (at least 2, at most 20 on the 0–255 scale), so clean-ish images
    are hardly touched."""
    sigma255 = 255.0 * estimate_noise_sigma(img)
    h = float(np.clip(sigma255, 2.0, 20.0))
    u8 = to_uint8(img)
    out = cv2.fastNlMeansDenoisingColored(u8, None, h, h, 5, 15)
    return out.astype(np.float32) / np.float32(255.0)


def auto_levels(img: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Per-channel stretch of the ``low``–``high`` percentiles to [0, 1]: the classical fix for a
    dark, washed-out or colour-cast image (it also white-balances)."""
    lo = np.percentile(img, low, axis=(0, 1))
    hi = np.percentile(img, high, axis=(0, 1))
    scale = 1.0 / np.maximum(hi - lo, 1e-3)
    return np.clip((img - lo) * scale, 0.0, 1.0).astype(np.float32)


def classical_baseline(img: np.ndarray, kind: str) -> np.ndarray:
    """What OpenCV alone does for damage of category ``kind``, on a float32 RGB [0, 1] image.

    - blur, motion_blur: unsharp mask (sigma 1, amount 0.5);
    - noise, jpeg: non-local-means denoising (:func:`denoise`);
    - mixed: denoising, then a light unsharp mask (1, 0.3) for the blur;
    - lowres: the damaged image is already back at full size through bicubic/bilinear
      interpolation, i.e. the classical upscaler has been applied; only a light unsharp mask
      (1, 0.3) is added;
    - lighting: auto levels (per-channel percentile stretch);
    - occlusion: unchanged: without knowing where the occluder is there is nothing to inpaint.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown degradation kind {kind!r}; use one of {', '.join(KINDS)}")
    img = np.asarray(img, dtype=np.float32)
    if kind in ("blur", "motion_blur"):
        return unsharp_mask(img, 1.0, 0.5)
    if kind in ("noise", "jpeg"):
        return denoise(img)
    if kind == "mixed":
        return unsharp_mask(denoise(img), 1.0, 0.3)
    if kind == "lowres":
        return unsharp_mask(img, 1.0, 0.3)
    if kind == "lighting":
        return auto_levels(img)
    return img.copy()


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KindScores:
    """Mean PSNR (dB) and SSIM per method ("input", "classical", optionally "model") for one kind,
    and (when measured) the mean identity distance to the clean face per method of
    ``IDENTITY_METHODS`` (lower is better)."""

    kind: str
    n: int
    psnr: dict[str, float]
    ssim: dict[str, float]
    identity: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalReport:
    """Figures per kind, plus ``overall``: the mean over kinds except "mixed" (its own row)."""

    rows: tuple[KindScores, ...]
    methods: tuple[str, ...]
    seed: int
    n_images: int
    config: dict = field(default_factory=dict)

    @property
    def overall(self) -> KindScores | None:
        singles = [r for r in self.rows if r.kind != "mixed"]
        if not singles:
            return None
        mean = {m: float(np.mean([r.psnr[m] for r in singles])) for m in self.methods}
        mean_ssim = {m: float(np.mean([r.ssim[m] for r in singles])) for m in self.methods}
        mean_id = {m: float(np.mean([r.identity[m] for r in singles])) for m in self.identity_methods}
        return KindScores("overall", sum(r.n for r in singles), mean, mean_ssim, mean_id)

    @property
    def identity_methods(self) -> tuple[str, ...]:
        """The methods with an identity distance (none unless measured)."""
        return tuple(m for m in self.methods if self.rows and m in self.rows[0].identity)

    def table_rows(self) -> list[KindScores]:
        """Single kinds, then the overall mean, then "mixed"."""
        singles = [r for r in self.rows if r.kind != "mixed"]
        overall = self.overall
        mixed = [r for r in self.rows if r.kind == "mixed"]
        return singles + ([overall] if overall is not None else []) + mixed

    def to_markdown(self) -> str:
        """A markdown table: PSNR (dB), SSIM, then the identity distance when measured ("ID", lower
        is better), one column per method; best in bold per row."""
        id_methods = self.identity_methods
        header = (["kind", "n"] + [f"PSNR {m}" for m in self.methods] + [f"SSIM {m}" for m in self.methods]
                  + [f"ID {m}" for m in id_methods])
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "---|" * 2 + "---:|" * (2 * len(self.methods) + len(id_methods))]
        for row in self.table_rows():
            cells = [f"**{row.kind}**" if row.kind == "overall" else row.kind, str(row.n)]
            for values, methods, fmt, pick in ((row.psnr, self.methods, "{:.2f}", max),
                                               (row.ssim, self.methods, "{:.4f}", max),
                                               (row.identity, id_methods, "{:.3f}", min)):
                if not methods:
                    continue
                best = pick(values[m] for m in methods)
                cells += [(f"**{fmt.format(values[m])}**" if values[m] == best else fmt.format(values[m]))
                          for m in methods]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        """JSON-ready: {"seed", "n_images", "methods", "config", "kinds": {kind: {"n", "psnr",
        "ssim"[, "identity"]}}, "overall": {...} or None}; "identity" only when measured."""
        def scores(r: KindScores) -> dict:
            out = {"n": r.n, "psnr": dict(r.psnr), "ssim": dict(r.ssim)}
            return out | ({"identity": dict(r.identity)} if r.identity else {})

        overall = self.overall
        return {
            "seed": self.seed,
            "n_images": self.n_images,
            "methods": list(self.methods),
            "config": dict(self.config),
            "kinds": {r.kind: scores(r) for r in self.rows},
            "overall": None if overall is None else scores(overall),
        }


def kind_rng(seed: int, kind: str) -> np.random.Generator:
    """The generator that damages the evaluation images of ``kind``: independent of which other
    kinds are evaluated and in which order."""
    return np.random.default_rng([int(seed), zlib.crc32(kind.encode("utf-8"))])


def _run_model(fn: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray, batch_size: int,
               image_shape: tuple[int, ...] | None = None, name: str = "restore_fn") -> np.ndarray:
    """``fn`` over ``inputs`` in batches, clipped to [0, 1]; each output must be ``image_shape``
    (default: the input's)."""
    outs = []
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start:start + batch_size]
        out = np.asarray(fn(batch), dtype=np.float32)
        expected = batch.shape if image_shape is None else (len(batch), *image_shape)
        if out.shape != expected:
            raise ValueError(f"{name} returned shape {out.shape} for a batch of {batch.shape} (expected {expected})")
        outs.append(np.clip(out, 0.0, 1.0))
    return np.concatenate(outs, axis=0)


def mean_scores(results: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """Mean per-image PSNR (dB, each capped at ``PSNR_CAP_DB``) and SSIM of ``results`` against ``clean``."""
    ps = [min(psnr(r, c), PSNR_CAP_DB) for r, c in zip(results, clean)]
    ss = [ssim(r, c) for r, c in zip(results, clean)]
    return float(np.mean(ps)), float(np.mean(ss))


def identity_distances(results: np.ndarray, clean_descriptors: Sequence[np.ndarray]) -> np.ndarray:
    """Identity distance (``identity.distance``) of each aligned crop of ``results`` (float32
    (N, S, S, 3) in [0, 1]) to the matching clean crop's descriptor: float64 (N,)."""
    from framefusion_video.evaluation.identity import aligned_box, descriptor, distance

    box = aligned_box(results.shape[1])
    return np.array([distance(descriptor(to_uint8(r), box), d) for r, d in zip(results, clean_descriptors)])


def evaluate(clean: np.ndarray, restore_fn: Callable[[np.ndarray], np.ndarray] | None, *,
             kinds: Sequence[str] = KINDS, seed: int = 0, config: DegradationConfig = DegradationConfig(),
             batch_size: int = 16, identity: bool = False) -> EvalReport:
    """PSNR/SSIM against ``clean`` after each kind of damage, for the damaged input, the classical
    baseline and (when ``restore_fn`` is given) the model.

    Args:
        clean: float32 (N, S, S, 3) RGB in [0, 1], the ground truth (aligned faces).
        restore_fn: maps a float32 batch (n ≤ ``batch_size``, S, S, 3) of damaged crops to restored
            crops of the same shape (clipped to [0, 1] here); ``None`` leaves out the model column.
        kinds: categories from ``degradations.KINDS``.
        seed: damage for kind k comes from :func:`kind_rng` (seed, k), identical for every method.
        identity: also the mean identity distance to the clean face of ``IDENTITY_METHODS``
            (:func:`identity_distances`; needs the optional extra ``identity``).
    Returns:
        An :class:`EvalReport`; per-image PSNR is capped at ``PSNR_CAP_DB`` before averaging.
    Raises:
        identity.IdentityUnavailable: ``identity`` without dlib or its weights.
    """
    clean = np.asarray(clean)
    if clean.ndim != 4 or clean.shape[-1] != 3 or clean.dtype != np.float32 or len(clean) == 0:
        raise ValueError(f"expected float32 (N, S, S, 3) images with N > 0, got {clean.dtype} {clean.shape}")
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown degradation kind {kind!r}; use one of {', '.join(KINDS)}")
    methods = METHODS if restore_fn is not None else METHODS[:2]
    clean_descriptors = None
    if identity:
        from framefusion_video.evaluation.identity import aligned_box, descriptor

        box = aligned_box(clean.shape[1])
        clean_descriptors = [descriptor(to_uint8(c), box) for c in clean]
    rows = []
    for kind in kinds:
        rng = kind_rng(seed, kind)
        damaged = np.stack([degrade_kind(np.ascontiguousarray(img), kind, rng, config) for img in clean])
        outputs = {"input": damaged, "classical": np.stack([classical_baseline(d, kind) for d in damaged])}
        if restore_fn is not None:
            outputs["model"] = _run_model(restore_fn, damaged, batch_size)
        psnrs, ssims = {}, {}
        for method in methods:
            psnrs[method], ssims[method] = mean_scores(outputs[method], clean)
        ids = {m: float(np.mean(identity_distances(outputs[m], clean_descriptors)))
               for m in IDENTITY_METHODS if m in methods and clean_descriptors is not None}
        rows.append(KindScores(kind, len(clean), psnrs, ssims, ids))
        log.info("%s: PSNR %s%s", kind, ", ".join(f"{m} {psnrs[m]:.2f}" for m in methods),
                 "".join(f", identity {m} {v:.3f}" for m, v in ids.items()))
    return EvalReport(tuple(rows), methods, int(seed), len(clean), asdict(config))


# --------------------------------------------------------------------------------------------------
# Super-resolution
# --------------------------------------------------------------------------------------------------

SR_METHODS = ("bicubic", "model")


def downscale_area(images: np.ndarray, factor: int) -> np.ndarray:
    """float32 (N, S, S, 3) in [0, 1] -> (N, S/factor, S/factor, 3) by area averaging
    (``cv2.INTER_AREA``: the mean of each factor x factor block); S must be a multiple of factor."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[1] % factor:
        raise ValueError(f"expected (N, S, S, C) images with S a multiple of {factor}, got {images.shape}")
    size = images.shape[1] // factor
    return np.stack([cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA) for img in images])


def upscale_bicubic(images: np.ndarray, factor: int) -> np.ndarray:
    """float32 (N, s, s, 3) in [0, 1] -> (N, factor·s, factor·s, 3), bicubic (``cv2.INTER_CUBIC``),
    clipped to [0, 1]: the classical upscaler."""
    images = np.asarray(images, dtype=np.float32)
    size = images.shape[1] * factor
    return np.clip(np.stack([cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC) for img in images]), 0.0, 1.0)


def evaluate_super_resolution(clean: np.ndarray, upscale_fn: Callable[[np.ndarray], np.ndarray] | None,
                              factor: int, *, batch_size: int = 16) -> KindScores:
    """PSNR/SSIM against ``clean`` of faces downscaled ×``factor`` by area and scaled back up, by
    bicubic interpolation and (when ``upscale_fn`` is given) by the model.

    Args:
        clean: float32 (N, S, S, 3) RGB in [0, 1], S a multiple of ``factor`` (aligned faces).
        upscale_fn: maps a float32 batch (n ≤ ``batch_size``, S/factor, S/factor, 3) to (n, S, S, 3)
            (clipped to [0, 1] here), e.g. SPAN, or "bicubic, then the restorer"; ``None`` leaves
            out the model column.
        factor: the downscaling factor (2 or 4 in the model card).
    Returns:
        :class:`KindScores` of kind ``"x{factor}"``, methods ``SR_METHODS`` (``"model"`` only with
        ``upscale_fn``); per-image PSNR capped at ``PSNR_CAP_DB`` before averaging.
    """
    clean = np.asarray(clean)
    if clean.ndim != 4 or clean.shape[-1] != 3 or clean.dtype != np.float32 or len(clean) == 0:
        raise ValueError(f"expected float32 (N, S, S, 3) images with N > 0, got {clean.dtype} {clean.shape}")
    small = downscale_area(clean, factor)
    outputs = {"bicubic": upscale_bicubic(small, factor)}
    if upscale_fn is not None:
        outputs["model"] = _run_model(upscale_fn, small, batch_size, clean.shape[1:], "upscale_fn")
    psnrs, ssims = {}, {}
    for method, result in outputs.items():
        psnrs[method], ssims[method] = mean_scores(result, clean)
    log.info("x%d: PSNR %s", factor, ", ".join(f"{m} {v:.2f}" for m, v in psnrs.items()))
    return KindScores(f"x{factor}", len(clean), psnrs, ssims)


def evaluate_folder(folder, model_path=None, *, limit: int | None = None, kinds: Sequence[str] = KINDS,
                    seed: int = 0, with_model: bool = True, crop_size: int = 128,
                    identity: bool = False) -> EvalReport:
    """``ffv eval``: align the faces of ``folder`` like ``ffv restore`` does, then :func:`evaluate`.

    The generator at ``model_path`` (default: the shipped one) fixes the crop size; with
    ``with_model=False`` only the damaged input and the classical baseline are measured;
    ``identity`` adds the identity distances (checked to be installed before anything is loaded).
    """
    if identity:
        from framefusion_video.evaluation.identity import check_available

        check_available()
    from framefusion_video.data.dataset import load_aligned_crops

    restore_fn = None
    if with_model:
        from framefusion_video.restore.inference import load_restorer

        restorer = load_restorer(model_path, batch_size=16)
        crop_size = restorer.crop_size
        restore_fn = restorer.restore
    clean = load_aligned_crops(folder, crop_size, limit=limit).astype(np.float32) / 255.0
    log.info("evaluating on %d aligned faces from %s", len(clean), folder)
    return evaluate(clean, restore_fn, kinds=kinds, seed=seed, identity=identity)
