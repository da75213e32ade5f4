"""The numba reductions of compute_metrics_batch: numpy's own pairwise sums, so the same doubles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kubetrader.metrics import batch, compute_metrics, compute_metrics_batch
from kubetrader.metrics._batch_kernel import pairwise_sum


@pytest.mark.parametrize("n", [1, 7, 8, 9, 127, 128, 129, 255, 256, 1000, 5036, 8193, 40_001])
def test_pairwise_sum_is_numpys_sum_bit_for_bit(n: int) -> None:
    rng = np.random.default_rng(n)
    values = rng.normal(0.0, 1.0, n) * rng.choice([1e-6, 1.0, 1e6], n)
    nodes, partial = np.zeros((64, 3), dtype=np.int64), np.zeros(64)
    assert 0.0 + pairwise_sum(values, 0, n, nodes, partial) == values.sum()
    assert 0.0 + pairwise_sum(values, 3, n - 3, nodes, partial) == values[3:].sum()


def test_kernel_gives_the_numpy_path_and_compute_metrics_exactly() -> None:
    rng = np.random.default_rng(5)
    dates = pd.bdate_range("2001-01-01", periods=900, tz="UTC")
    equity = 1e5 * np.cumprod(1.0 + rng.normal(0.0002, 0.02, (12, 900)), axis=1)
    equity[3, 400:] = equity[3, 399]  # flat for the last 500 days
    equity[4] = 7.0  # never moves
    kernel = compute_metrics_batch(equity, dates)
    mean, std, downside, max_drawdown = batch._row_stats_numpy(equity)
    stats = batch._row_stats(equity)
    for got, want in ((stats[0], mean), (stats[1], std), (stats[3], max_drawdown)):
        assert np.array_equal(got, want, equal_nan=True)
    assert np.allclose(stats[2], downside, rtol=1e-14, atol=0.0)  # numpy's einsum sums in its own order
    for row in range(equity.shape[0]):
        single = compute_metrics(pd.Series(equity[row], index=dates))
        for name in ("total_return", "cagr", "annual_volatility", "sharpe_ratio", "max_drawdown", "calmar_ratio"):
            expected, value = single[name], float(kernel[name][row])
            assert np.isnan(value) if expected is None else value == expected, (row, name)


def test_a_non_contiguous_block_scores_like_its_copy() -> None:
    rng = np.random.default_rng(9)
    dates = pd.bdate_range("2010-01-01", periods=300)
    equity = 100.0 * np.cumprod(1.0 + rng.normal(0.0, 0.01, (300, 6)), axis=0).T  # a transposed view
    assert not equity.flags.c_contiguous
    view, copy = compute_metrics_batch(equity, dates), compute_metrics_batch(equity.copy(), dates)
    for name in view:
        assert np.array_equal(view[name], copy[name], equal_nan=True)
