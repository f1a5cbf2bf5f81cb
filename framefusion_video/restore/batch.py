"""Files and folders of clips: the plan, skipping finished outputs, per-file log lines, the summary
and the JSON report (:func:`restore_paths`).

:func:`run_plan` owns a run: the plan, the checks before any work, each file's log line, the
summary and the report. An executor runs the planned clips: :class:`SerialExecutor` one after the
other in this process, ``distributed.RayExecutor`` as Ray tasks; both settle what needs no model
first (:func:`settle_before_run`) and restore each clip with :func:`run_job`
(``restore.restore_output``), so a file that fails is reported and the run goes on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from framefusion_video.base.errors import FfvError
from framefusion_video.base.filetypes import is_video_file
from framefusion_video.base.outputs import check_folder_can_be_made, check_new_file, lock_path, same_file, write_file
from framefusion_video.restore.clip import (SMALL_FACE_PX, FileResult, ProgressCallback, check_config,
                                            check_output_name, checked_restorer, load_default_restorer, restore_output)
from framefusion_video.restore.config import RestoreConfig
from framefusion_video.restore.pipeline import Restorer
from framefusion_video.video.probe import check_input

log = logging.getLogger(__name__)

#: Suffix of the default output name of a single file, and of the default output folder.
RESTORED_SUFFIX = "_restored"


def _looks_like_folder(path: Path, raw: str) -> bool:
    return path.is_dir() or raw.endswith((os.sep, "/")) or (not path.exists() and not path.suffix)


def _scan_folder(folder: Path, recursive: bool, exclude: Path | None) -> list[Path]:
    """Video files of ``folder`` (sorted), descending into sub-folders when ``recursive``."""
    found = []
    walker = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
    for root, dirs, names in walker:
        root_path = Path(root)
        # Never descend into the output folder (a previous run's results) or hidden folders.
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and not (exclude is not None and same_file(root_path / d, exclude)))
        stems = {Path(name).stem for name in names if is_video_file(Path(name))}
        for name in names:
            path = root_path / name
            if not (is_video_file(path) and path.is_file()):
                continue
            stem = path.stem
            if stem.endswith(RESTORED_SUFFIX) and stem[:-len(RESTORED_SUFFIX)] in stems:
                log.info("%s: not an input, the output of an earlier run on %s*", path,
                         root_path / stem[:-len(RESTORED_SUFFIX)])
                continue
            found.append(path)
    return sorted(found)


def as_path_list(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str | os.PathLike]:
    """``inputs`` as a list of paths: one path (a string or path object) becomes a list of one,
    so that a string is never taken for a sequence of one-character names.

    Raises:
        TypeError: ``inputs`` is neither a path nor a sequence of paths.
    """
    if isinstance(inputs, (str, os.PathLike)):
        return [inputs]
    if isinstance(inputs, bytes) or not isinstance(inputs, Iterable):
        raise TypeError(f"inputs must be a path or a list of paths, got {inputs!r}")
    paths = list(inputs)
    bad = [p for p in paths if not isinstance(p, (str, os.PathLike))]
    if bad:
        raise TypeError(f"inputs must be paths (str or os.PathLike), got {bad[0]!r}")
    return paths


def plan_outputs(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output: str | os.PathLike | None = None,
    *,
    recursive: bool = False,
) -> list[tuple[Path, Path]]:
    """Pair every input video with its output path.

    - A file becomes ``<stem>_restored.mp4`` beside it, or ``output`` itself when a single file is
      given with ``-o FILE``, or ``output/<stem>_restored.mp4`` when ``output`` is a folder (an
      existing folder, a name ending with ``/``, a name without an extension, or several inputs).
    - A folder's video files (by extension) are mirrored under ``output`` (default
      ``<folder>_restored/``) as ``<relative path>.mp4``; sub-folders only with ``recursive``.
    - A path that does not exist is kept as a file, so that its run reports it as missing.
    - ``<stem>_restored.*`` files beside a video ``<stem>.*`` in a scanned folder are earlier
      single-file outputs, not inputs.

    Raises:
        FfvError: an output equal to an input, two inputs that would write the same output, or an
            output suffix ffv cannot write (see ``video.encode.OUTPUT_CONTAINERS``).
    """
    raw_inputs = [os.fspath(p) for p in as_path_list(inputs)]
    paths = [Path(p) for p in raw_inputs]
    out_path = None if output is None else Path(output)
    out_is_folder = out_path is not None and (
        len(paths) > 1 or any(p.is_dir() for p in paths) or _looks_like_folder(out_path, os.fspath(output))
    )
    pairs: list[tuple[Path, Path]] = []
    for path in paths:
        if path.is_dir():
            root = out_path if out_path is not None else path.with_name(path.resolve().name + RESTORED_SUFFIX)
            if out_path is not None and len([p for p in paths if p.is_dir()]) > 1:
                root = out_path / path.resolve().name  # several folders: keep them apart
            files = _scan_folder(path, recursive, exclude=root)
            if not files:
                log.warning("%s: no video files found%s", path, "" if recursive else " (--recursive looks in sub-folders)")
            for f in files:
                pairs.append((f, root / f.relative_to(path).with_suffix(".mp4")))
        elif out_path is None:
            pairs.append((path, path.with_name(path.stem + RESTORED_SUFFIX + ".mp4")))
        elif out_is_folder:
            pairs.append((path, out_path / (path.stem + RESTORED_SUFFIX + ".mp4")))
        else:
            pairs.append((path, out_path))

    from framefusion_video.video.encode import output_container

    sources = [src for src, _ in pairs]
    seen: dict[str, Path] = {}
    for src, dst in pairs:
        output_container(dst)
        for other in sources:
            if same_file(other, dst):
                raise FfvError(dst, "the output would overwrite an input; choose another output")
        key = os.path.normcase(os.path.abspath(dst))
        if key in seen:
            raise FfvError(dst, f"both {seen[key]} and {src} would be written here; rename one or use separate runs")
        seen[key] = src
    return pairs


def write_report(path: Path, results: list[FileResult], config: RestoreConfig, seconds: float) -> None:
    """Write the JSON run report atomically (``outputs.write_file``)."""
    from framefusion_video.version import __version__

    report = {
        "ffv_version": __version__,
        "config": asdict(config),
        "summary": summarize(results, seconds),
        "files": [r.to_dict() for r in results],
    }
    write_file(path, (json.dumps(report, indent=2) + "\n").encode("utf-8"), "report")


def run_files(pairs: Sequence[tuple[Path, Path]], config: RestoreConfig) -> list[Path]:
    """Every file a run reads or writes: its inputs, outputs, their lock files and the model."""
    files = [p for src, dst in pairs for p in (src, dst, lock_path(dst))]
    return files + ([Path(config.model_path)] if config.model_path is not None else [])


def check_report_path(path: str | os.PathLike, run: Sequence[Path] = ()) -> None:
    """Raise FfvError when a report could not be written at ``path``, or would replace one of the
    ``run`` files (:func:`run_files`); checked before a run (``outputs.check_new_file``)."""
    check_new_file(path, "report", run)


def check_run(pairs: Sequence[tuple[Path, Path]], config: RestoreConfig,
              report: str | os.PathLike | None = None) -> None:
    """Every option of a run checked before any work starts: the model file, the report path and
    the output folders. Raises FfvError naming the first problem."""
    from framefusion_video.restore.inference import check_model_file

    check_model_file(config.model_path)
    if report is not None:
        check_report_path(report, run_files(pairs, config))
    for folder in sorted({dst.parent for _, dst in pairs}):
        check_folder_can_be_made(folder, "output folder")


def faces_line(restored: int, left_alone: int, refused: int) -> str:
    """``"12 faces restored, 3 left alone, 1 refused"``: the face counts of a summary line
    (face-frames: a face seen in 25 frames counts 25 times)."""
    return f"{restored} faces restored, {left_alone} left alone, {refused} refused"


def next_step(restored: int, left_alone: int, refused: int, frames: int, upscale: int, small: int = 0) -> str | None:
    """One plain sentence after a run that restored no face, or few: why, and what to try; None
    when most faces were restored (or nothing was run).

    ``small`` counts the face-frames smaller than ``restore.SMALL_FACE_PX`` among the others.
    The sentence names the main cause: no face found, most faces too small for the same-size
    generator (at ``upscale`` 1), most left alone (nothing to improve: a clean face), or most
    refused by the safety checks.
    """
    seen = restored + left_alone + refused
    if frames == 0 or (seen and restored >= (left_alone + refused)):
        return None
    annotate = "`ffv preview --annotate` shows each face's decision."
    try_upscale = "try `--upscale 2`, which super-resolves faces from their own pixels;" if upscale == 1 else ""
    if not seen:
        found = ("`--upscale 2` also searches the frame in tiles for small faces;" if upscale == 1
                 else "faces smaller than about 10 px are missed;")
        return f"No face was found: {found} `ffv preview --annotate` shows what was detected."
    if try_upscale and 2 * small > seen:
        return (f"Most faces are small (under {SMALL_FACE_PX} px), too small for the same-size generator to gain "
                f"much: {try_upscale} {annotate}")
    if left_alone >= refused:
        tip = f" If they look small or soft, {try_upscale}" if try_upscale else ""
        return ("Most faces were left alone: the network found nothing to improve in them, so they stay exactly "
                f"as they were (a clean, sharp face needs no restoring).{tip} {annotate}")
    tip = f" For small faces, {try_upscale}" if try_upscale else ""
    return ("Most faces were refused: the safety checks kept the original where the restored face changed more "
            f"than the input's damage explains.{tip} `--no-safety` pastes every restored face (`--strength` below "
            f"1 pastes only part of each change); {annotate}")


def summarize(results: list[FileResult], seconds: float) -> dict[str, Any]:
    """The run's totals: files by status, and frames and faces of the files done."""
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    return {"files": len(results), **counts,
            "frames": sum(r.frames for r in results if r.status == "done"),
            "faces": sum(r.faces for r in results if r.status == "done"),
            "faces_left_alone": sum(r.faces_left_alone for r in results if r.status == "done"),
            "faces_refused": sum(r.faces_refused for r in results if r.status == "done"),
            "faces_small": sum(r.faces_small for r in results if r.status == "done"),
            "seconds": round(seconds, 3)}


def bars_shown(quiet: bool, stream: TextIO | None = None) -> bool:
    """Whether a run draws progress bars: not under ``quiet``, and only on a terminal (``stream``,
    default stderr), so that CI logs and redirected output get the log lines alone."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return not quiet and callable(isatty) and bool(isatty())


class ProgressBar:
    """A tqdm bar for one file, fed by :data:`ProgressCallback` calls."""

    def __init__(self, name: str, disable: bool, position: int = 0, stream: TextIO | None = None) -> None:
        from tqdm import tqdm

        self._bar = tqdm(desc=name, unit="frame", disable=disable, leave=False, dynamic_ncols=True,
                         position=position, file=stream)

    def __call__(self, frames: int, faces: int, total: int | None) -> None:
        """Show ``frames`` of ``total`` done and the faces restored so far."""
        if total and self._bar.total != total:
            self._bar.total = total
            self._bar.refresh()
        self._bar.update(frames - self._bar.n)
        self._bar.set_postfix(faces=faces, refresh=False)

    def close(self) -> None:
        self._bar.close()


def frames_left(totals: Sequence[int | None], done: Sequence[int]) -> float | None:
    """Frames still to do in a run: the known ``totals`` of its files (None: not known yet; 0: a
    file skipped or failed) less the frames ``done`` of each; a file of unknown length counts as
    the mean of the known others. None when no length is known."""
    known = [t for t in totals if t]
    if not known:
        return None
    mean = sum(known) / len(known)
    return sum(max((mean if t is None else t) - d, 0.0) for t, d in zip(totals, done))


def time_left(seconds: float, frames_done: int, frames_to_do: float | None) -> float | None:
    """Seconds left at the rate so far (``frames_done`` in ``seconds``), or None before any frame."""
    if frames_to_do is None or frames_done <= 0 or seconds <= 0:
        return None
    return frames_to_do * seconds / frames_done


class FolderProgress:
    """The overall line of a run of several files, beside each file's bar: files done of the total,
    frames done, and the time left at the rate so far.

    Files settled without work (skipped, failed before starting) count as done with no frames; a
    file's length is known once it starts (:func:`frames_left` estimates the others).
    """

    def __init__(self, n_files: int, disable: bool, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        from tqdm import tqdm

        self._clock = clock
        self._started = clock()
        self._totals: list[int | None] = [None] * n_files
        self._done = [0] * n_files
        self._finished = [False] * n_files
        self._bar = tqdm(total=n_files, unit="file", disable=disable, leave=False, dynamic_ncols=True,
                         position=0, file=stream, bar_format="{n_fmt}/{total_fmt} files{postfix} |{bar}|")

    @property
    def files_done(self) -> int:
        return sum(self._finished)

    @property
    def frames_done(self) -> int:
        return sum(self._done)

    def line(self) -> str:
        """The postfix: ``"350 frames, 1:20 left"`` (no time before the first frame)."""
        from tqdm import tqdm

        left = time_left(self._clock() - self._started, self.frames_done, frames_left(self._totals, self._done))
        return f"{self.frames_done} frames" + ("" if left is None else f", {tqdm.format_interval(left)} left")

    def file_progress(self, index: int) -> ProgressCallback:
        """The :data:`ProgressCallback` of file ``index``: its frames count towards the whole."""
        def update(frames: int, faces: int, total: int | None) -> None:
            if total:
                self._totals[index] = total
            self._done[index] = frames
            self._bar.set_postfix_str(self.line(), refresh=True)

        return update

    def finish(self, index: int, frames: int) -> None:
        """File ``index`` is over, after ``frames`` frames (0 when skipped or failed)."""
        self._finished[index] = True
        self._totals[index] = self._done[index] = frames
        self._bar.update(self.files_done - self._bar.n)
        self._bar.set_postfix_str(self.line(), refresh=True)

    def close(self) -> None:
        self._bar.close()


def both(*callbacks: ProgressCallback) -> ProgressCallback:
    """One :data:`ProgressCallback` that calls each of ``callbacks``."""
    def call(frames: int, faces: int, total: int | None) -> None:
        for callback in callbacks:
            callback(frames, faces, total)

    return call


@dataclass(frozen=True)
class Job:
    """One planned clip of a run: its place in the plan, its input and output, and its log tag."""

    index: int
    src: Path
    dst: Path
    tag: str


Finished = Callable[[Job, FileResult], None]
"""Called by an executor with each job's result as soon as it has it (the result is logged and kept)."""

Executor = Callable[[Sequence[Job], Finished], None]
"""Runs a plan's jobs and hands each result to ``finished``: :class:`SerialExecutor` in this process,
``distributed.RayExecutor`` as Ray tasks."""


def settle_before_run(job: Job, overwrite: bool, result_type: type[FileResult] = FileResult) -> FileResult | None:
    """The result of a job that needs no restorer, or None for a job to run: "skipped" when its
    output exists (unless ``overwrite``), "failed" when its input cannot be a video
    (``video.probe.check_input``) or its output's name is too long."""
    try:
        check_output_name(job.dst)
        if job.dst.exists() and not overwrite:
            return result_type(job.src, job.dst, status="skipped")
        check_input(job.src)
    except FfvError as exc:
        return result_type(job.src, job.dst, status="failed", error=str(exc))
    return None


class ModelUnavailable(Exception):
    """The model could not be loaded: the run stops. Carries the FfvError past a clip's own error
    handling, which turns every other error into a "failed" result."""

    def __init__(self, error: FfvError) -> None:
        super().__init__(str(error))
        self.error = error


def run_job(job: Job, config: RestoreConfig, *, overwrite: bool, get_restorer: Callable[[], Restorer],
            progress: ProgressCallback | None = None) -> FileResult:
    """:func:`restore.restore_output` of one job; a failure of the clip becomes a "failed" result.

    ``get_restorer`` is called only when the clip is restored.

    Raises:
        ModelUnavailable: ``get_restorer`` raised FfvError; the run cannot go on.
    """
    def load() -> Restorer:
        try:
            return get_restorer()
        except FfvError as exc:
            raise ModelUnavailable(exc) from exc

    try:
        return restore_output(job.src, job.dst, config, overwrite=overwrite, get_restorer=load, progress=progress)
    except ModelUnavailable:
        raise
    except FfvError as exc:
        return FileResult(job.src, job.dst, status="failed", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop a folder run
        log.debug("%s: unexpected error", job.tag, exc_info=True)
        return FileResult(job.src, job.dst, status="failed", error=f"{job.src}: {type(exc).__name__}: {exc}")


def log_result(tag: str, result: FileResult) -> None:
    """The log line of one file: done (with its counts), skipped (why) or failed (why)."""
    if result.status == "done":
        log.info("%s -> %s: %d frames, %s, %.1f s (%.1f fps)%s", tag, result.output, result.frames,
                 faces_line(result.faces, result.faces_left_alone, result.faces_refused),
                 result.seconds, result.fps, result.where())
    elif result.status == "skipped":
        if result.error:
            log.warning("%s: skipped, %s", tag, result.error)
        else:
            log.info("%s: skipped, %s exists (--overwrite to redo it)", tag, result.output)
    else:
        reason, prefix = result.error or "", f"{result.input}: "
        log.error("%s: failed: %s", tag, reason[len(prefix):] if reason.startswith(prefix) else reason)


class SerialExecutor:
    """Runs a plan's jobs one after the other in this process, with a progress bar per clip and,
    for several clips, the overall line above it (:class:`FolderProgress`); bars are drawn only on
    a terminal and not under ``quiet`` (:func:`bars_shown`; ``stream``: default stderr).

    The model is loaded once, when the first clip needs it (``restorer``, when given, is used
    instead); a model that cannot be loaded stops the run (FfvError).
    """

    def __init__(self, config: RestoreConfig, *, overwrite: bool = False, quiet: bool = False,
                 restorer: Restorer | None = None, stream: TextIO | None = None) -> None:
        self.config = config
        self.overwrite = overwrite
        self.quiet = quiet
        self.stream = stream
        self._restorer = restorer

    def _get_restorer(self) -> Restorer:
        if self._restorer is None:
            self._restorer = load_default_restorer(self.config)
        return self._restorer

    def __call__(self, jobs: Sequence[Job], finished: Finished) -> None:
        shown = bars_shown(self.quiet, self.stream)
        overall = FolderProgress(len(jobs), disable=not shown or len(jobs) < 2, stream=self.stream)
        try:
            for job in jobs:
                result = settle_before_run(job, self.overwrite)
                if result is None:
                    bar = ProgressBar(job.src.name, disable=not shown, position=1 if len(jobs) > 1 else 0,
                                      stream=self.stream)
                    try:
                        result = run_job(job, self.config, overwrite=self.overwrite,
                                         get_restorer=self._get_restorer,
                                         progress=both(bar, overall.file_progress(job.index)))
                    except ModelUnavailable as exc:
                        raise exc.error from exc
                    finally:
                        bar.close()
                overall.finish(job.index, result.frames)
                finished(job, result)
        finally:
            overall.close()


def run_plan(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output: str | os.PathLike | None,
    config: RestoreConfig,
    execute: Executor,
    *,
    recursive: bool = False,
    report: str | os.PathLike | None = None,
    quiet: bool = False,
) -> list[FileResult]:
    """Plan the outputs of ``inputs``, check the run's options, have ``execute`` run the jobs, and
    log each file's line and the summary; write the JSON report to ``report`` if given.

    This is the one place that owns a run's plan, checks, log lines, summary and report, whoever
    executes its clips (:class:`SerialExecutor`, ``distributed.RayExecutor``).

    Raises:
        FfvError: as :func:`restore_paths`, and what ``execute`` raises.
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    started = time.perf_counter()
    inputs = as_path_list(inputs)
    pairs = plan_outputs(inputs, output, recursive=recursive)
    if not pairs:
        raise FfvError(os.fspath(inputs[0]) if len(inputs) == 1 else None, "no video files to restore")
    check_run(pairs, config, report)
    jobs = [Job(i, src, dst, f"[{i + 1}/{len(pairs)}] {src}") for i, (src, dst) in enumerate(pairs)]
    results: list[FileResult | None] = [None] * len(jobs)

    def finished(job: Job, result: FileResult) -> None:
        results[job.index] = result
        log_result(job.tag, result)

    # While bars are shown, console log lines go through tqdm.write so that they do not break them.
    with contextlib.nullcontext() if quiet else logging_redirect_tqdm():
        execute(jobs, finished)
    seconds = time.perf_counter() - started
    final = [r for r in results if r is not None]
    s = summarize(final, seconds)
    faces = "faces not looked at (strength 0)" if config.passes_through else \
        faces_line(s["faces"], s["faces_left_alone"], s["faces_refused"])
    log.info("%d file(s): %d done, %d skipped, %d failed; %d frames, %s in %.1f s",
             s["files"], s["done"], s["skipped"], s["failed"], s["frames"], faces, seconds)
    hint = None if config.passes_through else \
        next_step(s["faces"], s["faces_left_alone"], s["faces_refused"], s["frames"], config.upscale,
                  s["faces_small"])
    if hint:
        log.info("%s", hint)
    if report is not None:
        write_report(Path(report), final, config, seconds)
    return final


def restore_paths(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output: str | os.PathLike | None = None,
    config: RestoreConfig = RestoreConfig(),
    *,
    recursive: bool = False,
    overwrite: bool = False,
    report: str | os.PathLike | None = None,
    quiet: bool = False,
    restorer: Restorer | None = None,
) -> list[FileResult]:
    """Restore files and folders (see :func:`plan_outputs` for where outputs go): ``inputs`` is one
    path or a list of them.

    Existing outputs are skipped unless ``overwrite`` (so a stopped run resumes where it stopped);
    the model is loaded once, and only if some file needs it; a file that fails is reported and the
    run goes on. Logs one line per file and a summary; writes a JSON report to ``report`` if given.

    Returns:
        One :class:`FileResult` per planned input, in order.

    Raises:
        FfvError: the plan itself is impossible (output equal to an input), an option is wrong
            (model file, report path, output folder: checked before any work), the model cannot
            be loaded, or the report cannot be written. Failures of single files do not raise.
    """
    check_config(config)
    if restorer is not None:
        checked_restorer(restorer, config.upscale, "the restorer given")
    execute = SerialExecutor(config, overwrite=overwrite, quiet=quiet, restorer=restorer)
    return run_plan(inputs, output, config, execute, recursive=recursive, report=report, quiet=quiet)
