"""Training pairs with the damage video really has: a sharp photo played as a short clip, damaged as
a whole and put through a real codec, then cut around the face as the pipeline cuts it.

A pair is made in four steps (KEEP, AnimeSR and VCISR build their clips this way):

1. **Clip** (:func:`make_clip`): the photo is the middle frame of a few frames that pan and zoom
   by a fraction of a pixel per frame, so that the codec predicts the middle frame from moving
   neighbours, as it does in footage.
2. **Damage** (:func:`damage_clip`), drawn once per clip (:func:`sample_damage`): one blur kernel
   (gaussian, anisotropic, or none), the reduction by the network's scale (area or bicubic),
   sometimes softened further (reduced by 1-1.5 more and enlarged back on the low-resolution
   grid: footage whose detail is below its pixel count), then noise drawn afresh for each frame.
3. **Codec** (:func:`encode_decode`): libx264 or libx265 (the ffmpeg we ship) at a random CRF and
   preset, or MPEG-4 Part 2 at a random qscale, decoded back; the middle frame, a P- or B-frame, is kept.
4. **Window** (:func:`face_patch`): a square of 1.2-1.8x the face box (the pipeline's window is
   1.5x), at the frame's own low-resolution pixels; a fixed-size patch of it, and the scale x
   larger patch of the clean frame at exactly the same place, are the pair.

Alignment: the low-resolution grid is the clean grid reduced by ``scale`` (the clean frame's sides
are cropped to multiples of 2·scale), and every resize goes to an exact size with OpenCV's
half-pixel-centre convention, so low-resolution pixel (y, x) covers clean pixels
[s·y, s·y + s) x [s·x, s·x + s): low-resolution patch (y0, x0, p) pairs with clean patch
(s·y0, s·x0, s·p).

Codec passes are slow (a tenth of a second each), so pairs are made once and cached on disk in
shards (:func:`build_pair_cache`): a shard is a pure function of the seed and its index, written
atomically, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import subprocess
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from framefusion_video.base.errors import FfvError
from framefusion_video.base.outputs import atomic_path, write_atomic
from framefusion_video.data.degradations import anisotropic_gaussian_kernel
from framefusion_video.data.kinds import VIDEO_DAMAGE_MIXES

log = logging.getLogger(__name__)

#: swscale flags of the RGB <-> YUV conversions around the codec (as the benchmarks' ``synthetic_clip``'s).
SWS_FLAGS = "accurate_rnd+full_chroma_int+bitexact"
#: Encoders the codec pass may draw, with their raw-stream muxer.
CODECS = {"libx264": "h264", "libx265": "hevc", "mpeg4": "m4v"}
#: Pairs per shard of a cache (fewer when fewer are asked for).
SHARD_SIZE = 100
#: Bump when a pair's recipe changes, so that old caches are not reused.
CACHE_VERSION = 1
#: VideoDamageConfig fields added after caches existed, and their defaults (``cache_key``).
LATER_FIELDS = {"face_size": (40.0, 300.0), "lighting_prob": 0.0, "blur_face_share": (0.0, 0.0),
                "mpeg4_prob": 0.0, "mpeg4_qscale": (4, 25), "window_face_size": False, "one_damage": False,
                "heavy_crf": (32, 45)}

#: The damages of which a ``one_damage`` clip gets exactly one (drawn uniformly), beside its codec.
ONE_DAMAGES = ("none", "blur", "soften", "noise", "codec")


@dataclass(frozen=True)
class VideoDamageConfig:
    """How clips are made and damaged; ranges are (low, high), drawn uniformly unless stated.

    Sizes and blur are in low-resolution pixels (the network's input grid), so one config suits
    every scale.
    """

    frames: int = 5  # clip length; the middle frame is kept
    pan: float = 0.6  # largest pan per frame (low-res px), each axis
    zoom: float = 0.004  # largest zoom per frame (relative)
    blur_prob: float = 0.7
    blur_sigma: tuple[float, float] = (0.2, 1.2)  # low-res px; the kernel is applied on the clean grid
    anisotropic_prob: float = 0.5  # of the blurred clips: an elliptical kernel at a random angle
    area_prob: float = 0.5  # reduction by area, else bicubic
    soften_prob: float = 0.3  # the reduced frame is reduced again by `soften` and enlarged back
    soften: tuple[float, float] = (1.0, 1.5)
    #: scale 1 (a same-size restorer): how often, and by how much, the frame's effective
    #: resolution is lowered (reduced and enlarged back), as "soften" does for super-resolution.
    restorer_soften: tuple[float, float] = (1.0, 3.0)
    restorer_soften_prob: float = 0.5
    noise_prob: float = 0.6
    noise_sigma: tuple[float, float] = (1.0, 8.0)  # 0-255 units, per frame
    grey_noise_prob: float = 0.4
    x265_prob: float = 0.3  # libx265, else libx264
    crf: tuple[int, int] = (18, 35)  # inclusive
    presets: tuple[str, ...] = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")
    window: tuple[float, float] = (1.2, 1.8)  # face window side / face box side
    window_jitter: float = 0.1  # window centre shift, as a fraction of its side
    #: Aligned pairs (a same-size restorer's, :func:`aligned_pair`): the face's longer side in the
    #: frame, px, drawn log-uniformly; the photo is reduced to it, never enlarged.
    face_size: tuple[float, float] = (40.0, 300.0)
    #: Share of clips whose lighting is also damaged (``degradations``' "lighting" kind: gamma,
    #: colour cast, uneven or low light), before everything else.
    lighting_prob: float = 0.0
    #: Aligned pairs: a blurred clip's larger sigma as a share of the face's side, drawn uniformly
    #: (footage is blurred in proportion to its picture, so a large face more in px); (0, 0) keeps
    #: ``blur_sigma``'s px.
    blur_face_share: tuple[float, float] = (0.0, 0.0)
    #: Share of clips through MPEG-4 Part 2 (old camcorders, DivX) at a qscale drawn from
    #: ``mpeg4_qscale`` (inclusive) instead of x264/x265.
    mpeg4_prob: float = 0.0
    mpeg4_qscale: tuple[int, int] = (4, 25)
    #: Windows (:func:`damaged_pair`): reduce the photo first (area) so that its face's longer side,
    #: on the clean grid, is drawn from ``face_size`` as an aligned pair's is, set in a larger frame
    #: where it became smaller than a window: faces at the sizes a clip holds, not only the
    #: photos' own.
    window_face_size: bool = False
    #: Each clip gets one damage of :data:`ONE_DAMAGES` over a codec at ``crf`` ("codec": x264/x265
    #: at ``heavy_crf``, or MPEG-4 Part 2 with ``mpeg4_prob``), instead of an independent draw of
    #: each: drawn independently, damages compound, and hardly a clip is sharp or damaged one way.
    #: Windows then blur in proportion to the face, as aligned pairs do (``blur_face_share``).
    one_damage: bool = False
    heavy_crf: tuple[int, int] = (32, 45)  # inclusive

    def __post_init__(self) -> None:
        if self.frames < 1 or self.frames % 2 == 0:
            raise ValueError(f"frames must be odd and at least 1 (the middle one is kept), got {self.frames}")

    def to_dict(self) -> dict:
        return asdict(self)

    def cache_key(self) -> dict:
        """:meth:`to_dict` without the fields added after caches existed, where they are at their
        defaults: the pairs made before them stay valid."""
        return {k: v for k, v in self.to_dict().items() if k not in LATER_FIELDS or v != LATER_FIELDS[k]}


def damage_mix(name: str) -> VideoDamageConfig:
    """The damage of the named mix (``kinds.VIDEO_DAMAGE_MIXES``).

    "full": every damage the config draws, at its defaults (blur on 70% of clips, up to 1.2 px).
    "light": the same codecs and CRFs on mostly sharp clips (blur on 30%, up to 0.8 px; less extra
    softening and noise): a network trained on "full" learns to deblur every face and over-sharpens
    the clean, merely reduced and encoded ones (``docs/what-we-tried.md``).
    "restorer": what a same-size restorer meets, faces of every size in footage of every age: blur
    in proportion to the face (up to 2.5% of its side), resolution lowered up to 4x, noise up to
    16, CRF up to 40, a fifth of the clips through MPEG-4 Part 2, a quarter badly lit.
    "encoded": sharp clips through x264 alone at CRF 12-20: footage with nothing to restore, which a
    restorer's gate must leave alone (``ffv fit-gate --video-damage``).
    "sized": "light" on faces of every size a clip holds (``window_face_size``), for super-resolution:
    the photos' own faces are large (about 300 px), the largest a 720p clip holds.
    "windows": "restorer" on windows of faces of every size a clip holds, for a same-size restorer
    of the frame's own pixels (``ffv train --span 1``).
    "single": "windows" with one damage per clip (``one_damage``: sharp, blurred in proportion to
    the face, reduced up to 4x, noised up to 16, or heavily encoded), the rest through x264/x265 at
    CRF 18-30, a sixth of the clips badly lit: a restorer that also sees sharp and singly damaged
    faces, so that it learns what to leave alone.
    "soft": "full"'s blur and softening on faces of every size a clip holds, with little noise (a
    tenth of the clips, up to 3) and CRF 18-28: for ``--soft-faces``' ×2 network, which should
    sharpen a soft face and keep a sharp one's skin texture, where "full"'s noise teaches it to
    smooth texture away (``docs/what-we-tried.md``).
    """
    if name == "full":
        return VideoDamageConfig()
    if name == "light":
        return VideoDamageConfig(blur_prob=0.3, blur_sigma=(0.2, 0.8), soften_prob=0.1, noise_prob=0.3,
                                 noise_sigma=(1.0, 4.0))
    if name == "restorer":
        return VideoDamageConfig(lighting_prob=0.25, blur_face_share=(0.002, 0.025), restorer_soften=(1.0, 4.0),
                                 noise_sigma=(1.0, 16.0), crf=(18, 40), mpeg4_prob=0.2)
    if name == "sized":
        return replace(damage_mix("light"), window_face_size=True)
    if name == "windows":
        return replace(damage_mix("restorer"), window_face_size=True)
    if name == "single":
        return replace(damage_mix("windows"), one_damage=True, crf=(18, 30), blur_face_share=(0.005, 0.025),
                       lighting_prob=1 / 6, mpeg4_prob=0.4)
    if name == "soft":
        return VideoDamageConfig(noise_prob=0.1, noise_sigma=(1.0, 3.0), crf=(18, 28), window_face_size=True)
    if name == "encoded":
        return VideoDamageConfig(blur_prob=0.0, restorer_soften_prob=0.0, soften_prob=0.0, noise_prob=0.0,
                                 crf=(12, 20), x265_prob=0.0)
    raise ValueError(f"unknown damage mix {name!r}; known: {', '.join(VIDEO_DAMAGE_MIXES)}")


@dataclass(frozen=True)
class ClipDamage:
    """One clip's damage, drawn by :func:`sample_damage`; ``None`` skips a stage."""

    blur: tuple[float, float, float] | None  # (sigma_x, sigma_y, theta) in clean-grid px, radians
    area: bool  # reduction by area, else bicubic
    soften: float  # extra reduction enlarged back on the low-res grid (1 = none)
    noise_sigma: float | None  # 0-255 units
    grey_noise: bool
    codec: str
    crf: int  # the codec's quality: x264/x265's CRF, MPEG-4 Part 2's qscale
    preset: str


def sample_damage(rng: np.random.Generator, scale: int, config: VideoDamageConfig = VideoDamageConfig()) -> ClipDamage:
    """Draw one clip's damage (blur on the clean grid, so its sigma is ``scale`` x the low-res one)."""
    if config.one_damage:
        return _one_damage(rng, scale, config)
    blur = _draw_blur(rng, scale, config) if rng.random() < config.blur_prob else None
    area = bool(rng.random() < config.area_prob)
    if scale == 1:
        soften = rng.uniform(*config.restorer_soften) if rng.random() < config.restorer_soften_prob else 1.0
    else:
        soften = rng.uniform(*config.soften) if rng.random() < config.soften_prob else 1.0
    noise = rng.uniform(*config.noise_sigma) if rng.random() < config.noise_prob else None
    grey = bool(rng.random() < config.grey_noise_prob)
    codec = "libx265" if rng.random() < config.x265_prob else "libx264"
    crf = int(rng.integers(config.crf[0], config.crf[1] + 1))
    preset = str(config.presets[int(rng.integers(len(config.presets)))])
    # Drawn only where asked, so that the mixes without it draw as they always did.
    if config.mpeg4_prob > 0 and rng.random() < config.mpeg4_prob:
        codec, crf = "mpeg4", int(rng.integers(config.mpeg4_qscale[0], config.mpeg4_qscale[1] + 1))
    return ClipDamage(blur, area, float(soften), noise, grey, codec, crf, preset)


def _draw_blur(rng: np.random.Generator, scale: int, config: VideoDamageConfig) -> tuple[float, float, float]:
    """A blur kernel's (sigma_x, sigma_y, theta), clean-grid px: ``config.blur_sigma`` low-res px,
    elliptical with ``config.anisotropic_prob``."""
    sx = rng.uniform(*config.blur_sigma) * scale
    sy = rng.uniform(*config.blur_sigma) * scale if rng.random() < config.anisotropic_prob else sx
    return sx, sy, rng.uniform(0, math.pi)


def _one_damage(rng: np.random.Generator, scale: int, config: VideoDamageConfig) -> ClipDamage:
    """A clip's damage under ``config.one_damage``: one of :data:`ONE_DAMAGES`, drawn uniformly."""
    kind = ONE_DAMAGES[int(rng.integers(len(ONE_DAMAGES)))]
    blur = _draw_blur(rng, scale, config) if kind == "blur" else None
    soften = 1.0
    if kind == "soften":
        soften = rng.uniform(*(config.restorer_soften if scale == 1 else config.soften))
    noise = rng.uniform(*config.noise_sigma) if kind == "noise" else None
    codec = "libx265" if rng.random() < config.x265_prob else "libx264"
    crf = int(rng.integers(config.crf[0], config.crf[1] + 1))
    if kind == "codec":
        if rng.random() < config.mpeg4_prob:
            codec, crf = "mpeg4", int(rng.integers(config.mpeg4_qscale[0], config.mpeg4_qscale[1] + 1))
        else:
            crf = int(rng.integers(config.heavy_crf[0], config.heavy_crf[1] + 1))
    preset = str(config.presets[int(rng.integers(len(config.presets)))])
    return ClipDamage(blur, bool(rng.random() < config.area_prob), float(soften), noise,
                      bool(rng.random() < config.grey_noise_prob), codec, crf, preset)


def _blur_by_face(damage: ClipDamage, side: float, rng: np.random.Generator, config: VideoDamageConfig
                  ) -> ClipDamage:
    """``damage`` with its blur rescaled so that the larger sigma is ``config.blur_face_share`` of
    the face's side (``side``, px on the grid the blur is applied to); unchanged where unset."""
    if damage.blur is None or config.blur_face_share[1] <= 0:
        return damage
    sx, sy, theta = damage.blur
    k = rng.uniform(*config.blur_face_share) * side / max(sx, sy)
    return replace(damage, blur=(sx * k, sy * k, theta))


def frame_grid(shape: tuple[int, ...], scale: int) -> tuple[int, int]:
    """(height, width) of the clean frame cut from an image of ``shape``: multiples of 2·scale, so
    that the low-resolution frame has the even sides 4:2:0 video needs."""
    step = 2 * scale
    h, w = (shape[0] // step) * step, (shape[1] // step) * step
    if h < step or w < step:
        raise ValueError(f"an image of {shape[1]}x{shape[0]} is too small for x{scale}")
    return h, w


def make_clip(photo: np.ndarray, n_frames: int, rng: np.random.Generator, *, pan: float = 1.0,
              zoom: float = 0.004) -> list[np.ndarray]:
    """``n_frames`` uint8 RGB frames of ``photo`` under a slow, steady pan and zoom (about its
    centre, bicubic, reflected borders); the middle frame is ``photo`` itself, unresampled.

    ``pan``: largest shift per frame (px of ``photo``), each axis; ``zoom``: largest relative zoom
    per frame.
    """
    h, w = photo.shape[:2]
    vx, vy = rng.uniform(-pan, pan, 2)
    vz = rng.uniform(-zoom, zoom)
    mid = n_frames // 2
    frames = []
    for t in range(n_frames):
        k = t - mid
        if k == 0:
            frames.append(photo.copy())
            continue
        s = 1.0 + vz * k
        cx, cy = (w - 1) / 2, (h - 1) / 2
        m = np.float64([[s, 0, (1 - s) * cx + vx * k], [0, s, (1 - s) * cy + vy * k]])
        frames.append(cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101))
    return frames


def reduce_frame(frame: np.ndarray, scale: int, damage: ClipDamage) -> np.ndarray:
    """float32 (H, W, 3) clean-grid frame -> (H/scale, W/scale, 3): blurred, reduced, softened."""
    if damage.blur is not None:
        frame = cv2.filter2D(frame, -1, anisotropic_gaussian_kernel(*damage.blur), borderType=cv2.BORDER_REFLECT_101)
    h, w = frame.shape[:2]
    size = (w // scale, h // scale)
    if scale > 1:
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA if damage.area else cv2.INTER_CUBIC)
    if damage.soften > 1.0:
        small = (max(2, round(size[0] / damage.soften)), max(2, round(size[1] / damage.soften)))
        frame = cv2.resize(frame, small, interpolation=cv2.INTER_AREA if damage.area else cv2.INTER_CUBIC)
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_CUBIC)
    return frame


def encode_decode(frames: Sequence[np.ndarray], codec: str = "libx264", crf: int = 23,
                  preset: str = "veryfast") -> list[np.ndarray]:
    """uint8 RGB frames (same even size) through ``codec`` at quality ``crf`` (MPEG-4 Part 2: its
    qscale; no preset) and back: BT.709 limited-range 4:2:0 in, the same conversion out (accurate
    swscale), all in pipes; raises FfvError if ffmpeg fails."""
    from framefusion_video.video.ffmpeg import ffmpeg_exe

    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; use one of {', '.join(CODECS)}")
    h, w = frames[0].shape[:2]
    exe = ffmpeg_exe()
    quiet = ["-x265-params", "log-level=error"] if codec == "libx265" else []
    quality = ["-q:v", str(crf)] if codec == "mpeg4" else ["-preset", preset, "-crf", str(crf)]
    encode = [exe, "-nostdin", "-hide_banner", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
              "-s", f"{w}x{h}", "-r", "25", "-i", "pipe:0",
              "-vf", f"scale=out_color_matrix=bt709:out_range=tv:flags={SWS_FLAGS},format=yuv420p",
              "-c:v", codec, *quality, *quiet, "-f", CODECS[codec], "pipe:1"]
    raw = b"".join(np.ascontiguousarray(f, dtype=np.uint8).tobytes() for f in frames)
    enc = subprocess.run(encode, input=raw, capture_output=True, check=False)
    if enc.returncode != 0:
        raise FfvError(exe, f"{codec} encode failed: {enc.stderr.decode(errors='replace').strip()}")
    decode = [exe, "-nostdin", "-hide_banner", "-v", "error", "-f", CODECS[codec], "-i", "pipe:0",
              "-vf", f"scale=in_color_matrix=bt709:in_range=tv:flags={SWS_FLAGS}",
              "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    dec = subprocess.run(decode, input=enc.stdout, capture_output=True, check=False)
    n = w * h * 3
    if dec.returncode != 0 or len(dec.stdout) != n * len(frames):
        raise FfvError(exe, f"{codec} decode gave {len(dec.stdout) // n} frames for {len(frames)}: "
                            f"{dec.stderr.decode(errors='replace').strip()}")
    return [np.frombuffer(dec.stdout, np.uint8, n, i * n).reshape(h, w, 3).copy() for i in range(len(frames))]


def damage_clip(frames: Sequence[np.ndarray], scale: int, damage: ClipDamage,
                rng: np.random.Generator) -> list[np.ndarray]:
    """uint8 RGB clean frames (H, W, 3), sides multiples of 2·scale -> the damaged, decoded frames
    (H/scale, W/scale, 3) uint8: ``damage``'s blur, reduction and softening, fresh noise per frame,
    then the codec."""
    small = []
    for frame in frames:
        low = reduce_frame(frame.astype(np.float32), scale, damage)
        if damage.noise_sigma is not None:
            shape = low.shape[:2] + ((1,) if damage.grey_noise else (3,))
            low = low + np.float32(damage.noise_sigma) * rng.standard_normal(shape, dtype=np.float32)
        small.append(np.clip(low + 0.5, 0, 255).astype(np.uint8))
    return encode_decode(small, damage.codec, damage.crf, damage.preset)


def lit_frames(frames: Sequence[np.ndarray], rng: np.random.Generator, config: VideoDamageConfig
               ) -> list[np.ndarray]:
    """``frames`` (uint8 RGB) with one drawn lighting damage, with ``config.lighting_prob``; else
    as they are. Draws nothing from ``rng`` where the mix has no lighting, so that such mixes draw
    as they did before it existed."""
    if config.lighting_prob <= 0 or rng.random() >= config.lighting_prob:
        return list(frames)
    from framefusion_video.data.degradations import apply_degradation, sample_params

    params = sample_params(rng, kind="lighting")
    return [np.clip(apply_degradation(f.astype(np.float32) / 255.0, params, rng) * 255.0 + 0.5, 0, 255
                    ).astype(np.uint8) for f in frames]


def face_patch(box: Sequence[float], low_hw: tuple[int, int], scale: int, patch: int, rng: np.random.Generator,
               config: VideoDamageConfig = VideoDamageConfig()) -> tuple[int, int]:
    """Top-left (y0, x0), on the low-resolution grid, of a ``patch`` px square inside the face's
    window: a square of ``config.window`` x the box's longer side (clean-grid px (x0, y0, x1, y1)),
    centred on the box give or take ``window_jitter``; the patch lies at a random place in the
    window (centred on it when the window is smaller), inside the frame."""
    x0, y0, x1, y1 = (v / scale for v in box)
    side = max(x1 - x0, y1 - y0) * rng.uniform(*config.window)
    cx = (x0 + x1) / 2 + rng.uniform(-1, 1) * config.window_jitter * side
    cy = (y0 + y1) / 2 + rng.uniform(-1, 1) * config.window_jitter * side
    h, w = low_hw

    def start(centre: float, limit: int) -> int:
        if side > patch:
            first = centre - side / 2 + rng.uniform(0, side - patch)
        else:
            first = centre - patch / 2
        return int(np.clip(round(first), 0, limit - patch))

    return start(cy, h), start(cx, w)


def _face_side(rng: np.random.Generator, config: VideoDamageConfig) -> float:
    """A face's longer side in the frame, px, drawn log-uniformly from ``config.face_size``."""
    return float(np.exp(rng.uniform(*np.log(config.face_size))))


def _reduced_to_face_size(photo: np.ndarray, box: Sequence[float], least: int, rng: np.random.Generator,
                          config: VideoDamageConfig) -> tuple[np.ndarray, list[float]]:
    """``photo`` reduced (area) so that the face ``box``'s longer side is drawn log-uniformly from
    ``config.face_size`` (never enlarged), and set in a frame of at least ``least`` px a side where it
    became smaller; the box in the result's pixels."""
    x0, y0, x1, y1 = (float(v) for v in box)
    factor = min(1.0, _face_side(rng, config) / max(x1 - x0, y1 - y0))
    if factor < 1.0:
        size = (max(1, int(round(photo.shape[1] * factor))), max(1, int(round(photo.shape[0] * factor))))
        fx, fy = size[0] / photo.shape[1], size[1] / photo.shape[0]
        photo = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
        x0, y0, x1, y1 = x0 * fx, y0 * fy, x1 * fx, y1 * fy
    if photo.shape[0] < least or photo.shape[1] < least:
        # A frame larger than the photo: the photo in the middle of its own colours, enlarged and
        # blurred past any structure (a face repeated by mirroring is no scene a clip holds).
        h, w = max(least, photo.shape[0]), max(least, photo.shape[1])
        canvas = cv2.GaussianBlur(cv2.resize(photo, (w, h), interpolation=cv2.INTER_LINEAR), (0, 0), max(h, w) / 12)
        top, left = (h - photo.shape[0]) // 2, (w - photo.shape[1]) // 2
        canvas[top:top + photo.shape[0], left:left + photo.shape[1]] = photo
        photo = canvas
        x0, x1, y0, y1 = x0 + left, x1 + left, y0 + top, y1 + top
    return photo, [x0, y0, x1, y1]


def damaged_pair(photo: np.ndarray, box: Sequence[float], scale: int, patch: int, rng: np.random.Generator,
                 config: VideoDamageConfig = VideoDamageConfig()) -> tuple[np.ndarray, np.ndarray]:
    """One training pair from a sharp photo and a face box in it (px (x0, y0, x1, y1)):
    (damaged uint8 (patch, patch, 3), clean uint8 (scale·patch, scale·patch, 3)), exactly aligned.

    The photo is cut to the clean frame grid (:func:`frame_grid`); raises ValueError when its
    low-resolution frame is smaller than ``patch``.
    """
    if config.window_face_size:
        photo, box = _reduced_to_face_size(photo, box, scale * (patch + 2), rng, config)
    h, w = frame_grid(photo.shape, scale)
    if h // scale < patch or w // scale < patch:
        raise ValueError(f"a {w}x{h} frame is under {patch} px at x{scale}")
    clean = np.ascontiguousarray(photo[:h, :w])
    damage = sample_damage(rng, scale, config)
    if config.one_damage:
        damage = _blur_by_face(damage, max(box[2] - box[0], box[3] - box[1]), rng, config)
    frames = make_clip(clean, config.frames, rng, pan=config.pan * scale, zoom=config.zoom)
    damaged = damage_clip(lit_frames(frames, rng, config), scale, damage, rng)[config.frames // 2]
    y0, x0 = face_patch(box, damaged.shape[:2], scale, patch, rng, config)
    big = clean[scale * y0:scale * (y0 + patch), scale * x0:scale * (x0 + patch)]
    return damaged[y0:y0 + patch, x0:x0 + patch].copy(), big.copy()


def aligned_pair(photo: np.ndarray, box: Sequence[float], landmarks: np.ndarray, crop: int,
                 rng: np.random.Generator, config: VideoDamageConfig = VideoDamageConfig()
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One same-size training pair cut as the pipeline cuts a face for a restorer of aligned crops
    (``cutting.CropCutter``): (damaged, clean) uint8 (crop, crop, 3).

    The photo is reduced (area) so that the face's longer side is drawn from ``config.face_size``
    (never enlarged); a region of 3 face sides around it is the frame, played and damaged as a clip
    (scale 1); then the damaged middle frame and the clean one are warped to the aligned crop by
    the pipeline's own alignment on ``landmarks`` (float (5, 2), photo px).
    """
    from framefusion_video.faces.alignment import estimate_alignment, warp_to_crop

    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0)
    factor = min(1.0, _face_side(rng, config) / side)
    half = 1.5 * side
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = max(0, int(cx - half)), max(0, int(cy - half))
    region = photo[top:min(photo.shape[0], int(cy + half)), left:min(photo.shape[1], int(cx + half))]
    h, w = region.shape[:2]
    size = (max(2, int(round(w * factor)) // 2 * 2), max(2, int(round(h * factor)) // 2 * 2))
    if size[0] < 16 or size[1] < 16:
        raise ValueError(f"a {size[0]}x{size[1]} frame around the face is too small")
    frame = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
    # OpenCV's resize maps pixel centres: x -> (x + 0.5) * factor - 0.5.
    marks = (np.asarray(landmarks, np.float64) - (left, top) + 0.5) * (size[0] / w, size[1] / h) - 0.5
    damage = _blur_by_face(sample_damage(rng, 1, config), side * factor, rng, config)
    frames = make_clip(frame, config.frames, rng, pan=config.pan, zoom=config.zoom)
    damaged = damage_clip(lit_frames(frames, rng, config), 1, damage, rng)[config.frames // 2]
    matrix = estimate_alignment(marks, crop)
    return warp_to_crop(damaged, matrix, crop), warp_to_crop(frame, matrix, crop)


# --- the cache -----------------------------------------------------------------------------------

def face_boxes(files: Sequence[Path], cache_dir: Path) -> dict[str, list[list[float]]]:
    """MediaPipe's face boxes (clean px (x0, y0, x1, y1), largest first) of each photo, found once
    and kept in ``cache_dir`` (JSON, by file name)."""
    return _detected(files, cache_dir, "face_boxes", lambda face: list(face.box))


def face_marks(files: Sequence[Path], cache_dir: Path) -> dict[str, list[list[float]]]:
    """Per photo, each face's box and five landmarks (14 floats: x0, y0, x1, y1, then (x, y) of each
    landmark, clean px), found once and kept in ``cache_dir``: what :func:`aligned_pair` needs."""
    return _detected(files, cache_dir, "face_marks",
                     lambda face: [*face.box, *np.asarray(face.landmarks, float).ravel().tolist()])


def _detected(files: Sequence[Path], cache_dir: Path, name: str, record) -> dict[str, list[list[float]]]:
    """``record(face)`` of each face MediaPipe finds in each photo, cached as ``name``_DIGEST.json."""
    digest = hashlib.sha1("\n".join(str(f) for f in files).encode()).hexdigest()[:12]
    path = cache_dir / f"{name}_{digest}.json"
    if path.is_file():
        return json.loads(path.read_text())
    from framefusion_video.data.dataset import read_rgb
    from framefusion_video.faces.detection import FaceDetector, FaceDetectorConfig

    found: dict[str, list[list[float]]] = {}
    with FaceDetector(FaceDetectorConfig(use_mesh=False)) as detector:
        for f in files:
            found[f.name] = [[float(v) for v in record(face)] for face in detector.detect(read_rgb(f))]
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(found))
    log.info("faces found in %d of %d photos", sum(bool(b) for b in found.values()), len(files))
    return found


def shard_size(pairs: int) -> int:
    """Pairs per shard of a cache of ``pairs``: a small cache is one shard."""
    return max(1, min(SHARD_SIZE, pairs))


def cache_folder(folder: str | os.PathLike, scale: int, patch: int, seed: int, config: VideoDamageConfig,
                 shard: int = SHARD_SIZE, cache_dir: str | os.PathLike | None = None, aligned: bool = False) -> Path:
    """Where the pairs of ``folder``'s photos at (scale, patch, seed, config) are kept, in shards
    of ``shard`` pairs; ``aligned``: :func:`aligned_pair`'s crops."""
    from framefusion_video.data.dataset import default_cache_dir, list_images

    files = list_images(folder)
    parts = [CACHE_VERSION, [f.name for f in files], scale, patch, seed, config.cache_key()] + (["aligned"] * aligned)
    digest = hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cache_dir) if cache_dir else default_cache_dir() / "video_damage"
    return root / f"{Path(folder).name}_{'aligned' if aligned else 'x%d' % scale}_p{patch}_s{shard}_{digest}"


def _shard(files: list[Path], boxes: dict[str, list[list[float]]], pairs: range, scale: int, patch: int, seed: int,
           config: VideoDamageConfig, aligned: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``pairs`` of a cache: pair i uses photo i mod len(files) (those with a
    face), a face of it at random, and draws everything else from rng (seed, i). ``aligned``:
    ``boxes`` are :func:`face_marks`' and the pairs :func:`aligned_pair`'s."""
    from framefusion_video.data.dataset import read_rgb

    low, high = [], []
    for i in pairs:
        rng = np.random.default_rng([seed, i])
        for attempt in range(len(files)):
            path = files[(i + attempt) % len(files)]
            faces = boxes[path.name]
            try:
                face = faces[int(rng.integers(len(faces)))]
                pair = (aligned_pair(read_rgb(path), face[:4], np.reshape(face[4:], (5, 2)), patch, rng, config)
                        if aligned else damaged_pair(read_rgb(path), face, scale, patch, rng, config))
                break
            except ValueError as exc:  # a photo too small at this scale: the next one
                log.debug("%s: %s", path.name, exc)
        else:
            raise FfvError(path.parent, f"no photo is large enough for {patch} px patches at x{scale}")
        low.append(pair[0])
        high.append(pair[1])
    return np.stack(low), np.stack(high)


def build_pair_cache(folder: str | os.PathLike, scale: int, pairs: int, patch: int, *, seed: int = 0,
                     config: VideoDamageConfig = VideoDamageConfig(), cache_dir: str | os.PathLike | None = None,
                     progress: bool = False, aligned: bool = False) -> Path:
    """Make (or finish) the cache of ``pairs`` pairs of ``folder``'s photos; returns its folder.

    Shards of :func:`shard_size` pairs (``shard_NNNN.npz``: ``low`` uint8 (n, p, p, 3), ``high``
    uint8 (n, s·p, s·p, 3)) are written atomically, each a pure function of the seed and its index;
    those already there are kept, so an interrupted build resumes, and a larger ``pairs`` (from
    :data:`SHARD_SIZE` on) adds to a smaller one's. ``aligned``: :func:`aligned_pair`'s crops of
    ``patch`` px (``scale`` 1), else :func:`damaged_pair`'s windows.
    """
    from framefusion_video.data.dataset import list_images

    shard = shard_size(pairs)
    if aligned and scale != 1:
        raise ValueError(f"aligned pairs are a same-size restorer's (scale 1), not x{scale}")
    out = cache_folder(folder, scale, patch, seed, config, shard, cache_dir, aligned)
    out.mkdir(parents=True, exist_ok=True)
    shards = math.ceil(pairs / shard)
    missing = [k for k in range(shards) if not (out / f"shard_{k:04d}.npz").is_file()]
    if not missing:
        return out
    files = list_images(folder)
    boxes = (face_marks if aligned else face_boxes)(files, out.parent)
    with_faces = [f for f in files if boxes.get(f.name)]
    if not with_faces:
        raise FfvError(folder, "no face found in any photo")
    write_atomic(out / "recipe.json", json.dumps({"folder": os.fspath(folder), "scale": scale, "patch": patch,
                                                  "seed": seed, "photos": len(with_faces), "aligned": aligned,
                                                  "config": config.to_dict()}, indent=1).encode("utf-8"))
    iterator = missing
    if progress:
        from tqdm import tqdm

        iterator = tqdm(missing, desc=f"video damage {Path(folder).name} x{scale}", unit="shard")
    for k in iterator:
        low, high = _shard(with_faces, boxes, range(k * shard, (k + 1) * shard), scale, patch, seed, config, aligned)
        with atomic_path(out / f"shard_{k:04d}.npz") as tmp:
            np.savez(tmp, low=low, high=high)
    return out


def load_pair_cache(folder: str | os.PathLike, pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``pairs`` pairs of a cache built by :func:`build_pair_cache`: (low, high) uint8."""
    folder = Path(folder)
    low, high = [], []
    for k in range(math.ceil(pairs / shard_size(pairs))):
        path = folder / f"shard_{k:04d}.npz"
        if not path.is_file():
            raise FfvError(path, "missing: build the cache first (build_pair_cache)")
        with np.load(path) as data:
            low.append(data["low"])
            high.append(data["high"])
    return np.concatenate(low)[:pairs], np.concatenate(high)[:pairs]
