"""Where the generator's quality goes: the diagnostics behind the model card's "Where the gap is".

Usage: .venv/bin/python scripts/eval_breakdown.py ../shared/data/faces/val [--model PATH]

On the same aligned validation faces and seeds as ``ffv eval``, prints PSNR/SSIM of the damaged
input, the classical baseline and the model for:

1. the mixed damage as ``ffv eval`` draws it, then without the misalignment shift, then also
   without occlusions and lighting changes (blur, low resolution, noise and compression only);
2. undamaged faces (how close the model comes to leaving a clean face alone; PSNR capped at
   100 dB as in ``ffv eval``, and the share of faces returned bit-identical);
3. Gaussian blur alone at fixed strengths (sigma in pixels of the 128 px crop).

Takes about two minutes on two cores (the aligned faces are cached by ``ffv eval``/``ffv train``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np

from framefusion_video.dataset import load_aligned_crops
from framefusion_video.degradations import DegradationConfig, gaussian_blur
from framefusion_video.evaluation import evaluate, mean_scores
from framefusion_video.inference import load_restorer

SIGMAS = (0.3, 0.6, 1.0, 1.5, 2.5)


def mixed_variants() -> list[tuple[str, DegradationConfig]]:
    """(label, config) of the mixed damage with parts of it switched off."""
    base = DegradationConfig()
    return [
        ("mixed (ffv eval)", base),
        ("mixed, no shift", dataclasses.replace(base, shift_prob=0.0)),
        ("mixed, no shift/occlusion/lighting",
         dataclasses.replace(base, shift_prob=0.0, occlusion_prob=0.0, lighting_prob=0.0)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="validation photos (e.g. ../shared/data/faces/val)")
    parser.add_argument("--model", help="generator .tflite or .keras (default: the shipped one)")
    args = parser.parse_args(argv)
    restorer = load_restorer(args.model)
    clean = load_aligned_crops(args.folder, restorer.crop_size).astype(np.float32) / 255.0
    print(f"{len(clean)} faces from {args.folder}; PSNR dB / SSIM")
    for label, config in mixed_variants():
        row = evaluate(clean, restorer.restore, kinds=["mixed"], config=config).rows[0]
        cells = ", ".join(f"{m} {row.psnr[m]:.2f} / {row.ssim[m]:.4f}" for m in row.psnr)
        print(f"{label}: {cells}; model - input {row.psnr['model'] - row.psnr['input']:+.2f} dB")
    out = restorer.restore(clean)
    same = np.mean([np.array_equal(o, c) for o, c in zip(out, clean)])
    print("undamaged: model %.2f / %.4f (input: identical; %.1f %% returned bit-identical)"
          % (*mean_scores(out, clean), 100 * same))
    for sigma in SIGMAS:
        damaged = np.stack([gaussian_blur(c, sigma) for c in clean])
        p_in, s_in = mean_scores(damaged, clean)
        p_out, s_out = mean_scores(restorer.restore(damaged), clean)
        print(f"gaussian blur sigma {sigma} px: input {p_in:.2f} / {s_in:.4f}, model {p_out:.2f} / {s_out:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
