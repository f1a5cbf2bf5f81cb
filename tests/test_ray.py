"""Tests of ``ffv restore --ray`` (distributed.py) on a local Ray with 2 CPUs and tiny clips.

One Ray session and one serial run serve the whole module: Ray tests pay a worker start-up
(TensorFlow import) once. A tiny saved generator stands in for the shipped model, so workers load
a real model from a path as on a cluster. Tests needing Ray skip with the reason when it is not
installed; the tests of the "Ray missing" hint always run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from framefusion_video.base.errors import FfvError
from framefusion_video.cli import main
from framefusion_video.restore.batch import restore_paths
from framefusion_video.restore.config import RestoreConfig
from framefusion_video.restore.distributed import RAY_HINT, RayConfig, parse_ray_address, restore_paths_ray

from media import make_clip

FRAMES = 12
SIZE = (128, 128)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray with 2 CPUs for the module, shut down at its end."""
    try:
        import ray
    except ImportError:
        pytest.skip("Ray is not installed (pip install -e '.[ray]')")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    from framefusion_video.training.model import GeneratorConfig, build_generator

    path = tmp_path_factory.mktemp("model") / "g.keras"
    build_generator(GeneratorConfig(crop_size=32, widths=(8, 8, 16), blocks=(0, 1, 1), expansion=2)).save(path)
    return path


def astronaut(shift: int = 0) -> np.ndarray:
    from skimage import data

    return np.roll(data.astronaut(), shift, axis=1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two face clips (with audio) and a truncated one."""
    root = tmp_path_factory.mktemp("in")
    make_clip(root / "a.mp4", SIZE, FRAMES, face_image=astronaut())
    make_clip(root / "b.mp4", SIZE, FRAMES, face_image=astronaut(40))
    (root / "c_corrupt.mp4").write_bytes((root / "a.mp4").read_bytes()[:1500])
    return root


@pytest.fixture(scope="module")
def config(model_path) -> RestoreConfig:
    return RestoreConfig(model_path=str(model_path), batch_size=4)


@pytest.fixture(scope="module")
def serial(folder, config, tmp_path_factory) -> tuple[Path, list, dict]:
    """The serial run of ``folder``: (output folder, results, report)."""
    out = tmp_path_factory.mktemp("serial") / "out"
    report = out.with_name("report.json")
    results = restore_paths([folder], out, config, report=report, quiet=True)
    return out, results, json.loads(report.read_text())


@pytest.fixture(scope="module")
def distributed(ray_cluster, folder, config, tmp_path_factory) -> tuple[Path, list, dict, list[str]]:
    """The Ray run of ``folder``: (output folder, results, report, error log lines)."""
    out = tmp_path_factory.mktemp("ray") / "out"
    report = out.with_name("report.json")
    errors: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                errors.append(record.getMessage())

    handler = Collect()
    logging.getLogger("framefusion_video").addHandler(handler)
    try:
        results = restore_paths_ray([folder], out, config, report=report, quiet=True)
    finally:
        logging.getLogger("framefusion_video").removeHandler(handler)
    return out, results, json.loads(report.read_text()), errors


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- same results as serial


def test_ray_outputs_are_identical_to_the_serial_run(serial, distributed):
    serial_out, _, _ = serial
    ray_out = distributed[0]
    assert visible(ray_out) == visible(serial_out) == ["a.mp4", "b.mp4"]  # no temporary file left
    for name in ("a.mp4", "b.mp4"):
        assert (ray_out / name).read_bytes() == (serial_out / name).read_bytes(), name


def test_serial_runs_are_bit_identical(serial, folder, config, tmp_path):
    """The premise of the comparison above: libx264 output does not vary between runs."""
    out = tmp_path / "again.mp4"
    restore_paths([folder / "a.mp4"], out, config, quiet=True)
    assert out.read_bytes() == (serial[0] / "a.mp4").read_bytes()


def test_corrupt_clip_is_reported_once_and_the_rest_succeed(distributed, folder):
    out, results, _, errors = distributed
    assert [r.status for r in results] == ["done", "done", "failed"]
    # an untrained generator returns faces unchanged: they are left alone, not restored
    assert all(r.frames == FRAMES and r.faces_left_alone > 0 for r in results[:2])
    assert str(folder / "c_corrupt.mp4") in results[2].error
    assert not (out / "c_corrupt.mp4").exists()
    assert len([e for e in errors if "c_corrupt.mp4" in e and "failed" in e]) == 1


def test_report_is_the_serial_one_plus_the_node(serial, distributed):
    serial_report, ray_report = serial[2], distributed[2]
    timing = {"output", "seconds", "fps", "node"}

    def strip(entries):
        return [{k: v for k, v in e.items() if k not in timing} for e in entries]

    assert {k: v for k, v in ray_report["summary"].items() if k != "seconds"} == \
        {k: v for k, v in serial_report["summary"].items() if k != "seconds"}
    assert ray_report["config"] == serial_report["config"]
    # every field but the output folder and the timings, the failure's message word for word
    assert strip(ray_report["files"]) == strip(serial_report["files"])
    assert [Path(f["output"]).name for f in ray_report["files"]] == [Path(f["output"]).name for f in serial_report["files"]]
    assert [f["node"] for f in ray_report["files"]] == [socket.gethostname()] * 3  # the corrupt clip ran too


# --------------------------------------------------------------------------- resume


def test_second_run_skips_everything_through_the_cli(distributed, folder, tmp_path):
    out = distributed[0]
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    report = tmp_path / "again.json"
    result = CliRunner().invoke(main, ["-q", "restore", str(folder), "-o", str(out), "--report", str(report),
                                       "--model", distributed[2]["config"]["model_path"], "--ray"])
    assert result.exit_code == 1, result.output  # the corrupt clip has no output: it is tried, and fails, again
    assert [f["status"] for f in json.loads(report.read_text())["files"]] == ["skipped", "skipped", "failed"]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_serial_and_ray_runs_resume_each_other(serial, folder, config, tmp_path, ray_cluster):
    out = tmp_path / "out"
    shutil.copytree(serial[0], out)
    (out / "b.mp4").unlink()  # as if the serial run had stopped during b
    results = restore_paths_ray([folder], out, config, quiet=True)
    assert [r.status for r in results] == ["skipped", "done", "failed"]
    assert (out / "b.mp4").read_bytes() == (serial[0] / "b.mp4").read_bytes()
    (out / "a.mp4").unlink()  # and a ray run stopped during a, resumed serially
    assert [r.status for r in restore_paths([folder], out, config, quiet=True)] == ["done", "skipped", "failed"]
    assert (out / "a.mp4").read_bytes() == (serial[0] / "a.mp4").read_bytes()


# --------------------------------------------------------------------------- faults


def _encoder_worker(marker: str) -> int | None:
    """PID of the process whose child ffmpeg is writing a file whose name contains ``marker``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            if "ffmpeg" in cmdline and marker in cmdline:
                stat = (entry / "stat").read_text()
                return int(stat.rsplit(")", 1)[1].split()[1])  # field 4: ppid
        except (OSError, ValueError, IndexError):
            continue
    return None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker through /proc (Linux)")
def test_a_worker_killed_mid_clip_is_retried_and_leaves_complete_outputs(ray_cluster, config, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    make_clip(src / "victim.mp4", SIZE, 60, face_image=astronaut(20))
    expected = tmp_path / "serial.mp4"
    restore_paths([src / "victim.mp4"], expected, config, quiet=True)
    out = tmp_path / "out"
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(results=restore_paths_ray(
        [src], out, config, quiet=True, ray_config=RayConfig(max_retries=2))))
    thread.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        pid = _encoder_worker(".victim.mp4.ffv-tmp-")
        if pid is not None and pid != os.getpid():
            os.kill(pid, signal.SIGKILL)
            killed = pid
        time.sleep(0.01)
    thread.join(timeout=180)
    assert killed is not None, "the clip finished before its worker could be killed"
    assert not thread.is_alive()
    [result] = box["results"]
    assert (result.status, result.frames) == ("done", 60)
    assert visible(out) == ["victim.mp4"]  # no partial file, no temporary left
    assert (out / "victim.mp4").read_bytes() == expected.read_bytes()


def test_a_model_that_cannot_be_loaded_stops_the_run(ray_cluster, folder, tmp_path):
    with pytest.raises(FfvError, match="model file not found"):
        restore_paths_ray([folder], tmp_path / "out", RestoreConfig(model_path=str(tmp_path / "missing.keras")),
                          quiet=True)
    assert not any((tmp_path / "out").glob("*.mp4"))


# --------------------------------------------------------------------------- without Ray, options


def test_without_ray_the_option_fails_with_a_one_line_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes ``import ray`` raise ImportError
    (tmp_path / "x.mp4").write_bytes(b"not read")
    result = CliRunner().invoke(main, ["restore", str(tmp_path / "x.mp4"), "--ray"])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {RAY_HINT}"
    assert not (tmp_path / "x_restored.mp4").exists()


@pytest.mark.parametrize("value, address", [("local", None), ("auto", "auto"),
                                            ("ray://head:10001", "ray://head:10001"), ("10.0.0.2:6379", "10.0.0.2:6379")])
def test_ray_addresses(value, address):
    assert parse_ray_address(value) == address


def test_an_input_taken_as_the_address_is_a_usage_error(tmp_path):
    (tmp_path / "in").mkdir()
    result = CliRunner().invoke(main, ["restore", "--ray", str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "put --ray after the inputs" in result.output
    assert not (tmp_path / "out").exists()
