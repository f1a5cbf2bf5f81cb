"""Run every speed benchmark (``make bench``) and update ``benchmarks/RESULTS.md``.

Each step is a separate script run in its own process (so that one's memory and threads do not
disturb the next), in order: generator throughput, end to end and per stage (the default
options, then the --fast and --quality presets), peak memory on a looped clip. Pass ``--quick`` for a short memory run (1 minute instead
of 10) and ``--no-write`` to print without touching RESULTS.md. The temporal-stability benchmark
(``benchmarks/flicker.py``) is separate: it measures quality, not speed.

    .venv/bin/python benchmarks/run_all.py [--quick] [--model PATH] [--no-write]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def steps(model: str | None, quick: bool, write: bool) -> list[list[str]]:
    """The command lines (script and arguments) run_all runs, in order."""
    common = (["--model", model] if model else []) + (["--write"] if write else [])
    return [
        ["bench_model.py", *common],
        ["bench_pipeline.py", *common],
        ["bench_pipeline.py", "--speed", "fast", *common],
        ["bench_pipeline.py", "--speed", "quality", *common],
        ["bench_memory.py", "--minutes", "1" if quick else "10", *common],
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="generator .tflite or .keras (default: shipped, else untrained)")
    parser.add_argument("--quick", action="store_true", help="1-minute memory run instead of 10")
    parser.add_argument("--no-write", dest="write", action="store_false", help="do not update RESULTS.md")
    args = parser.parse_args(argv)
    failed = []
    for step in steps(args.model, args.quick, args.write):
        print(f"== {' '.join(step)}", flush=True)
        start = time.perf_counter()
        rc = subprocess.run([sys.executable, str(HERE / step[0]), *step[1:]]).returncode
        print(f"== {step[0]}: exit {rc} in {time.perf_counter() - start:.0f} s", flush=True)
        if rc:
            failed.append(step[0])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
