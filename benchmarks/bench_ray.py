"""How folder throughput scales with Ray workers: ``ffv restore DIR --ray`` with 1, 2, ... local workers.

The first ``--seconds`` of each clip (default: the small clips of ``../shared/data/videos``) are cut
without re-encoding into a temporary folder, copied ``--copies`` times, and restored by
:func:`framefusion_video.restore.distributed.restore_paths_ray` on a local Ray started with ``num_cpus = W``
for each ``W`` of ``--workers``, plus the serial :func:`batch.restore_paths` as a reference.
Each Ray run starts with a warm-up (one short clip per worker: the workers' imports, face detector
and model load), timed apart, then the folder is restored into a fresh output folder. Prints a markdown
table: mode, workers, clips, frames, start-up seconds, restore seconds, frames/s, speed-up over 1
worker.

    .venv/bin/python benchmarks/bench_ray.py                         # shared clips, 1 and 2 workers
    .venv/bin/python benchmarks/bench_ray.py --workers 1 2 4 --model run/generator.keras DIR_OR_CLIPS...

Without trained weights (no ``--model``, no shipped generator in ``framefusion_video/weights/``), an
untrained generator of the default architecture is saved to a temporary file: same cost, not the same faces.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = Path(os.environ.get("FFV_SHARED_DATA", REPO.parent / "shared" / "data")) / "videos"
#: Small shared clips (the 1080p and 720p ones take minutes per second on a small CPU).
DEFAULT_CLIPS = ("closeup_audio-first-stream_410x412.mp4", "real_lowquality_interview_1.mp4",
                 "real_lowquality_headturn_2.mp4", "selfie_glasses_headturn_512.mp4")

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
log = logging.getLogger("benchmarks.bench_ray")


def cut(src: Path, dst: Path, seconds: float) -> Path:
    """The first ``seconds`` of ``src`` (all streams, no re-encoding) written to ``dst``."""
    from framefusion_video.video.ffmpeg import ffmpeg_exe

    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-y", "-i", str(src), "-map", "0",
           "-t", str(seconds), "-c", "copy", str(dst)]
    subprocess.run(cmd, check=True, capture_output=True)
    return dst


def model_path(given: str | None, scratch: Path) -> str:
    """``given``, the shipped weights, or an untrained default generator saved under ``scratch``."""
    from framefusion_video.restore.inference import default_model_path

    if given:
        return given
    if default_model_path().is_file():
        return str(default_model_path())
    from framefusion_video.training.model import build_generator

    path = scratch / "untrained_generator.keras"
    build_generator().save(path)
    log.warning("no trained weights: timing an untrained generator of the same architecture")
    return str(path)


def run_ray(folder: Path, out: Path, warm: Path, config, workers: int) -> tuple[float, float, list]:
    """(start-up s, restore s, results) of one local Ray run with ``workers`` CPUs."""
    import ray

    from framefusion_video.restore.distributed import restore_paths_ray

    started = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING)
    try:
        warm_in = out.parent / f"warm_in_{workers}"
        warm_in.mkdir()
        for i in range(workers):
            shutil.copy(warm, warm_in / f"w{i}.mp4")
        restore_paths_ray([warm_in], out.parent / f"warm_out_{workers}", config, quiet=True)
        startup = time.perf_counter() - started
        started = time.perf_counter()
        results = restore_paths_ray([folder], out, config, quiet=True)
        return startup, time.perf_counter() - started, results
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="*", type=Path, help="clips (default: small shared clips)")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds cut from each clip")
    parser.add_argument("--copies", type=int, default=1, help="copies of each cut clip in the folder")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="local Ray CPU counts")
    parser.add_argument("--model", help="generator weights (default: shipped, else untrained)")
    parser.add_argument("--no-serial", action="store_true", help="skip the serial reference run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")

    from framefusion_video.restore.batch import restore_paths
    from framefusion_video.restore.config import RestoreConfig

    clips = args.clips or [SHARED_VIDEOS / name for name in DEFAULT_CLIPS if (SHARED_VIDEOS / name).is_file()]
    if not clips:
        parser.error(f"no clips given and none found in {SHARED_VIDEOS}")
    with tempfile.TemporaryDirectory(prefix="ffv_bench_ray_") as tmp:
        scratch = Path(tmp)
        folder = scratch / "in"
        folder.mkdir()
        for clip in clips:
            for k in range(args.copies):
                cut(clip, folder / f"{clip.stem}_{k}.mp4", args.seconds)
        warm = cut(clips[0], scratch / "warm.mp4", 0.3)
        config = RestoreConfig(model_path=model_path(args.model, scratch))
        n_clips = len(list(folder.iterdir()))
        rows = []
        if not args.no_serial:
            started = time.perf_counter()
            results = restore_paths([folder], scratch / "out_serial", config, quiet=True)
            seconds = time.perf_counter() - started
            rows.append(("serial", 1, results, 0.0, seconds))
        for workers in args.workers:
            startup, seconds, results = run_ray(folder, scratch / f"out_ray_{workers}", warm, config, workers)
            rows.append(("ray", workers, results, startup, seconds))

    base = next((r for r in rows if r[0] == "ray" and r[1] == 1), None)
    base_fps = None
    print(f"{n_clips} clips of {args.seconds:g} s; {os.cpu_count()} cores; load average "
          f"{os.getloadavg()[0]:.1f} at the end\n")
    print("| mode | workers | clips done | frames | start-up s | restore s | frames/s | speed-up vs 1 worker |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, workers, results, startup, seconds in rows:
        frames = sum(r.frames for r in results if r.status == "done")
        fps = frames / max(seconds, 1e-9)
        if base is not None and (mode, workers) == ("ray", 1):
            base_fps = fps
        speedup = f"{fps / base_fps:.2f}x" if base_fps and mode == "ray" else "-"
        done = sum(r.status == "done" for r in results)
        print(f"| {mode} | {workers} | {done}/{len(results)} | {frames} | {startup:.1f} | {seconds:.1f} | "
              f"{fps:.2f} | {speedup} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
