"""What lighting does for the damaged synthetic clip's dark faces: the figures behind the "Dark
faces" note of ``docs/what-we-tried.md``.

Builds the seeded clip of frl faces (``quality_clip.build_clip``), restores the damaged clip with
``ffv restore``'s defaults, and prints the face PSNR (dB, against the clean frames) of each damage
kind for: the input; ``ffv restore``; the input lit by the restorer's own low-frequency gain (output
and input each blurred by a tenth of the face's side, divided, times the input: the restorer's
lighting with the input's detail); and, for the dark faces, the input lit by one gain to a mean luma
of 0.40 and of 0.48 over the face box, with the clean faces' mean luma.

    .venv/bin/python scripts/dark_faces.py
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

LUMA = np.float32([0.299, 0.587, 0.114])


def lit_by_restorer(damaged: np.ndarray, restored: np.ndarray, sigma: float) -> np.ndarray:
    """``damaged`` (float32 RGB) times the low-frequency gain ``restored`` gave it."""
    gain = cv2.GaussianBlur(restored, (0, 0), sigma) / np.maximum(cv2.GaussianBlur(damaged, (0, 0), sigma), 1e-3)
    return np.clip(damaged * np.clip(gain, 0.25, 4.0), 0, 1)


def main() -> None:
    from framefusion_video.restore.batch import restore_paths
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the benchmarks' clip maker
    from synthetic_clip import ClipConfig, _int_box, _psnr, build_clip, read_video

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path, default=Path(__file__).resolve().parents[1].parent
                        / "shared" / "data" / "faces" / "frl")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ffv-dark-faces-"))
    clip = build_clip(args.faces, work / "clip", ClipConfig(seed=0))
    out = work / "ffv.mp4"
    if restore_paths([clip.damaged], out, overwrite=True, quiet=True)[0].status != "done":
        sys.exit("ffv restore failed")
    cfg = clip.config
    size = (cfg.width, cfg.height)
    clean, damaged, restored = (list(read_video(p, size)) for p in (clip.clean, clip.damaged, out))
    scores: dict = collections.defaultdict(lambda: collections.defaultdict(list))
    for index in range(cfg.n_frames):
        for plan, box in clip.faces_in_frame(index):
            x0, y0, x1, y1 = _int_box(box, cfg.width, cfg.height)
            side = max(x1 - x0, y1 - y0)
            m = side // 4  # context for the blur
            X0, Y0 = max(0, x0 - m), max(0, y0 - m)
            X1, Y1 = min(cfg.width, x1 + m), min(cfg.height, y1 + m)
            inner = (slice(y0 - Y0, y1 - Y0), slice(x0 - X0, x1 - X0))
            truth = clean[index][y0:y1, x0:x1]
            d = damaged[index][Y0:Y1, X0:X1].astype(np.float32) / 255
            r = restored[index][Y0:Y1, X0:X1].astype(np.float32) / 255
            kind = scores[plan.kind]
            kind["input"].append(_psnr(damaged[index][y0:y1, x0:x1], truth))
            kind["ffv restore"].append(_psnr(restored[index][y0:y1, x0:x1], truth))
            lit = lit_by_restorer(d, r, max(1.0, 0.1 * side))[inner]
            kind["input, restorer's lighting"].append(_psnr((lit * 255).round().astype(np.uint8), truth))
            if plan.kind == "dark":
                face = d[inner]
                mean = float((face @ LUMA).mean())
                for target in (0.40, 0.48):
                    lifted = np.clip(face * max(1.0, target / max(mean, 1e-3)), 0, 1)
                    kind[f"input lit to luma {target:.2f}"].append(_psnr((lifted * 255).round().astype(np.uint8), truth))
                kind["clean mean luma"].append(float((truth.astype(np.float32) / 255 @ LUMA).mean()))
    for name, kind in scores.items():
        print(name, {k: round(float(np.mean(v)), 2) for k, v in kind.items()})


if __name__ == "__main__":
    main()
