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
from pydantic import BaseModel, Field
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


class DeflatedSharpe(BaseModel):
    """The deflated Sharpe ratio with the conventions it was computed under, reported beside it.

    Conventions: Sharpe ratios per period (daily, not annualised; the annualised one is
    given beside it), the trial population is the study's feasible complete trials,
    `n_trials` counts them all and `n_distinct` the distinct parameter points among them
    (a point proposed twice is one trial, not two: `value` uses `n_distinct`), the
    variance is the sample variance (ddof=1) of the trials' per-period Sharpe ratios.
    `n_effective` is the number of independent trials estimated by clustering the
    trials' return series (López de Prado, "Detection of false investment strategies
    using unsupervised learning methods", 2019): trials that move together are one bet;
    `value_effective` is the DSR with that N and the variance of the clusters' Sharpes.
    """

    value: float | None = Field(description="P[true Sharpe > E[max Sharpe of n_distinct lucky trials]].")
    sharpe_per_period: float | None = None
    sharpe_annualised: float | None = None
    periods_per_year: int = 252
    n_obs: int = 0
    n_trials: int = 0
    n_distinct: int = 0
    trial_sharpe_variance: float | None = Field(default=None, description="Per-period Sharpe variance over trials.")
    expected_max_sharpe: float | None = Field(default=None, description="SR0, per period.")
    skew: float | None = None
    kurtosis: float | None = Field(default=None, description="Fourth standardised moment (normal: 3).")
    n_effective: int | None = None
    cluster_sharpe_variance: float | None = None
    value_effective: float | None = None


def deflated_sharpe_report(
    best_returns: np.ndarray | None,
    trial_sharpes: np.ndarray,
    *,
    distinct_points: int,
    periods_per_year: int = 252,
    trial_returns: np.ndarray | None = None,
) -> DeflatedSharpe:
    """DSR of the best trial's per-period `best_returns` against the per-period
    `trial_sharpes`, with the conventions; `trial_returns` (observations x trials) adds
    the effective number of trials by clustering."""
    sharpes = np.asarray(trial_sharpes, dtype=float)
    sharpes = sharpes[np.isfinite(sharpes)]
    report = DeflatedSharpe(
        value=None, periods_per_year=periods_per_year, n_trials=int(sharpes.size), n_distinct=distinct_points
    )
    if sharpes.size > 1:
        report.trial_sharpe_variance = float(sharpes.var(ddof=1))
    if best_returns is None:
        return report
    r = np.asarray(best_returns, dtype=float)
    r = r[np.isfinite(r)]
    sd = r.std(ddof=1) if r.size > 1 else 0.0
    if r.size < 3 or sd == 0 or sharpes.size < 2:
        return report
    sr = float(r.mean() / sd)
    report.sharpe_per_period = sr
    report.sharpe_annualised = sr * math.sqrt(periods_per_year)
    report.n_obs = int(r.size)
    report.skew = float(stats.skew(r))
    report.kurtosis = float(stats.kurtosis(r, fisher=False))
    n = max(distinct_points, 1)
    report.expected_max_sharpe = expected_max_sharpe(n, report.trial_sharpe_variance or 0.0)
    value = probabilistic_sharpe(sr, report.expected_max_sharpe, report.n_obs, report.skew, report.kurtosis)
    report.value = None if math.isnan(value) else value
    if trial_returns is not None and trial_returns.ndim == 2 and trial_returns.shape[1] >= 3:
        labels = cluster_trials(trial_returns)
        report.n_effective = int(labels.max() + 1)
        cluster_sharpes = _cluster_sharpes(trial_returns, labels)
        if cluster_sharpes.size > 1:
            report.cluster_sharpe_variance = float(cluster_sharpes.var(ddof=1))
            threshold = expected_max_sharpe(report.n_effective, report.cluster_sharpe_variance)
            eff = probabilistic_sharpe(sr, threshold, report.n_obs, report.skew, report.kurtosis)
            report.value_effective = None if math.isnan(eff) else eff
        else:  # one cluster: a single independent bet, no selection to deflate for
            report.value_effective = probabilistic_sharpe(sr, 0.0, report.n_obs, report.skew, report.kurtosis)
    return report


def cluster_trials(returns: np.ndarray, max_clusters: int = 30) -> np.ndarray:
    """Cluster labels (0..k-1) of the trials (columns) of a returns matrix.

    Distance between two trials: sqrt((1 - correlation) / 2) of their returns (López de
    Prado's correlation distance); average-linkage hierarchical clustering, cut at the
    number of clusters with the best mean silhouette (his ONC uses k-means with the
    silhouette's t-statistic; hierarchical clustering gives the same structure on the
    block-correlated returns of a parameter sweep and is deterministic). Trials with
    identical or constant returns fall into one cluster.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    m = np.asarray(returns, dtype=float)
    n = m.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.corrcoef(m, rowvar=False)
    corr = np.nan_to_num(corr, nan=1.0)  # a constant series (no trades) is "the same" as any other flat one
    np.fill_diagonal(corr, 1.0)
    dist = np.sqrt(np.clip((1 - corr) / 2, 0.0, 1.0))
    if n < 3 or float(dist.max()) < 1e-12:
        return np.zeros(n, dtype=int)
    tree = linkage(squareform(dist, checks=False), method="average")
    best_labels, best_score = np.zeros(n, dtype=int), -np.inf
    for k in range(2, min(max_clusters, n - 1) + 1):
        labels = fcluster(tree, k, criterion="maxclust") - 1
        if labels.max() + 1 < 2:
            continue
        score = _mean_silhouette(dist, labels)
        if score > best_score:
            best_labels, best_score = labels, score
    return best_labels


def _mean_silhouette(dist: np.ndarray, labels: np.ndarray) -> float:
    scores = []
    for i in range(dist.shape[0]):
        own = labels == labels[i]
        if own.sum() <= 1:
            scores.append(0.0)
            continue
        a = dist[i, own].sum() / (own.sum() - 1)
        b = min(dist[i, labels == other].mean() for other in set(labels.tolist()) if other != labels[i])
        scores.append((b - a) / max(a, b) if max(a, b) > 0 else 0.0)
    return float(np.mean(scores))


def _cluster_sharpes(returns: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-period Sharpe of each cluster's inverse-variance weighted return series."""
    out = []
    for label in range(int(labels.max()) + 1):
        block = returns[:, labels == label]
        var = block.var(axis=0, ddof=1)
        weights = np.where(var > 0, 1 / np.where(var > 0, var, 1), 0.0)
        if weights.sum() == 0:
            continue
        series = block @ (weights / weights.sum())
        sd = series.std(ddof=1)
        if sd > 0:
            out.append(series.mean() / sd)
    return np.asarray(out, dtype=float)


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
