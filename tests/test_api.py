"""Tests of the public API: ``from framefusion_video import restore_video, RestoreConfig, ...``.

What the README promises a Python caller: the names import from the package itself, importing it
stays light (no TensorFlow, no MediaPipe), and the calls restore a clip and a folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import framefusion_video
from framefusion_video import FfvError, FileResult, RestoreConfig, restore_paths, restore_video

from media import make_clip
from test_restore import FakeRestorer, decode

PUBLIC = ["FfvError", "FileResult", "RestoreConfig", "restore_paths", "restore_video"]
HEAVY = ("tensorflow", "keras", "mediapipe")


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory) -> Path:
    """Six frames of the astronaut portrait (a face MediaPipe finds), 160x160, with audio."""
    from skimage import data

    root = tmp_path_factory.mktemp("api_clips")
    return make_clip(root / "face.mp4", size=(160, 160), frames=6, face_image=data.astronaut())


def test_all_is_exactly_the_public_api():
    assert sorted(framefusion_video.__all__) == PUBLIC
    assert set(PUBLIC) <= set(dir(framefusion_video))


def test_public_names_are_the_library_objects():
    from framefusion_video.restore import batch
    from framefusion_video.restore import config
    from framefusion_video.base import errors
    from framefusion_video.restore import clip as restore

    assert FfvError is errors.FfvError
    assert (RestoreConfig, FileResult, restore_video, restore_paths) == (
        config.RestoreConfig, restore.FileResult, restore.restore_video, batch.restore_paths)


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        framefusion_video.no_such_name  # noqa: B018
    with pytest.raises(ImportError):
        from framefusion_video import no_such_name  # noqa: F401


@pytest.mark.parametrize("statement", [
    "import framefusion_video",
    "from framefusion_video import *",
    "from framefusion_video import RestoreConfig, restore_paths, restore_video",
])
def test_importing_the_api_does_not_import_the_heavy_stack(statement):
    code = (f"import json, sys\n{statement}\n"
            f"print(json.dumps([m for m in {HEAVY!r} + ('framefusion_video.restore.clip',) if m in sys.modules]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert not set(loaded) & set(HEAVY), f"{statement!r} imported {loaded}"
    if statement == "import framefusion_video":  # the restore module itself waits for first use
        assert loaded == []


def test_restore_video_restores_a_clip(face_clip, tmp_path):
    restorer = FakeRestorer()
    result = restore_video(face_clip, tmp_path / "out.mp4", RestoreConfig(temporal=0.0, safety=False), restorer=restorer)
    assert isinstance(result, FileResult)
    assert (result.status, result.frames) == ("done", 6)
    assert result.faces >= 5 and restorer.batches
    assert len(decode(tmp_path / "out.mp4")) == 6


def test_restore_paths_restores_a_folder_and_reports_bad_files(face_clip, tmp_path):
    folder = tmp_path / "footage"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(face_clip.read_bytes())
    (folder / "broken.mp4").write_text("not a video\n")
    results = restore_paths([folder], tmp_path / "restored", restorer=FakeRestorer())
    by_name = {r.input.name: r for r in results}
    assert by_name["a.mp4"].status == "done" and by_name["a.mp4"].frames == 6
    assert by_name["broken.mp4"].status == "failed" and "broken.mp4" in by_name["broken.mp4"].error
    assert len(decode(tmp_path / "restored" / "a.mp4")) == 6


def test_restore_video_raises_ffv_error_naming_the_file(tmp_path):
    with pytest.raises(FfvError, match="missing.mp4"):
        restore_video(tmp_path / "missing.mp4", tmp_path / "out.mp4", restorer=FakeRestorer())


def test_model_path_points_at_a_generator(face_clip, tmp_path):
    # No restorer given: RestoreConfig.model_path is loaded; None is the weights shipped in the package.
    from framefusion_video.restore.inference import default_model_path

    shipped = default_model_path()
    if not shipped.is_file():
        pytest.skip(f"no shipped weights at {shipped}")
    with pytest.raises(FfvError, match="nothing.tflite"):
        restore_video(face_clip, tmp_path / "bad.mp4", RestoreConfig(model_path=str(tmp_path / "nothing.tflite")))
    result = restore_video(face_clip, tmp_path / "out.mp4", RestoreConfig(model_path=str(shipped)))
    assert (result.status, result.frames) == ("done", 6)
