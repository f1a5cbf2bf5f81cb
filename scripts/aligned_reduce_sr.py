"""Same-size restoration by "reduce and super-resolve" on aligned crops: the figures behind that
note of ``docs/what-we-tried.md``.

Builds the seeded synthetic clip of frl faces (``quality_clip.build_clip``) and restores its damaged
clip with ``ffv restore``'s defaults, and with each given ×2 network in the U-Net's place: every
128 px aligned crop reduced to 64 px (area) and enlarged back by the network. Prints the face PSNR
(dB, against the clean frames) of each run, overall and by damage kind.

    .venv/bin/python scripts/aligned_reduce_sr.py shipped=framefusion_video/weights/ffv_span2.tflite \\
        video=/tmp/vs2/ffv_span2.tflite
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np


class ReducedSr:
    """A same-size restorer of 128 px crops: each reduced to 64 px and enlarged by a ×2 network."""

    crop_size = 128
    scale = 1

    def __init__(self, path: str) -> None:
        from framefusion_video.restore.inference import LiteRestorer

        self.network = LiteRestorer(path)

    def restore(self, crops: np.ndarray) -> np.ndarray:
        half = self.crop_size // 2
        small = np.stack([cv2.resize(c, (half, half), interpolation=cv2.INTER_AREA) for c in crops])
        return np.clip(self.network.restore(small), 0, 1)


def main() -> None:
    from framefusion_video.restore.batch import restore_paths
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the benchmarks' clip maker
    from synthetic_clip import ClipConfig, build_clip, score_videos

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("networks", nargs="+", metavar="NAME=FILE", help="x2 networks (.tflite) to try")
    parser.add_argument("--faces", type=Path, default=Path(__file__).resolve().parents[1].parent
                        / "shared" / "data" / "faces" / "frl")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ffv-aligned-reduce-sr-"))
    clip = build_clip(args.faces, work / "clip", ClipConfig(seed=0))
    videos = {"input": clip.damaged, "ffv restore": work / "default.mp4"}
    restore_paths([clip.damaged], videos["ffv restore"], overwrite=True, quiet=True)
    for item in args.networks:
        name, _, path = item.partition("=")
        videos[name] = work / f"{name}.mp4"
        restore_paths([clip.damaged], videos[name], overwrite=True, quiet=True, restorer=ReducedSr(path))
    summary = score_videos(clip, videos, damaged=True, with_ssim=False)["summary"]
    print("all", {m: round(v["psnr"], 2) for m, v in summary["faces"].items() if isinstance(v, dict)})
    for kind, group in summary["kinds"].items():
        print(kind, {m: round(group[m]["psnr"], 2) for m in videos if m in group})


if __name__ == "__main__":
    main()
