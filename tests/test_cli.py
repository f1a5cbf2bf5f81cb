"""Tests of the ``ffv`` command line through click's CliRunner, with a fake restorer."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from framefusion_video import __version__
from framefusion_video.cli import COMMANDS, main

from test_restore import N_FRAMES, SIZE, FakeRestorer, astronaut_frames, no_face_frames, write_clip

HEAVY = ("tensorflow", "keras", "mediapipe")
RESTORE_FIELDS = {"model_path", "batch_size", "strength", "upscale", "min_face", "max_faces", "crf", "preset",
                  "detect_every", "colour_match", "temporal", "safety"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli_clips")
    face = write_clip(root / "face.mp4", astronaut_frames(6))
    noface = write_clip(root / "noface.mp4", no_face_frames())
    broken = root / "broken.mp4"
    broken.write_bytes(noface.read_bytes()[:500])
    return {"face": face, "noface": noface, "broken": broken}


@pytest.fixture
def fake_model(monkeypatch) -> FakeRestorer:
    """Make every command use a fake restorer instead of loading the shipped model."""
    import framefusion_video.restore.batch as batch_module
    import framefusion_video.restore.preview as preview_module

    restorer = FakeRestorer()
    monkeypatch.setattr(batch_module, "load_default_restorer", lambda config: restorer)
    monkeypatch.setattr(preview_module, "load_default_restorer", lambda config: restorer)
    return restorer


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# --------------------------------------------------------------------------- the group


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["restore", "--help"], ["preview", "--help"]])
def test_help_and_version_do_not_import_the_heavy_stack(args):
    code = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from framefusion_video.cli import main\n"
        f"result = CliRunner().invoke(main, {args!r})\n"
        f"print(json.dumps([result.exit_code, result.output, [m for m in {HEAVY!r} if m in sys.modules]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    exit_code, output, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert exit_code == 0
    assert heavy == []
    if args == ["--version"]:
        assert __version__ in output
    else:
        assert "Usage:" in output


def test_help_lists_every_command_with_its_help():
    result = run("--help")
    assert result.exit_code == 0
    for name, (_, help_text) in COMMANDS.items():
        assert name in result.output and help_text in result.output


def test_unknown_command_is_a_usage_error():
    assert run("frobnicate").exit_code == 2


# --------------------------------------------------------------------------- ffv restore


@pytest.mark.parametrize("options", [
    ["--strength", "2"], ["--upscale", "3"], ["--batch-size", "0"], ["--crf", "99"], ["--preset", "warp"],
])
def test_restore_impossible_options_are_usage_errors(clips, options, tmp_path):
    result = run("restore", str(clips["face"]), "-o", str(tmp_path / "x.mp4"), *options)
    assert result.exit_code == 2
    assert not (tmp_path / "x.mp4").exists()


def test_restore_without_inputs_is_a_usage_error():
    assert run("restore").exit_code == 2


def test_restore_one_clip_then_skip_it(clips, tmp_path, fake_model):
    out = tmp_path / "out.mp4"
    first = run("restore", str(clips["face"]), "-o", str(out), "--quiet")
    assert first.exit_code == 0, first.output
    assert out.is_file() and fake_model.batches
    calls = len(fake_model.batches)
    second = run("restore", str(clips["face"]), "-o", str(out))
    assert second.exit_code == 0
    assert len(fake_model.batches) == calls  # skipped: the model was not called again


def test_restore_missing_file_exits_1_with_one_line(tmp_path, fake_model):
    missing = tmp_path / "nope.mp4"
    result = run("restore", str(missing))
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if str(missing) in line]
    assert len(lines) == 1 and "no such file" in lines[0]


def test_restore_output_equal_to_input_is_refused(clips, fake_model):
    before = clips["noface"].read_bytes()
    result = run("restore", str(clips["noface"]), "-o", str(clips["noface"]))
    assert result.exit_code == 1
    assert "overwrite" in result.stderr and str(clips["noface"]) in result.stderr
    assert clips["noface"].read_bytes() == before


def test_restore_folder_with_a_broken_file(clips, tmp_path, fake_model):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(clips["noface"].read_bytes())
    (folder / "b.mp4").write_bytes(clips["broken"].read_bytes())
    (folder / "notes.txt").write_text("not a video")
    report = tmp_path / "report.json"
    result = run("restore", str(folder), "--report", str(report), "-q")
    assert result.exit_code == 1
    assert (tmp_path / "in_restored" / "a.mp4").is_file()
    assert not (tmp_path / "in_restored" / "b.mp4").exists()
    assert "b.mp4" in result.stderr
    data = json.loads(report.read_text())
    assert {Path(f["input"]).name: f["status"] for f in data["files"]} == {"a.mp4": "done", "b.mp4": "failed"}
    assert data["files"][0]["frames"] == N_FRAMES


# --------------------------------------------------------------------------- ffv preview


def test_preview_writes_side_by_side_pngs_and_a_contact_sheet(clips, tmp_path, fake_model):
    import cv2

    out = tmp_path / "preview"
    result = run("preview", str(clips["face"]), "-o", str(out), "--frames", "1,4", "--annotate")
    assert result.exit_code == 0, result.output
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == ["frame_000001.png", "frame_000004.png"]
    image = cv2.imread(str(pngs[0]))
    assert image.shape == (SIZE[1], 2 * SIZE[0] + 4, 3)
    page = (out / "index.html").read_text()
    for p in pngs:
        assert f'href="{p.name}"' in page
    assert "frame 4" in page
    assert fake_model.batches  # the face was restored


def test_report_and_summary_count_restored_left_alone_and_refused(clips, tmp_path, fake_model, caplog):
    # The fake inverts faces, which the safety check refuses; --no-safety pastes them.
    caplog.set_level(logging.INFO, logger="framefusion_video")  # an earlier --quiet run may have raised it
    report = tmp_path / "r.json"
    result = run("restore", str(clips["face"]), "-o", str(tmp_path / "a.mp4"), "--report", str(report))
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    entry, summary = data["files"][0], data["summary"]
    assert entry["faces_refused"] >= 5 and entry["faces"] == 0 and entry["faces_left_alone"] == 0
    assert (summary["faces"], summary["faces_left_alone"], summary["faces_refused"]) == (0, 0, entry["faces_refused"])
    assert f"0 faces restored, 0 left alone, {entry['faces_refused']} refused" in result.stderr
    result = run("restore", str(clips["face"]), "-o", str(tmp_path / "b.mp4"), "--report", str(report), "--no-safety")
    assert result.exit_code == 0, result.output
    unsafe = json.loads(report.read_text())["files"][0]
    assert (unsafe["faces"], unsafe["faces_refused"]) == (entry["faces_refused"], 0)


def test_report_counts_faces_the_gate_left_alone(clips, tmp_path, monkeypatch):
    import framefusion_video.restore.batch as batch_module

    class Gate(FakeRestorer):  # returns every face unchanged, as the generator's gate does
        def restore(self, crops):
            return crops.copy()

    monkeypatch.setattr(batch_module, "load_default_restorer", lambda config: Gate())
    report = tmp_path / "r.json"
    assert run("restore", str(clips["face"]), "-o", str(tmp_path / "a.mp4"), "--report", str(report)).exit_code == 0
    entry = json.loads(report.read_text())["files"][0]
    assert entry["faces_left_alone"] >= 5 and entry["faces"] == entry["faces_refused"] == 0


def test_preview_shows_each_face_close_up_with_its_status(clips, tmp_path, fake_model):
    import cv2

    out = tmp_path / "preview"
    assert run("preview", str(clips["face"]), "-o", str(out), "--frames", "2").exit_code == 0
    close_up = out / "faces" / "frame_000002_face_0.png"
    image = cv2.imread(str(close_up))
    assert image is not None and image.shape[0] == 256 and image.shape[1] > 2 * 200  # original | restored
    assert (out / "frames" / "frame_000002_before.png").is_file() and (out / "frames" / "frame_000002_after.png").is_file()
    page = (out / "index.html").read_text()
    assert 'src="faces/frame_000002_face_0.png"' in page
    assert "refused</span> face #" in page  # the fake's inverted face, refused
    assert 'type="range"' in page and 'src="frames/frame_000002_before.png"' in page  # the before/after slider
    assert "0 restored, 0 left alone, 1 refused" in page
    restored = tmp_path / "unsafe"
    assert run("preview", str(clips["face"]), "-o", str(restored), "--frames", "2", "--no-safety").exit_code == 0
    assert "restored</span> face #" in (restored / "index.html").read_text()


def test_preview_every_n(clips, tmp_path, fake_model):
    out = tmp_path / "preview"
    assert run("preview", str(clips["noface"]), "-o", str(out), "--every", "5").exit_code == 0
    assert sorted(p.name for p in out.glob("*.png")) == [f"frame_{i:06d}.png" for i in range(0, N_FRAMES, 5)]


@pytest.mark.parametrize("options", [["--every", "2", "--frames", "1"], ["--frames", "a,b"], ["--every", "0"]])
def test_preview_usage_errors(clips, tmp_path, options):
    assert run("preview", str(clips["face"]), "-o", str(tmp_path / "p"), *options).exit_code == 2


def test_preview_bad_input_exits_1(clips, tmp_path, fake_model):
    result = run("preview", str(clips["broken"]), "-o", str(tmp_path / "p"))
    assert result.exit_code == 1
    assert str(clips["broken"]) in result.stderr


# --------------------------------------------------------------------------- a real (tiny) Keras model


def test_restore_with_a_model_file(clips, tmp_path):
    """--model loads a .keras generator through inference.py and runs it on the faces (real TF)."""
    from framefusion_video.training.model import GeneratorConfig, build_generator

    model_path = tmp_path / "tiny.keras"
    build_generator(GeneratorConfig(crop_size=32, widths=(8, 8, 16), blocks=(0, 1, 1), expansion=2)).save(model_path)
    report = tmp_path / "r.json"
    result = run("restore", str(clips["face"]), "-o", str(tmp_path / "out.mp4"), "--model", str(model_path),
                 "--batch-size", "2", "--report", str(report), "-q")
    assert result.exit_code == 0, result.output
    entry = json.loads(report.read_text())["files"][0]
    assert entry["status"] == "done" and entry["frames"] == 6
    # Every face-frame went through the untrained network and is accounted for: restored, left
    # alone by its gate, or (its output being noise) refused by the safety check.
    assert entry["faces"] + entry["faces_left_alone"] + entry["faces_refused"] >= 5


def test_restore_with_a_missing_model_file(clips, tmp_path):
    missing = tmp_path / "nope.keras"
    result = run("restore", str(clips["face"]), "-o", str(tmp_path / "out.mp4"), "--model", str(missing))
    assert result.exit_code == 1
    assert str(missing) in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_registered_command_loads_and_has_help(name):
    result = run(name, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_speed_presets_fill_only_options_not_given(monkeypatch, tmp_path):
    from click.testing import CliRunner

    import framefusion_video.restore.batch as batch_module
    import framefusion_video.restore.config as config_module
    from framefusion_video.cli import main

    seen = {}

    def fake_restore_paths(inputs, output, config, **kwargs):
        seen["config"] = config
        return []

    monkeypatch.setattr(batch_module, "restore_paths", fake_restore_paths)
    clip = tmp_path / "c.mp4"
    clip.write_bytes(b"x")
    assert CliRunner().invoke(main, ["restore", str(clip), "--fast", "--crf", "30"]).exit_code == 0
    fast = seen["config"]
    assert (fast.detect_every, fast.preset, fast.crf) == (4, "superfast", 30)
    assert CliRunner().invoke(main, ["restore", str(clip), "--quality"]).exit_code == 0
    assert (seen["config"].detect_every, seen["config"].preset) == (1, "medium")
    assert CliRunner().invoke(main, ["restore", str(clip)]).exit_code == 0
    assert seen["config"] == config_module.RestoreConfig()


def test_preview_takes_every_option_of_restore_and_passes_it_on(monkeypatch, tmp_path):
    import framefusion_video.restore.preview as preview_module
    from framefusion_video.cli.preview import preview
    from framefusion_video.cli.restore import restore

    def config_flags(command) -> set[str]:
        return {name for p in command.params if p.name in RESTORE_FIELDS | {"speed"} for name in p.opts + p.secondary_opts}

    assert config_flags(preview) == config_flags(restore) >= {"--temporal", "--no-colour-match", "--fast", "--quality"}
    seen = {}
    monkeypatch.setattr(preview_module, "export_preview", lambda *args, config, **kwargs: seen.update(config=config))
    result = run("preview", str(tmp_path / "c.mp4"), "-o", str(tmp_path / "p"), "--temporal", "0", "--no-colour-match",
                 "--fast", "--upscale", "2")
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert (config.temporal, config.colour_match, config.detect_every, config.upscale) == (0.0, False, 4, 2)


def test_each_option_shows_its_field_default_and_range():
    """The flags are derived from RestoreConfig's fields: default, range and choices written once."""
    from dataclasses import fields

    from framefusion_video.cli.restore import restore
    from framefusion_video.restore.config import MAX_BATCH_SIZE, UPSCALE_FACTORS, RestoreConfig

    params = {p.name: p for p in restore.params}
    for f in fields(RestoreConfig):
        if f.name in params:
            assert params[f.name].default is None  # "given" means "not None"
            if f.default is not None and not isinstance(f.default, bool):
                assert f"Default: {f.default}." in params[f.name].help
    assert list(params["upscale"].type.choices) == [str(f) for f in UPSCALE_FACTORS]
    assert (params["batch_size"].type.min, params["batch_size"].type.max) == (1, MAX_BATCH_SIZE)
    assert run("restore", "--help").exit_code == 0


@pytest.mark.parametrize("upscale", [1, 2])
def test_strength_zero_passes_the_frames_through_without_looking_at_faces(clips, tmp_path, monkeypatch, caplog,
                                                                           upscale):
    """No model is loaded and no detector opened; the output is the plain transcode of the input
    (bicubic-upscaled when asked), and the summary says the faces were not looked at."""
    import framefusion_video.restore.batch as batch_module
    import framefusion_video.faces.detection as faces_module
    from framefusion_video.restore.blending import upscale_frame
    from framefusion_video.restore.config import RestoreConfig
    from framefusion_video.video.encode import VideoWriter
    from framefusion_video.video.probe import probe
    from framefusion_video.video.decode import read_frames

    def not_called(*args, **kwargs):
        raise AssertionError("strength 0 needs no model and no detector")

    monkeypatch.setattr(batch_module, "load_default_restorer", not_called)
    monkeypatch.setattr(faces_module, "FaceDetector", not_called)
    caplog.set_level(logging.INFO, logger="framefusion_video")
    src, out, report = clips["face"], tmp_path / "out.mp4", tmp_path / "r.json"
    result = run("restore", str(src), "-o", str(out), "--strength", "0", "--upscale", str(upscale),
                 "--report", str(report))
    assert result.exit_code == 0, result.output
    entry = json.loads(report.read_text())["files"][0]
    assert (entry["frames"], entry["faces"], entry["faces_left_alone"], entry["faces_refused"]) == (6, 0, 0, 0)
    assert "faces not looked at (strength 0)" in result.stderr

    info = probe(src)
    plain = tmp_path / "plain.mp4"
    size = (info.width * upscale, info.height * upscale) if upscale > 1 else None
    defaults = RestoreConfig()
    with VideoWriter(plain, info, size=size, crf=defaults.crf, preset=defaults.preset) as writer:
        for frame in read_frames(src, info):
            writer.write(upscale_frame(frame, upscale))
    ours, theirs = list(read_frames(out)), list(read_frames(plain))
    assert len(ours) == len(theirs) == 6
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)


def test_a_run_that_restores_no_face_says_why_and_what_to_try():
    from framefusion_video.restore.batch import next_step

    clean = next_step(restored=0, left_alone=120, refused=0, frames=120, upscale=1)
    assert "left alone: the network found nothing to improve" in clean and "exactly as they were" in clean
    assert "--upscale 2" in clean and "ffv preview --annotate" in clean
    assert "--upscale 2" not in next_step(0, 10, 5, 10, upscale=2)  # already super-resolving
    assert "No face was found" in next_step(0, 0, 0, 50, upscale=1)
    assert next_step(restored=90, left_alone=10, refused=0, frames=100, upscale=1) is None
    assert next_step(0, 0, 0, frames=0, upscale=1) is None


def test_the_summary_names_the_main_cause_in_one_sentence():
    from framefusion_video.restore.batch import next_step
    from framefusion_video.restore.clip import SMALL_FACE_PX

    small = next_step(restored=10, left_alone=60, refused=30, frames=100, upscale=1, small=80)
    assert small.startswith("Most faces are small") and f"{SMALL_FACE_PX} px" in small and "--upscale 2" in small
    # At --upscale 2 small faces are already super-resolved: the cause is what happened to them.
    assert next_step(10, 60, 30, 100, upscale=2, small=80).startswith("Most faces were left alone")
    refused = next_step(restored=5, left_alone=10, refused=85, frames=100, upscale=1, small=0)
    assert refused.startswith("Most faces were refused") and "--no-safety" in refused and "--strength" in refused
    for sentence in (small, refused, next_step(0, 120, 0, 120, upscale=1), next_step(0, 0, 0, 9, upscale=1)):
        assert "\n" not in sentence and sentence.endswith(".")


def test_a_folder_run_logs_the_next_step_from_its_faces(tmp_path, caplog):
    """The summary's sentence comes from the run's own counts: faces under SMALL_FACE_PX that were
    not restored (the fake restorer's inverted faces are refused) make it name --upscale 2."""
    from framefusion_video.restore.batch import restore_paths
    from framefusion_video.restore.config import RestoreConfig
    from framefusion_video.restore.clip import small_faces

    assert small_faces([(0, 0, 20, 30), (0, 0, 100, 80), (5, 5, 68, 68)]) == 2
    clip = write_clip(tmp_path / "half.mp4", [f[::2, ::2].copy() for f in astronaut_frames(4)])
    with caplog.at_level(logging.INFO, logger="framefusion_video"):
        [result] = restore_paths(clip, tmp_path / "out.mp4", RestoreConfig(), quiet=True, restorer=FakeRestorer())
    seen = result.faces + result.faces_left_alone + result.faces_refused
    assert seen >= 3 and result.faces_small == seen and result.faces < seen / 2
    assert any(r.getMessage().startswith("Most faces are small") for r in caplog.records)
