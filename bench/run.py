"""`make bench`: run every bench/bench_*.py in turn; each prints its own table.

Speed goals are measured here, never by timed assertions in tests. What the benches
print is also written to bench/RESULTS.md, one section per bench headed by its date, the
machine's core count and its load average before and after, so every figure quoted in the
README comes from a file anyone can regenerate (`make bench`, or `python bench/run.py
dashboard engine` for some: the sections of the benches not run are kept as they were).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import platform
import re
import runpy
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import TextIO

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"


class _Tee(io.TextIOBase):
    """Print as usual and keep a copy for RESULTS.md."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.copy = io.StringIO()

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.copy.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


SECTION = re.compile(r"^## (\S+)\n.*?(?=^## |\Z)", re.S | re.M)


def _sections(text: str) -> dict[str, str]:
    """The per-bench sections of an existing RESULTS.md, by bench name."""
    return {match.group(1): match.group(0).rstrip("\n") + "\n" for match in SECTION.finditer(text)}


def _notes(section: str) -> str:
    """What was written by hand under a section's generated table (before/after A/Bs, profiles):
    kept when the table is regenerated, so a re-run never loses the measurements it cannot redo."""
    parts = section.split("```\n", 2)  # header, the generated table, the rest
    rest = parts[2].strip("\n") if len(parts) == 3 else ""
    return f"\n{rest}\n" if rest else ""


def main(argv: list[str]) -> int:
    wanted = set(argv)
    scripts = sorted(HERE.glob("bench_*.py"))
    failures = 0
    sections = _sections(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
    for script in scripts:
        name = script.stem.removeprefix("bench_")
        if wanted and name not in wanted:
            continue
        load_before = _load()
        tee = _Tee(sys.stdout)
        with redirect_stdout(tee):
            print(f"\n=== {name} ===", flush=True)
            started = time.perf_counter()
            try:
                runpy.run_path(str(script), run_name="__main__")
            except SystemExit as exc:
                if exc.code not in (0, None):
                    failures += 1
            except Exception as exc:
                failures += 1
                print(f"benchmark {name} failed: {exc!r}")
            print(f"({name}: {time.perf_counter() - started:.1f} s)")
        table = tee.copy.getvalue().strip("\n").removeprefix(f"=== {name} ===").strip("\n")
        sections[name] = (
            f"## {name}\n\n{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}: {os.cpu_count()} cores, "
            f"load average (1/5/15 min) {load_before} before and {_load()} after, "
            f"Python {platform.python_version()}.\n\n```\n{table}\n```\n"
        ) + _notes(sections.get(name, ""))
    header = (
        "# Benchmark results\n\nWritten by `make bench` (`python bench/run.py NAME...` rewrites only those sections). "
        "On a shared machine compare the ratios (each measured interleaved) rather than absolute times.\n\n"
    )
    RESULTS.write_text(header + "\n".join(sections[name] for name in sorted(sections)))
    print(f"\nwritten to {RESULTS}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
