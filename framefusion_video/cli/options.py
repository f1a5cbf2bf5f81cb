"""Click options shared by ``ffv restore`` and ``ffv preview`` (one definition, one help text)."""

from __future__ import annotations

from typing import Callable

import click

RESTORATION_OPTIONS = (
    click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=str),
                 help="Generator weights (.tflite or .keras). Default: the shipped generator "
                      "(ffv_generator.tflite in the package's weights/ folder; with --upscale 2 or 4, the "
                      "shipped super-resolution generator ffv_span2.tflite or ffv_span4.tflite)."),
    click.option("--strength", type=click.FloatRange(0.0, 1.0), default=1.0, show_default=True,
                 help="0 keeps the original faces, 1 pastes the restored faces fully."),
    click.option("--upscale", type=click.Choice(["1", "2", "4"]), default="1", show_default=True,
                 help="Enlarge the frames by this factor (bicubic), faces pasted at full resolution; at 2 and "
                      "4, small faces are super-resolved from their own pixels."),
    click.option("--min-face", type=click.IntRange(min=0), default=0, show_default=True,
                 help="Ignore faces smaller than this many pixels (0: no limit)."),
    click.option("--max-faces", type=click.IntRange(min=0), default=0, show_default=True,
                 help="Restore at most this many faces per frame, largest first (0: all)."),
    click.option("--safety/--no-safety", default=True, show_default=True,
                 help="Leave alone faces whose landmarks do not fit them, and refuse restored faces that "
                      "change more than their input's damage explains. --no-safety pastes every face."),
)


def restoration_options(command: Callable) -> Callable:
    """Add ``--model --strength --upscale --min-face --max-faces --safety/--no-safety`` to ``command``."""
    for option in reversed(RESTORATION_OPTIONS):
        command = option(command)
    return command
