"""Smoke tests of the benchmark helpers that write RESULTS.md (the benchmarks themselves are not tests)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def common():
    spec = importlib.util.spec_from_file_location("bench_common", BENCHMARKS / "common.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_common", module)
    spec.loader.exec_module(module)
    return module


def _load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` (which imports its sibling ``common``) as a module."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def test_replace_section_appends_then_replaces_only_its_own_section(common) -> None:
    text = "# Results\n\nHand-written notes.\n"
    text = common.replace_section(text, "model", "table A")
    text = common.replace_section(text, "memory", "table M")
    assert text.startswith("# Results\n\nHand-written notes.\n")
    updated = common.replace_section(text, "model", "table B\nwith $1 and \\1 in it")
    assert "table A" not in updated and "table B\nwith $1 and \\1 in it" in updated
    assert "table M" in updated and updated.count("<!-- bench:model -->") == 1
    # The replaced section stays where it was: before the memory section.
    assert updated.index("table B") < updated.index("table M")


def test_markdown_table_has_one_row_per_item(common) -> None:
    table = common.markdown_table(["a", "b"], [[1, 2.34567], ["x", 12345.6]])
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0] == "| a | b |"
    assert "2.35" in lines[2] and "12346" in lines[3]


def test_quarter_rss_picks_the_last_sample_before_each_quarter() -> None:
    module = _load_benchmark("bench_memory")
    samples = [(t, 100 + t, 0) for t in range(0, 9)]  # t = 0..8 s, own RSS grows with t
    assert module.quarter_rss(samples) == [102, 104, 106, 108]
    assert module.quarter_rss([]) == []


def test_stage_timing_runs_every_stage_on_a_face_clip(tmp_path) -> None:
    # The stage benchmark reaches into the pipeline's parts; this keeps it in step with them.
    from test_restore import N_FRAMES, FakeRestorer, astronaut_frames, write_clip

    from framefusion_video.restore.config import RestoreConfig

    bench_pipeline = _load_benchmark("bench_pipeline")
    clip = write_clip(tmp_path / "face.mp4", astronaut_frames())
    restorer = FakeRestorer()
    clock, frames, crops = bench_pipeline.stage_seconds(clip, restorer, RestoreConfig())
    assert list(clock.wall) == list(clock.cpu) == list(bench_pipeline.STAGES)
    assert all(v > 0 for v in clock.wall.values()) and sum(clock.cpu.values()) > 0
    assert frames == N_FRAMES and crops >= N_FRAMES - 1
    assert sum(restorer.batches) == crops + 1  # every crop once, plus the warm-up crop


def test_every_results_section_is_preceded_by_the_command_that_writes_it() -> None:
    # RESULTS.md holds only what its scripts regenerate: before each section, the command that
    # writes it, naming a script that exists and only options that script defines.
    text = (BENCHMARKS / "RESULTS.md").read_text(encoding="utf-8")
    sections = list(re.finditer(r"<!-- bench:(\S+) -->.*?<!-- /bench:\1 -->", text, re.S))
    assert sections
    end = 0
    for section in sections:
        before = text[end:section.start()]
        commands = re.findall(r"^    \.venv/bin/python (benchmarks/\S+\.py)(.*)$", before, re.M)
        assert len(commands) == 1, f"section {section.group(1)}: {len(commands)} commands before it"
        script, options = commands[0]
        source = (BENCHMARKS.parent / script).read_text(encoding="utf-8")
        assert "--write" in options.split(), section.group(1)
        for option in re.findall(r"(?<!\S)(--[a-z][a-z-]*)", options):
            assert f'"{option}"' in source, f"{script} has no option {option}"
        end = section.end()


def test_every_results_section_has_the_same_heading_and_records_the_command_above_it() -> None:
    # common.heading: "### title", the date and machine, then the command exactly as run (sections
    # written before the scripts recorded their command lack that line).
    text = (BENCHMARKS / "RESULTS.md").read_text(encoding="utf-8")
    end = 0
    for section in re.finditer(r"<!-- bench:(\S+) -->\n(.*?)<!-- /bench:\1 -->", text, re.S):
        name, body = section.group(1), section.group(2)
        lines = body.split("\n")
        assert lines[0].startswith("### ") and lines[1] == "", name
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d, .*, load [\d.]+", lines[2]), name
        command = re.findall(r"^    \.venv/bin/(python benchmarks/.*)$", text[end:section.start()], re.M)[0]
        if lines[4].startswith("`"):
            assert lines[4] == f"`{command}`", name
        end = section.end()
