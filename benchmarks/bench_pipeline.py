"""End-to-end fps of ``ffv restore`` and seconds per stage, against a plain ffmpeg transcode.

For each clip (default: the 720p sample with one face and the first frames of the shared 1080p
crowd clip) it measures, on the same frames:

- each stage alone, one after the other, single-threaded: decode (``video.decode.read_frames``),
  detect (face detection + tracking, ``tracking.track_faces`` at ``--detect-every``), align
  (landmark check, similarity transforms + crops), model (the generator in batches), blend (colour
  match, safety review, paste-back), encode (``video.encode.VideoWriter``, libx264 at the restore preset);
- the real pipeline, ``restore.restore_video`` (threads overlap decode, tracking, the model and
  encoding), with the generator already loaded: the steady-state fps;
- ``ffv restore`` as a user runs it (a subprocess: Python, TensorFlow and model start-up included);
- the floor: ``ffmpeg -i clip -c:v libx264 -preset veryfast`` of the same clip.

The stage seconds add up to more than the pipeline's wall time when the threads overlap well.
The stages' CPU seconds (every thread, and the ffmpeg processes) divided by the cores give the
CPU-bound ceiling: the fps a perfectly overlapped pipeline could reach on this machine.

    .venv/bin/python benchmarks/bench_pipeline.py                 # both default clips
    .venv/bin/python benchmarks/bench_pipeline.py CLIP.mp4 --frames 60 --detect-every 2 --write
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

log = logging.getLogger("benchmarks.pipeline")

STAGES = ("decode", "detect", "align", "model", "blend", "encode")


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process (all its threads) and its finished children."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class StageClock:
    """Wall and CPU seconds of each stage, in the order they ran."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def run(self, stage: str, fn):
        cpu, start = _cpu_seconds(), time.perf_counter()
        value = fn()
        self.wall[stage] = time.perf_counter() - start
        self.cpu[stage] = _cpu_seconds() - cpu
        return value


def stage_seconds(clip: Path, restorer, config, frames: int | None = None) -> tuple[StageClock, int, int]:
    """(wall and CPU seconds per stage, frames, faces) for ``clip`` (its first ``frames`` frames if given).

    Each stage runs alone on the output of the previous one; frames are held in memory, so keep
    ``frames`` to a few seconds of 1080p. CPU seconds count every thread and the ffmpeg
    processes: their sum over the cores bounds the fps a perfectly overlapped pipeline can reach.
    """
    import itertools

    from framefusion_video.restore import pipeline
    from framefusion_video.restore.clip import detector_config, tracking_config
    from framefusion_video.restore.cutting import cutter_for
    from framefusion_video.faces.detection import FaceDetector
    from framefusion_video.faces.tracking import track_faces
    from framefusion_video.video.encode import VideoWriter
    from framefusion_video.video.probe import probe
    from framefusion_video.video.decode import read_frames

    info = probe(clip)
    clock = StageClock()

    def decode():
        reader = read_frames(clip, info)
        try:
            return list(itertools.islice(reader, frames) if frames else reader)
        finally:
            reader.close()

    decoded = clock.run("decode", decode)
    with FaceDetector(detector_config(config)) as detector:
        tracked = clock.run("detect", lambda: list(track_faces(decoded, detector, tracking_config(config))))
    cutter = cutter_for(restorer, config.upscale)
    safety = pipeline.safety_config(config)
    aligned = clock.run("align", lambda: [cutter.cut(f, faces, safety) for f, faces in tracked])
    all_crops = [c for cuts in aligned for c in cuts.inputs]
    restorer.restore(all_crops[0][None]) if all_crops else None  # warm-up outside the timing
    restored, left_alone = clock.run("model", lambda: pipeline.restore_in_batches(restorer, all_crops, config.batch_size)
                                     if all_crops else ([], []))
    blending = pipeline.blend_config(config)

    def blend():
        out, start = [], 0
        for index, ((frame, faces), cuts) in enumerate(zip(tracked, aligned)):
            n = len(cuts.inputs)
            mine, alone = restored[start:start + n], left_alone[start:start + n]
            start += n
            item = pipeline.PendingFrame(index, frame, faces, cuts)
            out.append(pipeline.finish_frame(item, mine, alone, config, blending).restored)
        return out

    pasted = clock.run("blend", blend)
    with tempfile.TemporaryDirectory(prefix="ffv-bench-") as tmp:
        def encode():
            with VideoWriter(Path(tmp) / "encoded.mp4", info, crf=config.crf, preset=config.preset) as writer:
                for frame in pasted:
                    writer.write(frame)

        clock.run("encode", encode)
    return clock, len(decoded), len(all_crops)


def pipeline_seconds(clip: Path, out: Path, restorer, config) -> float:
    """Wall seconds of ``restore.restore_video`` with a loaded generator (threads on)."""
    from framefusion_video.restore.clip import restore_video

    result = restore_video(clip, out, config, restorer=restorer)
    return result.seconds


def cli_seconds(clip: Path, out: Path, model: Path, extra: list[str]) -> float:
    """Wall seconds of ``ffv restore clip -o out --model M`` in a fresh process."""
    cmd = [str(Path(sys.executable).with_name("ffv")), "restore", str(clip), "-o", str(out), "--model",
           str(model), "--overwrite", "-q", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=common.REPO)
    return time.perf_counter() - start


def bench_clip(clip: Path, frames: int | None, restorer, config, model: Path, cli_extra: list[str],
               workdir: Path, repeats: int = 1) -> dict:
    """All the figures for one clip, as a dict of the table's columns; each figure is the best
    of ``repeats`` runs (the run least disturbed by other processes)."""
    from framefusion_video.video.probe import probe

    if frames:
        clip = common.cut_clip(clip, workdir / f"{clip.stem}_{frames}f.mp4", frames)
    info = probe(clip)
    clocks = []
    for _ in range(repeats):
        clock, n_frames, n_crops = stage_seconds(clip, restorer, config)
        clocks.append(clock)
    stages = {k: min(c.wall[k] for c in clocks) for k in STAGES}
    cpu = sum(min(c.cpu[k] for c in clocks) for k in STAGES)
    pipeline = min(pipeline_seconds(clip, workdir / f"{clip.stem}_restored.mp4", restorer, config)
                   for _ in range(repeats))
    cli = min(cli_seconds(clip, workdir / f"{clip.stem}_cli.mp4", model, cli_extra) for _ in range(repeats))
    floor = min(common.transcode_seconds(clip, workdir / f"{clip.stem}_x264.mp4") for _ in range(repeats))
    row = {"clip": f"{clip.name} ({info.width}x{info.height})", "frames": n_frames, "faces": n_crops}
    row.update(stages)
    row.update(stage_sum=sum(stages.values()), stage_cpu=cpu, ceiling_fps=n_frames * common.cores() / cpu,
               pipeline_fps=n_frames / pipeline, cli_s=cli,
               cli_fps=n_frames / cli, x264_s=floor, ratio=pipeline / floor, cli_ratio=cli / floor)
    log.info("%s", row)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="*", type=Path, help="default: the 720p sample and the 1080p crowd clip")
    parser.add_argument("--frames", type=int, default=60, help="frames cut from clips other than the sample (0 = all)")
    parser.add_argument("--model", help="generator .tflite or .keras (default: shipped, else untrained)")
    parser.add_argument("--speed", choices=["fast", "default", "quality"], default="default",
                        help="ffv restore's speed preset (--fast / --quality)")
    parser.add_argument("--detect-every", type=int, default=None, help="default: RestoreConfig's")
    parser.add_argument("--batch-size", type=int, default=None, help="default: RestoreConfig's")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement; the best is kept")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    common.setup_logging()
    from dataclasses import replace

    from framefusion_video.restore.config import preset_config
    from framefusion_video.restore.clip import load_default_restorer

    model, description = common.model_path(args.model)
    config = preset_config(args.speed, model_path=str(model))
    cli_extra = [] if args.speed == "default" else [f"--{args.speed}"]
    if args.detect_every:
        config = replace(config, detect_every=args.detect_every)
        cli_extra += ["--detect-every", str(args.detect_every)]
    if args.batch_size:
        config = replace(config, batch_size=args.batch_size)
        cli_extra += ["--batch-size", str(args.batch_size)]
    restorer = load_default_restorer(config)
    clips = args.clips or [common.SAMPLE] + ([common.CROWD] if common.CROWD.is_file() else [])
    rows = []
    with tempfile.TemporaryDirectory(prefix="ffv-bench-") as tmp:
        for clip in clips:
            frames = None if clip == common.SAMPLE or not args.frames else args.frames
            rows.append(bench_clip(clip, frames, restorer, config, model, cli_extra, Path(tmp), args.repeats))
    header = ["clip", "frames", "faces", *(f"{s} s" for s in STAGES), "stages s", "stages CPU s",
              "CPU-bound ceiling fps", "pipeline fps",
              "`ffv restore` s", "`ffv restore` fps", "x264 veryfast s", "pipeline / x264", "`ffv restore` / x264"]
    keys = ["clip", "frames", "faces", *STAGES, "stage_sum", "stage_cpu", "ceiling_fps", "pipeline_fps",
            "cli_s", "cli_fps", "x264_s", "ratio", "cli_ratio"]
    table = common.markdown_table(header, [[r[k] for k in keys] for r in rows])
    title = f"End to end and per stage: {args.speed} preset"
    body = (f"{common.heading(title, common.command_line('bench_pipeline.py', argv))}\n\nModel: {description}; "
            f"speed preset {args.speed}: detect_every={config.detect_every}, batch_size={config.batch_size}, "
            f"x264 preset={config.preset}, crf={config.crf}, "
            f"temporal={getattr(config, 'temporal', 'n/a')}; best of {args.repeats} runs of each "
            f"measurement.\n\n{table}")
    print(body)
    if args.write:
        section = f"pipeline-detect{config.detect_every}" if args.speed == "default" else f"pipeline-{args.speed}"
        common.write_section(section, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
