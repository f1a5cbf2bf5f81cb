"""``ffv eval-video``: temporal stability (flicker) of a restored video against its input."""

from __future__ import annotations

import json
from pathlib import Path

import click

from framefusion_video.evaluation.flicker import FlickerConfig  # light: numpy and OpenCV, no TensorFlow


@click.command("eval-video", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("input", type=click.Path(path_type=str))
@click.argument("restored", type=click.Path(path_type=str))
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the figures (overall and per face track) as JSON.")
@click.option("--whole-frame", is_flag=True,
              help="Measure whole frames instead of the detected faces (no face detection).")
@click.option("--unrestored-threshold", type=click.FloatRange(min=0.0), default=1.5, show_default=True,
              help="Grey levels above the re-encoding noise a face must change by to count as restored.")
@click.option("--identity", is_flag=True,
              help="Also identity drift along each face track (dlib's face-recognition descriptors; < 0.6 = "
                   "the same person): the restored face's distance to the same frame's input face, to the "
                   "track's first restored face, and the input's own drift. Needs the optional extra: "
                   "pip install -e '.[identity]'.")
@click.option("--identity-every", type=click.IntRange(min=1), default=FlickerConfig.identity_every,
              show_default=True, help="With --identity, measure identity on every N-th frame only (faster).")
def eval_video(input: str, restored: str, json_path: Path | None, whole_frame: bool,
               unrestored_threshold: float, identity: bool, identity_every: int) -> None:  # noqa: A002
    """Warping-error ratio of RESTORED against its INPUT: 1 = as stable as the input, >1 = flicker.

    Optical flow is computed on INPUT; each restored frame is compared with the previous restored
    frame warped by that flow, on the face regions, and divided by the same error of INPUT. Also
    reports the fraction of frames where a detected face was left unrestored. Both videos must have
    the same frame size and count (restored at upscale 1).

    With --identity, the identity columns say whether the restorer kept the person: "identity vs
    input" is the mean distance of each restored face to the same frame's input face (0 = unchanged),
    "identity drift" the mean distance of each restored face to its track's first restored face, and
    "input's drift" the same for the input (what pose and light change anyway): a restorer that keeps
    the person keeps its drift near the input's.
    """
    from framefusion_video.base.errors import FfvError
    from framefusion_video.evaluation.flicker import measure_videos
    from framefusion_video.evaluation.identity import IdentityUnavailable
    from framefusion_video.base.outputs import check_new_file, write_file

    if identity and whole_frame:
        raise click.UsageError("--identity measures faces; it cannot be combined with --whole-frame")
    config = FlickerConfig(unrestored_threshold=unrestored_threshold, identity=identity,
                           identity_every=identity_every)
    try:
        if json_path:
            check_new_file(json_path, "JSON file", [input, restored])
        report = measure_videos(input, restored, config, faces=not whole_frame)
        click.echo(report.to_markdown())
        if json_path:
            payload = {"input": input, "restored": restored, "whole_frame": whole_frame, **report.to_dict()}
            write_file(json_path, (json.dumps(payload, indent=1) + "\n").encode("utf-8"), "JSON file")
    except (FfvError, IdentityUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc
