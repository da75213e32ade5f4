"""DataStore and readers: format detection, corrupt files refused naming the bar, merges, concurrency."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from kubetrader.data import DataStore, data_hash, load_bars
from kubetrader.data.bundled import BUNDLED, bundled_dir
from kubetrader.data.readers import detect_format, infer_timeframe, read_bars
from kubetrader.errors import DataError
from tests.helpers import ROOT, wait_until

YAHOO_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"
GOOD_ROWS = [
    "2001-01-02,10.0,11.0,9.5,10.5,10.5,1000",
    "2001-01-03,10.5,11.5,10.0,11.0,11.0,1200",
    "2001-01-04,11.0,11.2,10.1,10.2,10.2,900",
    "2001-01-05,10.2,10.8,10.0,10.6,10.6,1100",
]


def _yahoo(tmp_path: Path, rows: list[str], header: str = YAHOO_HEADER) -> Path:
    path = tmp_path / "bars.csv"
    path.write_text(header + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(("symbol", "timeframe"), sorted(BUNDLED))
def test_bundled_file_format_and_timeframe_are_detected(symbol: str, timeframe: str) -> None:
    entry = BUNDLED[(symbol, timeframe)]
    path = bundled_dir() / entry.file
    frame, fmt = read_bars(path)
    assert fmt == entry.fmt
    assert infer_timeframe(pd.DatetimeIndex(frame.index)) == timeframe


def test_bundled_dir_is_the_repository_examples_data() -> None:
    assert bundled_dir().resolve() == (ROOT / "examples" / "data").resolve()


def test_unrecognized_header_is_refused() -> None:
    with pytest.raises(DataError, match="unrecognized CSV header"):
        detect_format("when,price,size")


def test_high_below_low_is_refused_naming_bar_and_column(data_store: DataStore, tmp_path: Path) -> None:
    rows = [*GOOD_ROWS]
    rows[2] = "2001-01-04,11.0,9.0,10.1,10.2,10.2,900"
    with pytest.raises(DataError) as caught:
        data_store.import_file(_yahoo(tmp_path, rows), "BAD")
    message = str(caught.value)
    assert "bar 2001-01-04 column high: high is below low" in message
    assert data_store.list() == [], "nothing is stored when the import is refused"


def test_duplicate_date_is_refused_naming_the_bar(data_store: DataStore, tmp_path: Path) -> None:
    rows = [*GOOD_ROWS[:3], GOOD_ROWS[2], GOOD_ROWS[3]]
    with pytest.raises(DataError, match="bar 2001-01-04: timestamp appears twice"):
        data_store.import_file(_yahoo(tmp_path, rows), "BAD")


def test_negative_price_is_refused_naming_bar_and_column(data_store: DataStore, tmp_path: Path) -> None:
    rows = [*GOOD_ROWS]
    rows[1] = "2001-01-03,10.5,11.5,-10.0,11.0,11.0,1200"
    with pytest.raises(DataError, match=r"bar 2001-01-03 column low: price is zero or negative \(-10.0\)"):
        data_store.import_file(_yahoo(tmp_path, rows), "BAD")


def test_non_numeric_price_is_refused_naming_bar_and_column(data_store: DataStore, tmp_path: Path) -> None:
    rows = [*GOOD_ROWS]
    rows[3] = "2001-01-05,null,null,null,null,null,null"
    with pytest.raises(DataError, match="bar 2001-01-05 column open: price is missing or not a number"):
        data_store.import_file(_yahoo(tmp_path, rows), "BAD")


def test_missing_column_is_refused_naming_the_column(data_store: DataStore, tmp_path: Path) -> None:
    header = "Date,Open,High,Close,Adj Close,Volume\n"
    rows = [",".join(r.split(",")[:3] + r.split(",")[4:]) for r in GOOD_ROWS]
    with pytest.raises(DataError, match="missing column 'Low'"):
        data_store.import_file(_yahoo(tmp_path, rows, header), "BAD", fmt="yahoo")


def test_unparseable_date_names_the_line(data_store: DataStore, tmp_path: Path) -> None:
    rows = [*GOOD_ROWS]
    rows[1] = "2001-13-45,10.5,11.5,10.0,11.0,11.0,1200"
    with pytest.raises(DataError, match=r"line 3: cannot parse timestamp '2001-13-45'"):
        data_store.import_file(_yahoo(tmp_path, rows), "BAD")


def test_close_outside_range_and_order_errors_reported_together(tmp_path: Path) -> None:
    from kubetrader.data.validation import validate_frame

    rows = [GOOD_ROWS[1], GOOD_ROWS[0], "2001-01-04,11.0,11.2,10.1,12.0,12.0,0", GOOD_ROWS[3]]
    frame, _ = read_bars(_yahoo(tmp_path, rows))
    report = validate_frame(frame, symbol="BAD", timeframe="1d")
    checks = {(i.check, i.severity) for i in report.issues}
    assert ("non_monotonic", "error") in checks
    assert ("close_outside_range", "error") in checks
    assert ("zero_volume", "warning") in checks
    assert not report.valid


def test_relaxed_import_stores_sorted_unique_bars_and_validate_still_reports(
    data_store: DataStore, tmp_path: Path
) -> None:
    rows = [GOOD_ROWS[1], GOOD_ROWS[0], GOOD_ROWS[2], GOOD_ROWS[2], GOOD_ROWS[3]]
    path = _yahoo(tmp_path, [*rows[:3], "2001-01-04,11.0,9.0,10.1,10.2,10.2,900", rows[4]])
    report = data_store.import_file(path, "LAX", strict=False)
    assert {i.check for i in report.warnings} >= {"high_below_low"}
    frame = load_bars("LAX", store=data_store, adjust=False)
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    assert len(frame) == 4
    # the later duplicate wins and nothing is repaired
    assert frame.at[pd.Timestamp("2001-01-04", tz="UTC"), "high"] == 9.0
    stored = data_store.validate("LAX", "1d")
    assert {i.check for i in stored.errors} == {"high_below_low", "open_outside_range", "close_outside_range"}


def test_merging_the_same_frame_twice_adds_nothing_and_keeps_the_file(data_store: DataStore) -> None:
    first = data_store.import_file(bundled_dir() / "orcl-1995-2014.txt", "ORCL")
    assert (first.added, first.bars_after) == (5036, 5036)
    path = data_store.path("ORCL", "1d")
    before = path.stat().st_mtime_ns, path.stat().st_ino
    frame = data_store.read("ORCL", "1d")
    again = data_store.merge("ORCL", "1d", frame, source="again")
    assert (again.added, again.replaced, again.unchanged, again.bars_after) == (0, 0, 5036, 5036)
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before


def test_incremental_merge_of_two_halves_equals_the_whole(data_store: DataStore, bundled_store: DataStore) -> None:
    whole = bundled_store.read("ORCL", "1d")
    old, new = whole.loc[:"2005-06-30"], whole.loc["2005-01-01":]  # overlapping by half a year
    data_store.merge("ORCL", "1d", old, source="first")
    report = data_store.merge("ORCL", "1d", new, source="second")
    assert report.bars_before == len(old)
    assert report.added == len(whole) - len(old)
    assert report.unchanged == len(old.loc["2005-01-01":])
    assert report.replaced == 0
    merged = data_store.read("ORCL", "1d")
    pd.testing.assert_frame_equal(merged, whole)
    assert data_hash(merged) == data_hash(whole)
    assert data_store.list()[0].source == "first, second"


def test_overlapping_bar_that_differs_is_reported_and_newer_source_wins(
    data_store: DataStore, bundled_store: DataStore
) -> None:
    whole = bundled_store.read("ORCL", "1d")
    data_store.merge("ORCL", "1d", whole, source="vendor-a")
    corrected = whole.loc["2014-12-01":].copy()
    corrected.loc["2014-12-31", "close"] = 45.0
    corrected.loc["2014-12-31", "adj_close"] = 42.33
    report = data_store.merge("ORCL", "1d", corrected, source="vendor-b")
    assert report.replaced == 1
    assert report.added == 0
    assert [(c.bar.date().isoformat(), c.columns) for c in report.conflicts] == [("2014-12-31", ["close", "adj_close"])]
    assert data_store.read("ORCL", "1d").at[pd.Timestamp("2014-12-31", tz="UTC"), "close"] == 45.0


def test_merge_that_leaves_a_gap_is_refused_unless_relaxed(data_store: DataStore, bundled_store: DataStore) -> None:
    whole = bundled_store.read("ORCL", "1d")
    data_store.merge("ORCL", "1d", whole.loc[:"2000-12-31"], source="old")
    with pytest.raises(DataError, match=r"bar 2002-01-02: \d+ sessions missing since 2000-12-29"):
        data_store.merge("ORCL", "1d", whole.loc["2002-01-01":], source="later")
    report = data_store.merge("ORCL", "1d", whole.loc["2002-01-01":], source="later", strict=False)
    assert [i.check for i in report.warnings if i.severity == "error"] == ["gap"]


def test_adjusted_and_unadjusted_bars_are_not_merged(data_store: DataStore, bundled_store: DataStore) -> None:
    whole = bundled_store.read("ORCL", "1d")
    data_store.merge("ORCL", "1d", whole, source="yahoo")
    with pytest.raises(DataError, match="Adj Close"):
        data_store.merge("ORCL", "1d", whole.drop(columns=["adj_close"]).iloc[-5:], source="other")


def test_two_processes_registering_the_same_data_at_once_leave_one_whole_file(tmp_path: Path) -> None:
    root = tmp_path / "store"
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from kubetrader.data import DataStore, load_bars
        flag = Path(sys.argv[2])
        Path(sys.argv[3]).touch()
        deadline = time.monotonic() + 60
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        print(len(load_bars("ORCL", store=DataStore(sys.argv[1]))))
        """
    )
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(root), str(go), str(tmp_path / f"ready-{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        wait_until(lambda: all((tmp_path / f"ready-{i}").exists() for i in range(2)), timeout=60, what="both ready")
        go.touch()
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == ["5036", "5036"]
    store = DataStore(root)
    assert [(r.symbol, r.bars) for r in store.list()] == [("ORCL", 5036)]
    leftovers = [p.name for p in root.rglob("*.tmp")]
    assert leftovers == []
    assert store.validate("ORCL", "1d").valid
