"""The per-row reductions of `compute_metrics_batch` in numba: one pass per row, no (rows, days) temporaries.

The sums are numpy's own pairwise summation (`pairwise_sum_DOUBLE` in numpy's umath
loops: blocks of 8 accumulators up to 128 values, halves rounded down to a multiple
of 8 above), so a mean or standard deviation here is the same double as numpy's
`r.mean()` / `r.std(ddof=1)` on the row, and so as `compute_metrics`'.

Imported lazily by `kubetrader.metrics.batch` (numba is not needed to import the
metrics package).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# stats[i]: mean of the daily returns, their std (ddof=1; NaN with one return), downside deviation
# sqrt(sum(min(r, 0)^2) / n), maximum drawdown min(equity / running peak - 1)
STAT_FIELDS = ("mean", "std", "downside", "max_drawdown")


@njit(cache=True, nogil=True)
def _block_sum(a: np.ndarray, lo: int, n: int) -> float:
    """numpy's pairwise sum of at most 128 values: a plain loop below 8, else 8 accumulators."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    stop = n - (n % 8)
    while i < stop:
        j = lo + i
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True, nogil=True)
def pairwise_sum(a: np.ndarray, lo: int, n: int, nodes: np.ndarray, partial: np.ndarray) -> float:
    """numpy's float64 add.reduce of a[lo : lo + n], operation for operation: above 128 values the
    sum of the halves, the first half's length rounded down to a multiple of 8.

    Without recursion (numba's on-disk cache cannot hold recursive functions): `nodes` (rows
    (lo, n, stage), at least 64) and `partial` (at least 64) are the explicit stack.
    """
    if n <= 128:
        return _block_sum(a, lo, n)
    nodes[0, 0], nodes[0, 1], nodes[0, 2] = lo, n, 0
    depth = 1
    value = 0.0
    while depth > 0:
        top = depth - 1
        node_lo, node_n, stage = nodes[top, 0], nodes[top, 1], nodes[top, 2]
        if node_n > 128 and stage < 2:  # descend into the left (stage 0) or right (stage 1) half
            half = node_n // 2
            half -= half % 8
            nodes[top, 2] = stage + 1
            child_lo, child_n = (node_lo, half) if stage == 0 else (node_lo + half, node_n - half)
            nodes[depth, 0], nodes[depth, 1], nodes[depth, 2] = child_lo, child_n, 0
            depth += 1
            continue
        value = _block_sum(a, node_lo, node_n) if node_n <= 128 else partial[top] + value
        depth -= 1
        if depth > 0 and nodes[depth - 1, 2] == 1:  # a left half done: keep it, the right one is next
            partial[depth - 1] = value
    return value


@njit(cache=True, nogil=True)
def row_stats(values: np.ndarray, stats: np.ndarray) -> None:
    """STAT_FIELDS of each row of `values` (shape (rows, days), days >= 2, finite) into `stats` (rows, 4)."""
    rows, days = values.shape
    m = days - 1
    r = np.empty(m)
    work = np.empty(m)
    nodes = np.zeros((64, 3), dtype=np.int64)
    partial = np.zeros(64)
    for i in range(rows):
        v = values[i]
        peak = v[0]
        worst = v[0] / peak - 1.0
        for t in range(1, days):
            x = v[t]
            peak = max(peak, x)
            dd = x / peak - 1.0
            if dd < worst or math.isnan(dd):  # numpy's min propagates NaN (0 / 0 on a zero curve)
                worst = dd
            r[t - 1] = x / v[t - 1] - 1.0
        mean = (0.0 + pairwise_sum(r, 0, m, nodes, partial)) / m
        for t in range(m):
            d = r[t] - mean
            work[t] = d * d
        std = math.sqrt((0.0 + pairwise_sum(work, 0, m, nodes, partial)) / (m - 1)) if m > 1 else math.nan
        for t in range(m):
            d = r[t] if r[t] < 0.0 else 0.0
            work[t] = d * d
        stats[i, 0] = mean
        stats[i, 1] = std
        stats[i, 2] = math.sqrt((0.0 + pairwise_sum(work, 0, m, nodes, partial)) / m)
        stats[i, 3] = worst
