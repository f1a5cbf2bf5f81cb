"""Speed of ``ffv restore --upscale 2|4``: frames per second on small clips with faces of all sizes.

The seeded synthetic clip of ``synthetic_clip.build_clip`` (1280x720, 80 frames, four faces a frame
of 40-300 px, from ``--faces``) is reduced by 2 (640x360, faces of 20-150 px) and by 4 (320x180,
10-75 px) and encoded (x264 CRF 20); each is restored with ``--upscale`` 2 or 4 by
``restore.restore_video`` with the shipped networks already loaded (the steady state: start-up is
not counted), default options otherwise. The best of ``--repeats`` runs is kept.

    .venv/bin/python benchmarks/bench_upscale.py             # both factors
    .venv/bin/python benchmarks/bench_upscale.py --write     # also into RESULTS.md (section upscale_speed)
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import common

log = logging.getLogger("benchmarks.upscale")

DEFAULT_FACES = common.SHARED_VIDEOS.parent / "faces" / "frl"


def time_restore(src: Path, work: Path, factor: int, repeats: int) -> dict:
    """Best wall time and fps of restoring ``src`` with ``upscale`` = ``factor``, and the outcomes."""
    from framefusion_video.restore.config import RestoreConfig
    from framefusion_video.restore.clip import load_default_restorer, restore_video
    from framefusion_video.video.probe import probe

    config = RestoreConfig(upscale=factor)
    restorer = load_default_restorer(config)
    info = probe(src)
    best, result = float("inf"), None
    for k in range(repeats):
        start = time.perf_counter()
        result = restore_video(src, work / f"out_x{factor}_{k}.mp4", config, restorer=restorer)
        best = min(best, time.perf_counter() - start)
    return {"size": f"{info.width}x{info.height}", "frames": result.frames, "seconds": best,
            "fps": result.frames / best, "faces": result.faces}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path, default=DEFAULT_FACES, help="face photos for the clip (default: frl/)")
    parser.add_argument("--factors", default="2,4")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="replace the section upscale_speed of RESULTS.md")
    args = parser.parse_args(argv)
    common.setup_logging()
    from synthetic_clip import ClipConfig, build_clip, transcode

    if not args.faces.is_dir():
        parser.error(f"no face folder at {args.faces} (--faces DIR)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="ffv-upscale-") as tmp:
        work = Path(tmp)
        clip = build_clip(args.faces, work / "clip", ClipConfig())
        for factor in (int(f) for f in args.factors.split(",")):
            src = transcode(clip.clean, work / f"x{factor}.mp4", crf=20, resize=f"iw/{factor}:ih/{factor}:flags=area")
            r = time_restore(src, work, factor, args.repeats)
            rows.append([f"x{factor}", r["size"], r["frames"], r["faces"], f"{r['seconds']:.1f}", f"{r['fps']:.2f}"])
            log.info("x%d: %.2f fps", factor, r["fps"])
    text = "\n".join([common.heading("ffv restore --upscale: speed", common.command_line("bench_upscale.py", argv)), "",
                      "The synthetic clip (80 frames, four faces a frame of 40-300 px at 720p) reduced by the factor "
                      "(area, x264 CRF 20) and restored with that `--upscale`, default options, the shipped networks "
                      "loaded once (start-up not counted); best of the repeats. Faces: face-frames restored.", "",
                      common.markdown_table(["upscale", "input", "frames", "faces", "seconds", "fps"], rows), ""])
    common.publish(text, "upscale_speed" if args.write else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
