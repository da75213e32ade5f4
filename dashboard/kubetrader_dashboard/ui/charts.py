"""Plotly figures from the API's response models. Pure: models in, figures out.

Series go to plotly as numpy arrays, not lists: plotly validates a list element by element in
Python (`to_scalar_or_list`), an array in one copy, and that validation was most of a page's
render time with a few thousand points per chart. A missing value is NaN (drawn as a gap, sent
to the browser as null, as None was).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
MARGIN = {"l": 40, "r": 20, "t": 50, "b": 40}


def _figure(traces: list[dict[str, Any]], title: str, *, height: int = 360, **layout: Any) -> go.Figure:
    """A figure built in one pass: traces as dicts (with their `type`), the layout as one dict.

    Plotly validates whatever it is given; building a figure by `add_trace` and `update_layout`
    / `update_yaxes` validated the layout once per call and copied each trace, three times the
    work of validating the same figure once (and most of a page's chart time).
    """
    base = {"title": title, "height": height, "margin": MARGIN, "hovermode": "x unified"}
    return go.Figure(data=traces, layout=base | layout)


def _line(x: np.ndarray, y: np.ndarray, name: str, **extra: Any) -> dict[str, Any]:
    return {"type": "scatter", "x": x, "y": y, "name": name, "mode": "lines", **extra}


def equity_chart(curve: EquityCurve, title: str = "Equity curve") -> go.Figure:
    dates = _labels(curve.dates)
    traces = [_line(dates, _values(curve.equity), "strategy")]
    if curve.benchmark_equity:
        traces.append(_line(dates, _values(curve.benchmark_equity), "benchmark (buy and hold)"))
    return _figure(traces, title)


def drawdown_chart(dates: Sequence[str], drawdown: Sequence[float]) -> go.Figure:
    trace = {"type": "scatter", "x": _labels(dates), "y": _values(drawdown, 100), "fill": "tozeroy",
             "name": "drawdown %"}  # fmt: skip
    return _figure([trace], "Drawdown", height=260, yaxis={"ticksuffix": "%"})


def return_histogram(bins: Sequence[HistogramBin]) -> go.Figure:
    trace = {
        "type": "bar",
        "x": [100 * (b.left + b.right) / 2 for b in bins],
        "y": [b.count for b in bins],
        "width": [100 * (b.right - b.left) for b in bins],
        "name": "days",
    }
    return _figure([trace], "Return distribution", height=300, xaxis={"ticksuffix": "%", "title": "daily return"})


def monthly_heatmap(months: Sequence[MonthlyReturn]) -> go.Figure:
    years = sorted({m.year for m in months})
    grid: list[list[float | None]] = [[None] * 12 for _ in years]
    for m in months:
        grid[years.index(m.year)][m.month - 1] = round(100 * m.value, 2)
    trace = {"type": "heatmap", "z": grid, "x": list(MONTHS), "y": [str(y) for y in years], "colorscale": "RdYlGn",
             "zmid": 0, "texttemplate": "%{z}"}  # fmt: skip
    return _figure(
        [trace],
        "Monthly returns (%)",
        height=max(260, 40 * len(years) + 100),
        yaxis={"type": "category", "dtick": 1, "autorange": "reversed"},  # a label for every year
    )


def bar_chart(labels: Sequence[str], values: Sequence[float | None], title: str, *, percent: bool = False) -> go.Figure:
    scale = 100 if percent else 1
    trace = {"type": "bar", "x": list(labels), "y": [None if v is None else v * scale for v in values]}
    return _figure([trace], title, height=320, **({"yaxis": {"ticksuffix": "%"}} if percent else {}))


def risk_adjusted_scatter(rows: Sequence[ExperimentRow]) -> go.Figure:
    """Return against drawdown of each experiment's best run; colour is its Sharpe ratio."""
    shown = [r for r in rows if r.best_total_return is not None and r.best_max_drawdown is not None]
    trace = {
        "type": "scatter",
        "x": [100 * (r.best_max_drawdown or 0.0) for r in shown],  # negative, as everywhere
        "y": [100 * (r.best_total_return or 0.0) for r in shown],
        "text": [r.name for r in shown],
        "mode": "markers",
        "marker": {
            "size": 12,
            "color": [r.best_sharpe for r in shown],
            "colorscale": "Viridis",
            "showscale": True,
            "colorbar": {"title": "Sharpe"},
        },
    }
    return _figure(
        [trace],
        "Risk-adjusted: return vs drawdown (best run per experiment)",
        xaxis={"title": "max drawdown", "ticksuffix": "%"},
        yaxis={"title": "total return", "ticksuffix": "%"},
    )


def rolling_chart(rolling: Rolling) -> go.Figure:
    """Trailing Sharpe (left axis) and annualised volatility in percent (right axis)."""
    dates = _labels(rolling.dates)
    traces = [
        _line(dates, _values(rolling.sharpe), f"Sharpe ({rolling.window} d)"),
        _line(dates, _values(rolling.volatility, 100), f"volatility ({rolling.window} d)", yaxis="y2"),
    ]
    return _figure(
        traces,
        "Rolling Sharpe and volatility",
        height=300,
        yaxis={"title": "Sharpe"},
        yaxis2={"title": "volatility", "ticksuffix": "%", "overlaying": "y", "side": "right"},
    )


def study_history(detail: StudyDetail) -> go.Figure:
    complete = [t for t in detail.trials if t.value is not None]
    traces = [
        {"type": "scatter", "x": [t.number for t in complete], "y": [t.value for t in complete], "mode": "markers",
         "name": "trial"},
        {"type": "scatter", "x": [t.number for t in detail.trials], "y": detail.best_so_far, "mode": "lines",
         "name": "best so far"},
    ]  # fmt: skip
    return _figure(traces, "Optimization history", xaxis={"title": "trial"})


def normalized_equity(curves: Sequence[tuple[str, EquityCurve]]) -> go.Figure:
    traces = []
    for label, curve in curves:
        start = curve.equity[0] if curve.equity else 1.0
        traces.append(_line(_labels(curve.dates), _values(curve.equity) / start, label))
    return _figure(traces, "Growth of 1 (compared results)")
