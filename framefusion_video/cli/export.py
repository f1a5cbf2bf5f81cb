"""``ffv export``: the generator of a training run as the model file ``ffv restore`` loads."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", default="framefusion_video/weights/ffv_generator.keras", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tflite/--no-tflite", default=True, show_default=True,
              help="Also write OUTPUT's LiteRT conversion (.tflite beside it), the file ffv restore runs.")
@click.option("--average", default=0, show_default=True, type=click.IntRange(min=0),
              help="Export the mean of the run's last N weight snapshots (ffv train --snapshot-every) "
                   "instead of its latest checkpoint; 0 = the checkpoint.")
@click.option("--snapshot", type=click.IntRange(min=0),
              help="Export the weight snapshot taken at this batch instead of the checkpoint.")
@click.option("--input-size", type=click.IntRange(min=8),
              help="For a SPAN (--span) run: a fixed input side for the exported file; by default it takes "
                   "inputs of any size (ffv restore gives it a window sized to each face).")
def export(run_dir: Path, output: Path, tflite: bool, average: int, snapshot: int | None,
           input_size: int | None) -> None:
    """Write RUN_DIR's latest checkpoint generator to OUTPUT (.keras) and OUTPUT's .tflite twin."""
    from framefusion_video.training.export import export_generator
    from framefusion_video.base.errors import FfvError

    if not (run_dir / "checkpoint.json").is_file():
        raise click.ClickException(f"{run_dir}: no checkpoint.json (not an ffv training run)")
    try:
        click.echo(f"exported {export_generator(run_dir, output, tflite=tflite, average=average, snapshot=snapshot, input_size=input_size)}")
    except (FfvError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
