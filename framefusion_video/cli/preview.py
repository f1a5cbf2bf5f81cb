"""``ffv preview``: parse options, call :func:`framefusion_video.restore.preview.export_preview`."""

from __future__ import annotations

import click

from framefusion_video.base.errors import FfvError
from framefusion_video.cli.options import config_from_options, config_options


def _frame_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        frames = [int(part) for part in value.replace(" ", "").split(",") if part]
    except ValueError:
        raise click.BadParameter(f"expected frame numbers separated by commas, e.g. 10,20,30; got {value!r}") from None
    if not frames or min(frames) < 0:
        raise click.BadParameter(f"expected frame numbers 0 or more, got {value!r}")
    return frames


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input", type=click.Path(path_type=str))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder for the PNGs and index.html.")
@click.option("--every", type=click.IntRange(min=1), help="Export every Nth frame (default: about 10 frames).")
@click.option("--frames", callback=_frame_list, help="Export these frame numbers (0-based), e.g. 10,20,30.")
@click.option("--annotate", is_flag=True, help="Draw face boxes (green: restored, blue: left alone, red: refused), "
                                                     "track ids and landmarks on the original.")
@config_options
@click.pass_context
def preview(ctx: click.Context, input: str, out_dir: str, every: int | None, frames: list[int] | None,
            annotate: bool, **options) -> None:
    """Write before/after PNGs of INPUT, face close-ups and a page (index.html) to OUTPUT.

    Takes every option of ``ffv restore`` that sets how faces are restored, so that a preview
    shows what a run with the same options gives (``--crf`` and ``--preset`` only shape a video).
    """
    from framefusion_video.restore.preview import export_preview

    if every is not None and frames is not None:
        raise click.UsageError("use either --every or --frames, not both", ctx)
    config = config_from_options(ctx, options)
    try:
        export_preview(input, out_dir, every=every, frames=frames, annotate=annotate, config=config)
    except FfvError as exc:
        raise click.ClickException(str(exc)) from exc
