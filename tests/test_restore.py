"""Tests of the per-frame pipeline (pipeline.py), one clip (restore.py), output planning and folder runs (batch.py).

A fake restorer (it inverts the crops, which colour matching cannot undo) stands in for the model,
so these tests need no TensorFlow; the tests of the pipeline's mechanics turn the safety checks off
(``safety=False``), which would rightly refuse such a face; faces are found by the real MediaPipe detector on a tiny clip
of ``skimage.data.astronaut()`` moving a little.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from framefusion_video.base.errors import FfvError
from framefusion_video.base.threads import prefetch
from framefusion_video.faces import alignment
from framefusion_video.restore.batch import plan_outputs, restore_paths
from framefusion_video.restore.clip import FileResult, restore_video
from framefusion_video.restore.config import RestoreConfig
from framefusion_video.restore.pipeline import restore_frames
from framefusion_video.restore.windows import grown_box

FPS = 10
N_FRAMES = 12
SIZE = (288, 256)  # width, height


class FakeRestorer:
    """Inverts crops (float32 (N, S, S, 3) in [0, 1]) and records every batch size it was given."""

    def __init__(self, crop_size: int = 64) -> None:
        self.crop_size = crop_size
        self.batches: list[int] = []

    def restore(self, crops: np.ndarray) -> np.ndarray:
        assert crops.dtype == np.float32 and crops.ndim == 4
        assert crops.shape[1:] == (self.crop_size, self.crop_size, 3)
        assert 0.0 <= crops.min() and crops.max() <= 1.0
        self.batches.append(len(crops))
        return 1.0 - crops


# --------------------------------------------------------------------------- media helpers


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def write_clip(path: Path, frames: list[np.ndarray], fps: int = FPS, audio: bool = False) -> Path:
    """Encode uint8 RGB frames as a near-lossless H.264 MP4 (optionally with a sine audio track)."""
    h, w = frames[0].shape[:2]
    cmd = [ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-r", str(fps), "-i", "-"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={len(frames) / fps}", "-c:a", "aac", "-shortest"]
    cmd += ["-c:v", "libx264", "-crf", "10", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, input=b"".join(np.ascontiguousarray(f).tobytes() for f in frames), check=True)
    return path


def decode(path: Path) -> list[np.ndarray]:
    from framefusion_video.video.decode import read_frames

    return list(read_frames(path))


def astronaut_frames(n: int = N_FRAMES) -> list[np.ndarray]:
    """The astronaut photo, 320 px, seen through a 288x256 window drifting 2 px per frame."""
    import cv2
    from skimage import data

    image = cv2.resize(data.astronaut(), (320, 320), interpolation=cv2.INTER_AREA)
    w, h = SIZE
    return [np.ascontiguousarray(image[0 + (i % 8):h + (i % 8), 16 + 2 * (i % 8) - 8:16 + 2 * (i % 8) - 8 + w])
            for i in range(n)]


def no_face_frames(n: int = N_FRAMES) -> list[np.ndarray]:
    """Moving colour gradients and a square: no face anywhere."""
    w, h = SIZE
    y, x = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(n):
        f = np.stack([(x + 3 * i) % 256, (y + 2 * i) % 256, np.full_like(x, 90)], axis=-1).astype(np.uint8)
        f[60:120, 40 + 4 * i:100 + 4 * i] = (230, 40, 40)
        frames.append(f)
    return frames


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """A face clip (with audio), a no-face clip, and broken files, made once for the module."""
    root = tmp_path_factory.mktemp("clips")
    face = write_clip(root / "face.mp4", astronaut_frames(), audio=True)
    noface = write_clip(root / "noface.mp4", no_face_frames())
    truncated = root / "truncated.mp4"
    truncated.write_bytes(face.read_bytes()[: face.stat().st_size // 3])
    (root / "empty.mp4").write_bytes(b"")
    (root / "notes.mp4").write_text("this is not a video\n")
    audio_only = root / "audio_only.m4a"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "aac",
                    str(audio_only)], check=True)
    return {"face": face, "noface": noface, "truncated": truncated, "empty": root / "empty.mp4",
            "text": root / "notes.mp4", "audio_only": audio_only}


def face_box(frame: np.ndarray) -> tuple[int, int, int, int]:
    """The largest face's box (x0, y0, x1, y1) found by the real detector."""
    from framefusion_video.faces.detection import FaceDetector

    with FaceDetector() as detector:
        faces = detector.detect(frame)
    assert faces, "the detector should find the astronaut's face"
    return tuple(int(round(v)) for v in faces[0].box)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


# --------------------------------------------------------------------------- restore_frames (no video)


def _tracked(offsets) -> list:
    """Fake TrackedFaces whose landmarks are the 64 px template moved by each (x, y) offset."""
    from framefusion_video.faces.detection import Face

    faces = []
    for i, (ox, oy) in enumerate(offsets):
        lm = alignment.template(64) + np.float32([ox, oy])
        faces.append(SimpleNamespace(track_id=i, carried=False,
                                     face=Face(box=(ox, oy, ox + 64, oy + 64), landmarks=lm, score=0.9)))
    return faces


def _stream(n_frames: int, faces_per_frame: list[int]):
    rng = np.random.default_rng(0)
    for i in range(n_frames):
        frame = rng.integers(0, 256, (160, 240, 3), dtype=np.uint8)
        k = faces_per_frame[i % len(faces_per_frame)]
        yield frame, _tracked([(20 + 100 * j, 40) for j in range(k)])


def test_restore_frames_batches_across_frames_and_keeps_order():
    restorer = FakeRestorer()
    counts = [1, 0, 2, 1, 0, 0, 3]
    out = list(restore_frames(_stream(14, counts), restorer, RestoreConfig(batch_size=4, safety=False)))
    assert [o.index for o in out] == list(range(14))
    expected = [counts[i % len(counts)] for i in range(14)]
    assert [o.restored_faces for o in out] == expected
    assert [len(o.restored_boxes) for o in out] == expected
    assert out[2].restored_boxes == [(20.0, 40.0, 84.0, 104.0), (120.0, 40.0, 184.0, 104.0)]
    assert sum(restorer.batches) == sum(expected)
    assert max(restorer.batches) <= 4
    # crops are gathered over several frames: fewer calls than frames with faces
    assert len(restorer.batches) < sum(1 for e in expected if e)


def test_restore_frames_changes_faces_only_and_passes_faceless_frames_through():
    restorer = FakeRestorer()
    out = list(restore_frames(_stream(4, [1, 0]), restorer, RestoreConfig(colour_match=False, safety=False)))
    with_face, without = out[0], out[1]
    assert without.restored is without.original
    x0, y0 = 20, 40
    centre = (slice(y0 + 24, y0 + 40), slice(x0 + 24, x0 + 40))
    far = (slice(0, 30), slice(150, 240))
    assert mean_abs_diff(with_face.restored[centre], with_face.original[centre]) > 40
    assert np.array_equal(with_face.restored[far], with_face.original[far])


def test_restore_frames_select_skips_the_restorer():
    restorer = FakeRestorer()
    out = list(restore_frames(_stream(6, [1]), restorer, RestoreConfig(safety=False), select=lambda i: i == 3))
    assert [o.restored_faces for o in out] == [0, 0, 0, 1, 0, 0]
    assert restorer.batches == [1]
    assert all(o.restored is o.original for o in out if o.index != 3)


def test_restore_frames_at_strength_zero_runs_no_restorer_and_restores_nothing():
    from framefusion_video.restore.blending import upscale_frame

    restorer = FakeRestorer()
    out = list(restore_frames(_stream(4, [1, 2]), restorer, RestoreConfig(strength=0.0, upscale=2)))
    assert restorer.batches == [] and [o.restored_faces for o in out] == [0, 0, 0, 0]
    assert all(o.outcomes == [] for o in out)
    for o in out:
        np.testing.assert_array_equal(o.restored, upscale_frame(o.original, 2))


@pytest.mark.parametrize("factor", [2, 4])
def test_restore_frames_upscale_pastes_at_high_resolution(factor):
    restorer = FakeRestorer()
    out = list(restore_frames(_stream(2, [1, 0]), restorer, RestoreConfig(upscale=factor, colour_match=False, safety=False)))
    for o in out:
        assert o.restored.shape == (160 * factor, 240 * factor, 3)
    # the face centre (crop from the original, pasted through scale_matrix) moved with the frame
    cy, cx = (40 + 32) * factor, (20 + 32) * factor
    h = 8 * factor
    import cv2

    upscaled = cv2.resize(out[0].original, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    assert mean_abs_diff(out[0].restored[cy - h:cy + h, cx - h:cx + h], upscaled[cy - h:cy + h, cx - h:cx + h]) > 40
    assert mean_abs_diff(out[1].restored, cv2.resize(out[1].original, None, fx=factor, fy=factor,
                                                     interpolation=cv2.INTER_CUBIC)) < 1.0


def test_restore_frames_rejects_a_restorer_returning_the_wrong_shape():
    class Broken(FakeRestorer):
        def restore(self, crops):
            return crops[:, :10]

    with pytest.raises(RuntimeError, match="shape"):
        list(restore_frames(_stream(2, [1]), Broken(), RestoreConfig()))


@pytest.mark.parametrize("options", [
    {"strength": 2.0}, {"strength": -0.1}, {"upscale": 3}, {"batch_size": 0}, {"crf": 60},
    {"min_face": -1}, {"max_faces": -2}, {"detect_every": 0}, {"model_threads": -1}, {"preset": "warp"},
    {"temporal": 1.0}, {"min_confidence": 1.5},
])
def test_config_rejects_impossible_options(options):
    name = next(iter(options))
    with pytest.raises(ValueError, match=name):
        RestoreConfig(**options)


def test_default_restorer_uses_half_the_cores_unless_told():
    import os

    from framefusion_video.restore.inference import LiteRestorer, default_model_path
    from framefusion_video.restore.clip import load_default_restorer

    if default_model_path().suffix != ".tflite" or not default_model_path().is_file():
        pytest.skip("shipped .tflite weights not present")
    auto = load_default_restorer(RestoreConfig())
    assert isinstance(auto, LiteRestorer) and auto.threads == max(1, (os.cpu_count() or 1) // 2)
    assert load_default_restorer(RestoreConfig(model_threads=3)).threads == 3


def test_batch_size_reaches_the_lite_restorer_and_does_not_change_its_outputs():
    """``--batch-size`` sets how many crops go through LiteRT at a time; crops restored in
    batches come out as they do one by one."""
    from framefusion_video.restore.inference import LiteRestorer, default_model_path
    from framefusion_video.restore.clip import load_default_restorer

    if default_model_path().suffix != ".tflite" or not default_model_path().is_file():
        pytest.skip("shipped .tflite weights not present")
    batched = load_default_restorer(RestoreConfig(batch_size=4, model_threads=1))
    assert isinstance(batched, LiteRestorer) and batched.batch_size == 4
    crops = np.random.default_rng(5).random((6, batched.crop_size, batched.crop_size, 3), dtype=np.float32)
    single = LiteRestorer(default_model_path(), batch_size=1, threads=1)
    np.testing.assert_array_equal(batched.restore(crops), single.restore(crops))


# --------------------------------------------------------------------------- plan_outputs


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_plan_single_file_default_and_explicit(tmp_path):
    clip = _touch(tmp_path / "a.MOV")
    assert plan_outputs([clip]) == [(clip, tmp_path / "a_restored.mp4")]
    assert plan_outputs([clip], tmp_path / "out.mp4") == [(clip, tmp_path / "out.mp4")]
    (tmp_path / "dir").mkdir()
    assert plan_outputs([clip], tmp_path / "dir") == [(clip, tmp_path / "dir" / "a_restored.mp4")]


def test_plan_folder_mirrors_video_files(tmp_path):
    src = tmp_path / "clips"
    a, b = _touch(src / "a.mp4"), _touch(src / "b.MKV")
    _touch(src / "readme.txt")
    _touch(src / ".hidden.mp4")
    deep = _touch(src / "sub" / "c.webm")
    default = tmp_path / "clips_restored"
    assert plan_outputs([src]) == [(a, default / "a.mp4"), (b, default / "b.mp4")]
    out = tmp_path / "out"
    assert plan_outputs([src], out, recursive=True) == [
        (a, out / "a.mp4"), (b, out / "b.mp4"), (deep, out / "sub" / "c.mp4")]


def test_plan_does_not_descend_into_its_own_output_folder(tmp_path):
    src = tmp_path / "clips"
    a = _touch(src / "a.mp4")
    _touch(src / "restored" / "a.mp4")  # a previous run's output inside the input folder
    assert plan_outputs([src], src / "restored", recursive=True) == [(a, src / "restored" / "a.mp4")]


def test_plan_refuses_output_equal_to_an_input(tmp_path):
    clip = _touch(tmp_path / "a.mp4")
    with pytest.raises(FfvError, match="overwrite"):
        plan_outputs([clip], clip)
    with pytest.raises(FfvError, match="overwrite"):
        plan_outputs([tmp_path], tmp_path)  # mirrored onto itself


def test_plan_refuses_two_inputs_writing_one_output(tmp_path):
    _touch(tmp_path / "in" / "a.mp4")
    _touch(tmp_path / "in" / "a.mov")
    with pytest.raises(FfvError, match="both"):
        plan_outputs([tmp_path / "in"], tmp_path / "out")


def test_plan_keeps_missing_files_for_the_run_to_report(tmp_path):
    missing = tmp_path / "nope.mp4"
    assert plan_outputs([missing]) == [(missing, tmp_path / "nope_restored.mp4")]


# --------------------------------------------------------------------------- one clip


def test_restore_video_keeps_format_and_restores_the_face(clips, tmp_path):
    from framefusion_video.video.probe import probe

    restorer = FakeRestorer()
    calls = []
    dst = tmp_path / "out.mp4"
    seen = []
    result = restore_video(clips["face"], dst, RestoreConfig(batch_size=4, safety=False), restorer=restorer,
                           progress=lambda *a: calls.append(a), on_frame=seen.append)
    assert result.status == "done" and result.frames == N_FRAMES
    assert [f.index for f in seen] == list(range(N_FRAMES))
    assert sum(len(f.restored_boxes) for f in seen) == result.faces
    assert result.faces >= N_FRAMES - 2  # the astronaut is found (nearly) everywhere
    assert calls[-1][:2] == (N_FRAMES, result.faces)
    src_info, out_info = probe(clips["face"]), probe(dst)
    assert (out_info.width, out_info.height) == (src_info.width, src_info.height)
    assert out_info.fps == pytest.approx(src_info.fps, rel=1e-3)
    assert out_info.has_audio

    before, after = decode(clips["face"]), decode(dst)
    assert len(after) == len(before) == N_FRAMES
    x0, y0, x1, y1 = face_box(before[0])
    cx, cy, r = (x0 + x1) // 2, (y0 + y1) // 2, max(4, (x1 - x0) // 6)
    face_diff = mean_abs_diff(after[0][cy - r:cy + r, cx - r:cx + r], before[0][cy - r:cy + r, cx - r:cx + r])
    # far background: the bottom rows, well below the face box (its side again below the chin)
    far_top = min(y1 + (y1 - y0), SIZE[1] - 20)
    background_diff = mean_abs_diff(after[0][far_top:], before[0][far_top:])
    assert face_diff > 30
    assert background_diff < 3  # codec noise only
    assert face_diff > 10 * background_diff


def test_no_face_clip_passes_through(clips, tmp_path):
    restorer = FakeRestorer()
    result = restore_video(clips["noface"], tmp_path / "out.mp4", restorer=restorer)
    assert (result.frames, result.faces) == (N_FRAMES, 0)
    assert restorer.batches == []
    after = decode(tmp_path / "out.mp4")
    assert len(after) == N_FRAMES and after[0].shape == (SIZE[1], SIZE[0], 3)


def test_upscale_doubles_the_output(clips, tmp_path):
    from framefusion_video.video.probe import probe

    restore_video(clips["face"], tmp_path / "x2.mp4", RestoreConfig(upscale=2), restorer=FakeRestorer())
    info = probe(tmp_path / "x2.mp4")
    assert (info.width, info.height) == (2 * SIZE[0], 2 * SIZE[1])


@pytest.mark.parametrize("name, reason", [
    ("missing", "no such file"),
    ("empty", "empty"),
    ("text", ""),
    ("truncated", ""),
    ("audio_only", ""),
    ("folder", "folder"),
])
def test_bad_inputs_raise_one_line_errors_naming_the_file(clips, tmp_path, name, reason):
    src = {"missing": tmp_path / "missing.mp4", "folder": tmp_path}.get(name) or clips[name]
    dst = tmp_path / "out" / "x.mp4"
    with pytest.raises(FfvError) as info:
        restore_video(src, dst, restorer=FakeRestorer())
    message = str(info.value)
    assert "\n" not in message and str(src) in message and reason in message
    assert not dst.exists()


def test_unwritable_output_folder(clips, tmp_path):
    blocker = _touch(tmp_path / "file")
    with pytest.raises(FfvError, match="output folder"):
        restore_video(clips["face"], blocker / "out.mp4", restorer=FakeRestorer())


def test_output_equal_to_input_is_refused_and_input_untouched(clips):
    before = clips["face"].read_bytes()
    with pytest.raises(FfvError, match="overwrite"):
        restore_video(clips["face"], clips["face"], restorer=FakeRestorer())
    assert clips["face"].read_bytes() == before


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failure_mid_clip_leaves_no_output_and_no_thread(clips, tmp_path, error):
    class Interrupted(FakeRestorer):
        def restore(self, crops):
            if len(self.batches) == 2:
                raise error("simulated failure in the middle of a clip")
            return super().restore(crops)

    out_dir = tmp_path / "out"
    with pytest.raises(error, match="simulated"):
        restore_video(clips["face"], out_dir / "x.mp4", RestoreConfig(batch_size=2), restorer=Interrupted())
    assert list(out_dir.iterdir()) == []  # neither the final file nor a temporary one
    assert not [t.name for t in threading.enumerate() if t.name.startswith("ffv-")]


def test_prefetch_reads_a_bounded_distance_ahead_and_stops_the_producer():
    produced = []

    def numbers():
        for i in range(1000):
            produced.append(i)
            yield i

    stream = prefetch(numbers(), maxsize=3)
    assert next(stream) == 0
    time.sleep(0.2)
    assert len(produced) <= 1 + 3 + 1  # the item taken, a full queue, one waiting to be put
    stream.close()
    assert len(produced) < 10
    assert not [t for t in threading.enumerate() if t.name == "ffv-prefetch"]


def test_prefetch_reraises_the_producer_error_in_order():
    def failing():
        yield 1
        raise FfvError("clip.mp4", "decoding failed")

    stream = prefetch(failing())
    assert next(stream) == 1
    with pytest.raises(FfvError, match="clip.mp4: decoding failed"):
        next(stream)


# --------------------------------------------------------------------------- folder runs


@pytest.fixture
def folder(clips, tmp_path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (src / name).write_bytes(clips["noface"].read_bytes())
    (src / "c_broken.mp4").write_bytes(clips["truncated"].read_bytes())
    return src


def test_folder_run_continues_past_a_bad_file_and_reports(folder, tmp_path):
    report = tmp_path / "report.json"
    results = restore_paths([folder], tmp_path / "out", restorer=FakeRestorer(), report=report, quiet=True)
    assert [r.status for r in results] == ["done", "done", "failed"]
    assert "c_broken.mp4" in results[2].error
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mp4", "b.mp4"]
    data = json.loads(report.read_text())
    assert [f["status"] for f in data["files"]] == ["done", "done", "failed"]
    assert data["summary"]["done"] == 2 and data["summary"]["failed"] == 1
    assert data["summary"]["frames"] == 2 * N_FRAMES
    assert data["files"][0]["input"] == str(folder / "a.mp4")


def test_second_run_resumes(folder, tmp_path):
    (folder / "c_broken.mp4").unlink()
    out = tmp_path / "out"
    first = restore_paths([folder], out, restorer=FakeRestorer(), quiet=True)
    assert [r.status for r in first] == ["done", "done"]
    (out / "b.mp4").unlink()  # as if the run had been stopped during b
    stamp = (out / "a.mp4").stat().st_mtime_ns
    second = restore_paths([folder], out, restorer=FakeRestorer(), quiet=True)
    assert [r.status for r in second] == ["skipped", "done"]
    assert (out / "a.mp4").stat().st_mtime_ns == stamp
    third = restore_paths([folder], out, restorer=FakeRestorer(), quiet=True, overwrite=True)
    assert [r.status for r in third] == ["done", "done"]


def test_model_is_loaded_once_and_only_when_needed(folder, tmp_path, monkeypatch):
    import framefusion_video.restore.batch as batch_module

    loads = []
    monkeypatch.setattr(batch_module, "load_default_restorer", lambda config: loads.append(1) or FakeRestorer())
    restore_paths([tmp_path / "missing.mp4"], quiet=True)
    assert loads == []  # nothing to restore: no model
    results = restore_paths([folder], tmp_path / "out", quiet=True)
    assert [r.status for r in results] == ["done", "done", "failed"]
    assert loads == [1]


def test_file_result_to_dict_is_json_ready():
    r = FileResult(Path("a.mp4"), Path("b.mp4"), frames=3, faces=2, seconds=1.23456, fps=2.43, status="done")
    assert json.loads(json.dumps(r.to_dict()))["seconds"] == pytest.approx(1.235)


@pytest.mark.parametrize("name", ["closeup_audio-first-stream_410x412.mp4", "talking_head_vfr_700.mp4"])
def test_real_clips_keep_frames_and_audio(shared_videos, tmp_path, name):
    from media import short_copy

    from framefusion_video.video.probe import probe

    src = short_copy(shared_videos / name, tmp_path / name, seconds=1.0)
    restorer = FakeRestorer(crop_size=128)
    result = restore_video(src, tmp_path / "out.mp4", RestoreConfig(safety=False), restorer=restorer)
    src_info, out_info = probe(src), probe(tmp_path / "out.mp4")
    assert result.frames == src_info.n_frames == out_info.n_frames
    assert result.faces > 0 and sum(restorer.batches) == result.faces
    assert out_info.has_audio == src_info.has_audio
    assert out_info.duration == pytest.approx(src_info.duration, abs=1.5 / src_info.fps)


# --------------------------------------------------------------------------- preview


def test_export_preview_frames_past_the_end(clips, tmp_path, caplog):
    from framefusion_video.restore.preview import export_preview

    pngs = export_preview(clips["noface"], tmp_path / "p", frames=[2, 500], restorer=FakeRestorer())
    assert [p.name for p in pngs] == ["frame_000002.png"]
    assert "500" in caplog.text
    with pytest.raises(FfvError, match="none of the requested frames"):
        export_preview(clips["noface"], tmp_path / "q", frames=[500], restorer=FakeRestorer())


def test_export_preview_default_spreads_frames_and_restores_only_them(clips, tmp_path):
    from framefusion_video.restore.preview import DEFAULT_PREVIEW_FRAMES, export_preview

    restorer = FakeRestorer()
    pngs = export_preview(clips["face"], tmp_path / "p", annotate=True, restorer=restorer)
    assert 2 <= len(pngs) <= DEFAULT_PREVIEW_FRAMES
    assert sum(restorer.batches) <= len(pngs)  # only the exported frames went through the model
    assert (tmp_path / "p" / "index.html").is_file()
    for p in pngs:  # the slider's before and after images
        assert (tmp_path / "p" / "frames" / f"{p.stem}_before.png").is_file()
        assert (tmp_path / "p" / "frames" / f"{p.stem}_after.png").is_file()


# --------------------------------------------------------------------------- the real model


def test_end_to_end_with_the_shipped_model(clips, tmp_path):
    from framefusion_video.restore import inference

    if not inference.default_model_path().is_file():
        pytest.skip(f"no shipped weights at {inference.default_model_path()}")
    from framefusion_video.video.decode import read_frames

    short = write_clip(tmp_path / "short.mp4", [f for f, _ in zip(read_frames(clips["face"]), range(4))])
    result = restore_video(short, tmp_path / "out.mp4")
    # Every face-frame is accounted for (the shipped gate leaves the sample's face alone).
    assert result.frames == 4 and result.faces + result.faces_left_alone + result.faces_refused >= 3
    assert len(decode(tmp_path / "out.mp4")) == 4


# --------------------------------------------------------------------------- never worse than the input


class InventingRestorer(FakeRestorer):
    """Gives every face texture it did not have (a fixed pattern of 24 grey levels, several
    times the noise of the clip's face): what a generator does to a clean face it should leave alone."""

    def restore(self, crops: np.ndarray) -> np.ndarray:
        y, x = np.mgrid[0:self.crop_size, 0:self.crop_size]
        pattern = (24 / 255) * np.sin(x * 1.3)[..., None] * np.cos(y * 0.9)[..., None]
        return np.clip(crops + pattern.astype(np.float32), 0, 1)


class GateRestorer(FakeRestorer):
    """Returns every face unchanged, as the generator's gate does."""

    def restore(self, crops: np.ndarray) -> np.ndarray:
        return crops.copy()


def _face_psnr(frames: list[np.ndarray], clean: list[np.ndarray], box) -> float:
    x0, y0, x1, y1 = box
    err = np.mean([((f[y0:y1, x0:x1].astype(np.float64) - c[y0:y1, x0:x1]) ** 2).mean() for f, c in zip(frames, clean)])
    return float(10 * np.log10(255.0**2 / err))


def test_a_clean_clip_keeps_its_faces(clips, tmp_path):
    # The clip's clean frames are known (astronaut_frames); an unrestored run (the gate leaves
    # every face alone) is what ffv's own transcode keeps of them.
    clean = astronaut_frames()
    box = face_box(clean[0])
    gate = restore_video(clips["face"], tmp_path / "gate.mp4", restorer=GateRestorer())
    safe = restore_video(clips["face"], tmp_path / "safe.mp4", restorer=InventingRestorer())
    unsafe = restore_video(clips["face"], tmp_path / "unsafe.mp4", RestoreConfig(safety=False),
                           restorer=InventingRestorer())
    assert gate.faces_left_alone >= N_FRAMES - 2 and gate.faces == 0
    assert safe.faces_refused >= N_FRAMES - 2 and safe.faces == 0
    kept = _face_psnr(decode(tmp_path / "gate.mp4"), clean, box)
    assert _face_psnr(decode(tmp_path / "safe.mp4"), clean, box) >= kept - 0.05
    assert _face_psnr(decode(tmp_path / "unsafe.mp4"), clean, box) < kept - 1.0  # what was refused
    assert unsafe.faces >= N_FRAMES - 2


class RelightingRestorer(FakeRestorer):
    """Undoes a known darkening (gain 0.4, gamma 1.3) of the crops: a perfect lighting repair."""

    def restore(self, crops: np.ndarray) -> np.ndarray:
        return np.clip(np.power(np.clip(crops / 0.4, 0, 1), 1 / 1.3), 0, 1).astype(np.float32)


def _darken(frame: np.ndarray) -> np.ndarray:
    return (255 * 0.4 * (frame / 255.0) ** 1.3).astype(np.uint8)


def _relit(frame: np.ndarray, face, **options):
    stream = iter([(frame, [SimpleNamespace(track_id=0, carried=False, face=face)])])
    return next(restore_frames(stream, RelightingRestorer(), RestoreConfig(temporal=0.0, **options)))


def test_a_dark_face_is_not_made_dark_again():
    # The head is darkened in a frame that stays lit (an under-exposed face, as in the quality
    # clip): colour matching keeps the restorer's repair.
    import cv2

    from framefusion_video.faces.detection import FaceDetector

    clean = astronaut_frames(1)
    with FaceDetector() as detector:
        face = detector.detect(clean[0])[0]
    x0, y0, x1, y1 = (int(round(v)) for v in face.box)
    head = np.zeros(clean[0].shape[:2], np.float32)
    cv2.ellipse(head, ((x0 + x1) // 2, (y0 + y1) // 2), (x1 - x0, y1 - y0), 0, 0, 360, 1.0, -1)
    head = cv2.GaussianBlur(head, (0, 0), 3.0)[..., None]
    dark = (head * _darken(clean[0]) + (1 - head) * clean[0] + 0.5).astype(np.uint8)
    inner = (x0 + 10, y0 + 10, x1 - 10, y1 - 10)  # inside the face mask

    darkened = _face_psnr([dark], clean, inner)
    runs = [_relit(dark, face), _relit(dark, face, colour_match=False)]
    assert [run.count("restored") for run in runs] == [1, 1]
    default, without = (_face_psnr([run.restored], clean, inner) for run in runs)
    assert without > darkened + 10.0  # the repair itself
    assert default >= without - 0.2  # colour matching does not put the damage back


def test_a_face_as_dark_as_its_scene_is_not_brightened():
    # The whole frame is dark (a night scene, a dark stage): brightening the face alone would
    # paste a glowing oval into it, so colour matching takes the restorer's brightening back.
    from framefusion_video.faces.detection import FaceDetector

    clean = astronaut_frames(1)
    with FaceDetector() as detector:
        face = detector.detect(clean[0])[0]
    dark = _darken(clean[0])
    x0, y0, x1, y1 = (int(round(v)) for v in face.box)
    inner = (x0 + 10, y0 + 10, x1 - 10, y1 - 10)

    brightened = _relit(dark, face, colour_match=False, safety=False).restored
    kept = _relit(dark, face).restored  # matched back, or refused: the frame's own face either way
    assert _face_psnr([brightened], [dark], inner) < 20.0  # what the restorer alone does
    luma = [float(f[inner[1]:inner[3], inner[0]:inner[2]].mean()) for f in (dark, kept, brightened)]
    assert abs(luma[1] - luma[0]) < 2.0 < luma[2] - luma[0]


class BlockySuperResolution:
    """A x4 "super-resolution" restorer: nearest-neighbour upscaling. Reduced by area it gives its
    input back exactly, so the safety check's consistency test passes, and it is easy to tell
    from the bicubic upscale of the frame."""

    crop_size, scale = 64, 4

    def __init__(self) -> None:
        self.calls = 0

    def restore(self, crops: np.ndarray) -> np.ndarray:
        assert crops.shape[1:] == (64, 64, 3)
        self.calls += 1
        return np.repeat(np.repeat(crops, 4, axis=1), 4, axis=2)


def _small_face_frame():
    """The astronaut at a quarter of its size (a ~16 px face) and that face, found at full size."""
    import dataclasses

    import cv2

    from framefusion_video.faces.detection import FaceDetector

    clean = astronaut_frames(1)[0]
    with FaceDetector() as detector:
        face = detector.detect(clean)[0]
    small = cv2.resize(clean, (clean.shape[1] // 4, clean.shape[0] // 4), interpolation=cv2.INTER_AREA)
    quarter = dataclasses.replace(face, box=tuple(0.25 * (v + 0.5) - 0.5 for v in face.box),
                                  landmarks=(0.25 * (face.landmarks + 0.5) - 0.5).astype(np.float32))
    return clean, small, face, quarter


def test_a_super_resolution_restorer_upscales_small_faces():
    from framefusion_video.restore.blending import upscale_frame

    _, small, _, face = _small_face_frame()
    restorer = BlockySuperResolution()
    stream = iter([(small, [SimpleNamespace(track_id=0, carried=False, face=face)])])
    out = next(restore_frames(stream, restorer, RestoreConfig(upscale=4, temporal=0.0)))
    bicubic = upscale_frame(small, 4)
    assert out.restored.shape == bicubic.shape and restorer.calls == 1
    assert out.count("restored") == 1
    x0, y0, x1, y1 = (int(4 * v) for v in face.box)
    inner = np.s_[y0 + 8:y1 - 8, x0 + 8:x1 - 8]
    assert mean_abs_diff(out.restored[inner], bicubic[inner]) > 1.0  # the network's face is pasted
    changed = np.any(out.restored != bicubic, axis=2)
    ys, xs = np.nonzero(changed)
    gx0, gy0, gx1, gy1 = (4 * v for v in grown_box(face.box))  # the face and its margin, no further
    assert xs.min() >= gx0 and xs.max() <= gx1 and ys.min() >= gy0 and ys.max() <= gy1


def test_a_face_too_large_for_super_resolution_keeps_its_bicubic_upscale():
    from framefusion_video.restore.blending import upscale_frame

    clean, _, face, _ = _small_face_frame()  # a ~66 px face: a 32 px input would keep a third of it
    restorer = BlockySuperResolution()
    stream = iter([(clean, [SimpleNamespace(track_id=0, carried=False, face=face)])])
    out = next(restore_frames(stream, restorer, RestoreConfig(upscale=4, temporal=0.0)))
    assert out.count("left alone") == 1 and "super-resolution" in out.outcomes[0].reason
    np.testing.assert_array_equal(out.restored, upscale_frame(clean, 4))
    assert restorer.calls == 0


def test_a_super_resolution_restorer_needs_its_own_upscale(tmp_path):
    """One check, where the restorer is chosen: the loader (naming the file) and ``restore_video``
    for a restorer handed in, before any frame is decoded."""
    from framefusion_video.restore.inference import default_sr_model_path
    from framefusion_video.restore.clip import checked_restorer, load_default_restorer, restore_video

    with pytest.raises(FfvError, match="x4 super-resolution model: restore with --upscale 4"):
        checked_restorer(BlockySuperResolution(), 2, "blocky")
    assert checked_restorer(BlockySuperResolution(), 4, "blocky").scale == 4
    clip = write_clip(tmp_path / "c.mp4", no_face_frames())
    with pytest.raises(FfvError, match="restore with --upscale 4"):
        restore_video(clip, tmp_path / "out.mp4", RestoreConfig(upscale=2), restorer=BlockySuperResolution())
    assert not (tmp_path / "out.mp4").exists()
    x2 = default_sr_model_path(2)
    if x2 is not None:
        with pytest.raises(FfvError, match=f"{x2.name}: a x2 super-resolution model: restore with --upscale 2"):
            load_default_restorer(RestoreConfig(model_path=str(x2)))


class InventingSuperResolution(BlockySuperResolution):
    """Upscales something else than its input (the negative): inconsistent with the input."""

    def restore(self, crops: np.ndarray) -> np.ndarray:
        return 1.0 - super().restore(crops)


def test_a_super_resolved_face_that_disagrees_with_its_input_is_refused():
    from framefusion_video.restore.blending import upscale_frame

    _, small, _, face = _small_face_frame()
    stream = iter([(small, [SimpleNamespace(track_id=0, carried=False, face=face)])])
    out = next(restore_frames(stream, InventingSuperResolution(), RestoreConfig(upscale=4, temporal=0.0)))
    assert out.count("refused") == 1
    np.testing.assert_array_equal(out.restored, upscale_frame(small, 4))



@pytest.mark.parametrize("crf", [None, 23])
@pytest.mark.parametrize("scale", [2, 4])
def test_the_shipped_generators_super_resolve_a_small_face_better_than_bicubic(scale: int, crf: int | None,
                                                                              tmp_path: Path):
    # The astronaut photo at full size (512 px, a ~105 px face) is the truth; the photo reduced by
    # the network's scale (a ~52 or ~26 px face, about its input's own resolution), as it is or
    # through x264 as video reaches ffv, is restored. How much each gains is a benchmark's
    # business (benchmarks/quality_clip.py, quality_real_sr.py); here, that it gains at all.
    import dataclasses

    import cv2
    from skimage import data

    from framefusion_video.restore.blending import upscale_frame
    from framefusion_video.faces.detection import FaceDetector
    from framefusion_video.restore.clip import load_default_restorer
    from media import ffmpeg

    clean = np.ascontiguousarray(data.astronaut())
    side = clean.shape[0] // scale
    small = cv2.resize(clean, (side, side), interpolation=cv2.INTER_AREA)
    if crf is not None:
        cv2.imwrite(str(tmp_path / "small.png"), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        ffmpeg("-i", str(tmp_path / "small.png"), "-c:v", "libx264", "-crf", str(crf), "-pix_fmt", "yuv420p",
               str(tmp_path / "small.mp4"))
        ffmpeg("-i", str(tmp_path / "small.mp4"), str(tmp_path / "decoded.png"))
        small = cv2.cvtColor(cv2.imread(str(tmp_path / "decoded.png")), cv2.COLOR_BGR2RGB)
    with FaceDetector() as detector:
        face = detector.detect(clean)[0]
    reduced = dataclasses.replace(face, box=tuple((v + 0.5) / scale - 0.5 for v in face.box),
                                  landmarks=((face.landmarks + 0.5) / scale - 0.5).astype(np.float32))
    restorer = load_default_restorer(RestoreConfig(upscale=scale))
    assert (restorer.crop_size, restorer.scale) == (None, scale)  # windows of any size
    stream = iter([(small, [SimpleNamespace(track_id=0, carried=False, face=reduced)])])
    out = next(restore_frames(stream, restorer, RestoreConfig(upscale=scale, temporal=0.0)))
    assert out.count("restored") == 1
    x0, y0, x1, y1 = (int(round(v)) for v in face.box)
    inner = (x0 + 12, y0 + 12, x1 - 12, y1 - 12)
    bicubic = _face_psnr([upscale_frame(small, scale)], [clean], inner)
    assert _face_psnr([out.restored], [clean], inner) > bicubic + 0.1


def test_faces_too_small_for_the_detector_at_the_input_size_are_found_when_upscaling():
    """A 20 px face in a 640x360 frame is 6 px at MediaPipe's input: an upscale run searches tiles."""
    import cv2
    from skimage import data

    from framefusion_video.faces.detection import FaceDetector
    from framefusion_video.restore.clip import detector_config

    frame = np.full((360, 640, 3), 128, np.uint8)
    frame[200:300, 400:500] = cv2.resize(np.ascontiguousarray(data.astronaut()), (100, 100),
                                         interpolation=cv2.INTER_AREA)
    with FaceDetector(detector_config(RestoreConfig(upscale=2))) as detector:
        found = detector.detect(frame)
    assert [f for f in found if 400 <= 0.5 * (f.box[0] + f.box[2]) <= 500 and 200 <= 0.5 * (f.box[1] + f.box[3]) <= 300]
    assert detector_config(RestoreConfig()).tile_min_side > max(frame.shape)  # the default run is not slowed


def test_the_generator_gets_every_core_only_when_super_resolving(monkeypatch):
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert RestoreConfig().auto_model_threads() == 2  # beside decode, tracking, paste-back and x264
    assert RestoreConfig(upscale=2).auto_model_threads() == 4  # the network is most of the work
    assert RestoreConfig(upscale=4, model_threads=1).auto_model_threads() == 1  # as asked
    assert RestoreConfig().auto_model_threads(super_resolving=True) == 4  # --soft-faces' x2 network
    assert RestoreConfig(model_threads=3).auto_model_threads(super_resolving=True) == 3
