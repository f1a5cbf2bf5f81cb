"""``ffv degrade``: parse options, call :func:`framefusion_video.data.degrade_files.degrade_path`."""

from __future__ import annotations

import click

from framefusion_video.data.kinds import KINDS


@click.command("degrade", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input", type=click.Path(exists=True, path_type=str))
@click.argument("output", type=click.Path(path_type=str))
@click.option("--kind", type=click.Choice(KINDS), default="mixed", show_default=True,
              help="Which damage: one category, or the mixed training pipeline.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed; the same seed gives the same damage.")
@click.option("--overwrite", is_flag=True, help="Replace outputs that already exist.")
def degrade(input: str, output: str, kind: str, seed: int, overwrite: bool) -> None:
    """Write synthetically damaged copies of INPUT (an image, a folder of images or a video) to OUTPUT.

    OUTPUT is a file when INPUT is a file and OUTPUT has an extension, otherwise a folder that
    receives files of the same names (a folder INPUT is mirrored). A video keeps its audio and gets
    the same damage on every frame.
    """
    import logging

    from framefusion_video.data.degrade_files import degrade_path
    from framefusion_video.base.errors import FfvError

    try:
        written = degrade_path(input, output, seed=seed, kind=kind, overwrite=overwrite)
    except FfvError as exc:
        raise click.ClickException(str(exc)) from exc
    logging.getLogger(__name__).info("%d file(s) written to %s", len(written), output)
