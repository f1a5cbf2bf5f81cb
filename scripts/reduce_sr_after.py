"""After ``ffv restore``'s same-size pipeline, each detected face's window reduced by 2 and
super-resolved back: what that would add on the synthetic damaged clip, by damage kind, and when
chosen per face by how soft the face is (how little it loses when halved and enlarged back, dB).

Builds the seeded synthetic clip of ``--faces`` (default ``pixabay/val``, the choosing set),
tracks its faces as ``ffv restore`` does, runs the pipeline with default options, then on every
``--step``-th frame pastes the ×2 network's output over each face's window (``windows.py``'s
window and mask) and scores the face boxes against the clean frames.

    .venv/bin/python scripts/reduce_sr_after.py --net /tmp/vs2full/ffv_span2.tflite

(``/tmp/vs2full/ffv_span2.tflite``: the full-mix ×2 network, ``ffv export models/training/video_span2
-o /tmp/vs2full/ffv_span2.keras``.)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path, default=Path("../shared/data/faces/pixabay/val"))
    parser.add_argument("--net", required=True, help="a x2 network taking inputs of any size (.tflite or .keras)")
    parser.add_argument("--step", type=int, default=4, help="every Nth frame")
    args = parser.parse_args(argv)
    from synthetic_clip import ClipConfig, _int_box, _psnr, build_clip, read_video

    from framefusion_video.faces.detection import FaceDetector
    from framefusion_video.faces.tracking import track_faces
    from framefusion_video.restore.clip import detector_config, load_default_restorer, tracking_config
    from framefusion_video.restore.config import RestoreConfig
    from framefusion_video.restore.inference import load_restorer
    from framefusion_video.restore.pipeline import restore_frames
    from framefusion_video.restore.soft_faces import softness
    from framefusion_video.restore.windows import cut_window, feather_mask, paste_window, window_rect

    with tempfile.TemporaryDirectory(prefix="ffv-reduce-sr-") as tmp:
        clip = build_clip(args.faces, Path(tmp) / "clip", ClipConfig(seed=0))
        size = (clip.config.width, clip.config.height)
        clean, frames = list(read_video(clip.clean, size)), list(read_video(clip.damaged, size))
    config = RestoreConfig()
    with FaceDetector(detector_config(config)) as detector:
        tracked = [(f, list(faces)) for f, faces in track_faces(frames, detector, tracking_config(config))]
    outs = [o.restored for o in restore_frames(iter(tracked), load_default_restorer(config), config)]
    net = load_restorer(args.net, batch_size=1)
    rows = []  # (kind, softness or None when undetected, pipeline PSNR, with the x2 pass)
    for i in range(0, len(frames), args.step):
        out, new = outs[i], outs[i].copy()
        height, width = out.shape[:2]
        found = {}
        for tracked_face in tracked[i][1]:
            box = tracked_face.face.box
            x0, y0, x1, y1 = window_rect(box, (height, width))
            rect = (x0, y0, x0 + (x1 - x0) // 2 * 2, y0 + (y1 - y0) // 2 * 2)
            window = cut_window(out, rect)
            small = cv2.resize(window, ((rect[2] - x0) // 2, (rect[3] - y0) // 2), interpolation=cv2.INTER_AREA)
            paste_window(new, np.clip(net.restore(small[None])[0], 0, 1), rect, feather_mask(rect, (height, width), box, 1), 1)
            bx0, by0, bx1, by1 = _int_box(box, width, height)
            found[(0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3]))] = softness(frames[i][by0:by1, bx0:bx1], 2)
        for plan, true_box in clip.faces_in_frame(i):
            x0, y0, x1, y1 = _int_box(true_box, width, height)
            soft = [s for (cx, cy), s in found.items() if x0 <= cx <= x1 and y0 <= cy <= y1]
            rows.append((plan.kind, soft[0] if soft else None, _psnr(out[y0:y1, x0:x1], clean[i][y0:y1, x0:x1]),
                         _psnr(new[y0:y1, x0:x1], clean[i][y0:y1, x0:x1])))
    by_kind = defaultdict(list)
    for kind, soft, before, after in rows:
        by_kind[kind].append(after - before)
    print("x2 pass on every detected face, dB over the pipeline, by kind:",
          {k: round(float(np.mean(v)), 2) for k, v in sorted(by_kind.items())})
    for threshold in (36, 38, 40, 42, 44, 46, 48):
        gain = np.mean([after - before if soft is not None and soft >= threshold else 0.0
                        for _, soft, before, after in rows])
        print(f"only faces of softness >= {threshold} dB: {gain:+.3f} dB over the pipeline (all face-frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
