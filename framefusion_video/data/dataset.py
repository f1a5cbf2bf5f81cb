"""Training and evaluation data: face photos aligned exactly as ``ffv restore`` aligns video faces.

Photos are aligned once with the same detector and template as inference and cached as one uint8
array (N, S, S, 3) per folder and crop size, so training crops look like inference crops.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from framefusion_video.base.errors import FfvError
from framefusion_video.base.filetypes import IMAGE_EXTENSIONS
from framefusion_video.base.outputs import atomic_path
from framefusion_video.faces.alignment import estimate_alignment, warp_to_crop

log = logging.getLogger(__name__)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files (``filetypes.IMAGE_EXTENSIONS``) directly inside or below ``folder``, sorted (a stable
    order for seeding)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FfvError(folder, "not a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise FfvError(folder, f"no images found ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """uint8 RGB (H, W, 3) of the image file ``path`` (any format OpenCV decodes): the one image
    reader of ffv; raises FfvError for a file that cannot be read or is not an image."""
    try:
        data = np.fromfile(os.fspath(path), dtype=np.uint8)
    except OSError as exc:
        raise FfvError(path, f"cannot read: {exc.strerror or exc}") from exc
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise FfvError(path, "not a readable image (is it a PNG or JPEG?)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def align_photo(image: np.ndarray, detect: Callable[[np.ndarray], list], crop_size: int) -> np.ndarray | None:
    """The aligned crop (uint8 (S, S, 3)) of the largest face in ``image``, or None if none is found."""
    faces = detect(image)
    if not faces:
        return None
    face = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    return warp_to_crop(image, estimate_alignment(face.landmarks, crop_size), crop_size)


def _cache_key(files: list[Path], crop_size: int) -> str:
    digest = hashlib.sha1(f"v1:{crop_size}".encode())
    for f in files:
        digest.update(f.name.encode())
    return digest.hexdigest()[:12]


def default_cache_dir() -> Path:
    """``$FFV_CACHE`` or ``~/.cache/ffv``: aligned crops are derived data, kept out of the repo."""
    return Path(os.environ.get("FFV_CACHE", Path.home() / ".cache" / "ffv"))


def load_aligned_crops(
    folder: str | os.PathLike,
    crop_size: int = 128,
    *,
    cache_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """All faces of ``folder`` aligned to ``crop_size``: uint8 (N, S, S, 3), cached on disk.

    Photos where no face is found are skipped (and counted in the log). ``limit`` takes the first
    N files only (in sorted order), for quick runs and tests.
    """
    files = list_images(folder)[:limit] if limit else list_images(folder)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = _cache_key(files, crop_size)
    cache = cache_dir / f"{Path(folder).name}_{crop_size}_{len(files)}_{key}.npy"
    if cache.is_file():
        return np.load(cache, mmap_mode=None)

    from framefusion_video.faces.detection import FaceDetector, FaceDetectorConfig

    crops, missed = [], 0
    iterator: Iterator[Path] = iter(files)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(files, desc=f"aligning {Path(folder).name}", unit="img")
    with FaceDetector(FaceDetectorConfig()) as detector:
        for path in iterator:
            try:
                crop = align_photo(read_rgb(path), detector.detect, crop_size)
            except FfvError as exc:
                log.warning("%s", exc)
                crop = None
            if crop is None:
                missed += 1
                continue
            crops.append(crop)
    if not crops:
        raise FfvError(folder, "no face found in any image")
    log.info("aligned %d faces from %s (%d without a detectable face skipped)", len(crops), folder, missed)
    array = np.stack(crops)
    with atomic_path(cache) as tmp:
        np.save(tmp, array)
    with atomic_path(cache.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps({"folder": os.fspath(folder), "files": len(files), "faces": len(crops),
                                   "missed": missed}))
    return array


@dataclass(frozen=True)
class BatchSampler:
    """Deterministic training batches: batch ``step`` depends only on (seed, step).

    Each epoch is a seeded permutation of the crops, and every sample's degradation draws from its
    own generator seeded by (seed, epoch, index). So resuming at a step reproduces the data stream
    exactly, with no generator state to save. With ``repeats`` (one count per crop), crop ``j``
    appears ``repeats[j]`` times per epoch, each time with damage of its own.
    """

    crops: np.ndarray  # uint8 (N, S, S, 3)
    batch_size: int
    seed: int
    degrade: Callable[[np.ndarray, np.random.Generator], np.ndarray]
    repeats: np.ndarray | None = None  # int (N,) >= 1, or None for once each

    def _epoch_order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        if self.repeats is None:
            return rng.permutation(len(self.crops))
        return rng.permutation(np.repeat(np.arange(len(self.crops)), self.repeats))

    def _epoch_length(self) -> int:
        return len(self.crops) if self.repeats is None else int(np.sum(self.repeats))

    def indices(self, step: int) -> tuple[int, np.ndarray]:
        """(epoch, crop indices) of batch ``step``; an epoch drops its last partial batch."""
        per_epoch = max(1, self._epoch_length() // self.batch_size)
        epoch, pos = divmod(step, per_epoch)
        return epoch, self._epoch_order(epoch)[pos * self.batch_size:(pos + 1) * self.batch_size]

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(damaged, clean), both float32 (B, S, S, 3) in [0, 1]."""
        epoch, idx = self.indices(step)
        per_epoch = max(1, self._epoch_length() // self.batch_size)
        first = (step % per_epoch) * self.batch_size
        clean = np.empty((len(idx), *self.crops.shape[1:]), np.float32)
        damaged = []  # the damage may change the size (super-resolution inputs)
        for i, j in enumerate(idx):
            # A repeated crop is told apart by its place in the epoch.
            key = [self.seed, epoch, int(j)] if self.repeats is None else [self.seed, epoch, int(j), first + i]
            rng = np.random.default_rng(key)
            img = self.crops[j].astype(np.float32) / 255.0
            if rng.random() < 0.5:
                img = img[:, ::-1]
            clean[i] = img
            damaged.append(self.degrade(np.ascontiguousarray(img), rng))
        return np.stack(damaged).astype(np.float32, copy=False), clean


@dataclass(frozen=True)
class PairSampler:
    """Deterministic training batches from fixed (damaged, clean) pairs, such as the video-damage
    cache (``video_damage.build_pair_cache``): batch ``step`` depends only on (seed, step).

    Each sample is a random ``patch`` px square of a pair's damaged side and the ``scale`` x larger
    square of its clean side at the same place, flipped left-right half the time, so that pairs
    stored larger than the network's input give many different inputs and batches stack.
    """

    low: np.ndarray  # uint8 (N, P, P, 3): damaged, on the network's input grid
    high: np.ndarray  # uint8 (N, s·P, s·P, 3): clean, exactly aligned with ``low``
    batch_size: int
    seed: int
    patch: int  # the network's input side, at most P

    def __post_init__(self) -> None:
        if len(self.low) != len(self.high) or self.high.shape[1] % self.low.shape[1]:
            raise ValueError(f"unpaired arrays: {self.low.shape} and {self.high.shape}")
        if self.patch > self.low.shape[1]:
            raise ValueError(f"patch {self.patch} is larger than the pairs' {self.low.shape[1]} px")

    @property
    def scale(self) -> int:
        return self.high.shape[1] // self.low.shape[1]

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(damaged float32 (B, p, p, 3), clean float32 (B, s·p, s·p, 3)), both in [0, 1]."""
        per_epoch = max(1, len(self.low) // self.batch_size)
        epoch, pos = divmod(step, per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.low))
        p, s = self.patch, self.scale
        damaged, clean = [], []
        for j in order[pos * self.batch_size:(pos + 1) * self.batch_size]:
            rng = np.random.default_rng([self.seed, epoch, int(j)])
            y, x = rng.integers(0, self.low.shape[1] - p + 1, 2)
            low = self.low[j, y:y + p, x:x + p]
            high = self.high[j, s * y:s * (y + p), s * x:s * (x + p)]
            if rng.random() < 0.5:
                low, high = low[:, ::-1], high[:, ::-1]
            damaged.append(low)
            clean.append(high)
        return np.stack(damaged).astype(np.float32) / 255.0, np.stack(clean).astype(np.float32) / 255.0

    def centre(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The centred patches of the first ``n`` pairs (a fixed validation set), float32 [0, 1]."""
        p, s = self.patch, self.scale
        o = (self.low.shape[1] - p) // 2
        low = self.low[:n, o:o + p, o:o + p]
        high = self.high[:n, s * o:s * (o + p), s * o:s * (o + p)]
        return low.astype(np.float32) / 255.0, high.astype(np.float32) / 255.0
