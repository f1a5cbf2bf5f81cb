"""``ffv export``: the generator of a training run as the model file ``ffv restore`` loads."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", default="models/ffv_generator.keras", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tflite/--no-tflite", default=True, show_default=True,
              help="Also write OUTPUT's LiteRT conversion (.tflite beside it), the file ffv restore runs.")
def export(run_dir: Path, output: Path, tflite: bool) -> None:
    """Write RUN_DIR's latest checkpoint generator to OUTPUT (.keras) and OUTPUT's .tflite twin."""
    from framefusion_video.training import export_generator

    if not (run_dir / "checkpoint.json").is_file():
        raise click.ClickException(f"{run_dir}: no checkpoint.json (not an ffv training run)")
    click.echo(f"exported {export_generator(run_dir, output, tflite=tflite)}")
