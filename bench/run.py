"""`make bench`: run every bench/bench_*.py in turn; each prints its own table.

Speed goals are measured here, never by timed assertions in tests. What the benches
print is also written to bench/RESULTS.md, headed by the machine's core count and its
load average before and after, so every figure quoted in the README comes from a file
anyone can regenerate (`make bench`, or `python bench/run.py dashboard engine` for some).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import platform
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


def main(argv: list[str]) -> int:
    wanted = set(argv)
    scripts = sorted(HERE.glob("bench_*.py"))
    failures = 0
    load_before = _load()
    tee = _Tee(sys.stdout)
    with redirect_stdout(tee):
        for script in scripts:
            name = script.stem.removeprefix("bench_")
            if wanted and name not in wanted:
                continue
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
    header = (
        f"# Benchmark results\n\nWritten by `make bench` ({' '.join(sorted(wanted)) or 'every bench'}) on "
        f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}: {os.cpu_count()} cores, "
        f"load average (1/5/15 min) {load_before} before and {_load()} after, Python {platform.python_version()}.\n"
        "On a shared machine compare the ratios (each measured interleaved) rather than absolute times.\n\n"
    )
    RESULTS.write_text(header + "```\n" + tee.copy.getvalue().strip("\n") + "\n```\n")
    print(f"\nwritten to {RESULTS}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
