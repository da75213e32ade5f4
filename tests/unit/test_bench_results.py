"""bench/run.py rewrites a bench's generated table and keeps what was written by hand under it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

RUN = Path(__file__).resolve().parents[2] / "bench" / "run.py"


def load_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_regenerated_section_keeps_the_notes_written_under_its_table() -> None:
    run = load_run()
    text = (
        "# Benchmark results\n\n"
        "## engine\n\nold date line\n\n```\nold table\n```\n\n"
        "### an A/B by hand\n\n```\nbefore 0.80  after 0.47\n```\n\nWhere the time went.\n"
        "## rbac\n\ndate\n\n```\nrbac table\n```\n"
    )
    sections = run._sections(text)
    notes = run._notes(sections["engine"])
    assert "### an A/B by hand" in notes and "before 0.80  after 0.47" in notes and "Where the time went." in notes
    assert "old table" not in notes and "rbac" not in notes
    assert run._notes(sections["rbac"]) == ""
