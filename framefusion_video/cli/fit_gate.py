"""``ffv fit-gate``: fit a generator's restore-or-leave-alone gate on a folder of face photos."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("fit-gate")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Gated generator to write (.keras, with its .tflite beside it); may be MODEL itself.")
@click.option("--samples", default=12000, show_default=True, type=click.IntRange(min=10),
              help="Damaged faces to score the generator on.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--video-damage", default=0, show_default=True, type=click.IntRange(min=0),
              help="Score the network on this many aligned video-damage pairs of DATA_DIR (ffv train "
                   "--video-damage's restorer mix, other draws), and half as many sharp faces through a "
                   "light codec, instead of synthetic damage.")
@click.option("--with-synthetic", is_flag=True,
              help="With --video-damage: also score --samples faces of synthetic damage (ffv eval's kinds), "
                   "so that the gate leaves alone those the network makes worse.")
def fit_gate(model: Path, data_dir: Path, output: Path, samples: int, seed: int, video_damage: int,
             with_synthetic: bool) -> None:
    """Teach MODEL (.keras) when to leave a face alone, from DATA_DIR's faces (the network is frozen)."""
    from framefusion_video.base.errors import FfvError
    from framefusion_video.training.gating import GateFitConfig, fit_gate_file

    if not data_dir.is_dir():
        raise click.ClickException(f"{data_dir}: no such folder")
    try:
        if with_synthetic and not video_damage:
            raise click.UsageError("--with-synthetic adds synthetic damage to --video-damage's pairs")
        config = GateFitConfig(samples=samples, seed=seed, video_damage=video_damage, with_synthetic=with_synthetic)
        path, report = fit_gate_file(model, data_dir, output, config)
    except FfvError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("held-out faces, mean PSNR dB: input / ungated / gated (share restored)")
    for category, row in report.items():
        click.echo(f"  {category}: {row['input']:.2f} / {row['ungated']:.2f} / {row['gated']:.2f} "
                   f"({row['restored_share']:.0%}, n={row['n']})")
    click.echo(f"wrote {path} and {path.with_suffix('.tflite')}")
