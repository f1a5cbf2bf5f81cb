"""``ffv restore``: parse options, call :func:`framefusion_video.batch.restore_paths`."""

from __future__ import annotations

import click

from framefusion_video.cli.options import restoration_options
from framefusion_video.config import MAX_BATCH_SIZE
from framefusion_video.errors import FfvError


def _check_ray_address(value: str | None) -> str | None:
    """Validate ``--ray``'s value before the inputs are parsed (``--ray DIR`` would take DIR)."""
    if value is not None:
        from framefusion_video.distributed import parse_ray_address

        try:
            parse_ray_address(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--ray") from exc
    return value


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
# readable=False: an unreadable file is reported by its own run (and fails alone), not by click.
@click.argument("inputs", nargs=-1, required=True, type=click.Path(readable=False, path_type=str))
@click.option("-o", "--output", type=click.Path(path_type=str),
              help="Output file (one input) or folder. Default: <name>_restored.mp4 beside each file, "
                   "<folder>_restored/ for a folder.")
@click.option("-r", "--recursive", is_flag=True, help="Also restore videos in sub-folders of folder inputs.")
@click.option("--overwrite", is_flag=True, help="Redo outputs that already exist (default: skip them, so a "
                                                "stopped run resumes).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=str), help="Write a JSON report of the run here.")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE), default=8, show_default=True,
              help="Face crops per model call.")
@restoration_options
@click.option("--detect-every", type=click.IntRange(min=1), default=2, show_default=True,
              help="Run the face detector every N frames and track in between.")
@click.option("--colour-match/--no-colour-match", default=True, show_default=True,
              help="Match restored colours to the original's, except a move back from colours no well-lit "
                   "face has (a lighting or colour-cast repair), which is kept.")
@click.option("--temporal", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.7, show_default=True,
              help="Blend each restored face with the previous frame's where the input did not change "
                   "(motion-compensated): removes flicker. 0: off.")
@click.option("--crf", type=click.IntRange(0, 51), default=18, show_default=True,
              help="x264 quality: lower is better and bigger.")
@click.option("--preset", type=click.Choice(X264_PRESETS), default="veryfast", show_default=True,
              help="x264 speed preset.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars, warnings and errors only.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              is_eager=True, callback=lambda ctx, param, value: _check_ray_address(value),
              help="Run the clips as Ray tasks: alone, on a local Ray (one worker per core); with ADDRESS "
                   "('auto', 'HOST:6379', 'ray://HOST:10001'), on that cluster (paths must be on storage every "
                   "node sees). Put it after the inputs. Needs the 'ray' extra.")
@click.option("--fast", "speed", flag_value="fast",
              help="Faster: detect faces every 4th frame, bigger batches, x264 superfast (crf 20).")
@click.option("--quality", "speed", flag_value="quality",
              help="Slower: detect faces in every frame, x264 medium (crf 16).")
@click.pass_context
def restore(ctx: click.Context, inputs: tuple[str, ...], output: str | None, recursive: bool, overwrite: bool,
            report: str | None, model_path: str | None, batch_size: int, strength: float, upscale: str,
            min_face: int, max_faces: int, safety: bool, detect_every: int, colour_match: bool, temporal: float,
            crf: int, preset: str, quiet: bool, ray_address: str | None = None, speed: str | None = None) -> None:
    """Restore the faces in INPUT videos (files or folders).

    Exit status: 0 when every file was restored or skipped, 1 when any failed, 2 for usage errors,
    130 when stopped by Ctrl-C (SIGINT), 143 by SIGTERM, 129 by SIGHUP.
    """
    import logging

    from click.core import ParameterSource

    from framefusion_video.batch import restore_paths
    from framefusion_video.config import preset_config

    quiet = quiet or bool((ctx.obj or {}).get("quiet"))
    if quiet:
        logging.getLogger("framefusion_video").setLevel(logging.WARNING)
    options = dict(model_path=model_path, batch_size=batch_size, strength=strength, upscale=int(upscale),
                   min_face=min_face, max_faces=max_faces, crf=crf, preset=preset, detect_every=detect_every,
                   colour_match=colour_match, temporal=temporal, safety=safety)
    # A preset fills the options the user did not give; those given on the command line win.
    given = {k: v for k, v in options.items()
             if speed is None or ctx.get_parameter_source(k) != ParameterSource.DEFAULT}
    try:
        config = preset_config(speed or "default", **given)
    except ValueError as exc:
        raise click.UsageError(str(exc), ctx) from exc
    try:
        if ray_address is None:
            results = restore_paths(inputs, output, config, recursive=recursive, overwrite=overwrite,
                                    report=report, quiet=quiet)
        else:
            from framefusion_video.distributed import RayConfig, parse_ray_address, restore_paths_ray

            ray_config = RayConfig(address=parse_ray_address(ray_address),
                                   worker_logs=bool((ctx.obj or {}).get("verbose")))
            results = restore_paths_ray(inputs, output, config, recursive=recursive, overwrite=overwrite,
                                        report=report, quiet=quiet, ray_config=ray_config)
    except FfvError as exc:
        raise click.ClickException(str(exc)) from exc
    if any(r.status == "failed" for r in results):
        ctx.exit(1)
