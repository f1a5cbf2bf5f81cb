"""Choose ``inference.SMALL_WINDOW_MODEL``'s threshold: run a benchmark with ``--upscale 2``'s
windows up to ROUTE_T px (longer side, input px) given to ``ffv_span2_sized`` and the larger ones to
``ffv_span2`` (0: the light network alone; a huge value: the sized one alone). LARGE=FILE.tflite
gives the larger windows to another ×2 network of any input size instead (e.g. ``ffv export
models/training/video_span2_sized --snapshot 3100 -o /tmp/s.keras``, then LARGE=/tmp/s.tflite).

    ROUTE_T=64 .venv/bin/python scripts/sr_route_choice.py benchmarks/quality_clip.py --upscale 2 \\
        --inputs clean --no-ssim --faces ../shared/data/faces/pixabay/val
    ROUTE_T=64 .venv/bin/python scripts/sr_route_choice.py benchmarks/quality_real_sr.py --factors 2 \\
        ../shared/data/videos/talking_head_vfr_700.mp4 ../shared/data/videos/hands_occlusion_464x560.mp4 \\
        ../shared/data/videos/stage_multiface_profile_audio-offset_640x360.mp4

The choosing sets are those two (``docs/what-we-tried.md``); frl and the four report clips are not.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import framefusion_video.restore.batch as batch  # noqa: E402
import framefusion_video.restore.clip as clip  # noqa: E402
from framefusion_video.restore.inference import (RoutedRestorer, SMALL_WINDOW_MODEL, default_sr_model_path,  # noqa: E402
                                                 load_restorer, shipped_weights_dir)

LARGEST_SMALL = int(os.environ["ROUTE_T"])
_load = clip.load_default_restorer


def load(config):
    """The default restorer, its ×2 routing threshold replaced by ROUTE_T."""
    restorer = _load(config)
    if config.upscale == 2 and config.model_path is None:
        threads = config.auto_model_threads()
        small = load_restorer(shipped_weights_dir() / SMALL_WINDOW_MODEL[2][0], config.batch_size, threads)
        large = load_restorer(os.environ.get("LARGE") or default_sr_model_path(2), config.batch_size, threads)
        restorer = RoutedRestorer(small, large, LARGEST_SMALL)
    return restorer


clip.load_default_restorer = batch.load_default_restorer = load
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
