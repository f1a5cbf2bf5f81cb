"""``ffv restore``: parse options, call :func:`framefusion_video.restore.batch.restore_paths`."""

from __future__ import annotations

import click

from framefusion_video.base.errors import FfvError
from framefusion_video.cli.options import config_from_options, config_options


def _check_ray_address(value: str | None) -> str | None:
    """Validate ``--ray``'s value before the inputs are parsed (``--ray DIR`` would take DIR)."""
    if value is not None:
        from framefusion_video.restore.distributed import parse_ray_address

        try:
            parse_ray_address(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--ray") from exc
    return value


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
@config_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bars, warnings and errors only.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              is_eager=True, callback=lambda ctx, param, value: _check_ray_address(value),
              help="Run the clips as Ray tasks: alone, on a local Ray (one worker per core); with ADDRESS "
                   "('auto', 'HOST:6379', 'ray://HOST:10001'), on that cluster (paths must be on storage every "
                   "node sees). Put it after the inputs. Needs the 'ray' extra.")
@click.pass_context
def restore(ctx: click.Context, inputs: tuple[str, ...], output: str | None, recursive: bool, overwrite: bool,
            report: str | None, quiet: bool, ray_address: str | None = None, **options) -> None:
    """Restore the faces in INPUT videos (files or folders).

    Exit status: 0 when every file was restored or skipped, 1 when any failed, 2 for usage errors,
    130 when stopped by Ctrl-C (SIGINT), 143 by SIGTERM, 129 by SIGHUP.
    """
    import logging

    from framefusion_video.restore.batch import restore_paths

    quiet = quiet or bool((ctx.obj or {}).get("quiet"))
    if quiet:
        logging.getLogger("framefusion_video").setLevel(logging.WARNING)
    config = config_from_options(ctx, options)
    try:
        if ray_address is None:
            results = restore_paths(inputs, output, config, recursive=recursive, overwrite=overwrite,
                                    report=report, quiet=quiet)
        else:
            from framefusion_video.restore.distributed import RayConfig, parse_ray_address, restore_paths_ray

            ray_config = RayConfig(address=parse_ray_address(ray_address),
                                   worker_logs=bool((ctx.obj or {}).get("verbose")))
            results = restore_paths_ray(inputs, output, config, recursive=recursive, overwrite=overwrite,
                                        report=report, quiet=quiet, ray_config=ray_config)
    except FfvError as exc:
        raise click.ClickException(str(exc)) from exc
    if any(r.status == "failed" for r in results):
        ctx.exit(1)
