"""The ``ffv`` command line: a click group whose sub-commands are imported only when they run.

``ffv --help`` and ``ffv --version`` therefore never import TensorFlow or MediaPipe. Each
sub-command lives in ``framefusion_video/cli/<module>.py`` as a click command of the same name
(``-`` in a command's name is ``_`` in its Python name).
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

import click

from framefusion_video.version import __version__

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

    def invoke(self, ctx: click.Context):
        """Run the command with SIGTERM and SIGHUP handled as Ctrl-C is (the same clean-up: no
        partial output is left), and exit 128 + the signal's number (130 for Ctrl-C, 143 for
        SIGTERM) instead of click's 1. A name longer than the file system takes, which ``pathlib``
        raises for wherever it first looks at it, is the one-line error of that name."""
        with signals_as_interrupts() as received:
            try:
                return super().invoke(ctx)
            except OSError as exc:
                if exc.errno != errno.ENAMETOOLONG:
                    raise
                from framefusion_video.base.outputs import NAME_MAX

                raise click.ClickException(f"{exc.filename}: file name too long (a name in a path may have at "
                                           f"most {NAME_MAX} bytes); choose a shorter one") from exc
            except KeyboardInterrupt:
                signum = received[0] if received else signal.SIGINT
                logging.getLogger(__name__).warning(
                    "ffv: stopped by %s; unfinished outputs were removed, finished ones kept",
                    signal.Signals(signum).name)
                ctx.exit(128 + signum)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List commands with their help from the dict, without importing their modules."""
        rows = [(name, help_text) for name, (_, help_text) in sorted(self.lazy_commands.items())]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread: a KeyboardInterrupt, so that everything that
    cleans up after Ctrl-C (encoders, temporaries, claims) does so after these too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[list[int]]:
    """Raise :class:`Terminated` on SIGTERM and SIGHUP while the block runs (main thread only);
    a second signal during the clean-up is ignored, so the clean-up finishes.

    Yields the list of the signals caught: which one stopped the run, even where a library
    replaces the exception with a plain KeyboardInterrupt (Ray's waits do).
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    caught = (signal.SIGTERM, signal.SIGHUP)

    def handler(signum: int, frame) -> None:
        for sig in caught:
            signal.signal(sig, signal.SIG_IGN)
        received.append(signum)
        raise Terminated(signum)

    previous = {sig: signal.signal(sig, handler) for sig in caught}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


#: Environment variables that quieten the native loggers of TensorFlow, LiteRT and MediaPipe
#: (glog/absl), set (unless already set) before they are imported, unless ``-v``.
NATIVE_QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "GLOG_minloglevel": "2", "GRPC_VERBOSITY": "ERROR"}


def silence_native_logging() -> Callable[[], None]:
    """Keep native libraries' stderr chatter (TFLite's "Created TensorFlow Lite XNNPACK delegate",
    MediaPipe's absl "W0000 ..." lines) off the terminal; Python's own output is untouched.

    Sets :data:`NATIVE_QUIET_ENV`, then moves Python's ``sys.stderr`` to a duplicate of file
    descriptor 2 and points descriptor 2, where C++ code writes, at the null device. Returns the
    function that undoes the redirection. Does only the first part when ``sys.stderr`` is not the
    process's descriptor 2 (e.g. under click's CliRunner).
    """
    for name, value in NATIVE_QUIET_ENV.items():
        os.environ.setdefault(name, value)
    try:
        is_fd2 = sys.stderr is not None and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        is_fd2 = False
    if not is_fd2:
        return lambda: None
    sys.stderr.flush()
    original = sys.stderr
    python_fd = os.dup(2)
    sys.stderr = os.fdopen(python_fd, "w", buffering=1, encoding=original.encoding, errors="backslashreplace")
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)

    def restore() -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
            os.dup2(python_fd, 2)
        sys.stderr = original

    return restore


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
    if not verbose:
        ctx.call_on_close(silence_native_logging())
    setup_logging(verbose, quiet)
    ctx.ensure_object(dict)
    ctx.obj["quiet"] = quiet
    ctx.obj["verbose"] = verbose
