"""Peak memory of ``ffv restore`` on a long clip: the sample looped to ``--minutes`` minutes.

The long clip is made with ``ffmpeg -stream_loop`` (stream copy, seconds to make) in the temporary
folder, never in the repository. ``ffv restore`` runs in a subprocess; a sampler reads the resident
memory (``/proc/PID/status`` VmRSS) of it and of its children (the ffmpeg decoder and encoder)
every ``--interval`` seconds. Printed: peak RSS of the Python process, peak of the whole process
tree, and the Python process's RSS at each quarter of the run (flat = memory does not grow with
the clip's length; the target is 1.5 GB whatever the length).

    .venv/bin/python benchmarks/bench_memory.py                 # 10 minutes: long on 2 cores
    .venv/bin/python benchmarks/bench_memory.py --minutes 1 --write
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import common

log = logging.getLogger("benchmarks.memory")


def looped_clip(src: Path, dst: Path, minutes: float) -> Path:
    """``src`` repeated (stream copy) until it lasts ``minutes`` minutes, written to ``dst``."""
    from framefusion_video.video.ffmpeg import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-y", "-stream_loop", "-1",
                    "-i", str(src), "-t", str(60.0 * minutes), "-c", "copy", str(dst)], check=True)
    return dst


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` in bytes (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """Process ids of the children of ``pid``, recursively (Linux /proc)."""
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found.append(child)
            stack.append(child)
    return found


def run_sampled(cmd: list[str], interval: float) -> tuple[float, list[tuple[float, int, int]]]:
    """Run ``cmd``; (wall seconds, [(t, own RSS, tree RSS), ...] sampled every ``interval`` s)."""
    samples: list[tuple[float, int, int]] = []
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=common.REPO)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(interval):
            own = rss_bytes(proc.pid)
            if own == 0:  # exited (or exiting): nothing left to measure
                continue
            tree = own + sum(rss_bytes(p) for p in descendants(proc.pid))
            samples.append((time.perf_counter() - start, own, tree))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        rc = proc.wait()
    finally:
        done.set()
        sampler.join()
    if rc != 0:
        raise RuntimeError(f"{cmd[0]} exited with status {rc}")
    return time.perf_counter() - start, samples


def quarter_rss(samples: list[tuple[float, int, int]]) -> list[int]:
    """Own RSS at 25, 50, 75 and 100 % of the run (the last sample before each point)."""
    if not samples:
        return []
    end = samples[-1][0]
    out = []
    for q in (0.25, 0.5, 0.75, 1.0):
        before = [s for s in samples if s[0] <= q * end] or samples[:1]
        out.append(before[-1][1])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=common.SAMPLE, help="clip to loop (default: the sample)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--model", help="generator .keras (default: shipped, else untrained)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between RSS samples")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="more ffv restore options, after --")
    args = parser.parse_args(argv)
    common.setup_logging()
    model, description = common.model_path(args.model)
    extra = [a for a in args.extra if a != "--"]
    mib = 2.0**20
    with tempfile.TemporaryDirectory(prefix="ffv-bench-memory-") as tmp:
        long_clip = looped_clip(args.clip, Path(tmp) / f"{args.clip.stem}_{args.minutes:g}min.mp4", args.minutes)
        from framefusion_video.video.probe import probe

        frames = probe(long_clip).n_frames or 0
        cmd = [str(Path(sys.executable).with_name("ffv")), "restore", str(long_clip), "-o",
               str(Path(tmp) / "restored.mp4"), "--model", str(model), "-q", *extra]
        log.info("running %s", " ".join(cmd))
        seconds, samples = run_sampled(cmd, args.interval)
    own_peak = max((s[1] for s in samples), default=0)
    tree_peak = max((s[2] for s in samples), default=0)
    quarters = " / ".join(f"{v / mib:.0f}" for v in quarter_rss(samples))
    table = common.markdown_table(
        ["clip", "frames", "seconds", "fps", "peak RSS ffv (MiB)", "peak RSS ffv + ffmpeg (MiB)",
         "ffv RSS at 25/50/75/100 % (MiB)"],
        [[f"{args.clip.name} looped to {args.minutes:g} min", frames, round(seconds, 1),
          round(frames / max(seconds, 1e-9), 2), round(own_peak / mib), round(tree_peak / mib), quarters]])
    body = (f"{common.heading('Peak memory on a long clip', common.command_line('bench_memory.py', argv))}\n\n"
            f"Model: {description}; options: {' '.join(extra) or 'defaults'}.\n\n{table}")
    print(body)
    if args.write:
        common.write_section("memory", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
