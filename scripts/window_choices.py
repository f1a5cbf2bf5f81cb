"""What each shipped network gains on face windows of the synthetic clip, with nothing else between
it and the frame: the experiments behind the ×4 notes of ``inference.EnlargedRestorer`` and the same-size notes in
``docs/what-we-tried.md``.

Builds the seeded synthetic clip of frl faces (``synthetic_clip.build_clip``), takes every
``--step``-th frame and, around each face's true box (``windows.window_rect``), pastes the whole
output of each candidate into the frame; prints the mean face PSNR gain over the base, by thirds of
face size (and by damage kind at x1):

- ``--mode x4``: the clean clip reduced by 4 (area, x264 CRF ``--crf``): the shipped x4 network
  alone against the x2 network twice and the x2 network once then bicubic, over the pipeline's
  bicubic upscale;
- ``--mode x1``: the damaged clip: each window reduced by 2 (or 4) and super-resolved back by the
  x2 (or x4) network, against the input, and the best of input, x2 and x4 per face (an oracle).

    .venv/bin/python scripts/window_choices.py --mode x4
    .venv/bin/python scripts/window_choices.py --mode x1
    .venv/bin/python scripts/window_choices.py --mode x1 --x2 /tmp/vs2/ffv_span2.tflite --x4 /tmp/vs4/ffv_span4.tflite

(``--x2``/``--x4``: other networks, e.g. the video-damage ones exported by ``ffv export
runs/video_span2 -o /tmp/vs2/ffv_span2.keras``.)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))  # synthetic_clip, the benchmarks' clip maker

from framefusion_video.restore.blending import upscale_frame  # noqa: E402
from framefusion_video.restore.inference import LiteRestorer, default_sr_model_path  # noqa: E402
from framefusion_video.restore.windows import cut_window, window_rect  # noqa: E402
from synthetic_clip import ClipConfig, _int_box, _psnr, build_clip, read_video, size_bin, transcode  # noqa: E402


def paste(frame: np.ndarray, out: np.ndarray, rect, scale: int) -> np.ndarray:
    """``frame`` (already at the output's scale) with ``out`` pasted whole over ``rect`` x ``scale``."""
    result = frame.copy()
    x0, y0 = scale * rect[0], scale * rect[1]
    result[y0:y0 + out.shape[0], x0:x0 + out.shape[1]] = np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8)
    return result


def reduced_and_back(window: np.ndarray, net: LiteRestorer) -> np.ndarray:
    """``window`` reduced by the network's scale (area) and super-resolved back (a whole multiple of it)."""
    k = net.scale
    h, w = (window.shape[0] // k) * k, (window.shape[1] // k) * k
    small = cv2.resize(window[:h, :w], (w // k, h // k), interpolation=cv2.INTER_AREA)
    return np.clip(net.restore(small[None])[0], 0.0, 1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["x4", "x1"], required=True)
    parser.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "data" / "faces" / "frl")
    parser.add_argument("--step", type=int, default=4, help="every Nth frame")
    parser.add_argument("--crf", type=int, default=20, help="x264 CRF of the reduced clip (x4 mode)")
    parser.add_argument("--x2", type=Path, help="the x2 network (default: the shipped one)")
    parser.add_argument("--x4", type=Path, help="the x4 network (default: the shipped one)")
    args = parser.parse_args()
    x2 = LiteRestorer(args.x2 or default_sr_model_path(2), threads=1)
    x4 = LiteRestorer(args.x4 or default_sr_model_path(4), threads=1)
    groups: dict[str, list[list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = build_clip(args.faces, Path(tmp) / "clip", ClipConfig())
        size = (clip.config.width, clip.config.height)
        clean = list(read_video(clip.clean, size))
        scale = 4 if args.mode == "x4" else 1
        src = transcode(clip.clean_x264, Path(tmp) / "x4.mp4", crf=args.crf, resize="iw/4:ih/4:flags=area") \
            if scale == 4 else clip.damaged
        frames = list(read_video(src, (size[0] // scale, size[1] // scale)))
        for i in range(0, len(frames), args.step):
            frame = frames[i]
            base = upscale_frame(frame, scale)
            for plan, box in clip.faces_in_frame(i):
                rect = window_rect(tuple(v / scale for v in box), frame.shape[:2])
                window = cut_window(frame, rect)
                if scale == 4:
                    once = np.clip(x2.restore(window[None]), 0, 1)
                    outs = [x4.restore(window[None])[0], x2.restore(once)[0], upscale_frame(once[0], 2)]
                else:
                    outs = [reduced_and_back(window, x2), reduced_and_back(window, x4)]
                x0, y0, x1, y1 = _int_box(box, *size)
                ref = clean[i][y0:y1, x0:x1]
                scores = [_psnr(base[y0:y1, x0:x1], ref)]
                scores += [_psnr(paste(base, np.clip(o, 0, 1), rect, scale)[y0:y1, x0:x1], ref) for o in outs]
                for key in (size_bin(plan.size), "all", *([plan.kind] if scale == 1 else [])):
                    groups.setdefault(key, []).append(scores)
    names = ["x4 alone", "x2 twice", "x2 then bicubic"] if scale == 4 else ["x2 on /2", "x4 on /4"]
    print(f"mode {args.mode}: mean face PSNR gain (dB) over the {'bicubic upscale' if scale == 4 else 'input'}")
    for key, rows in groups.items():
        v = np.array(rows)
        gains = " ".join(f"{n} {(v[:, k + 1] - v[:, 0]).mean():+.2f}" for k, n in enumerate(names))
        oracle = f" best-of-three {(v.max(axis=1) - v[:, 0]).mean():+.2f}" if scale == 1 else ""
        print(f"{key:>10} n={len(v):3d} base {v[:, 0].mean():.2f}  {gains}{oracle}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
