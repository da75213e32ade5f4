"""The result's files are unchanged by the faster writers (issue 20): the equity and trades CSVs are
byte for byte what pandas' `to_csv` wrote, and the JSON document is the one the pandas-based
`to_document` built, on a real run and on edge values (zero equity, missing benchmark and
exposure days, tiny and huge floats, open trades, text that needs quoting, no trades)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd

from kubetrader.results.csvtext import float_cells
from kubetrader.results.schema import TradeRecord
from kubetrader.results.store import equity_csv, trades_csv
from kubetrader.runner import TRADE_COLUMNS, BacktestResult


def _pandas_equity_csv(result: BacktestResult) -> str:
    """The equity CSV as written before (store.equity_frame + DataFrame.to_csv)."""
    equity = result.equity
    frame = pd.DataFrame(
        {
            "equity": equity,
            "return": equity.pct_change().fillna(0.0),
            "exposure": result.exposure.reindex(equity.index),
        }
    )
    if result.benchmark_returns is not None:
        frame["benchmark_return"] = result.benchmark_returns.reindex(equity.index)
    frame.index = pd.DatetimeIndex(equity.index).strftime("%Y-%m-%d")
    frame.index.name = "date"
    return frame.to_csv()


def _pandas_document(result: BacktestResult, name: str) -> dict[str, Any]:
    """The document's per-day lists and trades as the pandas-based `to_document` built them."""
    equity = result.equity
    index = pd.DatetimeIndex(equity.index)
    bench = None
    if result.benchmark_returns is not None:
        bench = result.benchmark_returns.reindex(equity.index).fillna(0.0).to_numpy().tolist()
    rows = [
        {str(k): (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in result.trades.to_dict("records")
    ]
    return {
        "dates": [str(d) for d in np.datetime_as_string(index.tz_convert(None).to_numpy(), unit="D")],
        "equity": equity.to_numpy().tolist(),
        "returns": equity.pct_change().fillna(0.0).to_numpy().tolist(),
        "benchmark_returns": bench,
        "trades": [TradeRecord(**row).model_dump() for row in rows],
    }


def _same(result: BacktestResult) -> None:
    assert equity_csv(result) == _pandas_equity_csv(result)
    assert trades_csv(result.trades) == result.trades.to_csv(index=False)
    document = result.to_document("files").model_dump()
    expected = _pandas_document(result, "files")
    for key, value in expected.items():
        got = document[key]
        # compare floats by their bits (repr round-trips), so -0.0 and 0.0 would differ
        assert repr(got) == repr(value), key
    assert document["metadata"]["first_bar"] == expected["dates"][0]
    assert document["metadata"]["last_bar"] == expected["dates"][-1]


def test_a_real_run_writes_the_same_files(sma_orcl_result: BacktestResult) -> None:
    assert len(sma_orcl_result.trades) > 10
    assert sma_orcl_result.trades["exit_time"].isna().sum() <= 1
    _same(sma_orcl_result)


def _edge_result(base: BacktestResult) -> BacktestResult:
    index = pd.date_range("2020-01-01", periods=9, freq="D", tz="UTC")
    equity = pd.Series([100.0, 0.0, 0.0, 5.0, 1e-320, 1.7e308, 123456789.123456789, 1e16, 99.5], index=index)
    exposure = pd.Series([0.0, 1.0, -0.0, 1e-7, 0.5, 2.0], index=index[:6])  # the last days missing
    bench = pd.Series([0.01, -0.02, 1e-5, 3.0], index=index[[0, 2, 4, 8]])  # gaps: NaN in the CSV, 0 in the JSON
    trades = pd.DataFrame(
        [
            {
                "symbol": 'A,"B"',
                "entry_time": "2020-01-02T00:00:00+00:00",
                "exit_time": "2020-01-05T00:00:00+00:00",
                "entry_price": 10.0,
                "exit_price": 12.345678901234567,
                "size": -3.0,
                "pnl": 6.9,
                "pnl_net": -1e-9,
                "commission": 0.0,
                "bars_held": 3,
            },
            {
                "symbol": "C",
                "entry_time": "2020-01-06T00:00:00+00:00",
                "exit_time": None,
                "entry_price": 1e20,
                "exit_price": None,
                "size": 0.5,
                "pnl": float("inf"),
                "pnl_net": -0.0,
                "commission": 1.0,
                "bars_held": 1,
            },
        ],
        columns=list(TRADE_COLUMNS),
    )
    return dataclasses.replace(base, equity=equity, exposure=exposure, benchmark_returns=bench, trades=trades)


def test_edge_values_are_written_as_pandas_wrote_them(sma_orcl_result: BacktestResult) -> None:
    result = _edge_result(sma_orcl_result)
    assert trades_csv(result.trades) == result.trades.to_csv(index=False)
    assert equity_csv(result) == _pandas_equity_csv(result)
    assert ",inf," in equity_csv(result) or "inf\n" in equity_csv(result)  # x / 0 is inf, as pct_change
    no_bench = dataclasses.replace(result, benchmark_returns=None)
    assert equity_csv(no_bench) == _pandas_equity_csv(no_bench)


def test_no_trades_and_all_open_trades_are_written_as_pandas_wrote_them(sma_orcl_result: BacktestResult) -> None:
    empty = dataclasses.replace(sma_orcl_result, trades=pd.DataFrame([], columns=list(TRADE_COLUMNS)))
    assert trades_csv(empty.trades) == empty.trades.to_csv(index=False) == ",".join(TRADE_COLUMNS) + "\n"
    assert empty.to_document("files").trades == []
    open_only = _edge_result(sma_orcl_result).trades.iloc[[1]].reset_index(drop=True)
    assert trades_csv(open_only) == open_only.to_csv(index=False)


def test_float_cells_are_python_reprs_at_every_magnitude() -> None:
    rng = np.random.default_rng(20)
    # most around the switch to exponent notation (1e-4 and 1e16), the rest anywhere a float can be
    exponents = np.concatenate([rng.uniform(-6, 18, 900_000), rng.uniform(-320, 307, 100_000)])
    values = rng.standard_normal(exponents.size) * 10.0**exponents
    edges = [0.0, -0.0, 1e-4, -1e-4, np.nextafter(1e-4, 0), 1e16, np.nextafter(1e16, 0), -1e16, 5e-324]
    values = np.concatenate([values, edges, [1.7976931348623157e308, np.nan, np.inf, -np.inf]])
    expected = ["" if math.isnan(v) else repr(v) for v in values.tolist()]
    assert float_cells(values) == expected
    assert float_cells(np.array([])) == []


def test_feed_dates_are_backtraders_date2num() -> None:
    """FrameFeed's vectorized dates of daily bars are `bt.date2num`'s to the bit, before 1970 too."""
    import backtrader as bt

    from kubetrader.runner import _date_nums, _one_stamp_per_midnight

    daily = pd.DatetimeIndex(["1965-03-01", "1969-12-31", "1970-01-01", "2014-12-31", "2024-02-29"])
    intraday = pd.DatetimeIndex(["1969-12-31 23:59:59.123456", "2020-01-02 09:30", "2020-01-02 16:00"])
    for index in (daily, intraday):
        assert _date_nums(index) == [bt.date2num(d) for d in index.to_pydatetime()]
    assert _one_stamp_per_midnight(daily) and _one_stamp_per_midnight(daily.tz_localize("America/New_York"))
    assert not _one_stamp_per_midnight(intraday)
    assert not _one_stamp_per_midnight(daily[[0, 0, 1]])  # a repeated day
    assert not _one_stamp_per_midnight(daily[::-1])  # not increasing: the caller's own check decides
