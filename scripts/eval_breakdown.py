"""Where the generator's quality goes: the diagnostics behind the model card's per-kind figures
(``models/README.md``, "On faces it never saw").

Usage: .venv/bin/python scripts/eval_breakdown.py ../shared/data/faces/val [--model PATH]

On the same aligned validation faces and seeds as ``ffv eval``, prints PSNR/SSIM of the damaged
input, the classical baseline and the model for:

1. the mixed damage as ``ffv eval`` draws it, then without the misalignment shift, then also
   without occlusions and lighting changes (blur, low resolution, noise and compression only);
2. undamaged faces (how close the model comes to leaving a clean face alone; PSNR capped at
   100 dB as in ``ffv eval``, and the share of faces returned bit-identical);
3. Gaussian blur alone at fixed strengths (sigma in pixels of the 128 px crop);
4. the mixed damage of ``ffv eval`` split by the stages drawn for each face (lighting, occlusion,
   shift...): how many faces had it, their mean PSNR in and out, and their share of the mean gain;
5. per kind, the model's output with its mean colour per face moved back to the input's: how much
   of the model's loss or gain is a change of overall brightness and colour;
6. with ``--ceiling`` (needs the ``.keras`` model, run on TensorFlow): per kind, the network
   without its gate, and the best a per-face restore-or-leave-alone decision could do (for each
   face the better of input and correction, known only from the clean face): how much a better
   gate could still add.

Takes about two minutes on two cores (the aligned faces are cached by ``ffv eval``/``ffv train``),
four with ``--ceiling``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import numpy as np

from framefusion_video.data.dataset import load_aligned_crops
from framefusion_video.data.degradations import KINDS, DegradationConfig, apply_degradation, gaussian_blur, sample_params
from framefusion_video.evaluation.images import evaluate, kind_rng, mean_scores, per_image_psnr
from framefusion_video.restore.inference import load_restorer

STAGES = ("lighting", "occlusion", "shift", "blur", "resize", "noise", "compression")

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


def damaged_with_params(clean: np.ndarray, kind: str, seed: int = 0) -> tuple[np.ndarray, list]:
    """The faces of ``kind`` damaged exactly as ``ffv eval`` damages them, with each face's parameters."""
    rng, config = kind_rng(seed, kind), DegradationConfig()
    damaged, params = [], []
    for img in clean:
        p = sample_params(rng, config, kind)
        damaged.append(apply_degradation(np.ascontiguousarray(img), p, rng))
        params.append(p)
    return np.stack(damaged).astype(np.float32), params


def print_stages(clean: np.ndarray, restore) -> None:
    """Section 4: the mixed damage by stage."""
    damaged, params = damaged_with_params(clean, "mixed")
    p_in, p_out = per_image_psnr(damaged, clean), per_image_psnr(restore(damaged), clean)
    gain = p_out - p_in
    print(f"mixed by stage drawn (all {len(clean)} faces: input {p_in.mean():.2f}, model {p_out.mean():.2f}, "
          f"gain {gain.mean():+.2f} dB); share = the faces' part of the mean gain")
    for stage in STAGES:
        has = np.array([getattr(p, stage) is not None for p in params])
        for label, mask in ((f"with {stage}", has), (f"without {stage}", ~has)):
            if mask.any():
                print(f"  {label}: n {mask.sum()}, input {p_in[mask].mean():.2f}, model {p_out[mask].mean():.2f}, "
                      f"gain {gain[mask].mean():+.2f} dB, share {gain[mask].sum() / len(gain):+.2f} dB")


def keep_mean_colour(out: np.ndarray, damaged: np.ndarray) -> np.ndarray:
    """``out`` (N, H, W, 3) with each face's mean R, G and B moved to ``damaged``'s, clipped to [0, 1]."""
    shift = damaged.mean(axis=(1, 2), keepdims=True) - out.mean(axis=(1, 2), keepdims=True)
    return np.clip(out + shift, 0.0, 1.0)


def print_colour(clean: np.ndarray, restore) -> None:
    """Section 5: per kind, the model with the input's mean colour."""
    print("per kind, mean PSNR dB: input / model / model with the input's mean colour per face")
    for kind in KINDS:
        damaged, _ = damaged_with_params(clean, kind)
        out = restore(damaged)
        print(f"  {kind}: {per_image_psnr(damaged, clean).mean():.2f} / {per_image_psnr(out, clean).mean():.2f} / "
              f"{per_image_psnr(keep_mean_colour(out, damaged), clean).mean():.2f}")


def print_ceiling(clean: np.ndarray, keras_path: str) -> None:
    """Section 6: the network without its gate, and the best per-face decision."""
    import keras

    generator = keras.saving.load_model(keras_path, compile=False)
    names = {layer.name for layer in generator.layers}
    if "gated_residual" not in names:
        raise SystemExit(f"{keras_path}: not a gated generator")
    probe = keras.Model(generator.input, [generator.get_layer("residual").output, generator.output])
    print("per kind, mean PSNR dB: input / network without gate / with gate / best per-face decision")
    for kind in KINDS:
        damaged, _ = damaged_with_params(clean, kind)
        residual, gated = probe.predict(damaged, batch_size=32, verbose=0)
        p_in = per_image_psnr(damaged, clean)
        p_net = per_image_psnr(np.clip(damaged + residual, 0.0, 1.0), clean)
        p_gated = per_image_psnr(gated, clean)
        print(f"  {kind}: {p_in.mean():.2f} / {p_net.mean():.2f} / {p_gated.mean():.2f} / "
              f"{np.maximum(p_in, p_net).mean():.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="validation photos (e.g. ../shared/data/faces/val)")
    parser.add_argument("--model", help="generator .tflite or .keras (default: the shipped one)")
    parser.add_argument("--limit", type=int, help="use only the first N photos (sorted by name)")
    parser.add_argument("--ceiling", metavar="KERAS", nargs="?", const="framefusion_video/weights/ffv_generator.keras",
                        help="also section 6, with this .keras generator (default: the shipped one)")
    args = parser.parse_args(argv)
    restorer = load_restorer(args.model)
    clean = load_aligned_crops(args.folder, restorer.crop_size, limit=args.limit).astype(np.float32) / 255.0
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
    print_stages(clean, restorer.restore)
    print_colour(clean, restorer.restore)
    if args.ceiling:
        print_ceiling(clean, args.ceiling)
    return 0


if __name__ == "__main__":
    sys.exit(main())
