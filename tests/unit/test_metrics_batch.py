"""compute_metrics_batch: the headline metrics of many curves at once equal compute_metrics per row."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from kubetrader.metrics import BATCH_METRICS, compute_metrics, compute_metrics_batch
from tests.helpers import EXAMPLES


def _sma_sweep_on_orcl(windows: list[int]) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Long/flat ORCL curves, long when yesterday's close was above its n-day average, one row per n."""
    frame = pd.read_csv(EXAMPLES / "data" / "orcl-1995-2014.txt", parse_dates=["Date"], index_col="Date")
    close = frame["Adj Close"].astype(float)
    daily = close.pct_change().fillna(0.0)
    rows = []
    for window in windows:
        long = (close > close.rolling(window).mean()).shift(1, fill_value=False)
        rows.append(100_000.0 * (1.0 + daily.where(long, 0.0)).cumprod().to_numpy())
    return np.vstack(rows), pd.DatetimeIndex(close.index)


def _assert_rows_match(equity: np.ndarray, dates: pd.DatetimeIndex) -> None:
    batch = compute_metrics_batch(equity, dates)
    assert tuple(batch) == BATCH_METRICS
    for row in range(equity.shape[0]):
        single = compute_metrics(pd.Series(equity[row], index=dates))
        for name in BATCH_METRICS:
            expected, got = single[name], float(batch[name][row])
            if expected is None:
                assert math.isnan(got), (row, name, got)
            else:
                assert math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-15), (row, name, got, expected)


def test_batch_equals_compute_metrics_per_row_on_an_orcl_sma_sweep() -> None:
    equity, dates = _sma_sweep_on_orcl([5, 20, 50, 100, 200])
    _assert_rows_match(equity, dates)


def test_batch_equals_compute_metrics_on_random_flat_and_rising_curves() -> None:
    rng = np.random.default_rng(11)
    dates = pd.bdate_range("2020-01-01", periods=300, tz="UTC")
    random_walks = 100.0 * np.cumprod(1.0 + rng.normal(0.0003, 0.015, (20, 300)), axis=1)
    flat = np.full((1, 300), 50.0)
    rising = np.linspace(100.0, 130.0, 300)[None, :]
    _assert_rows_match(np.vstack([random_walks, flat, rising]), dates)


def test_batch_marks_undefined_metrics_as_nan() -> None:
    dates = pd.bdate_range("2021-03-01", periods=4)
    batch = compute_metrics_batch(np.array([[10.0, 10.0, 10.0, 10.0], [10.0, 11.0, 12.0, 13.0]]), dates)
    assert np.isnan(batch["sharpe_ratio"][0])
    assert np.isnan(batch["sortino_ratio"][1])  # no losing day
    assert np.isnan(batch["calmar_ratio"][1])  # no drawdown
    assert batch["max_drawdown"].tolist() == [0.0, 0.0]


def test_batch_refuses_dates_of_another_length() -> None:
    with pytest.raises(ValueError, match="dates"):
        compute_metrics_batch(np.ones((2, 5)), pd.bdate_range("2021-03-01", periods=4))
