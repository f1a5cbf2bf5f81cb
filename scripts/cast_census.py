"""How often the colour-cast repair would act on real footage: for every clip given, every
``--every``-th frame's faces are found and aligned as ``ffv restore`` finds and aligns them, and each
face's mean chroma over the face mask is placed against lit skin's (``blending.chroma_distance``).
Prints per clip the face-frames, those beyond ``blending.CAST_DISTANCE`` (which the repair moves)
and the largest distance.

    .venv/bin/python scripts/cast_census.py ../shared/data/videos/*.mp4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    from framefusion_video.faces.alignment import estimate_alignment, warp_to_crop
    from framefusion_video.faces.detection import FaceDetector
    from framefusion_video.restore.blending import CAST_DISTANCE, chroma_distance, face_chroma
    from framefusion_video.video.decode import read_frames

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("--every", type=int, default=10)
    args = parser.parse_args()
    print("| clip | face-frames | beyond CAST_DISTANCE | largest distance |\n|---|---|---|---|")
    with FaceDetector() as detector:
        for clip in args.clips:
            found: list[float] = []
            for index, frame in enumerate(read_frames(clip)):
                if index % args.every:
                    continue
                for face in detector.detect(frame):
                    crop = warp_to_crop(frame, estimate_alignment(face.landmarks, 128), 128)
                    found.append(chroma_distance(face_chroma(crop.astype(np.float32) / 255.0)))
            beyond = sum(d > CAST_DISTANCE for d in found)
            print(f"| {clip.name} | {len(found)} | {beyond} | {max(found, default=0.0):.2f} |")


if __name__ == "__main__":
    main()
