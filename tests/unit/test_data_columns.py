"""Bars read from Arrow buffers (kubetrader.data.columns) are the values pyarrow's own conversion gives:
chunked columns, sliced chunks and nulls (NaN) included; and `load_columns` is `load_bars` without pandas."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from kubetrader.data.columns import BarColumns, from_table
from kubetrader.data.loader import load_bars, load_columns


def _table() -> pa.Table:
    stamps = pa.array(np.array([0, 86_400, 2 * 86_400, 3 * 86_400], dtype="int64") * 10**9, type=pa.int64())
    stamp_type = pa.timestamp("ns", tz="UTC")
    first = pa.table({"datetime": stamps.cast(stamp_type), "close": pa.array([1.0, None, 3.0, 4.0])})
    second = pa.table({"datetime": pa.array([4 * 86_400 * 10**9], type=pa.int64()).cast(stamp_type), "close": [5.5]})
    whole = pa.concat_tables([first, second])
    return whole.slice(1)  # chunks that start at an offset


def test_columns_are_pyarrows_values_with_nulls_as_nan() -> None:
    table = _table()
    assert table.column("close").num_chunks == 2
    bars = from_table(table, "datetime")
    expected = table.column("close").to_numpy()
    np.testing.assert_array_equal(bars.columns["close"], expected)
    assert np.isnan(bars.columns["close"][0])
    stamps = table.column("datetime").to_numpy().astype("datetime64[ns]").view("i8")
    np.testing.assert_array_equal(bars.stamps, stamps)
    assert [bars.day(i) for i in range(len(bars))] == ["1970-01-02", "1970-01-03", "1970-01-04", "1970-01-05"]


def test_a_column_of_another_type_is_refused() -> None:
    table = pa.table({"datetime": pa.array([0], type=pa.timestamp("ns", tz="UTC")), "close": pa.array([1])})
    with pytest.raises(ValueError, match="not double"):
        from_table(table, "datetime")


def test_load_columns_is_load_bars(bundled_store: Any) -> None:
    options: dict[str, Any] = {"start": dt.date(2005, 1, 1), "end": dt.date(2014, 12, 31), "store": bundled_store}
    frame = load_bars("ORCL", **options)
    bars = load_columns("ORCL", **options)
    assert bars.frame().equals(frame)
    assert BarColumns.from_frame(frame).stamps.tolist() == bars.stamps.tolist()
    assert not bars.columns["close"].flags.writeable  # the cached arrays are shared: nobody may change them
