"""Fit the skin-chroma prior of the colour-cast repair (``blending.SKIN_CHROMA_MEAN``,
``SKIN_CHROMA_INV_COV``) and show where ``CAST_DISTANCE`` falls on the faces that choose it.

Each face of ``--train`` is aligned as ``ffv train`` aligns it (``dataset.load_aligned_crops``, 128
px) and reduced to its mean (Cr, Cb) over ``blending.face_mask``, the statistic the colour rule
reads. The prior is the mean and covariance of those points, refitted three times on the 98% of
faces nearest to it (photos under coloured light or with filters are in the set too). Prints the
constants, then the quantiles of the Mahalanobis distance on ``--train`` and on ``--val`` (the
choosing set; frl/, which reports, is not read), and how many faces of ``--val`` the repair would
touch at the shipped ``CAST_DISTANCE``.

    .venv/bin/python scripts/fit_skin_chroma.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "pixabay"


def face_chroma(folder: Path) -> np.ndarray:
    """(N, 2) mask-weighted mean (Cr, Cb) of each aligned face of ``folder``."""
    from framefusion_video.data.dataset import load_aligned_crops
    from framefusion_video.restore.blending import face_mask

    crops = load_aligned_crops(folder, 128)
    weights = face_mask(128).astype(np.float64)
    weights /= weights.sum()
    ycc = [cv2.cvtColor(c.astype(np.float32) / 255.0, cv2.COLOR_RGB2YCrCb) for c in crops]
    return np.array([np.einsum("ij,ijk->k", weights, y)[1:] for y in ycc])


def robust_fit(points: np.ndarray, keep: float = 0.98, rounds: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of ``points``, refitted ``rounds`` times on the ``keep`` share nearest."""
    mean, cov = points.mean(0), np.cov(points.T)
    for _ in range(rounds):
        d = distances(points, mean, np.linalg.inv(cov))
        near = points[d <= np.quantile(d, keep)]
        mean, cov = near.mean(0), np.cov(near.T)
    return mean, cov


def distances(points: np.ndarray, mean: np.ndarray, inv_cov: np.ndarray) -> np.ndarray:
    delta = points - mean
    return np.sqrt(np.einsum("ij,jk,ik->i", delta, inv_cov, delta))


def main() -> None:
    from framefusion_video.restore.blending import CAST_DISTANCE

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, default=FACES / "train")
    parser.add_argument("--val", type=Path, default=FACES / "val")
    args = parser.parse_args()
    train, val = face_chroma(args.train), face_chroma(args.val)
    mean, cov = robust_fit(train)
    inv = np.linalg.inv(cov)
    print(f"faces: train {len(train)}, val {len(val)}")
    print(f"SKIN_CHROMA_MEAN = {np.round(mean, 4).tolist()}")
    print(f"SKIN_CHROMA_INV_COV = {np.round(inv, 1).tolist()}")
    quantiles = (0.5, 0.9, 0.95, 0.98, 0.99, 1.0)
    for name, points in (("train", train), ("val", val)):
        d = distances(points, mean, inv)
        print(f"{name}: distance quantiles {dict(zip(quantiles, np.round(np.quantile(d, quantiles), 2)))}; "
              f"beyond CAST_DISTANCE {CAST_DISTANCE}: {int((d > CAST_DISTANCE).sum())} of {len(d)}")


if __name__ == "__main__":
    main()
