"""The ``ffv`` command line: a click group whose sub-commands are imported only when they run.

``ffv --help`` and ``ffv --version`` therefore never import TensorFlow or MediaPipe. Each
sub-command lives in ``framefusion_video/cli/<module>.py`` as a click command of the same name
(``-`` in a command's name is ``_`` in its Python name).
"""

from __future__ import annotations

import importlib
import logging

import click

from framefusion_video import __version__

#: name -> (module under framefusion_video.cli, one-line help shown by ``ffv --help``).
COMMANDS = {
    "restore": ("restore", "Restore the faces in video files or folders."),
    "preview": ("preview", "Write before/after PNGs and a contact sheet for one clip."),
    "degrade": ("degrade", "Make a synthetically degraded copy of a video (for testing)."),
    "train": ("train", "Train the face restoration generator."),
    "eval": ("eval", "Measure restoration quality (PSNR/SSIM) on degraded faces."),
    "eval-video": ("eval_video", "Measure the flicker of a restored video against its input."),
    "export": ("export", "Export a trained generator for inference."),
    "fit-gate": ("fit_gate", "Teach a generator when to leave a face alone."),
}


class LazyGroup(click.Group):
    """A click group that imports ``framefusion_video.cli.<module>`` only for the command that runs."""

    def __init__(self, *args, lazy_commands: dict[str, tuple[str, str]] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy_commands:
            module_name, _ = self.lazy_commands[name]
            module = importlib.import_module(f"framefusion_video.cli.{module_name}")
            command = getattr(module, name.replace("-", "_"), None)
            if not isinstance(command, click.Command):
                raise click.ClickException(f"framefusion_video.cli.{module_name} has no click command {name!r}")
            return command
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List commands with their help from the dict, without importing their modules."""
        rows = [(name, help_text) for name, (_, help_text) in sorted(self.lazy_commands.items())]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def setup_logging(verbose: int, quiet: bool) -> None:
    """Log to stderr: warnings with ``--quiet``, info by default, debug with ``-v``."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(message)s" if verbose else "%(message)s", force=True)
    if not verbose:  # third-party chatter (absl, tensorflow) stays out of the user's way
        for name in ("absl", "tensorflow", "h5py"):
            logging.getLogger(name).setLevel(logging.WARNING)


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="ffv")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.option("-v", "--verbose", count=True, help="More detail (debug messages).")
@click.pass_context
def main(ctx: click.Context, quiet: bool, verbose: int) -> None:
    """Frame Fusion Video: restore the faces in videos, on a plain CPU."""
    setup_logging(verbose, quiet)
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet
