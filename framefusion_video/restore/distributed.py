"""Folder runs on a Ray cluster: one task per clip, the serial restore function on every worker.

``restore_paths_ray`` is :func:`framefusion_video.restore.batch.restore_paths` with the clips spread
over Ray workers (a local Ray started for the run, or an existing cluster joined by address).
This module is only the executor (:class:`RayExecutor`): the plan, the skip-existing resume, the
per-file log lines, the summary and the JSON report are ``batch.run_plan``'s, as in a serial run;
each result also names the ``node`` (host name) that processed it.

- Each clip is one Ray task that runs ``batch.run_job`` as the serial run does, with a restorer
  loaded once per worker process and cached there for the next clips.
- Inputs and outputs are plain paths, made absolute before they are sent (a worker's working
  folder is not the caller's): every node must see them at the same place (shared storage: NFS,
  a cluster file system, a bind mount). Workers claim each output and write it as a serial run
  does (``restore.restore_output``: a hidden temporary of its own, renamed when complete), so a
  worker killed mid-clip leaves no partial output, its retry removes what it left, and a cluster
  run and a serial run resume each other.
- A worker (or node) that dies mid-clip is retried by Ray up to ``RayConfig.max_retries`` times;
  a clip that fails for its own reasons (corrupt, unreadable) is reported once, never retried.

Ray is an optional dependency (``pip install 'framefusion-video[ray]'``); it is imported inside
the functions that need it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from framefusion_video.base.errors import FfvError
from framefusion_video.base.outputs import OutputBusy, claim_output
from framefusion_video.restore.batch import Finished, Job, bars_shown, run_job, run_plan, settle_before_run
from framefusion_video.restore.clip import FileResult
from framefusion_video.restore.config import RestoreConfig

log = logging.getLogger(__name__)

RAY_HINT = "--ray needs Ray, an optional extra: pip install 'framefusion-video[ray]'"
#: Seconds between progress reports of a worker, and between polls of the driver.
_PROGRESS_EVERY = 0.25
#: Seconds a stopped run gives its interrupted tasks to clean up before their workers are killed.
_STOP_GRACE = 10.0


@dataclass(frozen=True)
class RayConfig:
    """Where and how clips run on Ray; ``ffv restore --ray [ADDRESS]`` maps onto these fields.

    Attributes:
        address: None starts a local Ray for the run (one worker per core, or ``num_cpus``) and
            stops it afterwards; ``"auto"``, ``"HOST:6379"`` or ``"ray://HOST:10001"`` joins a
            running cluster (left running).
        num_cpus: CPUs of a local Ray (None = all cores); ignored when joining a cluster.
        cpus_per_clip: Ray CPUs reserved by each clip's task: workers per node = node CPUs / this.
        max_retries: how many times a clip whose worker or node died is run again.
        worker_logs: show the workers' own output (native TFLite/MediaPipe logging included) on
            this terminal, as Ray does by default; ``ffv -v`` sets it. Off, the workers' output
            stays in Ray's log files, and each clip's result still reports its errors.
    """

    address: str | None = None
    num_cpus: int | None = None
    cpus_per_clip: float = 1.0
    max_retries: int = 3
    worker_logs: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.num_cpus is not None and self.num_cpus < 1:
            problems.append(f"num_cpus must be at least 1, got {self.num_cpus}")
        if self.cpus_per_clip <= 0:
            problems.append(f"cpus_per_clip must be positive, got {self.cpus_per_clip}")
        if self.max_retries < 0:
            problems.append(f"max_retries must be 0 or more, got {self.max_retries}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class RayFileResult(FileResult):
    """A :class:`FileResult` plus the host name of the node that processed the clip (None: skipped
    before dispatch, or never ran)."""

    node: str | None = None

    def where(self) -> str:
        """`` on HOST``: the node that processed the clip, as its log line ends."""
        return f" on {self.node}"


_ADDRESS_RE = re.compile(r"^(auto|local|ray://\S+|[A-Za-z0-9_.\-]+:\d{1,5})$")


def parse_ray_address(value: str) -> str | None:
    """``--ray`` 's value -> ``RayConfig.address``: "local" (the option alone) -> None (start Ray
    here); "auto", "HOST:PORT" and "ray://HOST:PORT" are kept.

    Raises:
        ValueError: anything else, typically an input path taken as the address (``--ray DIR``).
    """
    if not _ADDRESS_RE.match(value):
        raise ValueError(f"{value!r} is not a Ray address ('auto', 'HOST:6379', 'ray://HOST:10001'); "
                         "put --ray after the inputs, or write --ray=ADDRESS")
    return None if value == "local" else value


def import_ray():
    """The ``ray`` module, or FfvError with the install hint when the extra is not installed."""
    try:
        import ray
    except ImportError as exc:
        raise FfvError(None, RAY_HINT) from exc
    return ray


# --------------------------------------------------------------------------- worker side

# Restorers loaded in this worker process, by the options that choose them: a worker loads the
# model once and keeps it for every clip it is given afterwards.
_RESTORERS: dict[tuple[str | None, int, int, int], Any] = {}


def _worker_restorer(config: RestoreConfig):
    from framefusion_video.restore.clip import load_default_restorer

    key = (config.model_path, config.batch_size, config.upscale, config.model_threads)
    if key not in _RESTORERS:
        _RESTORERS[key] = load_default_restorer(config)
    return _RESTORERS[key]


@dataclass
class _Outcome:
    """What a clip task returns: a result, or ``fatal`` = (path, reason) when the run must stop."""

    result: RayFileResult | None = None
    fatal: tuple[str | None, str] | None = None


def _progress_reporter(board, index: int) -> Callable[[int, int, int | None], None]:
    """A ``restore.ProgressCallback`` that sends (frames, faces, total) to ``board`` every ~0.25 s."""
    last = [0.0]

    def report(frames: int, faces: int, total: int | None) -> None:
        now = time.monotonic()
        if board is not None and (now - last[0] >= _PROGRESS_EVERY or frames == total):
            last[0] = now
            board.report.remote(index, frames, faces, total)

    return report


def restore_clip(src: str, dst: str, config: RestoreConfig, overwrite: bool = False, index: int = 0,
                 board=None) -> _Outcome:
    """One clip, as a Ray task runs it: ``batch.run_job`` with this worker's model.

    Claims ``dst`` and writes it atomically, as a serial run does (skipped when it exists, or when
    another run holds it). Failures of the clip become a "failed" result (never an exception, so
    Ray does not retry them); a model that cannot be loaded becomes ``fatal``. Runs without Ray
    too (``node`` is then this host).
    """
    from framefusion_video.restore.batch import ModelUnavailable

    job = Job(index, Path(src), Path(dst), src)
    try:
        res = run_job(job, config, overwrite=overwrite, get_restorer=lambda: _worker_restorer(config),
                      progress=_progress_reporter(board, index))
    except ModelUnavailable as exc:
        return _Outcome(fatal=(exc.error.path, exc.error.reason))
    return _Outcome(RayFileResult(**{f.name: getattr(res, f.name) for f in fields(res)}, node=socket.gethostname()))


class ProgressBoard:
    """A Ray actor holding each clip's latest (frames, faces, total), read by the driver's bar."""

    def __init__(self) -> None:
        self._clips: dict[int, tuple[int, int, int | None]] = {}

    def report(self, index: int, frames: int, faces: int, total: int | None) -> None:
        self._clips[index] = (frames, faces, total)

    def snapshot(self) -> dict[int, tuple[int, int, int | None]]:
        return dict(self._clips)


# --------------------------------------------------------------------------- driver side


@contextlib.contextmanager
def ray_session(ray_config: RayConfig = RayConfig()):
    """Connect to Ray for a run: reuse an initialised Ray, join ``address``, or start a local one.

    A Ray started here is shut down on exit; an existing session or cluster is left as it was.
    Yields the ``ray`` module. Raises FfvError when Ray is missing or the cluster is unreachable.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        with _callers_signal_handlers():
            _init(ray, ray_config)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = ray_config.address or "local Ray"
        raise FfvError(where, f"cannot start or join the Ray cluster ({' '.join(str(exc).split())})") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def _init(ray, ray_config: RayConfig) -> None:
    """``ray.init`` for ``ray_config``: a local Ray of the run's own, or the cluster at its address."""
    if ray_config.address is None:
        # "local": a Ray of this run's own, even where `ray start` left a cluster (or only its
        # address file) on this machine; plain ray.init() would try to join that one.
        ray.init(address="local", num_cpus=ray_config.num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=ray_config.worker_logs)
    else:
        ray.init(address=ray_config.address, logging_level=logging.WARNING, log_to_driver=ray_config.worker_logs)


@contextlib.contextmanager
def _callers_signal_handlers() -> Iterator[None]:
    """Keep this process's SIGTERM, SIGHUP and SIGINT handlers through the block.

    ``ray.init`` installs its own SIGTERM handler, which exits at once: a run stopped by SIGTERM
    would then skip the clean-up, exit code and message that ``ffv`` gives it (``cli``'s
    handlers, which turn the signal into a KeyboardInterrupt as Ctrl-C is).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in kept.items():
            if handler is not None:
                signal.signal(sig, handler)


class _RunBar:
    """One tqdm bar over the frames of all clips, with the clips done as a postfix."""

    def __init__(self, n_clips: int, disable: bool) -> None:
        from tqdm import tqdm

        self._bar = tqdm(desc="ffv --ray", unit="frame", disable=disable, dynamic_ncols=True)
        self._n_clips = n_clips
        self._finished: dict[int, tuple[int, int | None]] = {}  # done clips: (frames, total)
        self._shown: tuple = ()

    def update(self, live: dict[int, tuple[int, int, int | None]], clips_done: int) -> None:
        clips = {i: (f, t) for i, (f, _, t) in live.items()} | self._finished
        frames = sum(f for f, _ in clips.values())
        totals = [t for _, t in clips.values()]
        if totals and all(t for t in totals) and len(totals) == self._n_clips:
            total = sum(totals)
        else:
            total = None
        if (total, frames, clips_done) == self._shown:
            return
        self._shown = (total, frames, clips_done)
        self._bar.total = total
        self._bar.n = frames
        self._bar.set_postfix(clips=f"{clips_done}/{self._n_clips}", refresh=False)
        self._bar.refresh()

    def finish(self, index: int, frames: int) -> None:
        self._finished[index] = (frames, frames)

    def close(self) -> None:
        self._bar.close()


def restore_paths_ray(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike | None = None,
    config: RestoreConfig = RestoreConfig(),
    *,
    recursive: bool = False,
    overwrite: bool = False,
    report: str | os.PathLike | None = None,
    quiet: bool = False,
    ray_config: RayConfig = RayConfig(),
) -> list[RayFileResult]:
    """:func:`restore.restore_paths` with one Ray task per clip (see the module docstring).

    Returns:
        One :class:`RayFileResult` per planned input, in plan order, as the serial run.

    Raises:
        FfvError: Ray is not installed or the cluster cannot be reached; the plan is impossible;
            the model cannot be loaded (the remaining clips are cancelled); the report cannot be
            written. Failures of single clips do not raise.
    """
    import_ray()  # fail with the hint before planning anything
    execute = RayExecutor(config, overwrite=overwrite, quiet=quiet, ray_config=ray_config)
    return run_plan(inputs, output, config, execute, recursive=recursive, report=report, quiet=quiet)


class RayExecutor:
    """A ``batch.Executor`` that runs each clip as a Ray task: what needs no model is settled here
    first (``batch.settle_before_run``), then Ray starts (or is joined) only if a clip remains."""

    def __init__(self, config: RestoreConfig, *, overwrite: bool = False, quiet: bool = False,
                 ray_config: RayConfig = RayConfig()) -> None:
        self.config = config
        self.overwrite = overwrite
        self.quiet = quiet
        self.ray_config = ray_config

    def __call__(self, jobs: Sequence[Job], finished: Finished) -> None:
        todo = []
        for job in jobs:  # the serial run's checks, before any worker starts
            result = settle_before_run(job, self.overwrite, RayFileResult)
            if result is None:
                todo.append(job)
            else:
                finished(job, result)
        if todo:
            with ray_session(self.ray_config) as ray:
                _run_tasks(ray, todo, finished, self.config, self.overwrite, self.quiet, self.ray_config)


def _run_tasks(ray, jobs: Sequence[Job], finished: Finished, config: RestoreConfig,
               overwrite: bool, quiet: bool, ray_config: RayConfig) -> None:
    """Submit one task per job, hand each result to ``finished`` as it comes, drive the bar."""
    board = ray.remote(num_cpus=0)(ProgressBoard).remote()
    task = ray.remote(restore_clip).options(num_cpus=ray_config.cpus_per_clip, max_retries=ray_config.max_retries,
                                            retry_exceptions=False)
    # Workers do not run in the caller's folder: every path they get is absolute.
    if config.model_path is not None:
        config = dataclasses.replace(config, model_path=os.path.abspath(config.model_path))
    refs = {task.remote(os.path.abspath(job.src), os.path.abspath(job.dst), config, overwrite, job.index, board): job
            for job in jobs}
    bar = _RunBar(len(jobs), disable=not bars_shown(quiet))
    done = 0
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=_PROGRESS_EVERY)
            for ref in ready:
                job = refs.pop(ref)
                src, dst = job.src, job.dst
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker or node died more than max_retries times
                    reason = " ".join(str(exc).split())[:300]
                    outcome = _Outcome(RayFileResult(src, dst, status="failed", error=(
                        f"{src}: its worker died {ray_config.max_retries + 1} times ({type(exc).__name__}: {reason})")))
                if outcome.fatal is not None:
                    raise FfvError(*outcome.fatal)
                # The caller's paths in the results and the report, as in a serial run.
                outcome.result.input, outcome.result.output = src, dst
                if outcome.result.error:
                    outcome.result.error = outcome.result.error.replace(os.path.abspath(src), str(src)) \
                        .replace(os.path.abspath(dst), str(dst))
                done += 1
                bar.finish(job.index, outcome.result.frames)
                finished(job, outcome.result)
            with contextlib.suppress(ray.exceptions.RayError):
                bar.update(ray.get(board.snapshot.remote(), timeout=5), done)
    finally:  # an error, Ctrl-C or a signal: stop the rest, leaving no partial output, lock or temporary
        _stop_tasks(ray, list(refs))
        for job in refs.values():
            _remove_leftovers(job.dst)
        bar.close()
        with contextlib.suppress(Exception):
            ray.kill(board)


def _stop_tasks(ray, refs: list) -> None:
    """Stop the tasks of ``refs`` as Ctrl-C stops a serial run: each is interrupted (a
    KeyboardInterrupt in its worker), so that it removes its temporaries and releases its output;
    those still running after :data:`_STOP_GRACE` seconds are killed with their workers."""
    for force in (False, True):
        if not refs:
            return
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=force)
        try:
            _, refs = ray.wait(refs, num_returns=len(refs), timeout=_STOP_GRACE)
        except Exception:  # noqa: BLE001 - Ray itself is failing: what it left is removed after
            log.debug("waiting for the stopped tasks failed", exc_info=True)
            return


def _remove_leftovers(dst: Path, patience: float = 5.0) -> None:
    """Remove the lock and temporaries a stopped task left of output ``dst`` (a killed worker
    cannot), unless a live run holds the output, whose files are its own. A worker Ray has just
    been told to kill may hold it a moment longer: the claim is tried again for ``patience``
    seconds before the output is taken for another run's."""
    deadline = time.monotonic() + patience
    while True:
        try:
            claim_output(dst).release()
            return
        except OutputBusy:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.2)
        except FfvError:
            return
