"""Helpers shared by the benchmark scripts: paths, the machine, the model, timing, RESULTS.md.

The scripts print markdown tables and, with ``--write``, replace their own section of
``benchmarks/RESULTS.md`` (between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``), so
that each can be re-run alone without touching the others' figures.
"""

from __future__ import annotations

import datetime
import logging
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "RESULTS.md"
SAMPLE = REPO / "samples" / "astronaut.mp4"
SHARED_VIDEOS = Path(os.environ.get("FFV_SHARED_DATA", REPO.parent / "shared" / "data")) / "videos"
CROWD = SHARED_VIDEOS / "crowd_walking_1080p.mp4"
#: Where an untrained generator (same architecture and cost as the shipped one) is saved when no
#: trained weights exist yet; kept out of the repository.
UNTRAINED_MODEL = Path(os.environ.get("TMPDIR", "/tmp")) / "ffv_bench_untrained_generator.keras"

log = logging.getLogger("benchmarks")

if str(REPO) not in sys.path:  # run as ``python benchmarks/x.py`` without installing the package
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(name)s: %(message)s")


def cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine() -> str:
    """One line: CPU model, cores, the ISA extensions that matter to TensorFlow, memory, load."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        model = found.group(1).strip() if found else model
        found = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
        flags = set(found.group(1).split()) if found else set()
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16") if f in flags]
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass
    load = ", load %.1f" % os.getloadavg()[0] if hasattr(os, "getloadavg") else ""
    return f"{model}, {os.cpu_count()} cores ({' '.join(isa) or 'no AVX2'}){mem}{load}"


def today() -> str:
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M")


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """The command that ran ``benchmarks/<script>``, exactly: its arguments as given."""
    return f"python benchmarks/{script} " + shlex.join(sys.argv[1:] if argv is None else argv)


def heading(title: str, command: str) -> str:
    """The head of every RESULTS.md section, one format for all scripts: the title, when and on
    what machine (with its load) the figures were taken, and the command exactly as run."""
    return f"### {title}\n\n{today()}, {machine()}\n\n`{command.strip()}`"


def model_path(requested: str | None = None) -> tuple[Path, str]:
    """(generator path, description): ``requested``, else the shipped model, else an untrained one.

    The untrained generator is built once with ``model.build_generator()`` defaults and saved to
    :data:`UNTRAINED_MODEL`: the same architecture and cost as the trained model, so speed figures
    hold; quality figures do not.
    """
    from framefusion_video.restore.inference import default_model_path

    if requested:
        return Path(requested), f"{requested}"
    shipped = default_model_path()
    if shipped.is_file():
        return shipped, f"{shipped.name} (trained)"
    if not UNTRAINED_MODEL.is_file():
        from framefusion_video.training.model import build_generator

        log.info("no trained generator yet: saving an untrained one to %s", UNTRAINED_MODEL)
        build_generator().save(UNTRAINED_MODEL)
    return UNTRAINED_MODEL, "untrained build_generator() (same cost)"


def repeat_timing(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> tuple[float, float]:
    """(best, median) wall seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs.

    The best run is the figure least disturbed by other processes on a shared machine.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; floats get 3 significant figures."""
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the section ``name`` (between its two markers) set to ``body``.

    The section is appended at the end when ``text`` does not have it yet. Other sections and the
    hand-written text around them are kept as they are.
    """
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return text.rstrip("\n") + ("\n\n" if text.strip() else "") + block + "\n"


def write_section(name: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) section ``name`` of ``RESULTS.md``."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    path.write_text(replace_section(text, name, body), encoding="utf-8")
    log.info("updated section %r of %s", name, path)


def publish(text: str, section: str | None = None, json_path: Path | None = None, data: object = None) -> None:
    """What a benchmark script ends with: its markdown printed, every figure to ``json_path``
    (if given), and the markdown as section ``section`` of RESULTS.md (``--write``; None: not)."""
    import json

    print(text)
    if json_path is not None:
        json_path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    if section is not None:
        write_section(section, text)


def transcode_seconds(src: Path, dst: Path, preset: str = "veryfast", crf: int = 18,
                      frames: int | None = None) -> float:
    """Wall seconds of a plain ``ffmpeg -c:v libx264 -preset P`` transcode of ``src`` (the floor)."""
    from framefusion_video.video.ffmpeg import ffmpeg_exe

    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-y", "-i", str(src)]
    if frames:
        cmd += ["-frames:v", str(frames)]
    cmd += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-c:a", "copy", str(dst)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - start


def cut_clip(src: Path, dst: Path, frames: int) -> Path:
    """The first ``frames`` frames of ``src`` re-encoded losslessly-enough (x264 crf 10) to ``dst``."""
    from framefusion_video.video.ffmpeg import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-y", "-i", str(src),
                    "-frames:v", str(frames), "-c:v", "libx264", "-preset", "veryfast", "-crf", "10",
                    "-c:a", "copy", str(dst)], check=True)
    return dst


def parse_options(pairs: list[str]) -> dict[str, str]:
    """``["strength=0", "colour_match=false"]`` -> ``{"strength": "0", ...}``."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--restore takes FIELD=VALUE, got {pair!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out
