"""Parameter spaces, safe constraints, walk-forward windows and overfitting statistics."""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np
import pytest

from kubetrader.errors import SpecError
from kubetrader.optimize.constraints import feasible, parse_constraint, parse_constraints
from kubetrader.optimize.overfitting import (
    deflated_sharpe,
    deflated_sharpe_from_returns,
    expected_max_sharpe,
    probability_of_backtest_overfitting,
)
from kubetrader.optimize.space import grid, grid_size, parse_space, to_optuna_distributions
from kubetrader.optimize.walkforward import walk_forward_windows

SMA_SPACE = {
    "fast": {"type": "int", "low": 5, "high": 50, "step": 5},
    "slow": {"type": "int", "low": 20, "high": 60, "step": 10},
}


def test_constraint_filters_grid_points_and_never_admits_violations() -> None:
    space = parse_space(SMA_SPACE)
    constraints = parse_constraints(["fast < slow", "slow - fast >= 10"], list(space))
    points = list(grid(space, constraints))
    assert grid_size(space) == 10 * 5
    assert points and all(p["fast"] < p["slow"] and p["slow"] - p["fast"] >= 10 for p in points)
    excluded = [p for p in grid(space) if not feasible(p, constraints)]
    assert len(points) + len(excluded) == 50
    assert {"fast": 50, "slow": 50} in excluded
    assert {"fast": 50, "slow": 60} in points


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("__import__('os').system('x')", "Call is not allowed"),
        ("fast.__class__", "Attribute is not allowed"),
        ("fast < slwo", "unknown parameter 'slwo'"),
        ("fast <", "cannot parse"),
        ("[fast][0] < 3", "not allowed"),
        ("(lambda: 1)()", "not allowed"),
    ],
)
def test_constraints_refuse_code_and_unknown_names(source: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_constraint(source, ["fast", "slow"])


def test_constraint_supports_chained_comparisons_booleans_and_strings() -> None:
    c = parse_constraint("5 <= fast < slow and not mode == 'b' or slow > 100", ["fast", "slow", "mode"])
    assert c({"fast": 5, "slow": 10, "mode": "a"})
    assert not c({"fast": 5, "slow": 10, "mode": "b"})
    assert c({"fast": 50, "slow": 101, "mode": "b"})
    assert not c({"fast": 4, "slow": 10, "mode": "a"})


def test_space_errors_name_the_parameter() -> None:
    with pytest.raises(SpecError, match="empty"):
        parse_space({})
    with pytest.raises(SpecError, match=r"space\.fast"):
        parse_space({"fast": {"type": "int", "low": 50, "high": 5}})
    with pytest.raises(SpecError, match=r"space\.x"):
        parse_space({"x": {"type": "bogus"}})


def test_space_maps_to_optuna_distributions() -> None:
    space = parse_space(
        {
            **SMA_SPACE,
            "mode": {"type": "categorical", "choices": ["a", "b"]},
            "t": {"type": "float", "low": 0.1, "high": 1.0, "log": True},
        }
    )
    dists = to_optuna_distributions(space)
    assert dists["fast"].low == 5 and dists["fast"].step == 5
    assert dists["mode"].choices == ("a", "b")
    assert dists["t"].log


@pytest.mark.parametrize("anchored", [False, True])
def test_walk_forward_out_of_sample_windows_tile_the_range_without_overlap(anchored: bool) -> None:
    windows = walk_forward_windows(1000, 252, 126, anchored=anchored)
    assert windows[0].out_start == 252
    for a, b in itertools.pairwise(windows):
        assert a.out_end == b.out_start  # contiguous, no overlap, no gap
    assert windows[-1].out_end == 1000
    for w in windows:
        assert w.in_end == w.out_start
        assert w.in_start == (0 if anchored else w.out_start - 252)
    with pytest.raises(SpecError, match="exceed"):
        walk_forward_windows(300, 252, 126)


def test_deflated_sharpe_matches_a_hand_computation() -> None:
    # 5 years of daily returns, annualised SR 2.5, 100 trials whose annualised SRs have variance 0.5,
    # skew -3, kurtosis 10 (Bailey & Lopez de Prado's example inputs), computed step by step.
    n = NormalDist()
    sr, var, t, trials, skew, kurt = 2.5 / math.sqrt(250), 0.5 / 250, 1250, 100, -3.0, 10.0
    gamma = 0.5772156649015329
    sr0 = math.sqrt(var) * ((1 - gamma) * n.inv_cdf(1 - 1 / trials) + gamma * n.inv_cdf(1 - 1 / (trials * math.e)))
    z = (sr - sr0) * math.sqrt(t - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    expected = n.cdf(z)
    assert expected_max_sharpe(trials, var) == pytest.approx(sr0, rel=1e-9)
    got = deflated_sharpe(sr, n_trials=trials, sharpe_variance=var, n_obs=t, skew=skew, kurtosis=kurt)
    assert got == pytest.approx(expected, rel=1e-9)
    assert 0.85 < got < 0.92  # more trials -> more deflation
    assert deflated_sharpe(sr, n_trials=10_000, sharpe_variance=var, n_obs=t, skew=skew, kurtosis=kurt) < got


def test_deflated_sharpe_from_returns_is_low_for_the_luckiest_of_many_noise_trials() -> None:
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 0.01, size=(750, 200))
    sharpes = noise.mean(axis=0) / noise.std(axis=0, ddof=1)
    best = noise[:, int(np.argmax(sharpes))]
    assert deflated_sharpe_from_returns(best, sharpes) < 0.5
    skilled = rng.normal(0.002, 0.01, size=750)
    assert deflated_sharpe_from_returns(skilled, sharpes) > 0.95


def test_pbo_is_high_for_pure_noise_and_low_for_a_persistent_edge() -> None:
    rng = np.random.default_rng(11)
    noise = rng.normal(0, 0.01, size=(1000, 50))
    assert probability_of_backtest_overfitting(noise, n_splits=8).pbo > 0.3
    edge = noise.copy()
    edge[:, 3] += 0.003  # one trial really is better, in every block
    result = probability_of_backtest_overfitting(edge, n_splits=8)
    assert result.pbo < 0.05
    assert result.n_combinations == math.comb(8, 4)
