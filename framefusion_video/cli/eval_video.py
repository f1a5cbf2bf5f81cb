"""``ffv eval-video``: temporal stability (flicker) of a restored video against its input."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("eval-video", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input", type=click.Path(path_type=str))
@click.argument("restored", type=click.Path(path_type=str))
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the figures (overall and per face track) as JSON.")
@click.option("--whole-frame", is_flag=True,
              help="Measure whole frames instead of the detected faces (no face detection).")
@click.option("--unrestored-threshold", type=click.FloatRange(min=0.0), default=1.5, show_default=True,
              help="Grey levels above the re-encoding noise a face must change by to count as restored.")
def eval_video(input: str, restored: str, json_path: Path | None, whole_frame: bool,
               unrestored_threshold: float) -> None:  # noqa: A002 (click argument name)
    """Warping-error ratio of RESTORED against its INPUT: 1 = as stable as the input, >1 = flicker.

    Optical flow is computed on INPUT; each restored frame is compared with the previous restored
    frame warped by that flow, on the face regions, and divided by the same error of INPUT. Also
    reports the fraction of frames where a detected face was left unrestored. Both videos must have
    the same frame size and count (restored at upscale 1).
    """
    from framefusion_video.errors import FfvError
    from framefusion_video.flicker import FlickerConfig, measure_videos
    from framefusion_video.outputs import check_new_file, write_file

    config = FlickerConfig(unrestored_threshold=unrestored_threshold)
    try:
        if json_path:
            check_new_file(json_path, "JSON file", [input, restored])
        report = measure_videos(input, restored, config, faces=not whole_frame)
        click.echo(report.to_markdown())
        if json_path:
            payload = {"input": input, "restored": restored, "whole_frame": whole_frame, **report.to_dict()}
            write_file(json_path, (json.dumps(payload, indent=1) + "\n").encode("utf-8"), "JSON file")
    except FfvError as exc:
        raise click.ClickException(str(exc)) from exc
