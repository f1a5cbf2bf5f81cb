"""Which files ffv takes for videos and for images, by extension (lower case, with the dot)."""

from __future__ import annotations

from pathlib import Path

#: Extensions taken as videos when a folder is scanned (``ffv restore``, ``ffv degrade``).
VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .avi .webm .mpg .mpeg .mpe .m2v .wmv .asf .flv .f4v .ts .mts .m2ts "
    ".3gp .3g2 .ogv .vob .dv .mxf .y4m".split()
)
#: Extensions taken as images (training and evaluation folders, ``ffv degrade``).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def is_video_file(path: Path) -> bool:
    """Whether ``path`` has a video file extension (case-insensitive); not a hidden file."""
    return path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")
