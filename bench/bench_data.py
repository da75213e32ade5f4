"""Speed of kubetrader.data on the bundled ORCL daily bars (5036 bars, 1995-2014).

Prints medians against goals: the first registration of a bundled file (read
CSV, validate, write Parquet), a load from the store in a fresh process cache
(Parquet read + adjustment), a load from the per-process cache (what a worker
pays per trial), validation alone, data_hash, and plain pandas.read_csv of the
same file for scale.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from kubetrader.data import DataStore, data_hash, load_bars
from kubetrader.data.bundled import bundled_dir, register_bundled
from kubetrader.data.loader import clear_cache
from kubetrader.data.validation import validate_frame


def _median_ms(action: Callable[[], object], repeats: int, before: Callable[[], object] = lambda: None) -> float:
    times = []
    for _ in range(repeats):
        before()
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000.0


def main() -> None:
    source = bundled_dir() / "orcl-1995-2014.txt"
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1_000_000))

        def register() -> None:
            register_bundled(DataStore(Path(tmp) / f"r{next(counter)}"), "ORCL", "1d")

        store = DataStore(Path(tmp) / "main")
        load_bars("ORCL", store=store)  # register once, warm imports
        frame = load_bars("ORCL", store=store)
        rows = [
            ("register bundled ORCL (CSV -> validate -> Parquet)", _median_ms(register, 7), 100.0),
            (
                "load_bars ORCL, cold cache (Parquet read + adjust)",
                _median_ms(lambda: load_bars("ORCL", store=store), 21, before=clear_cache),
                10.0,
            ),
            ("load_bars ORCL, warm cache (copy)", _median_ms(lambda: load_bars("ORCL", store=store), 201), 1.0),
            ("validate_frame ORCL", _median_ms(lambda: validate_frame(frame, symbol="ORCL", timeframe="1d"), 51), 10.0),
            ("data_hash ORCL", _median_ms(lambda: data_hash(frame), 201), 1.0),
            ("pandas.read_csv of the same file (reference)", _median_ms(lambda: pd.read_csv(source), 21), None),
        ]
    print(f"{'operation':<55} {'median ms':>10} {'goal ms':>8}")
    for name, measured, goal in rows:
        goal_text = f"{goal:>8.1f}" if goal is not None else f"{'-':>8}"
        verdict = "" if goal is None else ("  ok" if measured <= goal else "  SLOW")
        print(f"{name:<55} {measured:>10.2f} {goal_text}{verdict}")


if __name__ == "__main__":
    main()
