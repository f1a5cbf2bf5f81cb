"""Video I/O with the ffmpeg that ships in imageio-ffmpeg: probe, streamed decode, atomic encode.

There is no ffprobe in that wheel, so :func:`probe` reads two cheap ffmpeg runs: the stream dump of
``ffmpeg -i`` (sizes, codecs, rotation, pixel aspect, start times) and a demux-only packet listing
(``-c copy -f framecrc``) that gives the exact presentation time of every frame without decoding.
That listing also finds truncated files, and it is what lets :class:`VideoWriter` give frame ``i``
of the output the source's timestamp ``i``: frames are fed to the encoder in a minimal Matroska
stream (raw RGB with a timestamp per frame), so variable frame rates and late-starting video
survive, and the source's audio is then copied beside it with the original start times.

Timestamps: frames are listed on the source's own clock (``-copyts``), as the audio is copied, so
every stream keeps its start time relative to the others exactly. The one shift is
``VideoInfo.time_origin``, subtracted from every stream alike: 0 for MP4, MOV, Matroska... whose
start times are kept as they are, and the start of MPEG transport and program streams, whose
clock is a broadcast clock that can start hours in. Those are timed as ffmpeg times them: listed
and muxed on ffmpeg's own timeline, which starts at their start and stays continuous where their
33-bit clock wraps or where files joined with ``cat`` meet (reported back on the source's clock).

Frames at this boundary are ``uint8`` RGB arrays of shape (H, W, 3), displayed orientation.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from framefusion_video.base.errors import FfvError
from framefusion_video.base.outputs import OutputClaim, claim_output, create_temp, new_token

log = logging.getLogger(__name__)

# The first video stream that is not cover art (ffmpeg's capital V); used for every read.
_VIDEO_MAP = "0:V:0"
#: swscale flags of every YUV <-> RGB conversion: exact rounding, chroma taken per pixel both ways,
#: and nearest-neighbour chroma resampling, so that 4:2:0 -> RGB -> 4:2:0 gives back the same YUV
#: (above 95 dB PSNR per plane on a 720p x264 clip): pixels ffv does not change leave as they came,
#: and the output is as faithful as a plain transcode. swscale's default flags cost 0.15-1.8 dB on
#: whole frames, bicubic chroma with accurate rounding about 0.08 dB on clean ones.
SWS_FLAGS = "neighbor+accurate_rnd+full_chroma_int+full_chroma_inp"
# YUV matrices (ffmpeg's names) that swscale converts with; any other is converted as BT.601 (its
# default) both ways, so the output's YUV still equals the input's, and keeps its own tag.
_SWS_MATRIX = {"bt709": "bt709", "smpte170m": "smpte170m", "bt470bg": "bt470bg", "bt2020nc": "bt2020",
               "fcc": "fcc", "smpte240m": "smpte240m"}
# ffmpeg prints one name when matrix, primaries and transfer share their numeric value: that
# matrix name stands for these (primaries, transfer).
_SAME_CODE = {"bt709": ("bt709", "bt709"), "fcc": ("bt470m", "bt470m"), "bt470bg": ("bt470bg", "bt470bg"),
              "smpte170m": ("smpte170m", "smpte170m"), "smpte240m": ("smpte240m", "smpte240m"),
              "ycgco": ("film", "linear"), "bt2020nc": ("bt2020", "bt2020-10"), "bt2020c": ("smpte428", "bt2020-12")}
# The names ffmpeg's setparams filter takes (older ffmpegs print two transfers as gamma22/gamma28);
# a tag outside these is not written.
_SETPARAMS = {
    "colorspace": {"gbr", "bt709", "fcc", "bt470bg", "smpte170m", "smpte240m", "ycgco", "ycgco-re", "ycgco-ro",
                   "bt2020nc", "bt2020c", "smpte2085", "chroma-derived-nc", "chroma-derived-c", "ictcp", "ipt-c2"},
    "color_primaries": {"bt709", "bt470m", "bt470bg", "smpte170m", "smpte240m", "film", "bt2020", "smpte428",
                        "smpte431", "smpte432", "jedec-p22", "ebu3213", "vgamut"},
    "color_trc": {"bt709", "bt470m", "bt470bg", "smpte170m", "smpte240m", "linear", "log100", "log316",
                  "iec61966-2-4", "bt1361e", "iec61966-2-1", "bt2020-10", "bt2020-12", "smpte2084", "smpte428",
                  "arib-std-b67", "vlog"},
}
_SETPARAMS_TRC = {"gamma22": "bt470m", "gamma28": "bt470bg"}
_RGB_PREFIXES = ("gbr", "rgb", "bgr", "argb", "abgr", "0rgb", "0bgr", "x2rgb", "x2bgr", "pal8")


def ffmpeg_path(path: str | os.PathLike) -> str:
    """``path`` as ffmpeg must be given it: a ``file:`` URL of the absolute path, so that a name
    with a colon (``10:30.mp4``, ``file:x.mp4``) is never taken for a protocol."""
    return "file:" + os.path.abspath(path)


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg (or ``IMAGEIO_FFMPEG_EXE``)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class VideoInfo:
    """What ffv needs to know about a video file, from :func:`probe`.

    ``width``/``height`` are those of the frames :func:`read_frames` yields (after the rotation
    ffmpeg applies by default); ``sar`` is their pixel aspect (width/height of one pixel).
    ``rotation`` is the display rotation stored in the file, degrees counter-clockwise (ffmpeg's
    convention; 0, 90, 180 or 270), already applied to the decoded frames. ``fps`` is the average
    frame rate; ``n_frames`` the exact number of decoded frames (None when the container gives no
    reliable per-frame timestamps); ``duration`` the video's duration in seconds (first frame to
    end of last frame; the container's duration when frames are not listed). ``frame_pts`` holds
    each decoded frame's presentation timestamp in ``time_base`` units, in display order, on the
    source's clock (as are ``video_start`` and ``audio_start``; for MPEG-TS/PS, that clock made
    continuous as ffmpeg makes it). ``fps`` of a stream without timestamps (raw H.264...) is the
    rate ffmpeg times its packets with. ``time_origin`` (seconds) is
    subtracted from every stream's times in an output (see the module docstring).
    ``color_matrix``, ``color_range`` ("tv" or "pc"), ``color_primaries`` and ``color_transfer``
    are the stream's colour tags in ffmpeg's names, None when untagged; ``bits`` is the pixel
    format's bit depth per component.
    """

    path: str
    width: int
    height: int
    fps: float
    n_frames: int | None
    duration: float
    rotation: int = 0
    sar: Fraction = Fraction(1)
    has_audio: bool = False
    video_codec: str = ""
    pix_fmt: str = ""
    audio_codecs: tuple[str, ...] = ()
    container: str = ""
    video_start: float = 0.0
    audio_start: float | None = None
    color_matrix: str | None = None
    color_range: str | None = None
    color_primaries: str | None = None
    color_transfer: str | None = None
    bits: int = 8
    time_base: Fraction | None = None
    time_origin: float = 0.0
    subtitle_codecs: tuple[str, ...] = ()
    frame_pts: tuple[int, ...] | None = field(default=None, repr=False)
    last_frame_duration: int | None = field(default=None, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the decoded frames."""
        return self.width, self.height

    @property
    def frame_times(self) -> tuple[float, ...] | None:
        """Presentation time of every frame in seconds (source clock), or None when unknown."""
        if self.frame_pts is None or self.time_base is None:
            return None
        return tuple(float(p * self.time_base) for p in self.frame_pts)


# --------------------------------------------------------------------------------------------
# probe


def _run(args: list[str], path: str | os.PathLike) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            [ffmpeg_exe(), "-nostdin", "-hide_banner", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
    except OSError as exc:  # ffmpeg missing or not executable
        raise FfvError(path, f"cannot run ffmpeg: {exc}") from exc


def _last_error(stderr: str | bytes) -> str:
    """The most telling line of ffmpeg's stderr, without the ``[module @ 0x...]`` prefixes."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode("utf-8", "replace")
    lines = [re.sub(r"^(\[[^\]]*\]\s*)+", "", ln).strip() for ln in stderr.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("Terminating thread", "Task finished"))]
    return lines[-1] if lines else "ffmpeg failed without a message"


def check_input(src: Path) -> None:
    """Raise FfvError for an input that cannot be a video (missing, a folder, unreadable, empty),
    before ffmpeg is started on it."""
    if not src.exists():
        raise FfvError(src, "no such file")
    if src.is_dir():
        raise FfvError(src, "is a folder, not a video file")
    if not os.access(src, os.R_OK):
        raise FfvError(src, "cannot read the file (permission denied)")
    if not src.is_file():
        raise FfvError(src, "not a regular file (a pipe or a device); ffv reads video files only, so save "
                            "the stream to a file first")
    if src.stat().st_size == 0:
        raise FfvError(src, "the file is empty (0 bytes)")


_STREAM_RE = re.compile(r"^\s*Stream #0:(\d+)\S*: (Video|Audio|Subtitle|Data|Attachment): (.*)$")
_SIZE_RE = re.compile(r", (\d{1,5})x(\d{1,5})(?=[ ,]|$)")
# The codec's aspect in brackets, then the container's when it differs (it wins, as in ffmpeg).
_SAR_RE = re.compile(r"SAR (\d+):(\d+) DAR")
_FPS_RE = re.compile(r", ([\d.]+)(k?) fps")
_START_RE = re.compile(r", start (-?[\d.]+)")
_ROT_RE = re.compile(r"display ?matrix: rotation of (-?[\d.]+) degrees", re.IGNORECASE)
_DURATION_RE = re.compile(r"Duration: (\d+):(\d+):([\d.]+)")
_FORMAT_START_RE = re.compile(r"Duration: .*?, start: (-?[\d.]+)")
# Containers whose timestamps are a running clock (MPEG-TS/PS) rather than a timeline from 0.
_CLOCK_CONTAINERS = frozenset({"mpegts", "mpegtsraw", "mpeg"})
_INPUT_RE = re.compile(r"^Input #0, (.+?), from ")
_PIXFMT_RE = re.compile(r"^[^,]*?, (\w+)(?:\(([^)]*)\))?(?=,)")


def _parse_dump(text: str) -> dict:
    """Parse ``ffmpeg -i`` stderr into a dict of raw facts (first input only)."""
    facts: dict = {"streams": [], "duration": None, "container": "", "start": None}
    current = None
    for line in text.splitlines():
        if m := _INPUT_RE.match(line):
            facts["container"] = m.group(1)
        elif m := _DURATION_RE.search(line):
            h, mnt, s = m.groups()
            facts["duration"] = int(h) * 3600 + int(mnt) * 60 + float(s)
            if start := _FORMAT_START_RE.search(line):
                facts["start"] = float(start.group(1))
        elif m := _STREAM_RE.match(line):
            current = {"index": int(m.group(1)), "kind": m.group(2), "desc": m.group(3), "rotation": 0.0}
            facts["streams"].append(current)
        elif current is not None and (m := _ROT_RE.search(line)):
            current["rotation"] = float(m.group(1))
    return facts


def _parse_sar(desc: str) -> Fraction:
    """The pixel aspect of a video stream's dump line: the container's (``, SAR 4:3 DAR 16:9``
    after the codec's bracket) when it gives one, else the codec's; 1 when unknown."""
    sars = [Fraction(int(num), int(den)) for num, den in _SAR_RE.findall(desc) if int(num) and int(den)]
    return sars[-1] if sars else Fraction(1)


def _rate(match: re.Match | None) -> float | None:
    if match is None:
        return None
    return float(match.group(1)) * (1000 if match.group(2) else 1)


# What an output takes from a clock container's source besides the frames: listed together, so
# that ffmpeg moves the listing's start and the muxed audio's start alike (it starts a file's
# timeline at the earliest of the streams it uses).
_CLOCK_MAPS = ["-map", _VIDEO_MAP, "-map", "0:a?", "-map", "0:s?"]


@dataclass(frozen=True)
class _FrameList:
    """The video's packets as :func:`_list_frames` reads them (times in ``time_base`` units)."""

    time_base: Fraction | None
    pts: list[int] | None = None  # sorted; None when any is missing or repeated
    last_duration: int | None = None
    packet_rate: float | None = None  # 1 / the packets' typical duration, when they have one


def _list_frames(path: Path, clock: bool = False) -> _FrameList:
    """Demux (no decode) the video stream: its frames' presentation times.

    Most containers: the pts stored in the file (``-copyts``), the clock the audio is copied with.
    Clock containers (MPEG-TS/PS, ``clock``): ffmpeg's own timeline, on which a wrapped clock and
    the joins of files concatenated with ``cat`` are made continuous and the start is moved to 0,
    as :class:`VideoWriter` muxes their audio; a damaged packet there is read as ffmpeg reads it
    (broadcast recordings have them), not refused.

    Packets the demuxer marks as discarded (MP4 edit lists) are not frames. ``pts`` is None when
    any timestamp is missing or repeated, as in raw elementary streams, whose ``packet_rate`` is
    then the one ffmpeg times them with. Raises FfvError when the demuxer hits the end of a
    truncated file.
    """
    timing = [] if clock else ["-xerror", "-copyts"]
    maps = _CLOCK_MAPS if clock else ["-map", _VIDEO_MAP]
    proc = _run(["-v", "error", *timing, "-i", ffmpeg_path(path), *maps, "-c", "copy", "-f", "framecrc", "-"], path)
    if proc.returncode != 0:
        raise FfvError(path, f"truncated or corrupt video data ({_last_error(proc.stderr)})")
    time_base, rows = None, []
    for line in proc.stdout.decode("ascii", "replace").splitlines():
        if line.startswith("#tb 0:"):
            num, den = line.split(":", 1)[1].strip().split("/")
            time_base = Fraction(int(num), int(den))
        elif line.startswith("0,"):
            parts = [p.strip() for p in line.split(",")]
            flags = int(parts[6].split("=")[1], 16) if len(parts) > 6 and "=" in parts[6] else 0
            if not flags & 0x4:  # AV_PKT_FLAG_DISCARD
                rows.append((parts[2], parts[3]))
    try:
        pts = sorted(int(p) for p, _ in rows)
        durations = [int(d) for _, d in rows]
    except ValueError:  # NOPTS
        return _FrameList(time_base)
    if time_base is None or not pts:
        return _FrameList(time_base)
    if len(set(pts)) != len(pts):
        typical = int(np.median(durations))
        return _FrameList(time_base, packet_rate=float(1 / (typical * time_base)) if typical > 0 else None)
    # The last frame lasts until the end of the packets' summed durations; sanity-checked against
    # the typical frame interval, as B-frame reordering can shift that sum by one interval.
    total = sum(durations)
    typical = int(np.median(np.diff(pts))) if len(pts) > 1 else total
    last = pts[0] + total - pts[-1]
    return _FrameList(time_base, pts, last if 0 < last <= 2 * typical else max(typical, 1))


def _clock_start(facts: dict, streams: list[dict]) -> Fraction:
    """Where ffmpeg starts the timeline of a clock container whose ``streams`` it uses: the
    earliest of their start times (the file's when none gives one), in seconds."""
    starts = [Fraction(m.group(1)) for s in streams if (m := _START_RE.search(s["desc"]))]
    if starts:
        return min(starts)
    return Fraction(str(facts["start"])) if facts["start"] is not None else Fraction(0)


def _ticks(seconds: Fraction, time_base: Fraction) -> int:
    """``seconds`` in ``time_base`` units, rounded half away from zero as ffmpeg rescales."""
    units = abs(seconds / time_base)
    rounded = int(units + Fraction(1, 2))
    return rounded if seconds >= 0 else -rounded


def _parse_colour(pix_fmt: str, tags_text: str) -> dict:
    """VideoInfo's colour fields from the pixel format and its bracket in ``ffmpeg -i``'s dump,
    e.g. ``yuv420p`` and ``tv, bt709/unknown/unknown, progressive``."""
    tags = [t.strip() for t in tags_text.split(",")]

    def known(name: str | None) -> str | None:
        return None if name in (None, "", "unknown", "reserved", "unspecified") else name

    matrix = primaries = transfer = None
    for tag in tags:
        if tag.count("/") == 2:
            matrix, primaries, transfer = (known(t) for t in tag.split("/"))
            break
        if tag in _SAME_CODE:
            matrix, (primaries, transfer) = tag, _SAME_CODE[tag]
            break
    colour_range = next((t for t in tags if t in ("tv", "pc")), None)
    if colour_range is None and pix_fmt.startswith("yuvj"):
        colour_range = "pc"
    depth = re.search(r"(9|10|12|14|16|48|64)(le|be)$", pix_fmt)
    bits = 8 if depth is None else min(16, int(depth.group(1)))
    return {"color_matrix": matrix, "color_range": colour_range, "color_primaries": primaries,
            "color_transfer": transfer, "bits": bits}


def probe(path: str | os.PathLike) -> VideoInfo:
    """Describe the video at ``path`` cheaply (no decoding).

    Raises:
        FfvError: missing path, a folder, unreadable or empty file, not a video ffmpeg can open,
            no video stream, a still image, or a truncated file (as far as demuxing can tell).
    """
    path = Path(path)
    check_input(path)
    dump = _run(["-i", ffmpeg_path(path)], path)  # exits 1 ("no output file") even when all is well
    text = dump.stderr.decode("utf-8", "replace")
    facts = _parse_dump(text)
    if not facts["streams"]:
        reason = _last_error(text)
        if "Invalid data" in reason or "moov atom" in text:
            reason = "not a video file, or a truncated one (ffmpeg: invalid data)"
        raise FfvError(path, reason)
    videos = [s for s in facts["streams"] if s["kind"] == "Video" and "(attached pic)" not in s["desc"]]
    audios = [s for s in facts["streams"] if s["kind"] == "Audio"]
    subtitles = [s for s in facts["streams"] if s["kind"] == "Subtitle"]
    if not videos:
        raise FfvError(path, "has no video stream" + (" (audio only)" if audios else ""))
    if facts["container"].endswith("_pipe") or facts["container"] == "image2":
        raise FfvError(path, "is a still image, not a video")
    desc = videos[0]["desc"]
    size = _SIZE_RE.search(desc)
    if size is None:
        raise FfvError(path, "video stream has no frame size (unsupported or corrupt)")
    width, height = int(size.group(1)), int(size.group(2))
    sar = _parse_sar(desc)
    rotation = int(round(videos[0]["rotation"])) % 360
    if rotation in (90, 270):  # ffmpeg's autorotate transposes the frames, and their aspect
        width, height, sar = height, width, 1 / sar if sar else sar
    pix = _PIXFMT_RE.match(desc)
    colour = _parse_colour(pix.group(1), pix.group(2) or "") if pix else {}

    clock = facts["container"] in _CLOCK_CONTAINERS
    frames = _list_frames(path, clock)
    time_base, pts, last_duration = frames.time_base, frames.pts, frames.last_duration
    origin = Fraction(0)
    if clock:  # back from ffmpeg's timeline to the source's clock: what VideoInfo reports
        origin = _clock_start(facts, [videos[0], *audios, *subtitles])
        if pts and time_base is not None:
            shift = _ticks(origin, time_base)
            pts, origin = [p + shift for p in pts], shift * time_base
    container_duration = facts["duration"]
    v_start = _START_RE.search(desc)
    fps_parsed = _rate(_FPS_RE.search(desc)) or _rate(re.search(r", ([\d.]+)(k?) tbr", desc))
    if pts:
        span = pts[-1] - pts[0]
        fps = float((len(pts) - 1) / (span * time_base)) if span > 0 else (fps_parsed or 0.0)
        duration = float((span + last_duration) * time_base)
        video_start = float(pts[0] * time_base)
    else:
        fps = frames.packet_rate or fps_parsed or 0.0
        duration = container_duration or 0.0
        video_start = float(v_start.group(1)) if v_start else 0.0
    if fps <= 0:
        raise FfvError(path, "video stream has no frame rate (unsupported or corrupt)")
    audio_start = None
    if audios:
        a_start = _START_RE.search(audios[0]["desc"])
        audio_start = float(a_start.group(1)) if a_start else 0.0
    info = VideoInfo(
        path=str(path),
        width=width,
        height=height,
        fps=fps,
        n_frames=len(pts) if pts is not None else None,
        duration=duration,
        rotation=rotation,
        sar=sar,
        has_audio=bool(audios),
        video_codec=desc.split(" ", 1)[0].rstrip(","),
        pix_fmt=pix.group(1) if pix else "",
        audio_codecs=tuple(a["desc"].split(" ", 1)[0].rstrip(",") for a in audios),
        container=facts["container"],
        video_start=video_start,
        audio_start=audio_start,
        **colour,
        time_base=time_base if pts is not None else None,
        time_origin=float(origin),
        subtitle_codecs=tuple(t["desc"].split(" ", 1)[0].rstrip(",") for t in subtitles),
        frame_pts=tuple(pts) if pts is not None else None,
        last_frame_duration=last_duration if pts is not None else None,
    )
    if info.n_frames == 0:
        raise FfvError(path, "video stream has no frames")
    log.debug("probed %s", info)
    return info


# --------------------------------------------------------------------------------------------
# colour


def _has_clock(info: VideoInfo) -> bool:
    """Whether ``info``'s container times its streams with a running clock (MPEG-TS/PS)."""
    return info.container in _CLOCK_CONTAINERS


def _is_rgb(info: VideoInfo) -> bool:
    return info.pix_fmt.startswith(_RGB_PREFIXES)


def conversion_matrix(info: VideoInfo) -> str:
    """The swscale matrix name ffv converts ``info``'s YUV with, both ways: its own when tagged and
    known to swscale, else BT.601 (swscale's default, what ffmpeg assumes for untagged video)."""
    return _SWS_MATRIX.get(info.color_matrix or "", "bt601")


def _range(info: VideoInfo) -> str:
    return "pc" if info.color_range == "pc" else "tv"


def decode_filter(info: VideoInfo) -> str:
    """ffmpeg ``-vf`` of :func:`read_frames`: the stream's YUV to RGB with its own matrix and range.

    8-bit video goes through swscale with :data:`SWS_FLAGS` to planar RGB (cheaper than packed
    RGB with those flags, and packing it is exact). Deeper video (10-bit and up) is reduced to
    8 bits by zimg (``zscale``) with error-diffusion dithering, so gradients do not band.
    """
    rng = _range(info)
    if info.bits > 8 and not _is_rgb(info):
        matrix = info.color_matrix if info.color_matrix in _SWS_MATRIX else "smpte170m"
        return (f"zscale=matrixin={matrix}:rangein={'full' if rng == 'pc' else 'limited'}:dither=error_diffusion,"
                "format=gbrp,format=rgb24")
    return (f"scale=in_color_matrix={conversion_matrix(info)}:in_range={rng}:flags={SWS_FLAGS},"
            "format=gbrp,format=rgb24")


def encode_filter(info: VideoInfo, pix_fmt: str) -> str:
    """ffmpeg ``-vf`` of :class:`VideoWriter`: RGB back to YUV with the matrix and range the frames
    were decoded with, tagged with the source's matrix, primaries, transfer and range (untagged
    stays untagged). An RGB-coded source has no YUV matrix: it becomes BT.601 limited range,
    tagged as such, with its primaries and transfer."""
    rgb_source = _is_rgb(info)
    rng = "tv" if rgb_source else _range(info)
    values = {"colorspace": "smpte170m" if rgb_source else info.color_matrix,
              "color_primaries": info.color_primaries,
              "color_trc": _SETPARAMS_TRC.get(info.color_transfer or "", info.color_transfer)}
    tags = ":".join(f"{key}={value if value in _SETPARAMS[key] else 'unknown'}" for key, value in values.items())
    return (f"scale=out_color_matrix={conversion_matrix(info)}:out_range={rng}:flags={SWS_FLAGS},"
            f"format={pix_fmt},setparams=range={rng}:{tags}")


# --------------------------------------------------------------------------------------------
# decode


def _read_exactly(stream: IO[bytes], view: memoryview) -> int:
    """Fill ``view`` from ``stream``; the number of bytes read (short only at end of stream)."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def read_frames(path: str | os.PathLike, info: VideoInfo | None = None) -> Iterator[np.ndarray]:
    """Yield every decoded frame once, in display order, as uint8 RGB (H, W, 3), streamed.

    Converted to RGB with the stream's own matrix and range (:func:`decode_filter`). No frame-rate conversion (``-fps_mode passthrough``); the file's rotation is applied as ffmpeg
    does by default. Each frame is a fresh, writable array. Closing the generator early stops
    ffmpeg. Raises FfvError when decoding fails part-way (corrupt or truncated data).
    """
    info = info if info is not None else probe(path)
    frame_shape = (info.height, info.width, 3)
    strict = [] if _has_clock(info) else ["-xerror"]  # damaged TS packets: decoded as ffmpeg does
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", *strict, "-i", ffmpeg_path(path),
           "-map", _VIDEO_MAP, "-fps_mode", "passthrough", "-vf", decode_filter(info),
           "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    count = 0
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        try:
            while True:
                frame = np.empty(frame_shape, dtype=np.uint8)
                got = _read_exactly(proc.stdout, memoryview(frame).cast("B"))
                if got == 0:
                    break
                if got < frame.nbytes:
                    raise FfvError(path, f"decoding stopped inside frame {count} (frame size changed?)")
                count += 1
                yield frame
            if proc.wait() != 0:
                err.seek(0)
                raise FfvError(path, f"decoding failed after {count} frames: {_last_error(err.read())}")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()
    if info.n_frames is not None and count != info.n_frames:
        log.warning("%s: decoded %d frames, expected %d", path, count, info.n_frames)


# --------------------------------------------------------------------------------------------
# encode

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
    return f"{what}: {_last_error(stderr)}"


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
        cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-copyts",
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
            self._proc = subprocess.Popen([*cmd, ffmpeg_path(self._tmp_video)], stdin=subprocess.PIPE,
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
            return _run(["-v", "error", *timing, *inputs, *maps, *subs, "-c:v", "copy", *audio_codec, *extra,
                         "-y", "-f", self._container, ffmpeg_path(self._tmp_final), *tail], self.path)

        def full_disk(proc: subprocess.CompletedProcess) -> None:
            if proc.returncode != 0 and any(sign.encode() in proc.stderr for sign in _NO_SPACE):
                raise FfvError(self.path, _failure(proc.stderr, "muxing failed"))

        proc = mux(["-c:a", "copy"], subtitles)
        full_disk(proc)
        if proc.returncode != 0 and subtitles:
            log.warning("%s: subtitles cannot be copied (%s); dropped", self.path, _last_error(proc.stderr))
            subtitles = []
            proc = mux(["-c:a", "copy"], subtitles)
            full_disk(proc)
        if proc.returncode != 0 and self.audio_from is not None:
            log.warning("%s: audio cannot be copied into %s (%s); re-encoding it to AAC",
                        self.path, self._container.upper(), _last_error(proc.stderr))
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
        video = ["-i", ffmpeg_path(self._tmp_video)]
        if self.audio_from is None:
            return ["-copyts"], video, []
        source = ["-i", ffmpeg_path(self.audio_from)]
        if not _has_clock(self.info):
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
