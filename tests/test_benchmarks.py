"""Smoke tests of the benchmark helpers that write RESULTS.md (the benchmarks themselves are not tests)."""

from __future__ import annotations

import importlib.util
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
    spec = importlib.util.spec_from_file_location("bench_memory", BENCHMARKS / "bench_memory.py")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    samples = [(t, 100 + t, 0) for t in range(0, 9)]  # t = 0..8 s, own RSS grows with t
    assert module.quarter_rss(samples) == [102, 104, 106, 108]
    assert module.quarter_rss([]) == []
