"""The package outside the source tree: what a wheel carries, and where the shipped weights are found.

A wheel holds what setuptools' ``build_py`` collects (the packages and their package data) plus
its metadata, so running ``build_py`` on a copy of the project shows the wheel's files in about a
second, offline. ``scripts/check_wheel.sh`` builds the real wheel and runs it in a fresh
environment (it downloads the dependencies, so it is not run here).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from framefusion_video.restore.inference import (
    DEFAULT_MODEL_NAME,
    KERAS_MODEL_NAME,
    SOFT_FACE_MODEL,
    SR_MODEL_NAMES,
    check_model_file,
    default_model_path,
    default_sr_model_path,
    shipped_weights_dir,
)

REPO = Path(__file__).resolve().parents[1]
#: What the package is built from; models/ is copied too, to show that it stays out.
BUILD_INPUTS = ("framefusion_video", "models", "setup.cfg", "pyproject.toml", "README.md")
SHIPPED = {DEFAULT_MODEL_NAME, KERAS_MODEL_NAME, *SR_MODEL_NAMES.values(), SOFT_FACE_MODEL}
WEIGHTS = {f"framefusion_video/weights/{name}" for name in SHIPPED}


def wheel_files(tmp_path: Path) -> set[str]:
    """The files (POSIX paths) ``build_py`` collects for a wheel of a copy of this project."""
    src = tmp_path / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        if not (REPO / name).exists():
            pytest.skip(f"{REPO / name} is not here (not a source checkout)")
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, src / name)
    lib = tmp_path / "lib"
    subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py",
                    "--build-lib", str(lib)], cwd=src, check=True, capture_output=True)
    return {p.relative_to(lib).as_posix() for p in lib.rglob("*") if p.is_file()}


def test_wheel_carries_the_shipped_weights_and_nothing_of_models(tmp_path):
    files = wheel_files(tmp_path)
    assert WEIGHTS <= files
    assert "framefusion_video/__init__.py" in files and "framefusion_video/cli/restore.py" in files
    subpackages = ("base", "video", "faces", "restore", "data", "evaluation", "training", "cli", "weights")
    assert {f"framefusion_video/{name}/__init__.py" for name in subpackages} <= files
    tools = sorted(f for f in files if f.rsplit("/", 1)[-1] in ("synthetic_clip.py", "span_ncnn.py", "ncnn_format.py",
                                                                "quality_clip.py"))
    assert not tools, f"benchmark or conversion code in the package: {tools}"
    outside = sorted(f for f in files if not f.startswith("framefusion_video/"))
    assert not outside, f"files outside the package: {outside}"
    data = sorted(f for f in files if not f.endswith(".py") and f not in WEIGHTS)
    assert not data, f"unexpected data files (training checkpoints?): {data}"


def test_shipped_weights_are_package_data_found_by_importlib_resources():
    import framefusion_video

    folder = shipped_weights_dir()
    assert folder == Path(framefusion_video.__file__).parent / "weights"
    assert {p.name for p in folder.iterdir() if p.suffix in (".tflite", ".keras")} == SHIPPED
    assert default_sr_model_path(4) == folder / SR_MODEL_NAMES[4]
    assert default_sr_model_path(2) == folder / SR_MODEL_NAMES[2]
    assert default_sr_model_path(3) is None  # no x3 network ships: --upscale 3 uses the default generator


def test_default_model_is_the_shipped_tflite_wherever_the_run_starts(tmp_path, monkeypatch):
    monkeypatch.delenv("FFV_MODEL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_model_path() == shipped_weights_dir() / DEFAULT_MODEL_NAME
    assert check_model_file(None) == default_model_path()
    monkeypatch.setenv("FFV_MODEL", str(tmp_path / "mine.tflite"))
    assert default_model_path() == tmp_path / "mine.tflite"
