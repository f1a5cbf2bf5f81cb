"""Fault tests: what an archivist's unattended runs meet.

Sound in sync for streams that do not start at 0; outputs claimed by one run at a time; signals
and kill -9 mid-run; options checked before any work; a full disk; ``-q``; MKV/MOV outputs and
subtitles; folder runs and unreadable inputs; links planted at ffv's file names, reports and JSON
files that name a file of the run, odd names (colons, long names, pipes) and API misuse. Runs that
must be signalled or raced go through ``tests/slow_ffv.py`` (the real CLI, a pass-through
pipeline) in a subprocess; the others through click's CliRunner with the same pass-through
pipeline. Clips are tiny; each test takes seconds.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from framefusion_video.base.errors import FfvError
from framefusion_video.base.outputs import OutputBusy, claim_output, lock_path
from framefusion_video.cli import main
from framefusion_video.restore.batch import Job, plan_outputs
from framefusion_video.restore.pipeline import RestoredFrame
from framefusion_video.video.decode import read_frames
from framefusion_video.video.encode import VideoWriter
from framefusion_video.video.probe import probe

from media import ffmpeg, make_clip, short_copy

REPO = Path(__file__).resolve().parents[1]
SLOW_FFV = Path(__file__).with_name("slow_ffv.py")
FRAME = 1 / 10  # the clips' frame interval (10 fps)


def hidden(folder: Path) -> list[str]:
    """Names of the hidden files in ``folder``: temporaries and locks, which a finished or
    stopped run must not leave."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def copy_through_writer(src: Path, dst: Path) -> None:
    """Decode ``src`` and encode it to ``dst`` with its audio: what ``ffv restore`` does to the
    timing of a clip."""
    info = probe(src)
    with VideoWriter(dst, info, audio_from=src if info.has_audio else None) as writer:
        for frame in read_frames(src, info):
            writer.write(frame)


# --------------------------------------------------------------------------- start offsets

def _offset_clip(tmp: Path, kind: str) -> Path:
    """A clip whose streams start at different times, in the container ``kind`` names."""
    base = make_clip(tmp / "base.mp4", (64, 48), 20, 10.0, vfr=kind == "vfr")
    out = tmp / {"ts-cut": "cut.ts", "mkv-audio-late": "a.mkv", "mp4-video-late": "v.mp4",
                 "mp4-both-late": "both.mp4", "mov-video-late": "v.mov"}.get(kind, "x.mp4")
    if kind == "ts-cut":  # a cut of a broadcast recording: both streams start well after 0
        ffmpeg("-ss", "0.5", "-i", str(base), "-map", "0", "-c", "copy", "-f", "mpegts", str(out))
    elif kind == "mkv-audio-late":
        ffmpeg("-i", str(base), "-itsoffset", "0.5", "-i", str(base), "-map", "0:v", "-map", "1:a", "-c", "copy",
               str(out))
    elif kind in ("mp4-video-late", "mov-video-late", "vfr"):
        ffmpeg("-itsoffset", "0.48", "-i", str(base), "-i", str(base), "-map", "0:v", "-map", "1:a", "-c", "copy",
               str(out))
    elif kind == "mp4-both-late":
        ffmpeg("-i", str(base), "-map", "0", "-c", "copy", "-output_ts_offset", "1", str(out))
    return out


def _audio_packet_times(path: Path, n: int = 6) -> tuple[np.ndarray, float]:
    """Stored times (seconds, the file's own clock) of the first ``n`` audio packets, and the
    stream's time base (its precision)."""
    from fractions import Fraction

    import imageio_ffmpeg

    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-copyts", "-i", str(path), "-map", "0:a:0",
                          "-c", "copy", "-frames:a", str(n), "-f", "framecrc", "-"], capture_output=True, text=True)
    tb = Fraction(next(ln for ln in out.stdout.splitlines() if ln.startswith("#tb 0:")).split(":", 1)[1].strip())
    times = [float(int(ln.split(",")[2]) * tb) for ln in out.stdout.splitlines() if ln and ln[0] != "#"]
    return np.array(times), float(tb)


def _assert_same_timing(src: Path, dst: Path) -> None:
    """Every frame and every audio packet of ``dst`` is where it is in ``src`` (less the source's
    time origin): the streams keep their start offsets exactly.

    Audio is compared packet by packet rather than by its reported start: ffmpeg's MP4 muxer keeps
    the AAC priming packet of a Matroska source but not its "skip" mark, so the reported start of
    such a copy moves 1024 samples earlier although every packet keeps its time."""
    inp, out = probe(src), probe(dst)
    origin = inp.time_origin
    assert out.video_start == pytest.approx(inp.video_start - origin, abs=2e-4)
    np.testing.assert_allclose(out.frame_times, np.array(inp.frame_times) - origin, atol=2e-4)
    (times_in, tb_in), (times_out, tb_out) = _audio_packet_times(src), _audio_packet_times(dst)
    np.testing.assert_allclose(times_out, times_in - origin, rtol=0, atol=max(tb_in, tb_out, 2e-4))
    if src.suffix != ".mkv":
        assert out.audio_start == pytest.approx(inp.audio_start - origin, abs=2e-4)


@pytest.mark.parametrize("kind", ["ts-cut", "mkv-audio-late", "mp4-video-late", "mp4-both-late", "mov-video-late",
                                  "vfr"])
def test_stream_start_offsets_are_kept_exactly(tmp_path, kind):
    src = _offset_clip(tmp_path, kind)
    inp = probe(src)
    assert inp.has_audio and abs(inp.video_start - inp.audio_start) > 0.01  # the case is really offset
    dst = tmp_path / "out.mp4"
    copy_through_writer(src, dst)
    _assert_same_timing(src, dst)


def test_an_mpeg_ts_clock_is_moved_to_zero_for_every_stream_alike(tmp_path):
    src = _offset_clip(tmp_path, "ts-cut")
    inp = probe(src)
    assert inp.container == "mpegts" and min(inp.video_start, inp.audio_start) > 1.0
    copy_through_writer(src, tmp_path / "out.mp4")
    out = probe(tmp_path / "out.mp4")
    assert min(out.video_start, out.audio_start) == pytest.approx(0.0, abs=2e-4)


def test_the_shared_audio_offset_clip_keeps_its_offset_exactly(shared_videos, tmp_path):
    src = short_copy(shared_videos / "stage_multiface_profile_audio-offset_640x360.mp4", tmp_path / "s.mp4", 1.5)
    copy_through_writer(src, tmp_path / "out.mp4")
    _assert_same_timing(src, tmp_path / "out.mp4")


def test_a_restore_run_keeps_the_offsets_of_a_ts_cut(tmp_path):
    src = _offset_clip(tmp_path, "ts-cut")
    result = _run_slow("-q", "restore", str(src), "-o", str(tmp_path / "out.mp4"), delay=0)
    assert result.returncode == 0, result.stderr
    _assert_same_timing(src, tmp_path / "out.mp4")


# --------------------------------------------------------------------------- containers and subtitles

@pytest.mark.parametrize("suffix, container", [(".mkv", "matroska"), (".mov", "mov")])
def test_the_output_suffix_chooses_the_container(tmp_path, suffix, container):
    src = make_clip(tmp_path / "c.mp4", (64, 48), 10, 10.0)
    dst = tmp_path / f"out{suffix}"
    copy_through_writer(src, dst)
    assert probe(dst).container.split(",")[0] == container
    assert hidden(tmp_path) == []


def test_an_output_suffix_ffv_cannot_write_is_refused_before_any_work(tmp_path):
    src = make_clip(tmp_path / "c.mp4", (64, 48), 10, 10.0)
    result = _run_slow("restore", str(src), "-o", str(tmp_path / "out.avi"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {tmp_path / 'out.avi'}: cannot write .avi files; name the output .mp4, .mov or .mkv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4"]


def _subtitled(tmp: Path) -> Path:
    base = make_clip(tmp / "base.mp4", (64, 48), 20, 10.0)
    srt = tmp / "s.srt"
    srt.write_text("1\n00:00:00,500 --> 00:00:01,500\nhello\n", encoding="utf-8")
    out = tmp / "subs.mkv"
    ffmpeg("-i", str(base), "-i", str(srt), "-map", "0", "-map", "1", "-c", "copy", "-c:s", "srt", str(out))
    return out


@pytest.mark.parametrize("suffix, codec", [(".mkv", "subrip"), (".mp4", "mov_text")])
def test_text_subtitles_are_kept(tmp_path, suffix, codec):
    src = _subtitled(tmp_path)
    assert probe(src).subtitle_codecs == ("subrip",)
    dst = tmp_path / f"out{suffix}"
    copy_through_writer(src, dst)
    assert probe(dst).subtitle_codecs == (codec,)


def test_subtitles_mp4_cannot_hold_are_dropped_with_a_warning(tmp_path, caplog):
    import dataclasses

    src = make_clip(tmp_path / "c.mp4", (64, 48), 10, 10.0)
    info = dataclasses.replace(probe(src), subtitle_codecs=("hdmv_pgs_subtitle",))
    writer = VideoWriter(tmp_path / "out.mp4", info, audio_from=src)
    try:
        with caplog.at_level(logging.WARNING, logger="framefusion_video"):
            assert writer._subtitle_args() == []
    finally:
        writer.abort()
    assert "1 subtitle stream(s) (hdmv_pgs_subtitle) dropped" in caplog.text and ".mkv" in caplog.text
    assert hidden(tmp_path) == []


# --------------------------------------------------------------------------- claims and concurrent runs

def test_an_output_is_claimed_by_one_run_at_a_time(tmp_path):
    dst = tmp_path / "out.mp4"
    with claim_output(dst):
        assert lock_path(dst).exists()
        with pytest.raises(OutputBusy, match=f"pid {os.getpid()} on .*in progress|in progress.*pid {os.getpid()}"):
            claim_output(dst)
    assert hidden(tmp_path) == []  # released: the lock file is gone
    with claim_output(dst):  # and can be taken again
        pass


def test_writers_of_one_output_never_share_a_temporary(tmp_path):
    src = make_clip(tmp_path / "c.mp4", (64, 48), 10, 10.0)
    info = probe(src)
    first = VideoWriter(tmp_path / "a.mp4", info)
    second = VideoWriter(tmp_path / "b.mp4", info)
    try:
        assert first._tmp_video != second._tmp_video and first._tmp_final != second._tmp_final
        with pytest.raises(OutputBusy):
            VideoWriter(tmp_path / "a.mp4", info)  # a second writer of the same output is refused
    finally:
        first.abort()
        second.abort()
    assert hidden(tmp_path) == []


def test_stale_temporaries_of_a_killed_run_are_removed_by_the_next_claim(tmp_path):
    dst = tmp_path / "out.mp4"
    stale = [tmp_path / ".out.mp4.ffv-tmp-123-abcdef01-video.mp4", tmp_path / ".out.ffv-tmp-video.mp4"]
    other = tmp_path / ".other.mp4.ffv-tmp-123-abcdef01-video.mp4"  # another output's: kept
    for path in (*stale, other):
        path.write_bytes(b"partial")
    with claim_output(dst):
        assert not any(p.exists() for p in stale)
        assert other.exists()


def _run_slow(*args: str, delay: float = 0.05, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "FFV_TEST_FRAME_DELAY": str(delay), "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, str(SLOW_FFV), *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def _start_slow(*args: str, delay: float = 0.05) -> subprocess.Popen:
    env = {**os.environ, "FFV_TEST_FRAME_DELAY": str(delay), "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    # A job started in the background by a non-interactive shell ignores SIGINT, and so would the
    # run started here: give it the default disposition a terminal's ffv has.
    return subprocess.Popen([sys.executable, str(SLOW_FFV), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended first: {proc.communicate()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _writing(folder: Path, name: str) -> bool:
    return any(p.name.startswith(f".{name}.ffv-tmp-") for p in folder.iterdir())


def test_two_concurrent_runs_on_one_output_leave_one_complete_file(tmp_path):
    src = make_clip(tmp_path / "c.mp4", (64, 48), 40, 10.0)
    dst = tmp_path / "out.mp4"
    first = _start_slow("restore", str(src), "-o", str(dst), "--report", str(tmp_path / "first.json"))
    _wait_for(lambda: _writing(tmp_path, "out.mp4"), first)
    second = _run_slow("restore", str(src), "-o", str(dst), "--report", str(tmp_path / "second.json"))
    assert first.poll() is None, "the first run must still be writing while the second one is refused"
    assert second.returncode == 0, second.stderr
    assert "in progress in another ffv run" in second.stderr
    assert first.wait(timeout=120) == 0, first.communicate()
    entry = json.loads((tmp_path / "second.json").read_text())["files"][0]
    assert entry["status"] == "skipped" and "in progress" in entry["error"]
    assert probe(dst).n_frames == 40 and probe(dst).frame_times == probe(src).frame_times
    assert hidden(tmp_path) == []


# --------------------------------------------------------------------------- signals and kill -9

@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_a_signal_mid_run_removes_the_partial_output_and_a_rerun_completes_it(tmp_path, sig, code):
    src = make_clip(tmp_path / "c.mp4", (64, 48), 40, 10.0)
    dst = tmp_path / "out.mp4"
    run = _start_slow("restore", str(src), "-o", str(dst))
    _wait_for(lambda: _writing(tmp_path, "out.mp4"), run)
    time.sleep(0.3)
    run.send_signal(sig)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == code, stderr
    assert f"stopped by {signal.Signals(sig).name}" in stderr and "Traceback" not in stderr
    assert not dst.exists() and hidden(tmp_path) == []
    again = _run_slow("-q", "restore", str(src), "-o", str(dst), delay=0)
    assert again.returncode == 0 and again.stderr == ""
    assert probe(dst).n_frames == 40 and hidden(tmp_path) == []


def test_after_kill_9_the_next_run_removes_the_leftovers_and_completes(tmp_path):
    src = make_clip(tmp_path / "c.mp4", (64, 48), 40, 10.0)
    dst = tmp_path / "out.mp4"
    run = _start_slow("restore", str(src), "-o", str(dst))
    _wait_for(lambda: _writing(tmp_path, "out.mp4"), run)
    run.kill()
    run.communicate(timeout=60)
    assert not dst.exists() and hidden(tmp_path)  # what kill -9 leaves: no output, hidden leftovers
    again = _run_slow("restore", str(src), "-o", str(dst), delay=0)
    assert again.returncode == 0, again.stderr
    assert "left by an ffv run that was killed" in again.stderr
    assert probe(dst).n_frames == 40 and hidden(tmp_path) == []


# --------------------------------------------------------------------------- options checked first

@pytest.fixture
def pass_through(monkeypatch):
    """In-process runs with the pass-through pipeline of slow_ffv.py (no MediaPipe, no model)."""
    use_pass_through(monkeypatch)


def use_pass_through(monkeypatch) -> None:
    """Patch ``batch`` and ``restore`` for :func:`pass_through`."""
    import framefusion_video.restore.batch as batch
    import framefusion_video.restore.clip as restore

    class PassThrough:
        crop_size = 64

        def restore(self, crops):
            return crops

    def frames_unchanged(src, info, restorer, config, *, detector=None, select=None):
        for index, frame in enumerate(read_frames(src, info)):
            yield RestoredFrame(index, frame, frame)

    monkeypatch.setattr(batch, "load_default_restorer", lambda config: PassThrough())
    monkeypatch.setattr(restore, "iter_restored", frames_unchanged)


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _one_line_error(result, expected: str) -> None:
    lines = [ln for ln in result.output.strip().splitlines() if ln.startswith("Error:")]
    assert result.exit_code == 1 and lines == [f"Error: {expected}"], result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("where", ["under-a-file", "a-folder-by-name-only"])
def test_a_report_path_that_cannot_be_written_stops_the_run_before_any_work(tmp_path, pass_through, where):
    src = make_clip(tmp_path / "c.mp4", (64, 48), 10, 10.0)
    (tmp_path / "file").write_text("x")
    report = tmp_path / "file" / "run.json"
    if where == "a-folder-by-name-only":
        report = tmp_path / "file" / "sub" / "run.json"
    result = run_cli("restore", str(src), "-o", str(tmp_path / "out.mp4"), "--report", str(report))
    _one_line_error(result, f"{report.parent}: cannot create the report's folder ({tmp_path / 'file'} is a file)")
    assert not (tmp_path / "out.mp4").exists() and hidden(tmp_path) == []


def test_an_output_folder_under_a_file_stops_the_run_before_any_work(tmp_path, pass_through):
    src = make_clip(tmp_path / "c.mp4", (64, 48), 10, 10.0)
    (tmp_path / "file").write_text("x")
    other = make_clip(tmp_path / "d.mp4", (64, 48), 10, 10.0)
    result = run_cli("restore", str(src), str(other), "-o", str(tmp_path / "file" / "out"))
    _one_line_error(result, f"{tmp_path / 'file' / 'out'}: cannot create the output folder "
                            f"({tmp_path / 'file'} is a file)")


@pytest.mark.parametrize("content, reason", [
    (b"just some text\n", "not a valid model: a .keras model is a zip archive, this file is not"),
    (None, "model file not found"),
])
def test_a_bad_model_file_is_named_with_what_is_wrong_before_any_work(tmp_path, content, reason):
    src = make_clip(tmp_path / "c.mp4", (64, 48), 10, 10.0)
    model = tmp_path / "weights.keras"
    if content is not None:
        model.write_bytes(content)
    result = run_cli("restore", str(src), "-o", str(tmp_path / "out.mp4"), "--model", str(model))
    _one_line_error(result, f"{model}: {reason}")
    assert not (tmp_path / "out.mp4").exists()


def test_a_full_disk_is_reported_as_such_and_loses_nothing(tmp_path, pass_through, monkeypatch):
    import framefusion_video.video.ffmpeg as video_ffmpeg

    real = video_ffmpeg.ffmpeg_exe()
    fake = tmp_path / "ffmpeg"
    # The final mux (the one with +faststart) fails as ffmpeg does when the disk fills up.
    fake.write_text("#!/bin/sh\n"
                    "case \"$*\" in *+faststart*) echo '[out#0/mp4 @ 0x55] Error writing trailer: "
                    "No space left on device' >&2; exit 1;; esac\n"
                    f"exec '{real}' \"$@\"\n")
    fake.chmod(0o755)
    monkeypatch.setattr(video_ffmpeg, "ffmpeg_exe", lambda: str(fake))
    src = make_clip(tmp_path / "c.mp4", (64, 48), 10, 10.0)
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"an earlier output")
    result = run_cli("restore", str(src), "-o", str(dst), "--overwrite")
    assert result.exit_code == 1
    assert f"{dst}: muxing failed: no space left on device" in result.output
    assert "AAC" not in result.output and "Traceback" not in result.output
    assert dst.read_bytes() == b"an earlier output" and hidden(tmp_path) == []


# --------------------------------------------------------------------------- inputs

def test_one_unreadable_file_among_several_fails_alone(tmp_path, pass_through, monkeypatch):
    good = make_clip(tmp_path / "good.mp4", (64, 48), 10, 10.0)
    locked = make_clip(tmp_path / "locked.mp4", (64, 48), 10, 10.0)
    real_access = os.access
    # Tests may run as root, who can read anything: deny reading this one file as a permission would.
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == locked and mode & os.R_OK
                        else real_access(p, mode, **kw))
    out = tmp_path / "out"
    result = run_cli("restore", str(good), str(locked), "-o", str(out))
    assert result.exit_code == 1, result.output
    assert f"{locked}: failed: cannot read the file (permission denied)" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["good_restored.mp4"]


def test_a_folder_run_does_not_take_earlier_restored_outputs_for_inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.mp4", "a_restored.mp4", "b_restored.mov"):  # b_restored.mov has no b.*: an input
        (folder / name).write_bytes(b"x")
    assert [src.name for src, _ in plan_outputs([folder], tmp_path / "out")] == ["a.mp4", "b_restored.mov"]


# --------------------------------------------------------------------------- quiet

def test_quiet_is_quiet_with_the_real_model_and_detector(tmp_path):
    from skimage import data

    src = make_clip(tmp_path / "face.mp4", (128, 128), 4, 10.0, face_image=data.astronaut())
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    run = subprocess.run([sys.executable, "-m", "framefusion_video", "-q", "restore", str(src), "-o",
                          str(tmp_path / "out.mp4")], capture_output=True, text=True, env=env, timeout=180)
    assert run.returncode == 0, run.stderr
    assert run.stderr == "" and run.stdout == ""
    assert probe(tmp_path / "out.mp4").n_frames == 4


def test_errors_still_show_when_quiet(tmp_path):
    result = _run_slow("-q", "restore", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "out.mp4"))
    assert result.returncode == 1
    assert f"{tmp_path / 'missing.mp4'}: failed: no such file" in result.stderr


# --------------------------------------------------------------------------- Ray

def test_ray_workers_get_absolute_paths(tmp_path, monkeypatch):
    """Run the Ray dispatch with a stand-in for Ray whose 'workers' run in another folder, as on a
    cluster: relative inputs, outputs and --model must reach them as absolute paths."""
    import types

    import framefusion_video.restore.distributed as distributed
    from framefusion_video.restore.config import RestoreConfig

    seen: list[tuple] = []

    class Ref:
        def __init__(self, value):
            self.value = value  # what ray.get returns

    class Task:
        def options(self, **kwargs):
            return self

        def remote(self, *args):
            seen.append(args)
            return Ref(distributed._Outcome(distributed.RayFileResult(
                Path(args[0]), Path(args[1]), status="failed", error=f"{args[0]}: stand-in")))

    class Board:
        def remote(self):
            return types.SimpleNamespace(snapshot=types.SimpleNamespace(remote=lambda: Ref({})))

    fake_ray = types.SimpleNamespace(
        remote=lambda fn=None, **kw: (lambda target: Board()) if fn is None else Task(),
        wait=lambda refs, num_returns=1, timeout=None: (refs[:1], refs[1:]),
        get=lambda ref, timeout=None: ref.value,
        cancel=lambda ref, force=False: None,
        exceptions=types.SimpleNamespace(RayError=RuntimeError),
    )
    (tmp_path / "in").mkdir()
    make_clip(tmp_path / "in" / "a.mp4", (64, 48), 10, 10.0)
    (tmp_path / "m.keras").write_bytes(b"PK\x03\x04 stand-in")
    monkeypatch.chdir(tmp_path)
    [(src, dst)] = plan_outputs(["in"], "out")
    results = []
    distributed._run_tasks(fake_ray, [Job(0, src, dst, "[1/1] in/a.mp4")], lambda job, result: results.append(result),
                           RestoreConfig(model_path="m.keras"), False, True, distributed.RayConfig())
    [(src, dst, config, *_)] = seen
    assert src == str(tmp_path / "in" / "a.mp4") and dst == str(tmp_path / "out" / "a.mp4")
    assert config.model_path == str(tmp_path / "m.keras")
    # The caller's paths in the results and the report, as in a serial run.
    assert (results[0].input, results[0].error) == (Path("in/a.mp4"), "in/a.mp4: stand-in")


# --------------------------------------------------------------------------- links, reports and names

def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def preview_pass_through(monkeypatch):
    """``ffv preview`` in-process with the pass-through pipeline (no MediaPipe, no model).

    ``preview`` imports ``iter_restored`` by name, so it is imported before ``restore`` is patched:
    the name it keeps is then the real one, which the patch's undo puts back."""
    import framefusion_video.restore.batch as batch
    import framefusion_video.restore.preview as preview
    import framefusion_video.restore.clip as restore

    use_pass_through(monkeypatch)
    monkeypatch.setattr(preview, "load_default_restorer", batch.load_default_restorer)
    monkeypatch.setattr(preview, "iter_restored", restore.iter_restored)


@pytest.mark.parametrize("command", ["restore", "degrade"])
@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_link_planted_at_the_lock_name_is_refused_and_its_target_untouched(tmp_path, pass_through, command, link):
    src = make_clip(tmp_path / "in.mp4", (64, 48), 10, 10.0)
    before = sha256(src)
    lock = tmp_path / ".out.mp4.ffv-lock"
    os.symlink("in.mp4", lock) if link == "symbolic" else os.link(src, lock)
    args = ["restore", str(src), "-o", str(tmp_path / "out.mp4")] if command == "restore" else \
        ["degrade", str(src), str(tmp_path / "out.mp4"), "--kind", "noise"]
    result = run_cli(*args)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert ".out.mp4.ffv-lock is " in result.output and "remove it and run again" in result.output
    assert sha256(src) == before and not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("which", ["input", "output", "output-lock"])
def test_a_report_naming_a_file_of_the_run_is_refused_before_any_work(tmp_path, pass_through, which):
    src = make_clip(tmp_path / "in.mp4", (64, 48), 10, 10.0)
    before = sha256(src)
    dst = tmp_path / "out.mp4"
    report = {"input": src, "output": dst, "output-lock": tmp_path / ".out.mp4.ffv-lock"}[which]
    result = run_cli("restore", str(src), "-o", str(dst), "--report", str(report))
    _one_line_error(result, f"{report}: the report would replace {report}, a file of this run; choose another name")
    assert sha256(src) == before and not dst.exists() and hidden(tmp_path) == []


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_a_report_folder_where_nothing_can_be_created_stops_the_run_before_any_work(tmp_path, pass_through):
    """Root may write anywhere by its permissions, yet not create files under /proc: the report's
    folder is tried for real before the run."""
    src = make_clip(tmp_path / "in.mp4", (64, 48), 10, 10.0)
    result = run_cli("restore", str(src), "-o", str(tmp_path / "out.mp4"), "--report", "/proc/ffv-run.json")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "Error: /proc: cannot write to the report's folder" in result.output
    assert not (tmp_path / "out.mp4").exists() and hidden(tmp_path) == []


def test_preview_replaces_links_planted_at_its_file_names_and_never_writes_through_them(
        tmp_path, preview_pass_through):
    src = make_clip(tmp_path / "in.mp4", (64, 48), 3, 10.0)
    prev = tmp_path / "prev"
    (prev / "frames").mkdir(parents=True)
    victims = {name: tmp_path / f"victim_{k}.txt" for k, name in enumerate(
        ["index.html", "frame_000000.png", "frames/frame_000000_before.png"])}
    for name, victim in victims.items():
        victim.write_text("the user's own file")
        os.symlink(victim, prev / name)
    result = run_cli("preview", str(src), "-o", str(prev), "--frames", "0")
    assert result.exit_code == 0, result.output
    for name, victim in victims.items():
        assert victim.read_text() == "the user's own file"
        assert not (prev / name).is_symlink() and (prev / name).stat().st_size > 0
    assert hidden(prev) == [] and hidden(prev / "frames") == []


def test_preview_refuses_a_sub_folder_that_is_a_link(tmp_path, preview_pass_through):
    src = make_clip(tmp_path / "in.mp4", (64, 48), 3, 10.0)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "prev").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "prev" / "faces")
    result = run_cli("preview", str(src), "-o", str(tmp_path / "prev"), "--frames", "0")
    _one_line_error(result, f"{tmp_path / 'prev' / 'faces'}: is a link, which ffv preview never writes through; "
                            "remove it")
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_preview_refuses_to_replace_a_file_of_the_run(tmp_path, preview_pass_through):
    src = make_clip(tmp_path / "in.mp4", (64, 48), 3, 10.0)
    (tmp_path / "prev").mkdir()
    model = tmp_path / "prev" / "index.html"
    model.write_bytes(b"PK\x03\x04 a model the user named so")
    result = run_cli("preview", str(src), "-o", str(tmp_path / "prev"), "--model", str(model))
    _one_line_error(result, f"{model}: the preview in {tmp_path / 'prev'} would replace this file of the run; "
                            "choose another output folder")
    assert model.read_bytes() == b"PK\x03\x04 a model the user named so"


def test_preview_on_a_full_disk_says_so(tmp_path, preview_pass_through, monkeypatch):
    import errno

    import framefusion_video.base.outputs as outputs

    def full(handle, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outputs, "_write_all", full)
    src = make_clip(tmp_path / "in.mp4", (64, 48), 3, 10.0)
    result = run_cli("preview", str(src), "-o", str(tmp_path / "prev"), "--frames", "0")
    _one_line_error(result, f"{tmp_path / 'prev' / 'frame_000000.png'}: cannot write the image "
                            "(no space left on device)")
    assert hidden(tmp_path / "prev") == []


def test_hidden_names_stay_legal_for_the_longest_output_names(tmp_path, pass_through):
    from framefusion_video.base.outputs import NAME_MAX, temp_path

    for length in (230, NAME_MAX):
        dst = tmp_path / ("a" * (length - 4) + ".mp4")
        for name in (lock_path(dst).name, temp_path(dst, "4194304-0123abcd", "-video.mp4").name):
            assert len(os.fsencode(name)) <= NAME_MAX
    src = make_clip(tmp_path / "in.mp4", (64, 48), 10, 10.0)
    for length in (230, NAME_MAX):
        dst = tmp_path / ("x" * (length - 4) + ".mp4")
        result = run_cli("restore", str(src), "-o", str(dst))
        assert result.exit_code == 0, result.output
        assert probe(dst).n_frames == 10 and hidden(tmp_path) == []


@pytest.mark.parametrize("src_name, dst_name", [("10:30.mp4", "12:00.mp4"), ("a.mp4", "sub:dir/b.mkv")])
def test_names_with_a_colon_are_files_not_protocols(tmp_path, pass_through, monkeypatch, src_name, dst_name):
    monkeypatch.chdir(tmp_path)
    make_clip(tmp_path / src_name, (64, 48), 10, 10.0)
    result = run_cli("restore", src_name, "-o", dst_name)
    assert result.exit_code == 0, result.output
    out = probe(tmp_path / dst_name)
    assert out.n_frames == 10 and out.has_audio


def test_a_name_that_looks_like_a_file_url_is_that_file_not_another(tmp_path, pass_through, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_clip(tmp_path / "x.mp4", (64, 48), 4, 10.0)
    make_clip(tmp_path / "file:x.mp4", (64, 48), 10, 10.0)
    result = run_cli("restore", "file:x.mp4", "-o", "out.mp4")
    assert result.exit_code == 0, result.output
    assert probe(tmp_path / "out.mp4").n_frames == 10
    (tmp_path / "file:x.mp4").unlink()
    result = run_cli("restore", "file:x.mp4", "-o", "out2.mp4")
    assert result.exit_code == 1 and "file:x.mp4: failed: no such file" in result.output, result.output


def test_a_pipe_is_refused_as_not_a_regular_file(tmp_path, pass_through):
    fifo = tmp_path / "stream.mp4"
    os.mkfifo(fifo)
    result = run_cli("restore", str(fifo), "-o", str(tmp_path / "out.mp4"))
    assert result.exit_code == 1, result.output
    assert f"{fifo}: failed: not a regular file (a pipe or a device)" in result.output


def test_a_batch_size_beyond_the_bound_is_a_usage_error_naming_the_option(tmp_path):
    from framefusion_video.restore.config import MAX_BATCH_SIZE, RestoreConfig

    result = run_cli("restore", str(tmp_path / "in.mp4"), "--batch-size", "100000")
    assert result.exit_code == 2 and "--batch-size" in result.output and str(MAX_BATCH_SIZE) in result.output
    with pytest.raises(ValueError, match=f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got 100000"):
        RestoreConfig(batch_size=100000)


def test_an_upscale_too_large_to_encode_is_refused_before_any_work(tmp_path, pass_through, monkeypatch):
    import framefusion_video.restore.clip as restore

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the output cannot be encoded")

    monkeypatch.setattr(restore, "iter_restored", no_decoding)
    src = make_clip(tmp_path / "uhd.mp4", (3840, 2160), 1, 10.0, audio=False)
    dst = tmp_path / "out.mp4"
    result = run_cli("restore", str(src), "-o", str(dst), "--upscale", "4")
    assert result.exit_code == 1, result.output
    assert (f"{src}: failed: {dst}: output frames of 15360x8640 are too large to encode (at most 89.5 megapixels); "
            "use a smaller --upscale") in result.output
    assert not dst.exists() and hidden(tmp_path) == []


@pytest.mark.parametrize("field, value, wanted", [
    ("strength", "x", "a number"), ("batch_size", "8", "a whole number"), ("batch_size", 8.0, "a whole number"),
    ("model_path", 123, "a path (str or os.PathLike) or None"), ("safety", "no", "True or False"),
])
def test_restore_config_names_a_field_of_the_wrong_type(field, value, wanted):
    from framefusion_video import RestoreConfig

    with pytest.raises(TypeError) as caught:
        RestoreConfig(**{field: value})
    assert str(caught.value) == f"RestoreConfig.{field} must be {wanted}, got {value!r} ({type(value).__name__})"


def test_restore_config_keeps_a_path_object_as_its_string():
    from framefusion_video import RestoreConfig

    assert RestoreConfig(model_path=Path("m.tflite")).model_path == "m.tflite"


def test_restore_paths_takes_one_path_as_one_input(tmp_path, pass_through, monkeypatch):
    from framefusion_video import restore_paths

    monkeypatch.chdir(tmp_path)
    make_clip(tmp_path / "a.mp4", (64, 48), 10, 10.0)
    [result] = restore_paths("a.mp4", "out", quiet=True)
    assert (result.status, result.input, result.output) == ("done", Path("a.mp4"), Path("out/a_restored.mp4"))
    with pytest.raises(TypeError, match="inputs must be a path or a list of paths"):
        restore_paths(42, "out")


def _fake_run(run: Path, record: str) -> Path:
    run.mkdir()
    (run / "checkpoint.json").write_text(record)
    return run


def test_export_names_a_damaged_checkpoint_record(tmp_path):
    run = _fake_run(tmp_path / "run", '{"step": 3, "config": {')
    result = run_cli("export", str(run), "-o", str(tmp_path / "m.keras"))
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"Error: {run / 'checkpoint.json'}: not a valid checkpoint record, the file is damaged" in result.output


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_export_to_a_folder_where_nothing_can_be_created_is_one_line_before_any_work(tmp_path):
    run = _fake_run(tmp_path / "run", '{"step": 3, "config": {}}')
    result = run_cli("export", str(run), "-o", "/proc/ffv-m.keras")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "Error: /proc: cannot write to the model's folder" in result.output


def test_train_into_a_file_is_one_line_before_any_work(tmp_path):
    (tmp_path / "faces").mkdir()
    (tmp_path / "afile.txt").write_text("x")
    result = run_cli("train", str(tmp_path / "faces"), "--out", str(tmp_path / "afile.txt"))
    _one_line_error(result, f"{tmp_path / 'afile.txt'}: cannot create the run folder ({tmp_path / 'afile.txt'} "
                            "is a file)")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_eval_video_json_that_cannot_be_written_stops_before_any_work(tmp_path, monkeypatch):
    import framefusion_video.evaluation.flicker as flicker

    monkeypatch.setattr(flicker, "measure_videos", lambda *a, **k: pytest.fail("measured before checking --json"))
    src = make_clip(tmp_path / "in.mp4", (64, 48), 4, 10.0)
    result = run_cli("eval-video", str(src), str(src), "--whole-frame", "--json", "/proc/ffv-e.json")
    _one_line_error(result, "/proc: cannot write to the JSON file's folder (no such file or directory)")
    result = run_cli("eval-video", str(src), str(src), "--whole-frame", "--json", str(src))
    _one_line_error(result, f"{src}: the JSON file would replace {src}, a file of this run; choose another name")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_eval_json_that_cannot_be_written_stops_before_any_work(tmp_path, monkeypatch):
    import framefusion_video.evaluation.images as evaluation

    monkeypatch.setattr(evaluation, "evaluate_folder", lambda *a, **k: pytest.fail("evaluated before checking --json"))
    (tmp_path / "faces").mkdir()
    result = run_cli("eval", str(tmp_path / "faces"), "--no-model", "--json", "/proc/ffv-e.json")
    _one_line_error(result, "/proc: cannot write to the JSON file's folder (no such file or directory)")


# ---- containers and Ray signals

def _packet_times(path: Path, stream: str, *, copyts: bool) -> np.ndarray:
    """Sorted presentation times (seconds) of the packets of ``stream`` (``V:0``, ``a:0``) with the
    file's video and audio streams mapped: on the file's own clock with ``copyts``, else on the
    timeline ffmpeg itself transcodes with (start moved to 0, wraps and joins made continuous)."""
    import imageio_ffmpeg

    index = {"V:0": "0", "a:0": "1"}[stream]
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "quiet", *(["-copyts"] if copyts else []), "-i", str(path),
           "-map", "0:V:0", "-map", "0:a:0", "-c", "copy", "-f", "framecrc", "-"]
    lines = subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()
    tb = Fraction(next(ln for ln in lines if ln.startswith(f"#tb {index}:")).split(":", 1)[1].strip())
    return np.sort([float(int(ln.split(",")[2]) * tb) for ln in lines if ln.startswith(f"{index},")])


def _assert_timed_as_ffmpeg_times_it(src: Path, dst: Path) -> None:
    """``dst`` has the frames and audio packets of ``src`` at the times ffmpeg gives them (its own
    timeline), within the output container's precision."""
    atol = 1.1e-3 if dst.suffix == ".mkv" else 2e-4  # Matroska stores milliseconds
    for stream in ("V:0", "a:0"):
        expected, got = _packet_times(src, stream, copyts=False), _packet_times(dst, stream, copyts=True)
        assert len(got) == len(expected), stream
        np.testing.assert_allclose(got, expected, rtol=0, atol=atol, err_msg=stream)


def _aspect_clip(tmp: Path, kind: str) -> tuple[Path, Fraction]:
    """A clip whose pixels are not square, and its sample aspect ratio: set on the container only
    (Matroska, MP4: ``-aspect`` on a stream copy), or a VP9 WebM's."""
    if kind == "vp9-webm":
        out = tmp / "v.webm"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=10", "-frames:v", "10", "-vf", "setsar=15/16",
               "-c:v", "libvpx-vp9", "-deadline", "realtime", str(out))
        return out, Fraction(15, 16)
    base = make_clip(tmp / "base.mp4", (64, 48), 10, 10.0)
    out = tmp / ("a.mkv" if kind == "mkv-container" else "a.mp4")
    ffmpeg("-i", str(base), "-map", "0", "-c", "copy", "-aspect", "16:9", str(out))
    return out, Fraction(4, 3)


@pytest.mark.parametrize("kind", ["mkv-container", "mp4-container", "vp9-webm"])
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_the_sample_aspect_ratio_is_kept(tmp_path, kind, suffix):
    src, sar = _aspect_clip(tmp_path, kind)
    assert probe(src).sar == sar
    dst = tmp_path / f"out{suffix}"
    copy_through_writer(src, dst)
    assert probe(dst).sar == sar


def test_an_upscaled_output_keeps_the_sample_aspect_ratio(tmp_path):
    src, sar = _aspect_clip(tmp_path, "mkv-container")
    info = probe(src)
    dst = tmp_path / "out.mkv"
    with VideoWriter(dst, info, size=(info.width * 2, info.height * 2), audio_from=src) as writer:
        for frame in read_frames(src, info):
            writer.write(np.ascontiguousarray(frame.repeat(2, axis=0).repeat(2, axis=1)))
    out = probe(dst)
    assert (out.size, out.sar) == ((info.width * 2, info.height * 2), sar)


def _wrapping_ts(tmp: Path) -> Path:
    """An MPEG-TS whose 33-bit clock wraps to 0 about 0.8 s in."""
    base = make_clip(tmp / "base.mp4", (64, 48), 20, 10.0)
    out = tmp / "w.ts"
    ffmpeg("-i", str(base), "-map", "0", "-c", "copy", "-output_ts_offset", "95441.5", "-f", "mpegts", str(out))
    return out


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_an_mpeg_ts_whose_clock_wraps_is_timed_as_ffmpeg_times_it(tmp_path, suffix):
    src = _wrapping_ts(tmp_path)
    dst = tmp_path / f"out{suffix}"
    copy_through_writer(src, dst)
    _assert_timed_as_ffmpeg_times_it(src, dst)


def test_mpeg_ts_files_joined_with_cat_keep_every_frame_ffmpeg_decodes(tmp_path):
    base = make_clip(tmp_path / "base.mp4", (64, 48), 20, 10.0)
    part = tmp_path / "a.ts"
    ffmpeg("-i", str(base), "-map", "0", "-c", "copy", "-f", "mpegts", str(part))
    src = tmp_path / "j.ts"
    src.write_bytes(part.read_bytes() * 2)
    dst = tmp_path / "out.mp4"
    copy_through_writer(src, dst)
    assert probe(dst).n_frames == 40
    _assert_timed_as_ffmpeg_times_it(src, dst)


def test_a_raw_h264_stream_keeps_the_frame_rate_ffmpeg_gives_it(tmp_path):
    src = tmp_path / "raw.h264"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=30", "-frames:v", "60", "-c:v", "libx264", "-preset", "ultrafast",
           "-bf", "2", "-g", "10", "-pix_fmt", "yuv420p", str(src))
    reference = tmp_path / "ffmpeg.mp4"
    ffmpeg("-i", str(src), str(reference))
    copy_through_writer(src, tmp_path / "out.mp4")
    out, ref = probe(tmp_path / "out.mp4"), probe(reference)
    assert out.n_frames == ref.n_frames == 60
    assert out.fps == pytest.approx(ref.fps) and out.duration == pytest.approx(ref.duration, abs=1e-3)
    assert out.duration == pytest.approx(2.0, abs=1e-3)


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_a_signal_stops_a_ray_run_as_it_stops_a_serial_one(tmp_path, sig, code):
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    clips, out = tmp_path / "in", tmp_path / "out"
    clips.mkdir()
    for name in ("a.mp4", "b.mp4"):
        make_clip(clips / name, (64, 48), 100, 10.0)
    run = _start_slow("restore", str(clips), "-o", str(out), "--ray")
    _wait_for(lambda: out.is_dir() and (_writing(out, "a.mp4") or _writing(out, "b.mp4")), run, timeout=120)
    time.sleep(0.3)
    run.send_signal(sig)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == code, stderr
    assert f"stopped by {signal.Signals(sig).name}" in stderr and "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == []  # no output, no lock, no temporary


# ---- second hostile run

def test_eval_output_naming_a_photo_measured_is_refused_before_any_work(tmp_path, monkeypatch):
    import framefusion_video.evaluation.images as evaluation

    monkeypatch.setattr(evaluation, "evaluate_folder", lambda *a, **k: pytest.fail("evaluated before checking"))
    photo = tmp_path / "faces" / "face_0.jpg"
    photo.parent.mkdir()
    photo.write_bytes(b"\xff\xd8 the user's photo")
    for option in ("--json", "--markdown"):
        result = run_cli("eval", str(photo.parent), "--no-model", option, str(photo))
        what = "JSON file" if option == "--json" else "markdown file"
        _one_line_error(result, f"{photo}: the {what} would replace {photo}, a file of this run; choose another name")
    assert photo.read_bytes() == b"\xff\xd8 the user's photo"


@pytest.mark.parametrize("command", ["restore-output", "restore-derived", "preview", "eval-video"])
def test_a_name_longer_than_the_file_system_takes_is_one_line(tmp_path, pass_through, command):
    src = make_clip(tmp_path / "in.mp4", (64, 48), 3, 10.0)
    long = tmp_path / ("n" * 256 + ".mp4")
    if command == "restore-derived":  # the longest legal input name: its default output's is longer
        long = src.rename(tmp_path / ("n" * 251 + ".mp4"))
        src, args = long, ["restore", str(long)]
        long = long.with_name(long.stem + "_restored.mp4")
    else:
        args = {"restore-output": ["restore", str(src), "-o", str(long)],
                "preview": ["preview", str(src), "-o", str(long)],
                "eval-video": ["eval-video", str(src), str(src), "--whole-frame", "--json", str(long)]}[command]
    before = sha256(src)
    result = run_cli(*args)
    named = long / "frames" if command == "preview" else long  # the first path the preview makes
    if command == "restore-derived":  # a file of a run fails alone: its line, then the summary
        failed = [line for line in result.output.splitlines() if "failed:" in line]
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert len(failed) == 1 and failed[0].endswith(f"{named}: file name too long (a name may have at most "
                                                       "255 bytes); choose a shorter output"), result.output
    else:
        _one_line_error(result, f"{named}: file name too long (a name in a path may have at most 255 bytes); "
                                "choose a shorter one")
    assert sha256(src) == before and hidden(tmp_path) == []


@pytest.mark.parametrize("name", ["out.txt", "out.mp4"])
def test_degrade_an_image_to_a_suffix_no_image_has_is_refused_before_any_work(tmp_path, name):
    import cv2

    src = tmp_path / "face.png"
    cv2.imwrite(str(src), np.full((32, 32, 3), 128, np.uint8))
    result = run_cli("degrade", str(src), str(tmp_path / name))
    _one_line_error(result, f"{tmp_path / name}: an image is written as .png, .jpg, .jpeg, .bmp, .webp, .tif, "
                            ".tiff; give the output one of those suffixes or a folder")
    assert not (tmp_path / name).exists() and hidden(tmp_path) == []


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_degrade_refuses_an_output_that_is_a_hard_link_of_its_input(tmp_path, overwrite):
    import cv2

    src = tmp_path / "face.png"
    cv2.imwrite(str(src), np.full((32, 32, 3), 128, np.uint8))
    link = tmp_path / "out.png"
    os.link(src, link)
    before = sha256(src)
    result = run_cli("degrade", str(src), str(link), "--kind", "noise", *overwrite)
    _one_line_error(result, f"{link}: output would replace an input; choose another output path")
    assert sha256(src) == before and os.path.samefile(src, link) and hidden(tmp_path) == []


@pytest.mark.parametrize("name", ["m.tflite", "m", "faces/face_0.jpg"])
def test_a_model_name_keras_cannot_save_is_refused_before_any_work(tmp_path, name):
    run = _fake_run(tmp_path / "run", '{"step": 3, "config": {}}')
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "face_0.jpg").write_bytes(b"\xff\xd8 the user's photo")
    out = tmp_path / name
    expected = f"{out}: a model is saved as .keras or .h5; name the output {out.stem}.keras"
    _one_line_error(run_cli("export", str(run), "-o", str(out)), expected)
    # ffv train --export checks it before training
    _one_line_error(run_cli("train", str(tmp_path / "faces"), "--out", str(tmp_path / "r"), "--export", str(out)),
                    expected)
    assert (tmp_path / "faces" / "face_0.jpg").read_bytes() == b"\xff\xd8 the user's photo"


@pytest.mark.parametrize("sub", ["snapshots", "samples", "logs"])
def test_train_refuses_a_link_planted_as_a_run_sub_folder(tmp_path, sub):
    (tmp_path / "faces").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "step_0000001.npz").write_text("the user's own file")
    (tmp_path / "run").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "run" / sub)
    result = run_cli("train", str(tmp_path / "faces"), "--out", str(tmp_path / "run"), "--max-steps", "1")
    _one_line_error(result, f"{tmp_path / 'run' / sub}: is a link, which ffv train never writes through; remove it")
    assert [p.name for p in (tmp_path / "elsewhere").iterdir()] == ["step_0000001.npz"]


def test_fit_gate_to_a_name_keras_cannot_save_is_refused_before_any_work(tmp_path, monkeypatch):
    import framefusion_video.training.gating as gating

    monkeypatch.setattr(gating, "fit_gate", lambda *a, **k: pytest.fail("fitted before checking -o"))
    (tmp_path / "faces").mkdir()
    photo = tmp_path / "faces" / "face_0.jpg"
    photo.write_bytes(b"\xff\xd8 the user's photo")
    model = REPO / "framefusion_video" / "weights" / "ffv_generator.keras"
    result = run_cli("fit-gate", str(model), str(tmp_path / "faces"), "-o", str(photo))
    _one_line_error(result, f"{photo}: a model is saved as .keras or .h5; name the output face_0.keras")
    assert photo.read_bytes() == b"\xff\xd8 the user's photo"


def test_a_checkpoint_on_a_full_disk_is_one_line_naming_the_run(tmp_path, monkeypatch):
    import errno

    import framefusion_video.training.trainer as training

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(training, "save_checkpoint", full)
    checkpoints = training.Checkpoints(tmp_path, 5.0, None, 0.0, training.ScalarLog(None))
    monkeypatch.setattr(checkpoints, "step", lambda: 1)
    with pytest.raises(FfvError, match=r"cannot write the checkpoint \(no space left on device\)"):
        checkpoints.save()


# ---- API arguments of the wrong kind

@pytest.mark.parametrize("config", ["fast", {"strength": 0.5}])
def test_a_config_that_is_not_a_restore_config_is_a_type_error_naming_it(tmp_path, config):
    from framefusion_video import restore_paths, restore_video

    src = make_clip(tmp_path / "in.mp4", (64, 48), 4, 10.0)
    with pytest.raises(TypeError, match="config must be a RestoreConfig"):
        restore_paths(src, tmp_path / "out.mp4", config)
    with pytest.raises(TypeError, match="config must be a RestoreConfig"):
        restore_video(src, tmp_path / "out.mp4", config)
    assert not (tmp_path / "out.mp4").exists()


def test_a_restorer_that_is_not_one_is_a_type_error_before_any_work(tmp_path):
    from framefusion_video import restore_paths

    src = make_clip(tmp_path / "in.mp4", (64, 48), 4, 10.0)
    with pytest.raises(TypeError, match="restorer must have crop_size and restore"):
        restore_paths(src, tmp_path / "out.mp4", restorer="x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_an_output_name_too_long_fails_that_file_alone(tmp_path, monkeypatch):
    """A 250-byte input's output beside it (``_restored``) would pass the 255-byte limit: that file
    fails with one line, and the run goes on to the next."""
    from framefusion_video import restore_paths

    use_pass_through(monkeypatch)
    short = make_clip(tmp_path / "a.mp4", (64, 48), 4, 10.0)
    long = tmp_path / ("x" * 246 + ".mp4")
    long.write_bytes(short.read_bytes())
    results = restore_paths([long, short], None)
    assert [r.status for r in results] == ["failed", "done"]
    assert "file name too long" in results[0].error


def test_the_learning_curve_is_never_appended_through_a_link(tmp_path):
    from framefusion_video.base.outputs import append_line

    victim = tmp_path / "victim.txt"
    victim.write_text("the user's notes\n")
    (tmp_path / "soft.jsonl").symlink_to(victim)
    os.link(victim, tmp_path / "hard.jsonl")
    for name in ("soft.jsonl", "hard.jsonl"):
        with pytest.raises(FfvError, match="learning curve"):
            append_line(tmp_path / name, '{"step": 1}', "learning curve")
    assert victim.read_text() == "the user's notes\n"
    append_line(tmp_path / "curve.jsonl", '{"step": 1}', "learning curve")
    append_line(tmp_path / "curve.jsonl", '{"step": 2}', "learning curve")
    assert (tmp_path / "curve.jsonl").read_text() == '{"step": 1}\n{"step": 2}\n'
