"""Colour at the video boundary: the ffmpeg filters that turn a stream's YUV into RGB frames with
its own matrix and range (:func:`decode_filter`), and back with the same ones and the source's tags
(:func:`encode_filter`), so that pixels ffv does not change leave as they came.
"""

from __future__ import annotations

from framefusion_video.video.probe import VideoInfo

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


def _is_rgb(info: VideoInfo) -> bool:
    return info.pix_fmt.startswith(_RGB_PREFIXES)


def conversion_matrix(info: VideoInfo) -> str:
    """The swscale matrix name ffv converts ``info``'s YUV with, both ways: its own when tagged and
    known to swscale, else BT.601 (swscale's default, what ffmpeg assumes for untagged video)."""
    return _SWS_MATRIX.get(info.color_matrix or "", "bt601")


def _range(info: VideoInfo) -> str:
    return "pc" if info.color_range == "pc" else "tv"


def decode_filter(info: VideoInfo) -> str:
    """ffmpeg ``-vf`` of ``decode.read_frames``: the stream's YUV to RGB with its own matrix and range.

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
    """ffmpeg ``-vf`` of ``encode.VideoWriter``: RGB back to YUV with the matrix and range the frames
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
