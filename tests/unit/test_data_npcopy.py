"""The numpy copy of a stored data set (kubetrader.data.npcopy): the same bars and footer as its Parquet
file, used only while it is the copy of that very file, and never in place of other bars."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from kubetrader.data import DataStore
from kubetrader.data.columns import BarColumns, from_table
from kubetrader.data.frames import INDEX_NAME
from kubetrader.data.npcopy import copy_path, read_copy
from kubetrader.errors import DataError


def _from_parquet(path: Path) -> BarColumns:
    """What pyarrow reads from the file: the authority the copy must equal."""
    return from_table(pq.ParquetFile(path).read(), INDEX_NAME)


def _footer(path: Path) -> dict[str, object]:
    """The Parquet footer's kubetrader metadata, as pyarrow reads it."""
    return dict(json.loads(pq.read_schema(path).metadata[b"kubetrader"]))


def _assert_same_bars(got: BarColumns, expected: BarColumns) -> None:
    assert got.stamps.dtype == expected.stamps.dtype
    assert np.array_equal(got.stamps, expected.stamps)
    assert list(got.columns) == list(expected.columns)
    for name, values in expected.columns.items():
        assert got.columns[name].dtype == values.dtype
        assert np.array_equal(got.columns[name], values, equal_nan=True), name
        assert got.columns[name].tobytes() == values.tobytes(), name  # bit for bit, NaN payloads included


@pytest.fixture
def store(tmp_path: Path, bundled_store: DataStore) -> DataStore:
    """A store of its own (a test may damage it) with ORCL 1d and GOOG 1d as registration wrote them."""
    own = DataStore(tmp_path / "store")
    for symbol in ("ORCL", "GOOG"):
        source, target = bundled_store.path(symbol, "1d"), own.path(symbol, "1d")
        target.parent.mkdir(parents=True)
        shutil.copy2(source, target)
        shutil.copy2(copy_path(source), copy_path(target))
    return own


@pytest.mark.parametrize(("symbol", "timeframe"), [("ORCL", "1d"), ("GOOG", "1d"), ("IDX2006", "5m")])
def test_every_write_leaves_a_copy_with_the_parquet_file_s_bars_and_footer(
    bundled_store: DataStore, symbol: str, timeframe: str
) -> None:
    path = bundled_store.path(symbol, timeframe)
    copy = read_copy(path)
    assert copy is not None, "registration wrote no usable copy"
    _assert_same_bars(copy[0], _from_parquet(path))
    assert copy[1] == _footer(path)
    assert not any(values.flags.writeable for values in (copy[0].stamps, *copy[0].columns.values()))


def test_a_run_reads_the_copy_and_gets_what_pyarrow_would(store: DataStore) -> None:
    path = store.path("ORCL", "1d")
    _assert_same_bars(store.read_columns("ORCL", "1d"), _from_parquet(path))
    assert store.metadata("ORCL", "1d") == _footer(path)


def test_a_parquet_file_rewritten_without_its_copy_is_read_from_parquet(store: DataStore) -> None:
    """An older kubetrader on a shared volume (or a file put there by hand) rewrites the Parquet file and not
    the copy: the stale copy must not be read in place of the new bars."""
    orcl, goog = store.path("ORCL", "1d"), store.path("GOOG", "1d")
    shutil.copy2(goog, orcl)  # other bars (and another footer) under ORCL's name; ORCL's copy left as it was
    assert read_copy(orcl) is None
    _assert_same_bars(store.read_columns("ORCL", "1d"), _from_parquet(goog))
    assert store.metadata("ORCL", "1d")["symbol"] == "GOOG"


def test_without_a_copy_the_parquet_file_is_read(store: DataStore) -> None:
    path = store.path("ORCL", "1d")
    expected = _from_parquet(path)
    copy_path(path).unlink()
    assert read_copy(path) is None
    _assert_same_bars(store.read_columns("ORCL", "1d"), expected)


def test_an_unreadable_copy_is_ignored_with_a_warning(store: DataStore, caplog: pytest.LogCaptureFixture) -> None:
    path = store.path("ORCL", "1d")
    expected = _from_parquet(path)
    copy_path(path).write_bytes(b"PK\x03\x04 not an archive")
    _assert_same_bars(store.read_columns("ORCL", "1d"), expected)
    assert "unreadable numpy copy" in caplog.text


def test_a_copy_without_its_parquet_file_is_no_data_set(store: DataStore) -> None:
    store.path("ORCL", "1d").unlink()
    with pytest.raises(DataError, match="no 1d bars for ORCL"):
        store.read_columns("ORCL", "1d")
