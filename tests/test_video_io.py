"""The video package: probe, streamed decode and atomic encode, on tiny synthetic clips and short real ones."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from framefusion_video.base.errors import FfvError
from framefusion_video.video.decode import read_frames
from framefusion_video.video.encode import VideoWriter
from framefusion_video.video.probe import probe

from media import ffmpeg, make_clip, short_copy


def audio_packets(path: Path) -> list[tuple[str, str]]:
    """(size, checksum) of every packet of the first audio stream, read without decoding."""
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-c", "copy",
           "-f", "framecrc", "-"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [tuple(p.strip() for p in line.split(",")[4:6]) for line in out.splitlines() if not line.startswith("#")]


def ffmpeg_children() -> list[int]:
    """Ids of this process's child ffmpeg processes that are still alive (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if int(rest[1]) == os.getpid() and comm.startswith("ffmpeg") and rest[0] != "Z":
            found.append(int(entry.name))
    return found


def round_trip(src: Path, out: Path, **writer_options) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Decode ``src``, encode it to ``out`` with its audio; return the frames in and back out."""
    info = probe(src)
    frames = list(read_frames(src, info))
    with VideoWriter(out, info, audio_from=src, **writer_options) as writer:
        for frame in frames:
            writer.write(frame)
    return frames, list(read_frames(out))


# ---------------------------------------------------------------- synthetic round trips


@pytest.mark.parametrize("size", [(64, 48), (65, 47)], ids=["even", "odd"])
def test_round_trip_keeps_size_count_rate_and_audio(tmp_path, size):
    src = make_clip(tmp_path / "src.mp4", size=size, frames=10, fps=10)
    info = probe(src)
    assert (info.width, info.height, info.n_frames, info.has_audio) == (*size, 10, True)
    assert info.fps == pytest.approx(10.0)

    frames, back = round_trip(src, tmp_path / "out.mp4")
    out = probe(tmp_path / "out.mp4")
    assert len(frames) == len(back) == 10
    assert all(f.shape == (size[1], size[0], 3) and f.dtype == np.uint8 for f in frames + back)
    assert (out.width, out.height, out.n_frames) == (*size, 10)
    assert out.fps == pytest.approx(info.fps)
    assert abs(out.duration - info.duration) <= 1 / info.fps
    assert out.pix_fmt == ("yuv420p" if size[0] % 2 == 0 and size[1] % 2 == 0 else "yuv444p")
    assert out.has_audio
    assert audio_packets(tmp_path / "out.mp4") == audio_packets(src)
    # Same picture back (no resize, no colour-matrix shift): small error, no per-channel bias.
    diff = np.stack(back).astype(np.float64) - np.stack(frames)
    assert np.abs(diff).mean() < 8
    assert np.abs(diff.mean(axis=(0, 1, 2))).max() < 2


def test_variable_frame_rate_timestamps_are_kept(tmp_path):
    src = make_clip(tmp_path / "vfr.mp4", frames=12, fps=10, vfr=True, audio=False)
    info = probe(src)
    intervals = np.diff(info.frame_times)
    assert intervals.max() - intervals.min() > 0.05, "the fixture should be variable-rate"
    round_trip(src, tmp_path / "out.mp4")
    out = probe(tmp_path / "out.mp4")
    assert out.n_frames == info.n_frames
    assert out.frame_times == pytest.approx(info.frame_times, abs=1e-6)
    assert not out.has_audio


def test_video_starting_after_audio_keeps_the_offset(tmp_path):
    src = make_clip(tmp_path / "late.mp4", frames=10, fps=10, audio_delay=0.5)
    info = probe(src)
    assert info.video_start - info.audio_start == pytest.approx(0.5, abs=0.1)
    round_trip(src, tmp_path / "out.mp4")
    out = probe(tmp_path / "out.mp4")
    offset_in, offset_out = info.video_start - info.audio_start, out.video_start - out.audio_start
    assert abs(offset_out - offset_in) <= 1 / info.fps


def test_audio_as_first_stream(tmp_path):
    src = make_clip(tmp_path / "af.mp4", size=(48, 32), frames=6, audio_first=True)
    frames, back = round_trip(src, tmp_path / "out.mp4")
    out = probe(tmp_path / "out.mp4")
    assert (out.width, out.height, out.n_frames, len(back)) == (48, 32, 6, 6)
    assert audio_packets(tmp_path / "out.mp4") == audio_packets(src)


def test_audio_that_mp4_cannot_hold_is_reencoded_to_aac(tmp_path, caplog):
    clip = make_clip(tmp_path / "src.mp4", frames=5)
    src = tmp_path / "mulaw.mkv"  # G.711 mu-law: fine in Matroska, refused by the MP4 muxer
    ffmpeg("-i", str(clip), "-map", "0", "-c:v", "copy", "-c:a", "pcm_mulaw", str(src))
    with caplog.at_level("WARNING", logger="framefusion_video.video.encode"):
        round_trip(src, tmp_path / "out.mp4")
    out = probe(tmp_path / "out.mp4")
    assert out.audio_codecs == ("aac",)
    assert abs(out.duration - probe(src).duration) <= 1 / out.fps
    assert "re-encoding it to AAC" in caplog.text


def test_rotation_is_applied_and_the_output_displays_the_same(tmp_path):
    src = make_clip(tmp_path / "rot.mp4", size=(64, 48), frames=4, rotation=90, audio=False)
    info = probe(src)
    assert (info.rotation, info.width, info.height) == (90, 48, 64)
    frames, back = round_trip(src, tmp_path / "out.mp4")
    assert frames[0].shape == (64, 48, 3)
    out = probe(tmp_path / "out.mp4")
    assert (out.rotation, out.width, out.height) == (0, 48, 64)
    assert np.abs(back[0].astype(int) - frames[0]).mean() < 8


# ---------------------------------------------------------------- colour

COLOUR_FIELDS = ("color_matrix", "color_range", "color_primaries", "color_transfer")


def _yuv_clip(path: Path, params: str, source: str = "color=c=0xc03020:s=64x48:r=10") -> Path:
    """A 5-frame lossless H.264 4:2:0 clip of ``source`` (default: one orange-red, RGB (192, 48,
    32)), converted to YUV with the matrix and range of the ``setparams`` colour ``params``, which
    its frames carry."""
    found = dict(p.split("=") for p in params.split(":"))
    matrix = {"bt709": "bt709", "smpte170m": "smpte170m"}.get(found.get("colorspace", ""), "bt601")
    scale = f"scale=out_color_matrix={matrix}:out_range={found.get('range', 'tv')}:flags=accurate_rnd+full_chroma_int"
    ffmpeg("-f", "lavfi", "-i", source, "-frames:v", "5", "-vf", f"{scale},format=yuv420p,setparams={params}",
           "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", str(path))
    return path


def _colour(info) -> tuple:
    return tuple(getattr(info, f) for f in COLOUR_FIELDS)


def _player_frame(path: Path) -> np.ndarray:
    """The first frame as ffmpeg shows it: converted with the file's own colour tags."""
    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-frames:v", "1",
                          "-sws_flags", "accurate_rnd+full_chroma_int", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(48, 64, 3)


@pytest.mark.parametrize("params, expected", [
    ("range=tv:colorspace=bt709:color_primaries=bt709:color_trc=bt709", ("bt709", "tv", "bt709", "bt709")),
    ("range=pc:colorspace=bt709:color_primaries=bt709:color_trc=iec61966-2-1",
     ("bt709", "pc", "bt709", "iec61966-2-1")),
    ("range=tv:colorspace=smpte170m:color_primaries=bt470bg:color_trc=bt470bg",
     ("smpte170m", "tv", "bt470bg", "bt470bg")),
    ("range=unknown:colorspace=unknown:color_primaries=unknown:color_trc=unknown", (None, None, None, None)),
], ids=["bt709", "full-range-srgb", "pal-mixed", "untagged"])
def test_colour_tags_range_and_matrix_are_carried(tmp_path, params, expected):
    src = _yuv_clip(tmp_path / "src.mp4", params)
    info = probe(src)
    assert _colour(info) == expected
    frames, _ = round_trip(src, tmp_path / "out.mp4", crf=0)
    assert _colour(probe(tmp_path / "out.mp4")) == expected
    # ffv decodes with the source's matrix and range (a wrong one is off by 5-30 levels here) ...
    assert np.abs(frames[0].astype(int) - (192, 48, 32)).max() <= 2
    # ... and its output shows the same colour in a player that follows the tags.
    assert np.abs(_player_frame(tmp_path / "out.mp4").astype(int) - (192, 48, 32)).max() <= 2


@pytest.mark.parametrize("pix_fmt, tags, expected", [
    ("yuv420p", "tv, bt709, progressive", ("bt709", "tv", "bt709", "bt709", 8)),
    ("yuv420p", "tv, bt470bg, progressive", ("bt470bg", "tv", "bt470bg", "bt470bg", 8)),
    ("yuv420p10le", "tv, bt2020nc/bt2020/smpte2084", ("bt2020nc", "tv", "bt2020", "smpte2084", 10)),
    ("yuvj420p", "pc, bt709/unknown/unknown, progressive", ("bt709", "pc", None, None, 8)),
    ("yuvj420p", "progressive", (None, "pc", None, None, 8)),
    ("yuv420p", "", (None, None, None, None, 8)),
    ("yuv422p12le", "unknown/bt709/bt709", (None, None, "bt709", "bt709", 12)),
])
def test_colour_facts_are_read_from_the_stream_dump(pix_fmt, tags, expected):
    from framefusion_video.video.probe import parse_colour

    facts = parse_colour(pix_fmt, tags)
    assert tuple(facts[k] for k in (*COLOUR_FIELDS, "bits")) == expected


def test_rgb_coded_source_becomes_tagged_bt601(tmp_path):
    # A PNG-in-MOV clip has no YUV matrix to carry: the output says which one it was given.
    src = tmp_path / "rgb.mov"
    ffmpeg("-f", "lavfi", "-i", "color=c=0xc03020:s=64x48:r=10", "-frames:v", "3", "-c:v", "png", str(src))
    assert probe(src).color_matrix == "gbr"
    frames, _ = round_trip(src, tmp_path / "out.mp4", crf=0)
    out = probe(tmp_path / "out.mp4")
    assert (out.color_matrix, out.color_range) == ("smpte170m", "tv")
    assert np.abs(_player_frame(tmp_path / "out.mp4").astype(int) - frames[0]).max() <= 2


def test_full_range_keeps_its_levels(tmp_path):
    # Black and white in full range are Y = 0 and 255; squeezed to limited range they would be 16/235.
    src = _yuv_clip(tmp_path / "src.mp4", "range=pc:colorspace=bt709",
                    source="color=c=black:s=64x48:r=10,drawbox=x=32:w=32:h=48:c=white:t=fill")
    round_trip(src, tmp_path / "out.mp4")
    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(tmp_path / "out.mp4"),
                          "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                         capture_output=True, check=True).stdout
    luma = np.frombuffer(raw, np.uint8).reshape(48, 64)
    assert luma[:, 4:28].max() <= 1 and luma[:, 36:60].min() >= 254


def test_ten_bit_input_is_dithered_to_eight_bits(tmp_path):
    # A 10-bit grey ramp rising one 8-bit level over 32 columns: rounding would give flat bands;
    # dithering keeps each column's mean on the ramp.
    src = tmp_path / "ramp10.mp4"
    ffmpeg("-f", "lavfi", "-i", "nullsrc=s=128x64:r=10,geq=lum='512+X/8':cb=512:cr=512,format=yuv444p10le",
           "-frames:v", "1", "-vf", "setparams=range=pc:colorspace=bt709", "-c:v", "libx264", "-qp", "0", str(src))
    info = probe(src)
    assert (info.bits, info.color_range, info.color_matrix) == (10, "pc", "bt709")
    frame = next(read_frames(src, info))
    truth = (512 + np.arange(128) // 8) * 255 / 1023  # geq rounds X/8 down to whole 10-bit codes
    column_error = np.abs(frame[..., 1].astype(np.float64).mean(axis=0) - truth)
    assert column_error.mean() < 0.15  # rounding to the nearest level: 0.25 on average
    with VideoWriter(tmp_path / "out.mp4", info) as writer:
        writer.write(frame)
    out = probe(tmp_path / "out.mp4")
    assert (out.bits, out.color_range, out.color_matrix) == (8, "pc", "bt709")


def test_writer_size_option_and_frame_checks(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=3, audio=False)
    info = probe(src)
    with VideoWriter(tmp_path / "small.mp4", info, size=(32, 24)) as writer:
        with pytest.raises(ValueError, match="shape"):
            writer.write(np.zeros((48, 64, 3), np.uint8))
        with pytest.raises(ValueError, match="uint8"):
            writer.write(np.zeros((24, 32, 3), np.float32))
        for _ in range(3):
            writer.write(np.full((24, 32, 3), 128, np.uint8))
    assert probe(tmp_path / "small.mp4").size == (32, 24)


def test_closing_the_reader_early_stops_ffmpeg(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=20, audio=False)
    frames = read_frames(src)
    next(frames)
    assert ffmpeg_children(), "the decoder should be running while frames are pending"
    frames.close()
    assert not ffmpeg_children()


# ---------------------------------------------------------------- atomic writes


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_write_leaves_no_file(tmp_path, error):
    src = make_clip(tmp_path / "src.mp4", frames=4)
    info = probe(src)
    target = tmp_path / "out" / "restored.mp4"
    target.parent.mkdir()
    with pytest.raises(error):
        with VideoWriter(target, info, audio_from=src) as writer:
            writer.write(np.zeros((48, 64, 3), np.uint8))
            raise error("stop")
    assert list(target.parent.iterdir()) == []
    assert not ffmpeg_children()


def test_failed_write_keeps_an_existing_file(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=4, audio=False)
    target = tmp_path / "restored.mp4"
    target.write_bytes(b"previous result")
    with pytest.raises(RuntimeError):
        with VideoWriter(target, probe(src)) as writer:
            writer.write(np.zeros((48, 64, 3), np.uint8))
            raise RuntimeError("stop")
    assert target.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["restored.mp4", "src.mp4"]


def test_writer_reports_a_missing_output_folder(tmp_path):
    src = make_clip(tmp_path / "src.mp4", frames=2, audio=False)
    target = tmp_path / "nowhere" / "out.mp4"
    with pytest.raises(FfvError, match="does not exist") as caught:
        VideoWriter(target, probe(src))
    assert str(target) in str(caught.value)


# ---------------------------------------------------------------- bad inputs


def _truncated(tmp_path: Path, faststart: bool) -> Path:
    src = make_clip(tmp_path / "whole.mp4", frames=30)
    if faststart:
        ffmpeg("-i", str(src), "-map", "0", "-c", "copy", "-movflags", "+faststart", str(tmp_path / "fs.mp4"))
        src = tmp_path / "fs.mp4"
    data = src.read_bytes()
    cut = tmp_path / "truncated.mp4"
    cut.write_bytes(data[: len(data) // 2])
    return cut


BAD_INPUTS = {
    "missing": lambda tmp: tmp / "missing.mp4",
    "folder": lambda tmp: tmp,
    "empty": lambda tmp: (tmp / "empty.mp4", (tmp / "empty.mp4").write_bytes(b""))[0],
    "text": lambda tmp: (tmp / "notes.mp4", (tmp / "notes.mp4").write_text("not a video\n"))[0],
    "truncated": lambda tmp: _truncated(tmp, faststart=False),
    "truncated-faststart": lambda tmp: _truncated(tmp, faststart=True),
    "audio-only": lambda tmp: (tmp / "a.m4a", ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "aac",
                                                    str(tmp / "a.m4a")))[0],
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_inputs_raise_ffv_error_naming_the_file(tmp_path, kind):
    path = BAD_INPUTS[kind](tmp_path)
    with pytest.raises(FfvError) as caught:
        probe(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message


def test_decode_error_mid_stream_raises(tmp_path):
    good = make_clip(tmp_path / "whole.mp4", frames=30)
    ffmpeg("-i", str(good), "-map", "0", "-c", "copy", "-movflags", "+faststart", str(tmp_path / "fs.mp4"))
    data = (tmp_path / "fs.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    frames = []
    with pytest.raises(FfvError, match="decoding failed") as caught:
        for frame in read_frames(cut, probe(good)):  # probe(cut) itself would refuse the file
            frames.append(frame)
    assert str(cut) in str(caught.value)
    assert 0 < len(frames) < 30
    assert not ffmpeg_children()


# ---------------------------------------------------------------- shared real clips


@pytest.mark.parametrize(
    "name, seconds, has_audio",
    [
        ("talking_head_vfr_700.mp4", 2.0, True),
        ("stage_multiface_profile_audio-offset_640x360.mp4", 2.0, True),
        ("closeup_audio-first-stream_410x412.mp4", 1.0, True),
        ("phone_selfie_vertical_720x1280.mp4", 1.0, False),
    ],
)
def test_shared_clip_round_trip(shared_videos, tmp_path, name, seconds, has_audio):
    src = short_copy(shared_videos / name, tmp_path / name, seconds)
    info = probe(src)
    assert info.n_frames and info.has_audio == has_audio
    frames, back = round_trip(src, tmp_path / "out.mp4")
    out = probe(tmp_path / "out.mp4")
    assert len(frames) == len(back) == info.n_frames == out.n_frames
    assert out.size == info.size and out.sar == info.sar
    assert out.frame_times == pytest.approx(info.frame_times, abs=1e-6)
    frame = 1 / info.fps
    assert abs(out.duration - info.duration) <= frame
    assert out.has_audio == has_audio
    if has_audio:
        assert abs((out.video_start - out.audio_start) - (info.video_start - info.audio_start)) <= frame
        assert audio_packets(tmp_path / "out.mp4") == audio_packets(src)


def test_shared_clip_facts(shared_videos):
    vfr = probe(shared_videos / "talking_head_vfr_700.mp4")
    intervals = np.diff(vfr.frame_times)
    assert intervals.max() > 1.5 * intervals.min(), "the clip is variable-rate"
    assert vfr.n_frames == sum(1 for _ in read_frames(vfr.path, vfr))
    offset = probe(shared_videos / "stage_multiface_profile_audio-offset_640x360.mp4")
    assert offset.video_start - offset.audio_start > 0.5
    assert probe(shared_videos / "closeup_audio-first-stream_410x412.mp4").size == (410, 412)
    assert probe(shared_videos / "phone_selfie_vertical_720x1280.mp4").size == (720, 1280)
