"""Plotly figures from the API's response models. Pure: models in, figures out.

Series go to plotly as numpy arrays, not lists: plotly validates a list element by element in
Python (`to_scalar_or_list`), an array in one copy, and that validation was most of a page's
render time with a few thousand points per chart. A missing value is NaN (drawn as a gap, sent
to the browser as null, as None was).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from kubetrader.results.analysis import Rolling
from kubetrader_dashboard.models.backtests import EquityCurve, HistogramBin, MonthlyReturn
from kubetrader_dashboard.models.mlflow import ExperimentRow
from kubetrader_dashboard.models.operations import StudyDetail


def _values(values: Sequence[float | None], scale: float = 1.0) -> np.ndarray:
    """A float array (None -> NaN), times `scale`."""
    return np.array([np.nan if v is None else v for v in values], dtype=float) * scale


def _labels(values: Sequence[str]) -> np.ndarray:
    """Dates or names as an object array (plotly keeps the strings as they are)."""
    return np.array(values, dtype=object)


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _layout(fig: go.Figure, title: str, *, height: int = 360) -> go.Figure:
    fig.update_layout(title=title, height=height, margin={"l": 40, "r": 20, "t": 50, "b": 40}, hovermode="x unified")
    return fig


def equity_chart(curve: EquityCurve, title: str = "Equity curve") -> go.Figure:
    fig = go.Figure()
    dates = _labels(curve.dates)
    fig.add_trace(go.Scatter(x=dates, y=_values(curve.equity), name="strategy", mode="lines"))
    if curve.benchmark_equity:
        fig.add_trace(
            go.Scatter(x=dates, y=_values(curve.benchmark_equity), name="benchmark (buy and hold)", mode="lines")
        )
    return _layout(fig, title)


def drawdown_chart(dates: Sequence[str], drawdown: Sequence[float]) -> go.Figure:
    fig = go.Figure(go.Scatter(x=_labels(dates), y=_values(drawdown, 100), fill="tozeroy", name="drawdown %"))
    fig.update_yaxes(ticksuffix="%")
    return _layout(fig, "Drawdown", height=260)


def return_histogram(bins: Sequence[HistogramBin]) -> go.Figure:
    fig = go.Figure(
        go.Bar(
            x=[100 * (b.left + b.right) / 2 for b in bins],
            y=[b.count for b in bins],
            width=[100 * (b.right - b.left) for b in bins],
            name="days",
        )
    )
    fig.update_xaxes(ticksuffix="%", title="daily return")
    return _layout(fig, "Return distribution", height=300)


def monthly_heatmap(months: Sequence[MonthlyReturn]) -> go.Figure:
    years = sorted({m.year for m in months})
    grid: list[list[float | None]] = [[None] * 12 for _ in years]
    for m in months:
        grid[years.index(m.year)][m.month - 1] = round(100 * m.value, 2)
    fig = go.Figure(
        go.Heatmap(z=grid, x=list(MONTHS), y=[str(y) for y in years], colorscale="RdYlGn", zmid=0, texttemplate="%{z}")
    )
    fig.update_yaxes(type="category", dtick=1, autorange="reversed")  # a label for every year
    return _layout(fig, "Monthly returns (%)", height=max(260, 40 * len(years) + 100))


def bar_chart(labels: Sequence[str], values: Sequence[float | None], title: str, *, percent: bool = False) -> go.Figure:
    scale = 100 if percent else 1
    fig = go.Figure(go.Bar(x=list(labels), y=[None if v is None else v * scale for v in values]))
    if percent:
        fig.update_yaxes(ticksuffix="%")
    return _layout(fig, title, height=320)


def risk_adjusted_scatter(rows: Sequence[ExperimentRow]) -> go.Figure:
    """Return against drawdown of each experiment's best run; colour is its Sharpe ratio."""
    shown = [r for r in rows if r.best_total_return is not None and r.best_max_drawdown is not None]
    fig = go.Figure(
        go.Scatter(
            x=[100 * (r.best_max_drawdown or 0.0) for r in shown],  # negative, as everywhere
            y=[100 * (r.best_total_return or 0.0) for r in shown],
            text=[r.name for r in shown],
            mode="markers",
            marker={
                "size": 12,
                "color": [r.best_sharpe for r in shown],
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": "Sharpe"},
            },
        )
    )
    fig.update_xaxes(title="max drawdown", ticksuffix="%")
    fig.update_yaxes(title="total return", ticksuffix="%")
    fig.update_layout(hovermode="closest")
    return _layout(fig, "Risk-adjusted: return vs drawdown (best run per experiment)")


def rolling_chart(rolling: Rolling) -> go.Figure:
    """Trailing Sharpe (left axis) and annualised volatility in percent (right axis)."""
    fig = go.Figure()
    dates = _labels(rolling.dates)
    fig.add_trace(go.Scatter(x=dates, y=_values(rolling.sharpe), name=f"Sharpe ({rolling.window} d)", mode="lines"))
    fig.add_trace(
        go.Scatter(
            x=dates,
            y=_values(rolling.volatility, 100),
            name=f"volatility ({rolling.window} d)",
            mode="lines",
            yaxis="y2",
        )
    )
    fig.update_layout(yaxis={"title": "Sharpe"}, yaxis2={"title": "volatility", "ticksuffix": "%", "overlaying": "y",
                                                         "side": "right"})  # fmt: skip
    return _layout(fig, "Rolling Sharpe and volatility", height=300)


def study_history(detail: StudyDetail) -> go.Figure:
    complete = [t for t in detail.trials if t.value is not None]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=[t.number for t in complete], y=[t.value for t in complete], mode="markers", name="trial")
    )
    fig.add_trace(
        go.Scatter(x=[t.number for t in detail.trials], y=detail.best_so_far, mode="lines", name="best so far")
    )
    fig.update_xaxes(title="trial")
    return _layout(fig, "Optimization history")


def normalized_equity(curves: Sequence[tuple[str, EquityCurve]]) -> go.Figure:
    fig = go.Figure()
    for label, curve in curves:
        start = curve.equity[0] if curve.equity else 1.0
        fig.add_trace(go.Scatter(x=_labels(curve.dates), y=_values(curve.equity) / start, name=label, mode="lines"))
    return _layout(fig, "Growth of 1 (compared results)")
