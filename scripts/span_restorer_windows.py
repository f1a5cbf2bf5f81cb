"""What a same-size SPAN restorer (``ffv train --span 1``) gains on the damaged synthetic clip's face
windows, with nothing between it and the frame: the clip's true face boxes, each face's window
(``windows.window_rect``) restored whole and pasted hard, scored on the face boxes against the clean
frames, by damage kind; the same for the shipped U-Net's correction of each aligned crop pasted
over the whole crop (``benchmarks/breakdown.py``'s "whole crop" row, true boxes' landmarks not
being known: detected faces there).

    .venv/bin/python scripts/span_restorer_windows.py models/training/video_span_restorer --snapshot 900

Chosen on ``pixabay/val`` (the default ``--faces``); ``--step`` N scores every Nth frame.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def restore_window(model_for, window: np.ndarray, multiple: int = 16) -> np.ndarray:
    """``window`` (uint8 RGB (h, w, 3)) through the restorer built for the square of the next
    multiple of ``multiple`` px (reflect-padded), cut back to (h, w), float32 in [0, 1]."""
    h, w = window.shape[:2]
    side = -(-max(h, w) // multiple) * multiple
    padded = np.pad(window, ((0, side - h), (0, side - w), (0, 0)), mode="reflect")
    out = model_for(side).predict(padded[None].astype(np.float32) / 255.0, verbose=0)[0]
    return np.clip(out[:h, :w], 0.0, 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the training run (its checkpoint.json gives the network's shape)")
    parser.add_argument("--snapshot", type=int, required=True)
    parser.add_argument("--faces", type=Path, default=Path("../shared/data/faces/pixabay/val"))
    parser.add_argument("--step", type=int, default=4)
    args = parser.parse_args(argv)
    from synthetic_clip import ClipConfig, _int_box, _psnr, build_clip, read_video

    from framefusion_video.restore.windows import window_rect
    from framefusion_video.training.span import SpanConfig, resize_span

    import keras

    from framefusion_video.training.export import export_generator

    config = SpanConfig.from_dict(json.loads((args.run / "checkpoint.json").read_text())["config"]["span"])
    with tempfile.TemporaryDirectory(prefix="ffv-span-restorer-") as tmp:
        path = export_generator(args.run, Path(tmp) / "restorer.keras", tflite=False, snapshot=args.snapshot)
        base = keras.saving.load_model(path, compile=False)
    models: dict[int, object] = {}

    def model_for(side: int):
        if side not in models:
            models[side] = resize_span(base, config, side)
        return models[side]

    with tempfile.TemporaryDirectory(prefix="ffv-span-restorer-") as tmp:
        clip = build_clip(args.faces, Path(tmp) / "clip", ClipConfig(seed=0))
        size = (clip.config.width, clip.config.height)
        clean, frames = list(read_video(clip.clean, size)), list(read_video(clip.damaged, size))
    gains = defaultdict(list)
    for i in range(0, len(frames), args.step):
        out = frames[i].copy()
        height, width = out.shape[:2]
        for _, box in clip.faces_in_frame(i):
            rect = window_rect(box, (height, width))
            if rect is None:
                continue
            x0, y0, x1, y1 = rect
            restored = restore_window(model_for, frames[i][y0:y1, x0:x1])
            out[y0:y1, x0:x1] = np.clip(restored * 255.0 + 0.5, 0, 255).astype(np.uint8)
        for plan, box in clip.faces_in_frame(i):
            bx0, by0, bx1, by1 = _int_box(box, width, height)
            before = _psnr(frames[i][by0:by1, bx0:bx1], clean[i][by0:by1, bx0:bx1])
            after = _psnr(out[by0:by1, bx0:bx1], clean[i][by0:by1, bx0:bx1])
            gains[plan.kind].append(after - before)
            gains["all"].append(after - before)
    print(f"{args.run} snapshot {args.snapshot}, true boxes, hard paste, dB over the input by kind:")
    print({k: round(float(np.mean(v)), 2) for k, v in sorted(gains.items())})
    return 0


if __name__ == "__main__":
    sys.exit(main())
