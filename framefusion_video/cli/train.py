"""``ffv train``: train (or resume) the generator on a folder of face photos."""

from __future__ import annotations

from pathlib import Path

import click

from framefusion_video.data.kinds import VIDEO_DAMAGE_MIXES
from framefusion_video.restore.config import UPSCALE_FACTORS


def _int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    """'0,1,2,4,6' -> (0, 1, 2, 4, 6)."""
    if value is None:
        return None
    try:
        numbers = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of whole numbers") from None
    return numbers


#: ``--span 1`` runs SPAN ×4 on the crop reduced 4x (the size its weights were trained at), or with
#: ``--unshuffle 2`` SPAN ×2 on the crop reduced 2x.
RESTORER_UNSHUFFLE = 4


@click.command("train")
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--val", "val_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Held-out face photos for validation PSNR/SSIM (never trained on).")
@click.option("--out", "out_dir", default="runs/ffv", show_default=True, type=click.Path(path_type=Path),
              help="Run folder: checkpoints, TensorBoard logs, sample grids, learning curve.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--max-steps", type=click.IntRange(min=0), help="Stop after this many batches in all.")
@click.option("--max-minutes", type=click.FloatRange(min=0), help="Stop after this many minutes.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--accum", default=1, show_default=True, type=click.IntRange(min=1),
              help="Gradient accumulation: optimiser steps every N batches.")
@click.option("--checkpoint-minutes", default=5.0, show_default=True, type=click.FloatRange(min=0))
@click.option("--snapshot-every", type=click.IntRange(min=0),
              help="Keep the generator's weights every N batches in OUT/snapshots (0 = never, the default), "
                   "for ffv export --average. A resume keeps the run's own unless given.")
@click.option("--limit", "limit_images", type=click.IntRange(min=1), help="Use only the first N photos.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--lr-scale", type=click.FloatRange(min=0, min_open=True),
              help="Multiply the learning rates (default 1; e.g. 0.2 with --resume for a final, slower phase). "
                   "A resume keeps the run's own unless given.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Start a new run from this generator's weights (e.g. the shipped "
                   "framefusion_video/weights/ffv_generator.keras) to fine-tune it.")
@click.option("--widths", callback=_int_list,
              help="Channels per resolution level of a new run's U-Net, full resolution first "
                   "(default 16,32,48,96,128).")
@click.option("--blocks", callback=_int_list,
              help="Inverted residual blocks per level of a new run's U-Net (default 0,1,2,2,3). With "
                   "--init-from, extra blocks start as the identity, so a deeper network starts from the old one.")
@click.option("--extra", "extra_dirs", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Another folder of face photos to train on (repeatable), e.g. sharper or more varied faces.")
@click.option("--extra-repeat", type=click.IntRange(min=1),
              help="How many times each --extra face is seen per epoch (default 1): weighs a small set up.")
@click.option("--span", "span_scale", type=click.Choice([str(s) for s in UPSCALE_FACTORS]),
              help="Train a SPAN network instead of the U-Net. 2 or 4: super-resolution, crops are damaged, "
                   "shrunk by that factor and restored to full size. 1: a same-size restorer, SPAN x4 on the crop's "
                   "4x4 area means and a full-size head. Start it from converted weights with --init-from "
                   "(x4's for 1).")
@click.option("--unshuffle", type=click.Choice(["2", "4"]),
              help=f"--span 1: SPAN xN on the crop's NxN area means (default {RESTORER_UNSHUFFLE}; 2 starts from a "
                   "x2 network's weights).")
@click.option("--video-damage", type=click.IntRange(min=1),
              help="Train on this many frames of DATA_DIR's photos put through real video damage (a short clip "
                   "blurred, reduced, noised per frame and encoded by x264/x265), cut around the faces, and "
                   "validate on --val's the same way. Made once and cached in $FFV_CACHE/video_damage "
                   "(about 0.15 s a pair; an interrupted build resumes).")
@click.option("--video-damage-mix", type=click.Choice(VIDEO_DAMAGE_MIXES),
              help="Which damage --video-damage draws (default full); each mix is described by "
                   "video_damage.damage_mix: e.g. light (mostly sharp clips, the same codecs) or single (one "
                   "damage per clip, a fifth of them sharp).")
@click.option("--clean-prob", type=click.FloatRange(0, 1), help="Share of undamaged training pairs (default 0.1).")
@click.option("--single-prob", type=click.FloatRange(0, 1),
              help="Share of pairs with one kind of damage alone (default 0.5); the rest get mixed damage.")
@click.option("--adv-start", type=click.IntRange(min=0),
              help="Batch from which the critic's opinion counts (default 4000); the batches before train "
                   "the generator on fidelity losses alone, and cost less.")
@click.option("--adv-weight", type=click.FloatRange(min=0), help="Weight of the adversarial term (default 0.003).")
@click.option("--export", "export_path", type=click.Path(dir_okay=False, path_type=Path),
              help="When training stops, write the inference model here "
                   "(e.g. framefusion_video/weights/ffv_generator.keras).")
def train(data_dir: Path, val_dir: Path | None, out_dir: Path, resume: bool, max_steps: int | None,
          max_minutes: float | None, batch_size: int, accum: int, checkpoint_minutes: float, snapshot_every: int | None,
          limit_images: int | None, seed: int, lr_scale: float | None, init_from: Path | None,
          widths: tuple[int, ...] | None, blocks: tuple[int, ...] | None, extra_dirs: tuple[Path, ...],
          extra_repeat: int | None, span_scale: str | None, unshuffle: str | None, clean_prob: float | None,
          single_prob: float | None,
          adv_start: int | None, adv_weight: float | None, video_damage: int | None, video_damage_mix: str | None,
          export_path: Path | None) -> None:
    """Train the generator (a U-Net, or SPAN with --span) against a PatchGAN critic on DATA_DIR's faces."""
    from framefusion_video.training.export import export_generator
    from framefusion_video.base.errors import FfvError
    from framefusion_video.training.model import GeneratorConfig
    from framefusion_video.training.span import SpanConfig
    from framefusion_video.training.trainer import TrainConfig
    from framefusion_video.training.trainer import train as run_training

    optional = {"lr_scale": lr_scale, "snapshot_every": snapshot_every}
    given = {name: value for name, value in optional.items() if value is not None}
    shape = {name: value for name, value in (("widths", widths), ("blocks", blocks)) if value is not None}
    recipe = {name: value for name, value in (("extra_repeat", extra_repeat), ("clean_prob", clean_prob),
                                              ("single_prob", single_prob), ("adv_start", adv_start),
                                              ("adv_weight", adv_weight), ("video_damage", video_damage),
                                              ("video_damage_mix", video_damage_mix))
              if value is not None}
    if unshuffle and span_scale != "1":
        raise click.UsageError("--unshuffle shapes a same-size SPAN restorer (--span 1)")
    if (shape or recipe or extra_dirs or span_scale) and resume:
        raise click.UsageError("the network and data options shape a new run; a resumed run keeps its own")
    if video_damage and extra_dirs:
        raise click.UsageError("--video-damage makes its pairs from DATA_DIR alone; --extra is for aligned crops")
    if span_scale and shape:
        raise click.UsageError("--widths/--blocks shape the U-Net; --span trains a SPAN network")
    try:
        generator = GeneratorConfig(**shape)
    except ValueError as exc:
        raise click.UsageError(f"--widths/--blocks: {exc}") from None
    if span_scale:
        scale = int(span_scale)
        recipe["span"] = SpanConfig(scale=scale, input_size=generator.crop_size // scale,
                                    unshuffle=int(unshuffle or RESTORER_UNSHUFFLE) if scale == 1 else 1)
    if extra_dirs:
        recipe["extra_dirs"] = tuple(str(d) for d in extra_dirs)
    try:
        config = TrainConfig(data_dir=str(data_dir), val_dir=str(val_dir) if val_dir else None, out_dir=str(out_dir),
                             batch_size=batch_size, accum=accum, max_steps=max_steps, max_minutes=max_minutes,
                             checkpoint_minutes=checkpoint_minutes, limit_images=limit_images, seed=seed,
                             init_from=str(init_from) if init_from else None, generator=generator, **given, **recipe)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        if export_path:
            from framefusion_video.training.export import check_export_paths

            check_export_paths(out_dir, export_path, tflite=True)
        run_dir = run_training(config, resume=resume, keep_saved=optional.keys() - given.keys())
        if export_path:
            click.echo(f"exported {export_generator(run_dir, export_path)}")
    except FfvError as exc:
        raise click.ClickException(str(exc)) from exc
