"""Synthetic clips with known clean frames, and face-region scores of videos made from them: the
benchmarks' helper (``quality_clip.py``, ``breakdown.py``, ``bench_upscale.py``,
``quality_real_sr.py``, ``scripts/window_choices.py``), kept out of the package.

:func:`build_clip` pastes face photos (e.g. ``../shared/data/faces/frl``, never trained on) onto a
smooth background at varied sizes, moving a little, damages each face one way (:data:`DAMAGE_KINDS`)
and writes, from the same seeded frames:

- ``clean.mkv``: the clean frames, lossless (FFV1, planar RGB): the ground truth;
- ``damaged.mp4``: the damaged frames through x264 at ``ClipConfig.damaged_crf`` (30);
- ``clean_x264.mp4``: the clean frames through x264 at ``ClipConfig.clean_crf`` (12);
- ``manifest.json``: the config, every face (source photo, kind, size, damage parameters) and its
  box in every frame.

:func:`score_videos` decodes videos of the same frames and scores them against ``clean.mkv``:
PSNR/SSIM on each face box of each frame and PSNR on whole frames, per face size and damage kind;
optionally (``identity=True``, the extra ``identity``) the identity distance of each face box to the
clean frame's same face box (dlib's face-recognition descriptors, ``identity.py``).

Frames are uint8 RGB (H, W, 3) at the video boundary; damage works on float32 RGB in [0, 1].
The MP4s are BT.709, limited range, tagged as such, converted from RGB with swscale's accurate
rounding and full chroma interpolation; decoding for scores uses the same flags and the file's
tags, so the measuring chain adds no colour loss of its own.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from framefusion_video.evaluation.images import PSNR_CAP_DB, classical_baseline, psnr, ssim

log = logging.getLogger(__name__)

#: Per-face damage: none (only the clip's own compression), gaussian blur, downscale and back,
#: gaussian noise, dark (gain and gamma), colour cast, strong x264 or MPEG-4 Part 2 on the face's
#: own region (the bundled ffmpeg's encoders, on the face's frames as a sequence).
DAMAGE_KINDS = ("none", "blur", "downscale", "noise", "dark", "cast", "x264", "mpeg4")
#: Face-size bins (box side, px) of the breakdown: [lo, hi).
SIZE_BINS = ((0, 80), (80, 150), (150, math.inf))
#: What the classical baseline (``evaluation.classical_baseline``) is told each kind is: an oracle
#: that knows the damage, which a real tool would not.
CLASSICAL_KIND = {"none": "jpeg", "blur": "blur", "downscale": "lowres", "noise": "noise",
                  "dark": "lighting", "cast": "lighting", "x264": "jpeg", "mpeg4": "jpeg"}
#: swscale flags for every RGB <-> YUV conversion made here.
SWS_FLAGS = "accurate_rnd+full_chroma_int+bitexact"
_TAGS = ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv"]


@dataclass(frozen=True)
class ClipConfig:
    """How a synthetic clip is made.

    Attributes:
        width, height: frame size (even).
        fps: frame rate.
        segments: shots of the clip; each has new faces, a new background and a cut before it.
        frames_per_segment: frames of each shot.
        faces_per_segment: faces on screen in each shot (none overlap).
        min_face, max_face: face box side range (px); sizes are spread evenly on a log scale.
        motion: the most a face moves per frame (px, each axis).
        kinds: damage kinds given to the faces in turn (a seeded order).
        damaged_crf: x264 CRF of the damaged clip.
        clean_crf: x264 CRF of the clean clip.
        seed: everything random comes from ``np.random.default_rng(seed)``.
    """

    width: int = 1280
    height: int = 720
    fps: float = 25.0
    segments: int = 10
    frames_per_segment: int = 8
    faces_per_segment: int = 4
    min_face: int = 40
    max_face: int = 300
    motion: float = 1.5
    kinds: tuple[str, ...] = DAMAGE_KINDS
    damaged_crf: int = 30
    clean_crf: int = 12
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.width % 2 or self.height % 2 or self.width < 64 or self.height < 64:
            problems.append(f"frame size must be even and at least 64x64, got {self.width}x{self.height}")
        if min(self.segments, self.frames_per_segment, self.faces_per_segment) < 1:
            problems.append("segments, frames_per_segment and faces_per_segment must be at least 1")
        if not 16 <= self.min_face <= self.max_face:
            problems.append(f"need 16 <= min_face <= max_face, got {self.min_face}, {self.max_face}")
        if 2 * self.max_face > min(self.width, self.height):
            problems.append(f"max_face {self.max_face} px does not fit twice in {self.width}x{self.height}")
        unknown = [k for k in self.kinds if k not in DAMAGE_KINDS]
        if unknown or not self.kinds:
            problems.append(f"kinds must be among {', '.join(DAMAGE_KINDS)}, got {self.kinds}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def n_frames(self) -> int:
        return self.segments * self.frames_per_segment

    @classmethod
    def small(cls, **overrides) -> ClipConfig:
        """A clip for tests: 480x272, 2 shots of 4 frames, 2 faces of 40-110 px each."""
        base = dict(width=480, height=272, segments=2, frames_per_segment=4, faces_per_segment=2,
                    min_face=40, max_face=110)
        return cls(**{**base, **overrides})


@dataclass(frozen=True)
class FacePlan:
    """One face of the clip: where it comes from, how it moves, how it is damaged.

    ``centre`` is the face box centre in the shot's first frame and ``velocity`` its motion in px
    per frame; ``box_wh`` the face box's width and height (px) in the frame.
    """

    face_id: int
    segment: int
    source: str
    kind: str
    size: float
    centre: tuple[float, float]
    velocity: tuple[float, float]
    box_wh: tuple[float, float]
    params: dict = field(default_factory=dict)

    def box(self, t: int) -> tuple[float, float, float, float]:
        """Face box (x0, y0, x1, y1) in frame pixels, ``t`` frames into the shot."""
        cx, cy = self.centre[0] + self.velocity[0] * t, self.centre[1] + self.velocity[1] * t
        w, h = self.box_wh
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


@dataclass(frozen=True)
class SyntheticClip:
    """The files of a built clip (see the module docstring) and its faces."""

    folder: Path
    config: ClipConfig
    faces: tuple[FacePlan, ...]

    @property
    def clean(self) -> Path:
        return self.folder / "clean.mkv"

    @property
    def damaged(self) -> Path:
        return self.folder / "damaged.mp4"

    @property
    def clean_x264(self) -> Path:
        return self.folder / "clean_x264.mp4"

    def faces_in_frame(self, index: int) -> list[tuple[FacePlan, tuple[float, float, float, float]]]:
        """The faces of frame ``index`` with their boxes."""
        seg, t = divmod(index, self.config.frames_per_segment)
        return [(f, f.box(t)) for f in self.faces if f.segment == seg]

    def to_dict(self) -> dict:
        return {"config": asdict(self.config), "faces": [asdict(f) for f in self.faces],
                "boxes": {str(i): [[f.face_id, *map(lambda v: round(v, 2), b)] for f, b in self.faces_in_frame(i)]
                          for i in range(self.config.n_frames)}}

    @classmethod
    def load(cls, folder: str | os.PathLike) -> SyntheticClip:
        """The clip built earlier in ``folder`` (from its ``manifest.json``)."""
        folder = Path(folder)
        data = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        cfg = data["config"]
        config = ClipConfig(**{**cfg, "kinds": tuple(cfg["kinds"])})
        faces = tuple(FacePlan(**{**f, "centre": tuple(f["centre"]), "velocity": tuple(f["velocity"]),
                                  "box_wh": tuple(f["box_wh"])}) for f in data["faces"])
        return cls(folder, config, faces)


# --------------------------------------------------------------------------------------------------
# ffmpeg helpers: the package's binary and its runner (``framefusion_video.video.ffmpeg``); the raw
# reader and encoder below stay here, since they convert with this file's swscale flags
# (:data:`SWS_FLAGS`), not the package's, and the figures depend on them.


def _ffmpeg() -> str:
    from framefusion_video.video.ffmpeg import ffmpeg_exe

    return ffmpeg_exe()


def _run_ffmpeg(args: Sequence[str]) -> bytes:
    from framefusion_video.video import ffmpeg

    proc = ffmpeg.run(["-v", "error", "-y", *args], args[-1])
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(args)} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


class _Encoder:
    """Raw RGB frames in, one video file out (an ffmpeg subprocess fed through a pipe)."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float, codec_args: Sequence[str]) -> None:
        w, h = size
        cmd = [_ffmpeg(), "-hide_banner", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{w}x{h}", "-r", str(fps), "-i", "pipe:0", *codec_args, str(path)]
        self.path = path
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(self, frame: np.ndarray) -> None:
        self._proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())

    def close(self) -> None:
        self._proc.stdin.close()
        err = self._proc.stderr.read()
        self._proc.stderr.close()
        if self._proc.wait() != 0:
            raise RuntimeError(f"encoding {self.path} failed: {err.decode(errors='replace').strip()}")

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()


def x264_args(crf: int, preset: str = "veryfast") -> list[str]:
    """ffmpeg output options: RGB -> BT.709 limited-range 4:2:0 (accurate swscale), x264 at ``crf``."""
    vf = f"scale=out_color_matrix=bt709:out_range=tv:flags={SWS_FLAGS},format=yuv420p"
    return ["-vf", vf, "-c:v", "libx264", "-preset", preset, "-crf", str(crf), *_TAGS]


def _lossless_args() -> list[str]:
    return ["-c:v", "ffv1", "-pix_fmt", "gbrp"]


def read_video(path: str | os.PathLike, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Every frame of ``path`` as uint8 RGB (H, W, 3), converted with accurate swscale flags and
    the file's colour tags (matrix and range), as a careful player would."""
    w, h = size
    cmd = [_ffmpeg(), "-nostdin", "-hide_banner", "-v", "error", "-i", str(path), "-map", "0:v:0",
           "-sws_flags", SWS_FLAGS, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    n = w * h * 3
    try:
        while True:
            data = proc.stdout.read(n)
            if len(data) < n:
                break
            yield np.frombuffer(data, dtype=np.uint8).reshape(h, w, 3)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.wait()


def _codec_pass(frames: list[np.ndarray], codec_args: Sequence[str], fps: float, suffix: str,
                scratch: Path) -> list[np.ndarray]:
    """``frames`` (uint8 RGB, same even size) through an encoder and back."""
    h, w = frames[0].shape[:2]
    path = scratch / f"codec_pass{suffix}"
    enc = _Encoder(path, (w, h), fps, codec_args)
    try:
        for f in frames:
            enc.write(f)
        enc.close()
    except BaseException:
        enc.kill()
        raise
    try:
        out = [f.copy() for f in read_video(path, (w, h))]
    finally:
        path.unlink(missing_ok=True)
    if len(out) != len(frames):
        raise RuntimeError(f"codec pass returned {len(out)} frames for {len(frames)}")
    return out


# --------------------------------------------------------------------------------------------------
# building


def _source_boxes(files: Sequence[Path], detector) -> list[tuple[Path, np.ndarray, tuple[float, ...]]]:
    """(file, uint8 RGB image, the largest face box) of each photo in which a face is found."""
    from framefusion_video.data.dataset import read_rgb

    found = []
    for path in files:
        image = read_rgb(path)
        faces = detector.detect(image)
        if faces:
            best = max(faces, key=lambda f: f.size)
            found.append((path, image, best.box))
        else:
            log.debug("no face found in %s; not used", path)
    return found


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth random colour field with a little fine texture, uint8 RGB."""
    coarse = rng.uniform(40, 215, size=(4, 6, 3)).astype(np.float32)
    field_ = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    texture = cv2.GaussianBlur(rng.normal(0, 6, size=(height, width)).astype(np.float32), (0, 0), 1.2)[..., None]
    return np.clip(field_ + texture, 0, 255).astype(np.uint8)


def _patch(image: np.ndarray, box: Sequence[float], size: float) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """The face of ``image`` scaled so that its box side is ``size``: (uint8 RGB patch of side about
    2.8 ``size``, float32 feathered head mask, box (w, h) at that scale). The face box centre is the
    patch centre."""
    x0, y0, x1, y1 = box
    side = math.sqrt(max(x1 - x0, 1) * max(y1 - y0, 1))
    scale = size / side
    half = int(math.ceil(1.4 * size))  # the head mask reaches 1.27 size above the centre
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # source -> patch: p = scale * (s - c) + half; area-like downscaling by pre-blurring.
    src = image
    if scale < 1:
        src = cv2.GaussianBlur(image, (0, 0), 0.5 / scale)
    m = np.float64([[scale, 0, half - scale * cx], [0, scale, half - scale * cy]])
    patch = cv2.warpAffine(src, m, (2 * half, 2 * half), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    yy, xx = np.mgrid[0:2 * half, 0:2 * half].astype(np.float32) + 0.5
    # A head-shaped ellipse around the face box (hair above, chin below), feathered.
    ex, ey = (xx - half) / (0.95 * size), (yy - (half - 0.12 * size)) / (1.15 * size)
    mask = (ex * ex + ey * ey <= 1.0).astype(np.float32)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.06 * size))
    return patch, mask, ((x1 - x0) * scale, (y1 - y0) * scale)


def _damage_params(kind: str, size: float, rng: np.random.Generator) -> dict:
    if kind == "blur":
        return {"sigma": round(float(size * rng.uniform(0.012, 0.025)), 3)}
    if kind == "downscale":
        return {"factor": round(float(min(rng.uniform(2.0, 4.0), size / 14.0)), 3)}
    if kind == "noise":
        return {"sigma": round(float(rng.uniform(0.03, 0.07)), 4), "seed": int(rng.integers(2**31))}
    if kind == "dark":
        return {"gain": round(float(rng.uniform(0.45, 0.7)), 3), "gamma": round(float(rng.uniform(1.0, 1.3)), 3)}
    if kind == "cast":
        hue, amount = rng.uniform(0, 2 * math.pi), rng.uniform(0.2, 0.35)
        gains = [1 + amount * math.cos(hue - k * 2 * math.pi / 3) for k in range(3)]
        return {"gains": [round(g, 3) for g in gains]}
    if kind == "x264":
        return {"crf": int(rng.integers(38, 45))}
    if kind == "mpeg4":
        return {"qscale": int(rng.integers(12, 25))}
    return {}


def _damage_pixels(roi: np.ndarray, kind: str, params: Mapping, rng: np.random.Generator) -> np.ndarray:
    """One frame's region (float32 RGB [0, 1]) damaged by a per-pixel ``kind``."""
    if kind == "blur":
        return cv2.GaussianBlur(roi, (0, 0), params["sigma"])
    if kind == "downscale":
        from framefusion_video.data.degradations import downscale

        return downscale(roi, params["factor"])
    if kind == "noise":
        return np.clip(roi + np.float32(params["sigma"]) * rng.standard_normal(roi.shape, dtype=np.float32), 0, 1)
    if kind == "dark":
        return np.float32(params["gain"]) * np.power(roi, np.float32(params["gamma"]))
    if kind == "cast":
        return np.clip(roi * np.asarray(params["gains"], dtype=np.float32), 0, 1)
    return roi


def _roi(boxes: Sequence[tuple[float, float, float, float]], pad: float, width: int, height: int
         ) -> tuple[int, int, int, int]:
    """Even-sized integer region covering ``boxes`` grown by ``pad`` px, inside the frame."""
    x0 = max(0, int(min(b[0] for b in boxes) - pad)) // 2 * 2
    y0 = max(0, int(min(b[1] for b in boxes) - pad)) // 2 * 2
    x1 = min(width, int(math.ceil(max(b[2] for b in boxes) + pad)))
    y1 = min(height, int(math.ceil(max(b[3] for b in boxes) + pad)))
    return x0, y0, x0 + (x1 - x0) // 2 * 2, y0 + (y1 - y0) // 2 * 2


def _plan_segment(rng: np.random.Generator, config: ClipConfig, segment: int, sizes: Sequence[float],
                  sources: Sequence[tuple[Path, np.ndarray, tuple]], kinds: Sequence[str], first_id: int
                  ) -> list[FacePlan]:
    """Place the shot's faces (largest first) so that their heads never overlap during the shot.

    A head (the feathered ellipse of :func:`_patch`) spans about 1.05 face sizes either side of the
    centre and 1.35 above and below; it may leave the frame, the face box may not."""
    placed: list[FacePlan] = []
    t_end = config.frames_per_segment - 1
    for size, (path, image, box), kind in sorted(zip(sizes, sources, kinds), key=lambda z: -z[0]):
        for attempt in range(400):
            s = size * (0.85 ** (attempt // 100))
            vx, vy = rng.uniform(-config.motion, config.motion, size=2)
            margin = 0.75 * s  # the face box is inside the frame during the whole shot
            lo_x, hi_x = margin + max(0, -vx * t_end), config.width - margin - max(0, vx * t_end)
            lo_y, hi_y = margin + max(0, -vy * t_end), config.height - margin - max(0, vy * t_end)
            if lo_x >= hi_x or lo_y >= hi_y:
                continue
            cx, cy = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
            clash = False
            for other in placed:
                reach_x, reach_y = 1.05 * (s + other.size), 1.35 * (s + other.size)
                for t in (0, t_end):
                    ox, oy = other.centre[0] + other.velocity[0] * t, other.centre[1] + other.velocity[1] * t
                    if abs(cx + vx * t - ox) < reach_x and abs(cy + vy * t - oy) < reach_y:
                        clash = True
            if clash:
                continue
            x0, y0, x1, y1 = box
            scale = s / math.sqrt(max(x1 - x0, 1) * max(y1 - y0, 1))
            placed.append(FacePlan(first_id + len(placed), segment, path.name, kind, round(float(s), 2),
                                   (float(cx), float(cy)), (float(vx), float(vy)),
                                   (float((x1 - x0) * scale), float((y1 - y0) * scale)),
                                   _damage_params(kind, s, rng)))
            break
        else:
            log.warning("shot %d: no room for a %.0f px face; left out", segment, size)
    return placed


def build_clip(faces_dir: str | os.PathLike, out_dir: str | os.PathLike, config: ClipConfig = ClipConfig(),
               *, detector=None) -> SyntheticClip:
    """Build the clip described by ``config`` from the photos in ``faces_dir`` into ``out_dir``.

    Args:
        faces_dir: a folder of face photos (one face each); photos where no face is found are skipped.
        out_dir: created if needed; the files of :class:`SyntheticClip` are written there.
        detector: a ``faces.FaceDetector`` to find the face box of each photo; None opens one.

    Raises:
        ValueError: no usable photo in ``faces_dir``.
    """
    from framefusion_video.data.dataset import list_images

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    n_faces = config.segments * config.faces_per_segment
    files = list_images(faces_dir)
    if not files:
        raise ValueError(f"no images in {faces_dir}")
    order = rng.permutation(len(files))
    chosen = [files[i] for i in order[: min(len(files), n_faces + 8)]]  # spares for undetected photos
    if detector is None:
        from framefusion_video.faces.detection import FaceDetector, FaceDetectorConfig

        with FaceDetector(FaceDetectorConfig(use_mesh=False)) as det:
            sources = _source_boxes(chosen, det)
    else:
        sources = _source_boxes(chosen, detector)
    if not sources:
        raise ValueError(f"no face found in the photos of {faces_dir}")
    sources = [sources[i % len(sources)] for i in range(n_faces)]
    # Sizes spread evenly on a log scale, in as many tiers as a shot has faces: each shot gets one
    # size from each tier (so every shot fits); kinds as evenly as the count allows, shuffled.
    u = (np.arange(n_faces) + rng.uniform(0, 1, n_faces)) / n_faces
    ladder = np.exp(np.log(config.min_face) + u * (np.log(config.max_face) - np.log(config.min_face)))
    tiers = ladder.reshape(config.faces_per_segment, config.segments)
    sizes = np.stack([tier[rng.permutation(config.segments)] for tier in tiers], axis=1).reshape(-1)
    kinds = [config.kinds[i % len(config.kinds)] for i in rng.permutation(n_faces)]

    size = (config.width, config.height)
    writers = [_Encoder(out / "clean.mkv", size, config.fps, _lossless_args()),
               _Encoder(out / "damaged.mp4", size, config.fps, x264_args(config.damaged_crf)),
               _Encoder(out / "clean_x264.mp4", size, config.fps, x264_args(config.clean_crf))]
    plans: list[FacePlan] = []
    try:
        for seg in range(config.segments):
            k = slice(seg * config.faces_per_segment, (seg + 1) * config.faces_per_segment)
            seg_plans = _plan_segment(rng, config, seg, sizes[k], sources[k], kinds[k], len(plans))
            plans += seg_plans
            by_name = {p.name: (img, box) for p, img, box in sources[k]}
            clean, damaged = _render_segment(rng, config, seg_plans, by_name, out)
            for c, d in zip(clean, damaged):
                writers[0].write(c)
                writers[1].write(d)
                writers[2].write(c)
        for w in writers:
            w.close()
    except BaseException:
        for w in writers:
            w.kill()
        raise
    clip = SyntheticClip(out, config, tuple(plans))
    (out / "manifest.json").write_text(json.dumps(clip.to_dict(), indent=1) + "\n", encoding="utf-8")
    log.info("built %s: %d frames, %d faces", out, config.n_frames, len(plans))
    return clip


def _render_segment(rng: np.random.Generator, config: ClipConfig, plans: Sequence[FacePlan],
                    sources: Mapping[str, tuple[np.ndarray, tuple]], scratch: Path
                    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Clean and damaged uint8 RGB frames of one shot."""
    background = _background(rng, config.width, config.height)
    n = config.frames_per_segment
    clean = [background.astype(np.float32) for _ in range(n)]
    alphas: dict[int, list[np.ndarray]] = {}
    rois: dict[int, tuple[int, int, int, int]] = {}
    for plan in plans:
        image, box = sources[plan.source]
        patch, mask, _ = _patch(image, box, plan.size)
        half = patch.shape[0] // 2
        boxes = [plan.box(t) for t in range(n)]
        roi = _roi(boxes, 1.3 * plan.size, config.width, config.height)
        rois[plan.face_id] = roi
        rx0, ry0, rx1, ry1 = roi
        alphas[plan.face_id] = []
        for t in range(n):
            cx, cy = plan.centre[0] + plan.velocity[0] * t, plan.centre[1] + plan.velocity[1] * t
            # patch centre (half, half) -> (cx, cy) in frame -> ROI coordinates
            m = np.float64([[1, 0, cx - half - rx0], [0, 1, cy - half - ry0]])
            shape = (rx1 - rx0, ry1 - ry0)
            moved = cv2.warpAffine(patch, m, shape, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
            alpha = cv2.warpAffine(mask, m, shape, flags=cv2.INTER_LINEAR, borderValue=0.0)[..., None]
            region = clean[t][ry0:ry1, rx0:rx1]
            region[:] = alpha * np.clip(moved.astype(np.float32), 0, 255) + (1 - alpha) * region
            alphas[plan.face_id].append(alpha)
    clean_u8 = [np.clip(f + 0.5, 0, 255).astype(np.uint8) for f in clean]
    damaged = [f.astype(np.float32) / 255.0 for f in clean_u8]
    for plan in plans:
        rx0, ry0, rx1, ry1 = rois[plan.face_id]
        regions = [d[ry0:ry1, rx0:rx1].copy() for d in damaged]
        if plan.kind in ("x264", "mpeg4"):
            if plan.kind == "x264":
                args, suffix = x264_args(plan.params["crf"]), ".mp4"
            else:
                vf = f"scale=out_color_matrix=bt601:out_range=tv:flags={SWS_FLAGS},format=yuv420p"
                args, suffix = ["-vf", vf, "-c:v", "mpeg4", "-q:v", str(plan.params["qscale"])], ".avi"
            u8 = [np.clip(r * 255 + 0.5, 0, 255).astype(np.uint8) for r in regions]
            hurt = [r.astype(np.float32) / 255.0 for r in _codec_pass(u8, args, config.fps, suffix, scratch)]
        else:
            frame_rng = np.random.default_rng(plan.params.get("seed", 0))
            hurt = [_damage_pixels(r, plan.kind, plan.params, frame_rng) for r in regions]
        for t in range(n):
            alpha = alphas[plan.face_id][t]
            damaged[t][ry0:ry1, rx0:rx1] = alpha * hurt[t] + (1 - alpha) * regions[t]
    damaged_u8 = [np.clip(d * 255 + 0.5, 0, 255).astype(np.uint8) for d in damaged]
    return clean_u8, damaged_u8


# --------------------------------------------------------------------------------------------------
# scoring


def size_bin(size: float) -> str:
    """The breakdown bin of a face of box side ``size`` px, e.g. ``"80-150"``."""
    for lo, hi in SIZE_BINS:
        if lo <= size < hi:
            return f"<{hi}" if lo == 0 else f"{lo}+" if hi == math.inf else f"{lo}-{hi}"
    raise ValueError(f"face size {size} is negative")


def _int_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return (max(0, int(round(x0))), max(0, int(round(y0))), min(width, int(round(x1))), min(height, int(round(y1))))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """``evaluation.psnr`` of two uint8 images, capped at ``PSNR_CAP_DB`` as ``ffv eval`` caps it."""
    return min(PSNR_CAP_DB, psnr(a / 255.0, b / 255.0))


def _classical_frame(frame: np.ndarray, faces: Sequence[tuple[FacePlan, tuple]], oracle: bool) -> np.ndarray:
    """``frame`` with each face box (and a margin) replaced by the classical baseline for its
    damage kind (``oracle``), or for "none" (a clip made from the clean frames)."""
    out = frame.copy()
    h, w = frame.shape[:2]
    for plan, box in faces:
        pad = 0.25 * plan.size
        x0, y0, x1, y1 = _int_box((box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad), w, h)
        crop = frame[y0:y1, x0:x1].astype(np.float32) / 255.0
        fixed = classical_baseline(crop, CLASSICAL_KIND[plan.kind if oracle else "none"])
        out[y0:y1, x0:x1] = np.clip(fixed * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


@dataclass(frozen=True)
class FaceFrameScore:
    """Scores of one face in one frame, per method (dB / SSIM / identity distance to the clean
    face, empty when not measured)."""

    frame: int
    face_id: int
    kind: str
    size: float
    psnr: dict[str, float]
    ssim: dict[str, float]
    identity: dict[str, float] = field(default_factory=dict)


def score_videos(clip: SyntheticClip, videos: Mapping[str, str | os.PathLike], *, classical_from: str | None = None,
                 damaged: bool = True, with_ssim: bool = True, identity: bool = False) -> dict:
    """Score ``videos`` (method name -> file of the clip's frames) against the clip's clean frames.

    Args:
        videos: each decoded with :func:`read_video`; must have the clip's frame count and size.
        classical_from: if given, the name of a method in ``videos`` (the damaged input) whose
            frames get the classical baseline on each face, scored as the method "classical".
        damaged: the videos hold the damaged frames, so the classical baseline is told each face's
            damage kind; False (a clip of the clean frames): it treats every face as undamaged.
        with_ssim: also SSIM per face-frame (the slow part).
        identity: also the identity distance of each face box to the clean frame's same box
            (``identity.descriptor``, each face with its own dlib landmarks; lower is better);
            needs the optional extra ``identity`` (checked before anything is decoded).

    Returns:
        A JSON-ready dict: "methods"; "face_frames": per-face-frame scores; "frames": whole-frame
        PSNR per method; "summary" (see :func:`summarize_scores`).
    """
    if identity:
        from framefusion_video.evaluation.identity import check_available, descriptor, distance

        check_available()
    cfg = clip.config
    size = (cfg.width, cfg.height)
    names = list(videos) + (["classical"] if classical_from else [])
    readers = {name: read_video(path, size) for name, path in videos.items()}
    face_scores: list[FaceFrameScore] = []
    frame_psnr: dict[str, list[float]] = {m: [] for m in names}
    try:
        for index, clean in enumerate(read_video(clip.clean, size)):
            frames = {}
            for name, reader in readers.items():
                frame = next(reader, None)
                if frame is None:
                    raise ValueError(f"{videos[name]} has fewer frames than the clip ({index})")
                frames[name] = frame
            faces = clip.faces_in_frame(index)
            if classical_from:
                frames["classical"] = _classical_frame(frames[classical_from], faces, damaged)
            for name in names:
                frame_psnr[name].append(_psnr(frames[name], clean))
            for plan, box in faces:
                x0, y0, x1, y1 = _int_box(box, cfg.width, cfg.height)
                ref = clean[y0:y1, x0:x1]
                ps = {m: _psnr(frames[m][y0:y1, x0:x1], ref) for m in names}
                ss = ({m: ssim(frames[m][y0:y1, x0:x1] / 255.0, ref / 255.0) for m in names}
                      if with_ssim and min(y1 - y0, x1 - x0) > 11 else {})
                ids = {}
                if identity:
                    ref_descriptor = descriptor(clean, (x0, y0, x1, y1))
                    ids = {m: distance(descriptor(frames[m], (x0, y0, x1, y1)), ref_descriptor) for m in names}
                face_scores.append(FaceFrameScore(index, plan.face_id, plan.kind, plan.size, ps, ss, ids))
    finally:
        for reader in readers.values():
            reader.close()
    if len(frame_psnr[names[0]]) != cfg.n_frames:
        raise ValueError(f"clean clip has {len(frame_psnr[names[0]])} frames, expected {cfg.n_frames}")
    return {"methods": names,
            "face_frames": [asdict(s) for s in face_scores],
            "frames": {m: v for m, v in frame_psnr.items()},
            "summary": summarize_scores(face_scores, frame_psnr, names)}


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def summarize_scores(faces: Sequence[FaceFrameScore], frames: Mapping[str, Sequence[float]],
                     methods: Sequence[str]) -> dict:
    """Means over face-frames (all, by kind, by size bin) and whole frames, and worst losses.

    Each group has per method "psnr", "ssim" and "identity" (the mean identity distance to the
    clean face; None when not measured).

    ``worst_loss[m][ref]`` is the largest drop, over face-frames, of method ``m``'s PSNR below
    ``ref``'s (positive = worse than ``ref``); ``mean_face_loss`` is the mean of each face's own
    mean drop, ``faces_losing`` how many faces lose more than 0.5 dB on average.
    """
    def group(select) -> dict:
        chosen = [f for f in faces if select(f)]
        out = {"n": len(chosen)}
        for m in methods:
            out[m] = {"psnr": _mean([f.psnr[m] for f in chosen]),
                      "ssim": _mean([f.ssim[m] for f in chosen if m in f.ssim]),
                      "identity": _mean([f.identity[m] for f in chosen if m in f.identity])}
        return out

    kinds = sorted({f.kind for f in faces}, key=lambda k: DAMAGE_KINDS.index(k) if k in DAMAGE_KINDS else 99)
    bins = [size_bin(lo) for lo, _ in SIZE_BINS]
    losses: dict[str, dict] = {}
    for m in methods:
        losses[m] = {}
        for ref in methods:
            if ref == m:
                continue
            drops = [f.psnr[ref] - f.psnr[m] for f in faces]
            per_face: dict[int, list[float]] = {}
            for f, d in zip(faces, drops):
                per_face.setdefault(f.face_id, []).append(d)
            face_means = [float(np.mean(v)) for v in per_face.values()]
            losses[m][ref] = {"worst": max(drops) if drops else None,
                              "mean_face_loss": _mean(face_means),
                              "faces_losing": int(sum(v > 0.5 for v in face_means)),
                              "faces": len(face_means)}
    return {"faces": group(lambda f: True),
            "kinds": {k: group(lambda f, k=k: f.kind == k) for k in kinds},
            "sizes": {b: group(lambda f, b=b: size_bin(f.size) == b) for b in bins},
            "frames": {m: _mean(frames[m]) for m in methods},
            "loss": losses}


def transcode(src: str | os.PathLike, dst: str | os.PathLike, crf: int = 18, preset: str = "veryfast",
              resize: str | None = None) -> Path:
    """A plain ``ffmpeg -i src -c:v libx264 -preset veryfast -crf 18 dst``: the reference ffv's
    output is held to. ``resize``: an ffmpeg ``scale`` filter's size and flags first (e.g.
    ``"iw/4:ih/4:flags=area"``), for the super-resolution benchmark's reduced clip and its bicubic
    baseline."""
    vf = ["-vf", f"scale={resize}", "-pix_fmt", "yuv420p"] if resize else []
    _run_ffmpeg(["-i", str(src), "-map", "0:v:0", *vf, "-c:v", "libx264", "-preset", preset, "-crf", str(crf),
                 str(dst)])
    return Path(dst)


def restore_config_from(options: Mapping[str, str]):
    """A ``restore.RestoreConfig`` from ``field=value`` strings (``strength=0``,
    ``colour_match=false``), each converted to the type of the field's default."""
    from framefusion_video.restore.config import RestoreConfig

    base = RestoreConfig()
    values = {}
    for key, text in options.items():
        if not hasattr(base, key):
            raise ValueError(f"RestoreConfig has no field {key!r}")
        default = getattr(base, key)
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"{key} must be true or false, got {text!r}")
            values[key] = text.lower() in ("true", "1", "yes")
        elif default is None:
            values[key] = text
        else:
            values[key] = type(default)(text)
    return replace(base, **values)
