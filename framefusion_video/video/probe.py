"""What a video file holds, from ffmpeg's own text (there is no ffprobe in imageio-ffmpeg's wheel):
:func:`probe` reads two cheap ffmpeg runs, the stream dump of ``ffmpeg -i`` (sizes, codecs,
rotation, pixel aspect, start times, colour tags) and a demux-only packet listing
(``-c copy -f framecrc``) that gives the exact presentation time of every frame without decoding.
That listing also finds truncated files, and it is what lets ``encode.VideoWriter`` give frame
``i`` of the output the source's timestamp ``i``.

Timestamps: frames are listed on the source's own clock (``-copyts``), as the audio is copied, so
every stream keeps its start time relative to the others exactly. The one shift is
``VideoInfo.time_origin``, subtracted from every stream alike: 0 for MP4, MOV, Matroska... whose
start times are kept as they are, and the start of MPEG transport and program streams, whose
clock is a broadcast clock that can start hours in. Those are timed as ffmpeg times them: listed
and muxed on ffmpeg's own timeline, which starts at their start and stays continuous where their
33-bit clock wraps or where files joined with ``cat`` meet (reported back on the source's clock).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from framefusion_video.base.errors import FfvError
from framefusion_video.video import ffmpeg

log = logging.getLogger(__name__)

# ffmpeg prints one name when matrix, primaries and transfer share their numeric value: that
# matrix name stands for these (primaries, transfer).
_SAME_CODE = {"bt709": ("bt709", "bt709"), "fcc": ("bt470m", "bt470m"), "bt470bg": ("bt470bg", "bt470bg"),
              "smpte170m": ("smpte170m", "smpte170m"), "smpte240m": ("smpte240m", "smpte240m"),
              "ycgco": ("film", "linear"), "bt2020nc": ("bt2020", "bt2020-10"), "bt2020c": ("smpte428", "bt2020-12")}


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
_CLOCK_MAPS = ["-map", ffmpeg.VIDEO_MAP, "-map", "0:a?", "-map", "0:s?"]


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
    maps = _CLOCK_MAPS if clock else ["-map", ffmpeg.VIDEO_MAP]
    proc = ffmpeg.run(["-v", "error", *timing, "-i", ffmpeg.ffmpeg_path(path), *maps, "-c", "copy", "-f", "framecrc", "-"], path)
    if proc.returncode != 0:
        raise FfvError(path, f"truncated or corrupt video data ({ffmpeg.last_error(proc.stderr)})")
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


def parse_colour(pix_fmt: str, tags_text: str) -> dict:
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
    dump = ffmpeg.run(["-i", ffmpeg.ffmpeg_path(path)], path)  # exits 1 ("no output file") even when all is well
    text = dump.stderr.decode("utf-8", "replace")
    facts = _parse_dump(text)
    if not facts["streams"]:
        reason = ffmpeg.last_error(text)
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
    colour = parse_colour(pix.group(1), pix.group(2) or "") if pix else {}

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



def has_clock(info: VideoInfo) -> bool:
    """Whether ``info``'s container times its streams with a running clock (MPEG-TS/PS)."""
    return info.container in _CLOCK_CONTAINERS
