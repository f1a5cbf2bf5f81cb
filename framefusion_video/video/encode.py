"""Atomic encode with the source's audio: :class:`VideoWriter` feeds RGB frames with the source's
timestamps to the encoder in a minimal Matroska stream (raw RGB with a timestamp per frame), so
variable frame rates and late-starting video survive; the source's audio and subtitles are then
copied beside the video with the original start times, and the output appears only when complete.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from framefusion_video.base.errors import FfvError
from framefusion_video.base.outputs import OutputClaim, claim_output, create_temp, new_token
from framefusion_video.video import ffmpeg
from framefusion_video.video.colour import encode_filter
from framefusion_video.video.probe import VideoInfo, has_clock, probe

log = logging.getLogger(__name__)

# Minimal Matroska writer: just enough for ffmpeg to read raw RGB frames with exact timestamps.
# Every element size is written on 8 bytes; the segment has an "unknown" size (a live stream).


def _ebml(element_id: bytes, payload: bytes) -> bytes:
    return element_id + (0x01 << 56 | len(payload)).to_bytes(8, "big") + payload


def _ebml_uint(element_id: bytes, value: int) -> bytes:
    return _ebml(element_id, int(value).to_bytes(8, "big"))


def _mkv_header(width: int, height: int) -> bytes:
    """EBML header, segment start, info (1 ns timestamp unit) and one raw-RGB video track."""
    ebml = _ebml(b"\x1a\x45\xdf\xa3", _ebml_uint(b"\x42\x86", 1) + _ebml_uint(b"\x42\xf7", 1)
                 + _ebml_uint(b"\x42\xf2", 4) + _ebml_uint(b"\x42\xf3", 8) + _ebml(b"\x42\x82", b"matroska")
                 + _ebml_uint(b"\x42\x87", 4) + _ebml_uint(b"\x42\x85", 2))
    segment = b"\x18\x53\x80\x67" + b"\x01\xff\xff\xff\xff\xff\xff\xff"
    info = _ebml(b"\x15\x49\xa9\x66", _ebml_uint(b"\x2a\xd7\xb1", 1) + _ebml(b"\x4d\x80", b"ffv")
                 + _ebml(b"\x57\x41", b"ffv"))
    video = _ebml(b"\xe0", _ebml_uint(b"\xb0", width) + _ebml_uint(b"\xba", height)
                  + _ebml(b"\x2e\xb5\x24", b"RGB\x18"))  # ColourSpace fourcc: packed rgb24
    track = _ebml(b"\xae", _ebml_uint(b"\xd7", 1) + _ebml_uint(b"\x73\xc5", 1) + _ebml_uint(b"\x83", 1)
                  + _ebml(b"\x86", b"V_UNCOMPRESSED") + _ebml_uint(b"\x9c", 0) + video)
    return ebml + segment + info + _ebml(b"\x16\x54\xae\x6b", track)


def _mkv_frame_header(time_ns: int, duration_ns: int, n_bytes: int) -> bytes:
    """A cluster holding one block group (frame of ``n_bytes``), up to the frame's first byte."""
    block_head = b"\x81" + struct.pack(">h", 0) + b"\x00"  # track 1, relative time 0, no flags
    block_size = len(block_head) + n_bytes
    block = b"\xa1" + (0x01 << 56 | block_size).to_bytes(8, "big") + block_head
    duration = _ebml_uint(b"\x9b", max(duration_ns, 1))
    group_size = len(block) + n_bytes + len(duration)
    group_head = b"\xa0" + (0x01 << 56 | group_size).to_bytes(8, "big")
    timestamp = _ebml_uint(b"\xe7", time_ns)
    cluster_size = len(timestamp) + len(group_head) + group_size
    # Duration goes after the block data, so the caller writes: header, frame bytes, trailer.
    cluster_head = b"\x1f\x43\xb6\x75" + (0x01 << 56 | cluster_size).to_bytes(8, "big")
    return cluster_head + timestamp + group_head + block


def _frame_time(info: VideoInfo, index: int) -> tuple[Fraction, Fraction]:
    """Source presentation time and duration (seconds) for output frame ``index``.

    Frame ``i`` gets the source's frame ``i`` timestamp; frames beyond the source's count (or all
    frames when the source lists none) continue at the average frame rate.
    """
    pts, tb = info.frame_pts, info.time_base
    if pts and tb is not None:
        n = len(pts)
        last_dur = info.last_frame_duration or (round(1 / (info.fps * tb)) if info.fps else 1)
        if index < n - 1:
            return pts[index] * tb, (pts[index + 1] - pts[index]) * tb
        return (pts[-1] + (index - n + 1) * last_dur) * tb, last_dur * tb
    rate = Fraction(info.fps).limit_denominator(1001)
    return Fraction(info.video_start).limit_denominator(10**6) + index / rate, 1 / rate


#: Output file suffixes (lower case) -> the ffmpeg muxer that writes them; others are refused.
OUTPUT_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
# Subtitle codecs that MP4/MOV can carry once converted to their own text format (mov_text).
_TEXT_SUBTITLES = frozenset({"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"})
_NO_SPACE = ("No space left on device", "Disk quota exceeded", "File too large")


def output_container(path: str | os.PathLike) -> str:
    """The ffmpeg muxer for output ``path`` by its suffix (no suffix: MP4).

    Raises:
        FfvError: a suffix ffv cannot write H.264 into, with the ones it can.
    """
    suffix = Path(path).suffix.lower()
    if not suffix:
        return "mp4"
    if suffix not in OUTPUT_CONTAINERS:
        raise FfvError(path, f"cannot write {suffix} files; name the output .mp4, .mov or .mkv")
    return OUTPUT_CONTAINERS[suffix]


def _failure(stderr: str | bytes, what: str) -> str:
    """``what`` failed, and why: "no space left on device" when the disk is full."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    for sign in _NO_SPACE:
        if sign in stderr:
            return f"{what}: {sign.lower()}"
    return f"{what}: {ffmpeg.last_error(stderr)}"


#: Largest output frame, in bytes of RGB: ffmpeg's Matroska reader, which takes the frames from
#: :class:`VideoWriter`, refuses bigger blocks (2**28 bytes; 11585 x 7723 pixels at 16:9).
MAX_FRAME_BYTES = 2**28


def check_frame_size(path: str | os.PathLike, size: tuple[int, int]) -> None:
    """Raise FfvError when frames of ``size`` (width, height) are too large to be encoded to ``path``
    (:data:`MAX_FRAME_BYTES`); checked before any work."""
    width, height = size
    if 3 * width * height > MAX_FRAME_BYTES:
        limit = MAX_FRAME_BYTES / 3 / 1e6
        raise FfvError(path, f"output frames of {width}x{height} are too large to encode (at most {limit:.1f} "
                             "megapixels); use a smaller --upscale")


def output_pix_fmt(width: int, height: int) -> str:
    """``yuv420p`` for even sizes; ``yuv444p`` when a side is odd.

    H.264 4:2:0 can only code even sizes (its cropping works in 2-pixel units), so an odd size
    would need a silent pad or crop. Odd sizes are therefore encoded 4:4:4 (High 4:4:4 profile),
    which keeps every pixel but which some players (browsers, QuickTime) do not play.
    """
    return "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"


class VideoWriter:
    """Encode RGB frames to H.264 with the source's timing, audio and subtitles; atomic on success.

    Use as a context manager. The container follows ``path``'s suffix (:data:`OUTPUT_CONTAINERS`:
    MP4, MOV or Matroska). The writer holds ``claim`` on ``path`` (:func:`outputs.claim_output`;
    taken here when None is given, raising ``OutputBusy`` if another run holds it). Frames go to
    libx264 (``crf``, ``preset``) in a hidden temporary file beside ``path`` with a name of its own;
    on a clean exit the source's audio (``audio_from``: streams copied as they are, AAC only when
    the codec cannot go in the container) and subtitles (copied into Matroska, converted to
    mov_text for MP4/MOV when they are text, else dropped with a warning) are muxed in, the result
    is checked (frame count and duration) and renamed onto ``path`` with :func:`os.replace`. On any
    exception, KeyboardInterrupt included, the temporary files are removed and nothing is left
    under ``path``.

    Frame ``i`` is shown at the source's frame ``i`` time (``info.frame_pts``), so variable frame
    rates and a video that starts after its audio keep their timing. Frames are written in
    displayed orientation with no rotation tag, with ``info.sar`` as pixel aspect. Odd sizes: see
    :func:`output_pix_fmt`. Colour: :func:`encode_filter` (the source's range and tags; 8 bits).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        info: VideoInfo,
        *,
        size: tuple[int, int] | None = None,
        crf: int = 18,
        preset: str = "veryfast",
        audio_from: str | os.PathLike | None = None,
        claim: OutputClaim | None = None,
    ) -> None:
        self.path = Path(path)
        self.info = info
        self.size = tuple(size) if size is not None else info.size
        self.audio_from = None if audio_from is None else Path(audio_from)
        self.frames_written = 0
        self._container = output_container(self.path)
        check_frame_size(self.path, self.size)
        parent = self.path.parent
        if not parent.is_dir():
            raise FfvError(self.path, f"output folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise FfvError(self.path, f"output folder {parent} is not writable")
        self._owned_claim = claim_output(self.path) if claim is None else None
        self._claim = claim if claim is not None else self._owned_claim
        token = new_token()
        self._tmp_video: Path | None = None
        self._tmp_final: Path | None = None
        width, height = self.size
        self._frame_bytes = width * height * 3
        if info.frame_pts and info.time_base is not None:
            self._time_base = info.time_base
        else:
            self._time_base = 1 / Fraction(info.fps).limit_denominator(1001)
        timescale = self._time_base.denominator
        self._timescale = timescale * -(-10000 // timescale) if timescale < 10000 else timescale
        pix_fmt = output_pix_fmt(width, height)
        vf = f"{encode_filter(info, pix_fmt)},setsar={info.sar.numerator}/{info.sar.denominator}:max=65535"
        # Times in the output are the source's minus its time origin (MPEG-TS clocks). Matroska
        # timestamps are unsigned: shift a negative start, and shift it back in the encoder.
        self._origin = Fraction(info.time_origin).limit_denominator(10**6)
        first_time, _ = _frame_time(info, 0)
        self._shift = max(Fraction(0), self._origin - first_time)
        cmd = [ffmpeg.ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-copyts",
               "-itsoffset", f"{-float(self._shift):.9f}", "-f", "matroska", "-i", "pipe:0",
               "-map", "0:v:0", "-vf", vf, "-fps_mode", "passthrough", "-enc_time_base", str(self._time_base),
               "-c:v", "libx264", "-crf", str(crf), "-preset", preset, "-pix_fmt", pix_fmt,
               "-video_track_timescale", str(self._timescale), "-y", "-f", "mp4"]
        self._stderr = tempfile.TemporaryFile()
        self._proc: subprocess.Popen | None = None
        self._closed = False
        self._expected: tuple[Fraction, Fraction] | None = None  # first and last frame's times
        try:
            self._tmp_video = create_temp(self.path, token, "-video.mp4")
            self._tmp_final = create_temp(self.path, token, self.path.suffix or ".mp4")
            self._proc = subprocess.Popen([*cmd, ffmpeg.ffmpeg_path(self._tmp_video)], stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=self._stderr)
            self._send(_mkv_header(width, height))
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
                raise FfvError(self.path, f"cannot run ffmpeg: {exc}") from exc
            raise

    # -- writing --------------------------------------------------------------------------------
    def _send(self, data: bytes | memoryview) -> None:
        if self._proc is None:
            raise ValueError("the encoder is not running")
        try:
            self._proc.stdin.write(data)
        except (BrokenPipeError, OSError) as exc:
            self._proc.wait()
            raise FfvError(self.path, self._error_text("encoder stopped")) from exc

    def _error_text(self, what: str) -> str:
        self._stderr.seek(0)
        return _failure(self._stderr.read(), what)

    def write(self, frame: np.ndarray) -> None:
        """Append one uint8 RGB frame of shape (height, width, 3) at ``size``."""
        if self._closed:
            raise ValueError("write() on a closed VideoWriter")
        width, height = self.size
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.shape != (height, width, 3):
            got = (getattr(frame, "shape", None), getattr(frame, "dtype", type(frame).__name__))
            raise ValueError(f"expected uint8 frame of shape {(height, width, 3)}, got {got}")
        time, duration = _frame_time(self.info, self.frames_written)
        time += self._shift - self._origin
        self._expected = (self._expected[0] if self._expected else time, time)
        header = _mkv_frame_header(round(time * 10**9), round(duration * 10**9), self._frame_bytes)
        self._send(header)
        self._send(memoryview(np.ascontiguousarray(frame)).cast("B"))
        self._send(_ebml_uint(b"\x9b", max(round(duration * 10**9), 1)))
        self.frames_written += 1

    # -- finishing ------------------------------------------------------------------------------
    def close(self) -> None:
        """Finish encoding, mux the audio, check the result and move it onto ``path``."""
        if self._closed:
            return
        self._closed = True
        try:
            self._proc.stdin.close()
            if self._proc.wait() != 0:
                raise FfvError(self.path, self._error_text("encoding failed"))
            if self.frames_written == 0:
                raise FfvError(self.path, "no frames were written")
            self._mux()
            self._verify()
            os.replace(self._tmp_final, self.path)
        except BaseException:
            self._cleanup()
            raise
        self._cleanup()
        log.debug("wrote %s (%d frames)", self.path, self.frames_written)

    def abort(self) -> None:
        """Stop encoding and remove the temporary files; ``path`` is left untouched."""
        self._closed = True
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._proc is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
        self._stderr.close()
        for tmp in (self._tmp_video, self._tmp_final):
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        if self._owned_claim is not None:
            self._owned_claim.release()

    def _verify(self) -> None:
        """Check the finished temporary before it is renamed: every frame is there, and it lasts
        as long as the frames written, first to last (a file cut short by a bad disk is not)."""
        try:
            out = probe(self._tmp_final)
        except FfvError as exc:
            raise FfvError(self.path, f"the finished file is unreadable ({exc.reason}); not kept") from exc
        if out.n_frames is not None and out.n_frames != self.frames_written:
            raise FfvError(self.path, f"the finished file has {out.n_frames} frames, {self.frames_written} "
                                      "were written; not kept")
        first, last = self._expected
        expected = float(last - first)
        times = out.frame_times
        span = times[-1] - times[0] if times else out.duration - out.duration / max(out.n_frames or 1, 1)
        if abs(span - expected) > max(0.002, 0.5 * expected / max(self.frames_written - 1, 1)):
            raise FfvError(self.path, f"the finished file's frames span {span:.3f} s, {expected:.3f} s "
                                      "were written; not kept")

    def _subtitle_args(self) -> list[str]:
        """Maps and codecs for the source's subtitle streams that the container can carry; a
        warning for those it cannot."""
        codecs = self.info.subtitle_codecs if self.audio_from is not None else ()
        args, dropped = [], []
        for k, codec in enumerate(codecs):
            if self._container == "matroska":
                target = "srt" if codec == "mov_text" else "copy"
            elif codec in _TEXT_SUBTITLES:
                target = "mov_text"
            else:
                dropped.append(codec)
                continue
            args += ["-map", f"1:s:{k}", f"-c:s:{len(args) // 4}", target]
        if dropped:
            log.warning("%s: %d subtitle stream(s) (%s) dropped: %s cannot hold them (name the output "
                        ".mkv to keep them)", self.path, len(dropped), ", ".join(dropped), self._container.upper())
        return args

    def _mux(self) -> None:
        """Copy the encoded video and the source's audio and subtitles, with their own start times
        (less the source's time origin), into the output container.

        The audio streams are copied as they are; when the container cannot hold their codec, they
        are re-encoded to AAC (with a warning). A full disk is reported as such.
        """
        timing, inputs, tail = self._mux_timing()
        maps = ["-map", "0:v:0"]
        subtitles: list[str] = []
        if self.audio_from is not None:  # its audio, subtitles, and title/date tags
            maps += ["-map", "1:a?", "-map_metadata", "1"]
            subtitles = self._subtitle_args()
        extra = ["-video_track_timescale", str(self._timescale), "-movflags", "+faststart"] \
            if self._container in ("mp4", "mov") else []

        def mux(audio_codec: list[str], subs: list[str]) -> subprocess.CompletedProcess:
            return ffmpeg.run(["-v", "error", *timing, *inputs, *maps, *subs, "-c:v", "copy", *audio_codec, *extra,
                         "-y", "-f", self._container, ffmpeg.ffmpeg_path(self._tmp_final), *tail], self.path)

        def full_disk(proc: subprocess.CompletedProcess) -> None:
            if proc.returncode != 0 and any(sign.encode() in proc.stderr for sign in _NO_SPACE):
                raise FfvError(self.path, _failure(proc.stderr, "muxing failed"))

        proc = mux(["-c:a", "copy"], subtitles)
        full_disk(proc)
        if proc.returncode != 0 and subtitles:
            log.warning("%s: subtitles cannot be copied (%s); dropped", self.path, ffmpeg.last_error(proc.stderr))
            subtitles = []
            proc = mux(["-c:a", "copy"], subtitles)
            full_disk(proc)
        if proc.returncode != 0 and self.audio_from is not None:
            log.warning("%s: audio cannot be copied into %s (%s); re-encoding it to AAC",
                        self.path, self._container.upper(), ffmpeg.last_error(proc.stderr))
            proc = mux(["-c:a", "aac", "-b:a", "192k"], subtitles)
            full_disk(proc)
        if proc.returncode != 0:
            raise FfvError(self.path, _failure(proc.stderr, "muxing failed"))

    def _mux_timing(self) -> tuple[list[str], list[str], list[str]]:
        """The mux's timing options, its inputs (encoded video, then the source), and what follows
        the output.

        Most sources: their own clock (``-copyts``) less the time origin, as frames were listed.
        Clock containers (MPEG-TS/PS): ffmpeg's own timeline, on which the frames were listed
        (``_list_frames``): ffmpeg moves the source to it while muxing, continuous across wraps
        and joins, given the same streams in use (a null second output takes the video and
        subtitles that the file itself may not); the encoded video is put back at its first
        frame's time, which ffmpeg would move to 0.
        """
        video = ["-i", ffmpeg.ffmpeg_path(self._tmp_video)]
        if self.audio_from is None:
            return ["-copyts"], video, []
        source = ["-i", ffmpeg.ffmpeg_path(self.audio_from)]
        if not has_clock(self.info):
            return ["-copyts"], [*video, "-itsoffset", f"{-float(self._origin):.6f}", *source], []
        start = self._expected[0] - self._shift
        null_output = ["-map", "1:V:0", "-map", "1:s?", "-c", "copy", "-f", "null", "-"]
        return [], ["-itsoffset", f"{float(start):.6f}", *video, *source], null_output

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
