"""Performance analytics over one stored result, and rankings over many.

Pure functions of a `ResultDocument` (no I/O), in plain Python: the API image stays
free of numpy-heavy work per request, and every number is traceable to the series
the engine wrote. The engine's metrics are shown as computed by the engine; what is
derived here (drawdown series, monthly returns, histogram, correlation) is derived
from the same stored equity and returns.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence

from kubetrader.results import analysis
from kubetrader.results.schema import ResultDocument
from kubetrader.specs.metrics import METRIC_GROUPS
from kubetrader_dashboard.models.backtests import (
    BenchmarkComparison,
    EquityCurve,
    HistogramBin,
    MonthlyReturn,
    Performance,
    RankingRow,
    Rankings,
)
from kubetrader_dashboard.models.pages import Research
from kubetrader_dashboard.services.results import RankingValues

HISTOGRAM_BINS = 40


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def drawdown(equity: Sequence[float]) -> list[float]:
    """Fraction below the running peak at each point (0 at a new high, negative below it)."""
    out: list[float] = []
    peak = -math.inf
    for value in equity:
        peak = max(peak, value)
        out.append(value / peak - 1.0 if peak > 0 else 0.0)
    return out


def compound(returns: Iterable[float]) -> float:
    total = 1.0
    for value in returns:
        total *= 1.0 + value
    return total - 1.0


def benchmark_equity(document: ResultDocument) -> list[float] | None:
    """Buy-and-hold of the benchmark, scaled to the strategy's starting equity."""
    if not document.benchmark_returns or not document.equity:
        return None
    level = document.equity[0]
    out = []
    for value in document.benchmark_returns:
        level *= 1.0 + (value if math.isfinite(value) else 0.0)
        out.append(level)
    return out


def equity_curve(result_id: str, document: ResultDocument) -> EquityCurve:
    return EquityCurve(
        id=result_id,
        dates=document.dates,
        equity=document.equity,
        drawdown=drawdown(document.equity),
        benchmark_equity=benchmark_equity(document),
    )


def monthly_returns(dates: Sequence[str], returns: Sequence[float]) -> list[MonthlyReturn]:
    """Daily returns compounded within each calendar month (dates are ISO, so the month is a prefix)."""
    months: dict[tuple[int, int], float] = {}
    for date, value in zip(dates, returns, strict=False):
        key = (int(date[:4]), int(date[5:7]))
        months[key] = (1.0 + months.get(key, 0.0)) * (1.0 + value) - 1.0
    return [MonthlyReturn(year=y, month=m, value=v) for (y, m), v in sorted(months.items())]


def histogram(values: Sequence[float], bins: int = HISTOGRAM_BINS) -> list[HistogramBin]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return []
    low, high = min(finite), max(finite)
    if high == low:
        return [HistogramBin(left=low, right=high, count=len(finite))]
    width = (high - low) / bins
    counts = [0] * bins
    for value in finite:
        counts[min(int((value - low) / width), bins - 1)] += 1
    return [HistogramBin(left=low + i * width, right=low + (i + 1) * width, count=c) for i, c in enumerate(counts)]


def _correlation(a: Sequence[float], b: Sequence[float]) -> float | None:
    pairs = [(x, y) for x, y in zip(a, b, strict=False) if math.isfinite(x) and math.isfinite(y)]
    if len(pairs) < 3:
        return None
    xs, ys = zip(*pairs, strict=True)
    try:
        return statistics.correlation(xs, ys)
    except statistics.StatisticsError:  # a constant series has no correlation
        return None


def grouped_metrics(metrics: dict[str, float | None]) -> dict[str, dict[str, float | None]]:
    """The engine's metrics by group (`specs.metrics`), each finite or None."""
    return {group: {name: _finite(metrics.get(name)) for name in names} for group, names in METRIC_GROUPS.items()}


def research(document: ResultDocument) -> Research:
    """The research tables of one result (the same on the Performance and Backtests pages)."""
    grouped = grouped_metrics(document.metrics)
    return Research(
        strategy_metrics={name: v for values in grouped.values() for name, v in values.items()},
        benchmark_metrics=analysis.benchmark_metrics(document.dates, document.benchmark_returns),
        top_drawdowns=analysis.top_drawdowns(document.dates, document.equity),
        costs=analysis.cost_settings(document.spec),
    )


def performance(result_id: str, document: ResultDocument) -> Performance:
    metrics = document.metrics
    strategy_return = _finite(metrics.get("total_return"))
    bench_return = _finite(metrics.get("benchmark_return"))
    if bench_return is None and document.benchmark_returns:
        bench_return = compound(v for v in document.benchmark_returns if math.isfinite(v))
    tables = research(document)
    return Performance(
        id=result_id,
        metrics=grouped_metrics(metrics),
        benchmark=BenchmarkComparison(
            strategy_return=strategy_return,
            benchmark_return=bench_return,
            excess_return=None if strategy_return is None or bench_return is None else strategy_return - bench_return,
            alpha=_finite(metrics.get("alpha")),
            beta=_finite(metrics.get("beta")),
            information_ratio=_finite(metrics.get("information_ratio")),
            tracking_error=_finite(metrics.get("tracking_error")),
            correlation=_correlation(document.returns, document.benchmark_returns or []),
        ),
        return_distribution=histogram(document.returns),
        monthly_returns=monthly_returns(document.dates, document.returns),
        dates=document.dates,
        drawdown=drawdown(document.equity),
        rolling=analysis.rolling(document.dates, document.returns),
        top_drawdowns=tables.top_drawdowns,
        benchmark_metrics=tables.benchmark_metrics,
        costs=tables.costs,
    )


def rankings(
    rows: Sequence[RankingValues],
    *,
    metric: str,
    group_by: str,
) -> Rankings:
    """The ranking rows the store grouped and ordered (`ResultStore.ranking_rows`), as the API's model."""
    out = [
        RankingRow(
            key=key,
            strategy=strategy,
            results=count,
            best=best,
            mean=mean,
            best_result_id=best_id,
            sharpe_ratio=sharpe,
            total_return=total,
            max_drawdown=drawdown,
        )
        for key, strategy, count, best, mean, best_id, sharpe, total, drawdown in rows
    ]
    return Rankings(metric=metric, group_by="result" if group_by == "result" else "strategy", rows=out)
