"""Overfitting diagnostics for a study: how much of the best trial is luck?

- Deflated Sharpe ratio (Bailey & López de Prado, "The Deflated Sharpe Ratio", 2014):
  the probability that the best trial's true Sharpe is above zero after correcting
  for the number of trials, their dispersion, and the non-normality of returns.
- Probability of backtest overfitting (Bailey, Borwein, López de Prado, Zhu, "The
  Probability of Backtest Overfitting", 2015) by combinatorially symmetric
  cross-validation (CSCV): how often the in-sample winner ranks below the median
  out of sample.

Sharpe ratios here are per period (not annualised): the formulas are stated per
observation. Skewness is the third standardised moment; kurtosis is the fourth,
NOT excess (a normal distribution has 3).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

EULER_GAMMA = 0.5772156649015329


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """E[max SR] of `n_trials` independent zero-skill trials whose Sharpe ratios have
    variance `sharpe_variance` (the "SR0" threshold of the deflated Sharpe ratio)."""
    if n_trials < 2:
        return 0.0
    norm = stats.norm
    return math.sqrt(sharpe_variance) * (
        (1 - EULER_GAMMA) * norm.ppf(1 - 1 / n_trials) + EULER_GAMMA * norm.ppf(1 - 1 / (n_trials * math.e))
    )


def probabilistic_sharpe(sharpe: float, threshold: float, n_obs: int, skew: float, kurtosis: float) -> float:
    """P[true SR > threshold] given an observed per-period SR over `n_obs` returns."""
    denominator = 1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2
    if n_obs < 2 or denominator <= 0:
        return float("nan")
    z = (sharpe - threshold) * math.sqrt(n_obs - 1) / math.sqrt(denominator)
    return float(stats.norm.cdf(z))


def deflated_sharpe(
    sharpe: float, *, n_trials: int, sharpe_variance: float, n_obs: int, skew: float, kurtosis: float
) -> float:
    """The deflated Sharpe ratio: PSR against the expected maximum of `n_trials` lucky trials."""
    return probabilistic_sharpe(
        sharpe, expected_max_sharpe(n_trials, sharpe_variance), n_obs=n_obs, skew=skew, kurtosis=kurtosis
    )


def deflated_sharpe_from_returns(best_returns: np.ndarray, trial_sharpes: np.ndarray) -> float:
    """Convenience form: the best trial's daily returns and every trial's per-period Sharpe."""
    r = np.asarray(best_returns, dtype=float)
    r = r[np.isfinite(r)]
    sd = r.std(ddof=1)
    if r.size < 3 or sd == 0:
        return float("nan")
    sharpes = np.asarray(trial_sharpes, dtype=float)
    sharpes = sharpes[np.isfinite(sharpes)]
    return deflated_sharpe(
        float(r.mean() / sd),
        n_trials=max(int(sharpes.size), 1),
        sharpe_variance=float(sharpes.var(ddof=1)) if sharpes.size > 1 else 0.0,
        n_obs=int(r.size),
        skew=float(stats.skew(r)),
        kurtosis=float(stats.kurtosis(r, fisher=False)),
    )


@dataclass(frozen=True)
class PBOResult:
    pbo: float
    logits: np.ndarray
    n_splits: int
    n_combinations: int


def probability_of_backtest_overfitting(returns: np.ndarray, n_splits: int = 10) -> PBOResult:
    """PBO by CSCV over a (T observations x N trials) matrix of per-period returns.

    The rows are cut into `n_splits` (even) contiguous blocks; for every way of
    choosing half of them as in-sample, the trial with the best in-sample Sharpe is
    ranked out of sample; PBO is the share of combinations where its relative rank
    is at or below the median (logit <= 0).
    """
    m = np.asarray(returns, dtype=float)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ValueError("returns must be a (observations x trials) matrix with at least 2 trials")
    if n_splits % 2 or n_splits < 2:
        raise ValueError("n_splits must be even and >= 2")
    t = m.shape[0] - m.shape[0] % n_splits
    if t < 2 * n_splits:
        raise ValueError(f"need at least {2 * n_splits} observations for {n_splits} splits")
    blocks = np.array_split(m[:t], n_splits)
    n_trials = m.shape[1]
    logits = []
    for chosen in itertools.combinations(range(n_splits), n_splits // 2):
        in_sample = np.vstack([blocks[i] for i in chosen])
        out_sample = np.vstack([blocks[i] for i in range(n_splits) if i not in chosen])
        best = int(np.argmax(_sharpe_columns(in_sample)))
        oos = _sharpe_columns(out_sample)
        rank = float(stats.rankdata(oos)[best])  # 1 = worst
        omega = rank / (n_trials + 1)
        logits.append(math.log(omega / (1 - omega)))
    arr = np.asarray(logits)
    return PBOResult(pbo=float(np.mean(arr <= 0)), logits=arr, n_splits=n_splits, n_combinations=arr.size)


def _sharpe_columns(m: np.ndarray) -> np.ndarray:
    sd = m.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = m.mean(axis=0) / sd
    return np.where(np.isfinite(s), s, -np.inf)
