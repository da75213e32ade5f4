"""load_bars over the real bundled files: counts, dates, shape, adjustment, errors, cache."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from kubetrader.data import COLUMNS, DataStore, data_hash, load_bars
from kubetrader.data.loader import cache_size, clear_cache
from kubetrader.errors import DataError, SpecError

# symbol, timeframe, bars, first bar, last bar (counted from the files by hand: lines - header)
BUNDLED_EXPECTED = [
    ("ORCL", "1d", 5036, "1995-01-03", "2014-12-31"),
    ("NVDA", "1d", 4012, "1999-01-22", "2014-12-31"),
    ("YHOO", "1d", 4965, "1996-04-12", "2015-12-31"),
    ("IDX2006", "1d", 255, "2006-01-02", "2006-12-29"),
    ("IDX2006", "5m", 2142, "2006-01-02 09:05", "2006-01-30 17:30"),
    ("GOOG", "1d", 2148, "2004-08-19", "2013-03-01"),
    ("EURUSD", "1h", 5000, "2017-04-19 09:00", "2018-02-07 15:00"),
]


@pytest.mark.parametrize("case", BUNDLED_EXPECTED, ids=[f"{c[0]}-{c[1]}" for c in BUNDLED_EXPECTED])
def test_bundled_data_set_has_exact_bar_count_and_dates(
    bundled_store: DataStore, case: tuple[str, str, int, str, str]
) -> None:
    symbol, timeframe, bars, first, last = case
    frame = load_bars(symbol, timeframe=timeframe, store=bundled_store)
    assert len(frame) == bars
    assert frame.index[0] == pd.Timestamp(first, tz="UTC")
    assert frame.index[-1] == pd.Timestamp(last, tz="UTC")


def test_loaded_frame_has_the_normalized_shape(bundled_store: DataStore) -> None:
    frame = load_bars("ORCL", store=bundled_store)
    assert list(frame.columns) == list(COLUMNS)
    assert all(str(t) == "float64" for t in frame.dtypes)
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert str(frame.index.tz) == "UTC"
    assert frame.index.name == "datetime"
    assert frame.index.is_monotonic_increasing
    assert frame.index.is_unique
    assert (frame.index == frame.index.normalize()).all(), "daily bars are stamped at 00:00 UTC"


def test_adjusted_orcl_bar_matches_hand_computed_values(bundled_store: DataStore) -> None:
    # orcl-1995-2014.txt: 1995-01-03,2.179012,2.191358,2.117284,2.117284,1.883304,36301200
    ratio = 1.883304 / 2.117284
    bar = load_bars("ORCL", start=dt.date(1995, 1, 3), end=dt.date(1995, 1, 3), store=bundled_store).iloc[0]
    assert bar["open"] == pytest.approx(2.179012 * ratio, rel=1e-12)
    assert bar["high"] == pytest.approx(2.191358 * ratio, rel=1e-12)
    assert bar["low"] == pytest.approx(2.117284 * ratio, rel=1e-12)
    assert bar["close"] == pytest.approx(1.883304, rel=1e-12)
    assert bar["volume"] == 36301200.0
    raw = load_bars("ORCL", end=dt.date(1995, 1, 3), adjust=False, store=bundled_store).iloc[0]
    assert raw["close"] == 2.117284
    assert raw["open"] == 2.179012


def test_adjust_leaves_sources_without_adj_close_unchanged(bundled_store: DataStore) -> None:
    adjusted = load_bars("GOOG", store=bundled_store)
    raw = load_bars("GOOG", adjust=False, store=bundled_store)
    pd.testing.assert_frame_equal(adjusted, raw)
    assert adjusted.iloc[0].tolist() == [100.0, 104.06, 95.96, 100.34, 22351900.0]


def test_start_and_end_are_inclusive_session_dates(bundled_store: DataStore) -> None:
    frame = load_bars("ORCL", start=dt.date(2014, 12, 29), end=dt.date(2014, 12, 31), store=bundled_store)
    assert [d.strftime("%Y-%m-%d") for d in frame.index] == ["2014-12-29", "2014-12-30", "2014-12-31"]
    intraday = load_bars(
        "IDX2006", timeframe="5m", start=dt.date(2006, 1, 30), end=dt.date(2006, 1, 30), store=bundled_store
    )
    assert intraday.index[0] == pd.Timestamp("2006-01-30 09:05", tz="UTC")
    assert intraday.index[-1] == pd.Timestamp("2006-01-30 17:30", tz="UTC")


def test_unknown_symbol_names_symbol_timeframe_and_suggests(bundled_store: DataStore) -> None:
    with pytest.raises(DataError) as caught:
        load_bars("ORCLE", store=bundled_store)
    message = str(caught.value)
    assert "'ORCLE'" in message
    assert "1d" in message
    assert "did you mean 'ORCL'" in message
    assert "NVDA" in message and "YHOO" in message


def test_known_symbol_without_the_timeframe_lists_its_timeframes(bundled_store: DataStore) -> None:
    with pytest.raises(DataError, match=r"no 1h bars for symbol 'ORCL'; it has: 1d"):
        load_bars("ORCL", timeframe="1h", store=bundled_store)


def test_range_without_bars_names_requested_and_available_range(bundled_store: DataStore) -> None:
    with pytest.raises(DataError) as caught:
        load_bars("ORCL", start=dt.date(2020, 1, 1), end=dt.date(2020, 12, 31), store=bundled_store)
    message = str(caught.value)
    assert "2020-01-01" in message and "2020-12-31" in message
    assert "1995-01-03" in message and "2014-12-31" in message


def test_end_before_start_is_a_spec_error(bundled_store: DataStore) -> None:
    with pytest.raises(SpecError, match="end"):
        load_bars("ORCL", start=dt.date(2010, 1, 2), end=dt.date(2010, 1, 1), store=bundled_store)


def test_unknown_timeframe_is_a_spec_error(bundled_store: DataStore) -> None:
    with pytest.raises(SpecError, match="timeframe"):
        load_bars("ORCL", timeframe="2d", store=bundled_store)


def test_bundled_symbol_is_registered_lazily_in_an_empty_store(data_store: DataStore) -> None:
    assert data_store.list() == []
    load_bars("NVDA", store=data_store)
    rows = data_store.list()
    assert [(r.symbol, r.timeframe, r.bars, r.source) for r in rows] == [("NVDA", "1d", 4012, "nvda-1999-2014.txt")]
    assert (data_store.raw_dir / "NVDA" / "nvda-1999-2014.txt").is_file()


def test_second_load_comes_from_cache_without_reading_disk(
    data_store: DataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_bars("ORCL", store=data_store)
    assert cache_size() == 1

    def no_disk(*args: object, **kwargs: object) -> None:
        raise AssertionError("the store was read again")

    monkeypatch.setattr(DataStore, "read", no_disk)
    second = load_bars("ORCL", store=data_store)
    pd.testing.assert_frame_equal(first, second)


def test_cache_notices_a_rewritten_file(data_store: DataStore) -> None:
    before = load_bars("ORCL", store=data_store, adjust=False)
    extra = before.iloc[-1:].copy()
    extra.index = pd.DatetimeIndex([pd.Timestamp("2015-01-02", tz="UTC")], name="datetime")
    stored = data_store.read("ORCL", "1d")
    extra["adj_close"] = stored["adj_close"].iloc[-1]
    data_store.merge("ORCL", "1d", extra, source="test")
    after = load_bars("ORCL", store=data_store, adjust=False)
    assert len(after) == len(before) + 1
    assert after.index[-1] == pd.Timestamp("2015-01-02", tz="UTC")


def test_caller_cannot_mutate_the_cached_frame(data_store: DataStore) -> None:
    first = load_bars("ORCL", store=data_store)
    original = first["close"].iloc[0]
    first.loc[first.index[0], "close"] = -1.0
    first["close"] *= 2
    again = load_bars("ORCL", store=data_store)
    assert again["close"].iloc[0] == original


def test_data_hash_is_stable_and_sensitive_to_one_value(bundled_store: DataStore) -> None:
    frame = load_bars("ORCL", store=bundled_store)
    clear_cache()
    reloaded = load_bars("ORCL", store=bundled_store)
    assert data_hash(frame) == data_hash(reloaded)
    assert data_hash(frame) == data_hash(frame[list(reversed(frame.columns))])
    changed = frame.copy()
    closes = changed["close"].to_numpy(copy=True)
    closes[100] += 0.01
    changed["close"] = closes
    assert data_hash(changed) != data_hash(frame)
    assert data_hash(frame) != data_hash(frame.iloc[1:])
    assert len(data_hash(frame)) == 64


def test_lower_case_symbol_suggests_the_ticker(bundled_store: DataStore) -> None:
    with pytest.raises(DataError, match=r"unknown symbol 'orcl' for timeframe 1d \(did you mean 'ORCL'\?\)"):
        load_bars("orcl", store=bundled_store)


def test_store_root_and_bundled_dir_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    # a bundled directory holding only a 3-bar GOOG file: proves the loader reads from there
    (bundled / "goog-2004-2013.csv").write_text(
        ",Open,High,Low,Close,Volume\n"
        "2004-08-19,100,104.06,95.96,100.34,22351900\n"
        "2004-08-20,101.01,109.08,100.5,108.31,11428600\n"
        "2004-08-23,110.76,113.48,109.05,109.4,9137200\n"
    )
    monkeypatch.setenv("KUBETRADER_DATA_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("KUBETRADER_BUNDLED_DATA", str(bundled))
    clear_cache()
    assert DataStore().root == (tmp_path / "store").resolve()
    frame = load_bars("GOOG")
    assert len(frame) == 3
    assert (tmp_path / "store" / "processed" / "GOOG" / "1d.parquet").is_file()
    with pytest.raises(DataError, match="unknown symbol 'ORCL'"):
        load_bars("ORCL")
    clear_cache()


def test_daily_bars_from_another_time_zone_keep_their_session_date(data_store: DataStore) -> None:
    stamps = pd.DatetimeIndex(["2020-03-02", "2020-03-03", "2020-03-04"]).tz_localize("America/New_York")
    frame = pd.DataFrame(
        {
            "open": [1.0, 2.0, 3.0],
            "high": [1.5, 2.5, 3.5],
            "low": [0.5, 1.5, 2.5],
            "close": [1.2, 2.2, 3.2],
            "volume": [10.0, 20.0, 30.0],
        },
        index=stamps,
    )
    data_store.merge("NYC", "1d", frame, source="test")
    loaded = load_bars("NYC", store=data_store)
    assert list(loaded.index) == [pd.Timestamp(d, tz="UTC") for d in ("2020-03-02", "2020-03-03", "2020-03-04")]
