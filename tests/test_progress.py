"""Tests of a folder run's overall progress line (``batch.FolderProgress``): what it counts, its
estimate of the time left, and that it stays quiet under ``quiet`` and off a terminal."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from framefusion_video.restore.batch import FolderProgress, SerialExecutor, bars_shown, frames_left, run_plan, time_left
from framefusion_video.restore.config import RestoreConfig

from test_restore import FakeRestorer, astronaut_frames, write_clip


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bars_only_on_a_terminal_and_not_when_quiet():
    assert bars_shown(quiet=False, stream=Terminal())
    assert not bars_shown(quiet=True, stream=Terminal())
    assert not bars_shown(quiet=False, stream=io.StringIO())  # a CI log, a file, a pipe


def test_frames_left_counts_files_of_unknown_length_as_the_mean_of_the_known():
    assert frames_left([None, None], [0, 0]) is None
    assert frames_left([100, 300, None], [100, 50, 0]) == 0 + 250 + 200
    assert frames_left([100], [120]) == 0  # a clip longer than its header said
    assert frames_left([0, 100, None], [0, 50, 0]) == 150  # a skipped file: no frames, not in the mean


def test_time_left_is_the_rate_so_far_over_the_frames_to_do():
    assert time_left(10.0, 50, 150.0) == pytest.approx(30.0)
    assert time_left(10.0, 0, 150.0) is None and time_left(10.0, 50, None) is None


def test_folder_progress_counts_files_and_frames_and_shows_time_left():
    clock, stream = Clock(), Terminal()
    progress = FolderProgress(3, disable=False, stream=stream, clock=clock)
    progress.finish(0, 0)  # a skipped file: done, no frames
    first = progress.file_progress(1)
    clock.now += 5.0
    first(50, 2, 100)
    assert (progress.files_done, progress.frames_done) == (1, 50)
    # 50 frames in 5 s; 50 left of this file and ~100 (the known mean) of the next: 15 s.
    assert progress.line() == "50 frames, 00:15 left"
    clock.now += 5.0
    first(100, 4, 100)
    progress.finish(1, 100)
    progress.file_progress(2)(20, 0, 40)
    progress.finish(2, 40)
    assert (progress.files_done, progress.frames_done) == (3, 140)
    progress.close()
    shown = stream.getvalue()
    assert "1/3 files, 50 frames, 00:15 left" in shown and "3/3 files, 140 frames" in shown


@pytest.mark.parametrize("stream, quiet", [(io.StringIO(), False), (Terminal(), True)])
def test_folder_progress_is_silent_off_a_terminal_or_when_quiet(tmp_path, stream, quiet):
    written = _folder_run(tmp_path, stream, quiet)
    assert stream.getvalue() == "" and written == 3


def test_a_folder_run_on_a_terminal_shows_files_frames_and_time_left(tmp_path):
    stream = Terminal()
    _folder_run(tmp_path, stream, quiet=False)
    shown = stream.getvalue()
    assert "0/3 files" in shown and "3/3 files, 12 frames" in shown and "left" in shown
    assert "b.mp4" in shown  # each file's own bar, beside the overall line


def _folder_run(tmp_path: Path, stream, quiet: bool) -> int:
    """Restore a folder of three 4-frame clips (a fake restorer); the outputs written."""
    folder = tmp_path / "clips"
    folder.mkdir()
    frames = astronaut_frames(4)
    for name in "abc":
        write_clip(folder / f"{name}.mp4", frames)
    config = RestoreConfig(safety=False)
    executor = SerialExecutor(config, quiet=quiet, restorer=FakeRestorer(), stream=stream)
    results = run_plan([folder], tmp_path / "out", config, executor, quiet=True)
    assert [r.frames for r in results] == [4, 4, 4]
    return len(list((tmp_path / "out").glob("*.mp4")))
