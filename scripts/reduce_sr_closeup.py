"""A blurred face in real footage, reduced and super-resolved back: a close-up to judge by eye.

For ``--upscale 1`` on footage whose faces are softer than their pixels (the TV interview), the
issue's "restore a face at its effective resolution": the window around the first face MediaPipe
finds in frame ``--frame`` (1.5x its box) is reduced by each ``--reduce`` factor (area) and
enlarged back by a super-resolution network of that scale (``.keras`` or ``.tflite`` taking inputs
of any size), then brought to the window's size; the PNG shows the window and each result side by
side (left to right in the order given).

    .venv/bin/python scripts/reduce_sr_closeup.py ../shared/data/videos/real_lowquality_interview_1.mp4 \\
        --frame 30 --net 2:/tmp/vs2full/ffv_span2.tflite -o /tmp/closeup.png

``--net SCALE:FILE`` (repeatable): e.g. the full-mix x2 network, ``ffv export
models/training/video_span2 -o /tmp/vs2full/ffv_span2.keras``, which learnt to deblur.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("--frame", type=int, default=30)
    parser.add_argument("--net", action="append", required=True, metavar="SCALE:FILE",
                        help="a super-resolution network and its scale, e.g. 2:/tmp/vs2full/ffv_span2.tflite")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    from synthetic_clip import read_video

    from framefusion_video.faces.detection import FaceDetector, FaceDetectorConfig
    from framefusion_video.restore.inference import load_restorer
    from framefusion_video.video.probe import probe

    info = probe(args.video)
    frame = next(f for i, f in enumerate(read_video(args.video, (info.width, info.height))) if i == args.frame)
    with FaceDetector(FaceDetectorConfig()) as detector:
        faces = detector.detect(frame)
    if not faces:
        parser.error(f"{args.video}: no face in frame {args.frame}")
    x0, y0, x1, y1 = faces[0].box
    half = 0.75 * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = int(max(0, cx - half)), int(max(0, cy - half))
    window = frame[top:int(min(frame.shape[0], cy + half)), left:int(min(frame.shape[1], cx + half))]
    h, w = window.shape[:2]
    tiles = [window]
    for spec in args.net:
        scale, path = spec.split(":", 1)
        scale = int(scale)
        small = cv2.resize(window, (max(8, round(w / scale)), max(8, round(h / scale))), interpolation=cv2.INTER_AREA)
        out = load_restorer(path, batch_size=1).restore(small[None].astype(np.float32) / 255.0)[0]
        out = np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)
        tiles.append(cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA))
    cv2.imwrite(str(args.output), cv2.cvtColor(np.concatenate(tiles, 1), cv2.COLOR_RGB2BGR))
    print(f"{args.output}: face {faces[0].box}, window {w}x{h}; left to right: the frame, " + ", ".join(args.net))
    return 0


if __name__ == "__main__":
    sys.exit(main())
