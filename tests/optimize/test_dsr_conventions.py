"""The deflated Sharpe ratio reported with its conventions, and the effective number of trials."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kubetrader.optimize.overfitting import cluster_trials, deflated_sharpe, deflated_sharpe_report


def block_returns(blocks: int, per_block: int, seed: int = 0) -> np.ndarray:
    """(observations x trials): trials of one block share a factor, blocks are independent."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(0.0004, 0.01, (500, blocks))
    columns = [factors[:, b] + rng.normal(0, 0.001, 500) for b in range(blocks) for _ in range(per_block)]
    return np.column_stack(columns)


def test_trials_that_move_together_cluster_into_one_independent_bet_each() -> None:
    labels = cluster_trials(block_returns(3, 5))
    assert labels.max() + 1 == 3
    assert all(len(set(labels[b * 5 : b * 5 + 5].tolist())) == 1 for b in range(3))


def test_the_report_uses_distinct_trials_and_states_its_conventions() -> None:
    returns = block_returns(4, 6, seed=1)
    sharpes = returns.mean(axis=0) / returns.std(axis=0, ddof=1)
    best = returns[:, int(np.argmax(sharpes))]
    report = deflated_sharpe_report(best, sharpes, distinct_points=20, trial_returns=returns)
    assert (report.n_trials, report.n_distinct, report.n_effective) == (24, 20, 4)
    assert report.sharpe_annualised == pytest.approx(report.sharpe_per_period * math.sqrt(252))  # type: ignore[operator]
    expected = deflated_sharpe(
        float(best.mean() / best.std(ddof=1)),
        n_trials=20,
        sharpe_variance=float(sharpes.var(ddof=1)),
        n_obs=500,
        skew=report.skew or 0.0,
        kurtosis=report.kurtosis or 3.0,
    )
    assert report.value == pytest.approx(expected, rel=1e-12)
    # Four independent bets deflate less than twenty distinct points would suggest.
    assert report.value_effective is not None and report.value_effective >= report.value
