"""Human-readable views of a result: the metrics grouped and formatted, an equity and
drawdown chart (SVG, kubetrader.results.chart), and a self-contained HTML tearsheet.

The tearsheet is plain HTML with the chart embedded inline and the monthly returns
as a coloured table: it opens offline, weighs ~100 KB and takes a few tens of
milliseconds. quantstats' HTML report was considered and not used: it recomputes
every metric under its own definitions (which differ from ours on purpose, see
kubetrader.metrics), takes seconds, and would put two different Sharpe ratios in
front of the user. Plotly would add ~3.5 MB of JavaScript to every file to be
self-contained.
"""

from __future__ import annotations

import html
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetrader.errors import SpecError
from kubetrader.formatting import (
    MISSING,
    group_label,
    metric_help,
    metric_label,
    metric_value,
    money,
    percent,
    timestamp,
)
from kubetrader.results import analysis
from kubetrader.results.trades import closed_trades, open_positions
from kubetrader.specs.metrics import HEADLINE_METRICS, METRIC_GROUPS, METRIC_NAMES

if TYPE_CHECKING:
    from kubetrader.results.schema import ResultDocument
    from kubetrader.runner import BacktestResult


def metrics_table(metrics: dict[str, float | None]) -> str:
    """The metrics as aligned text, grouped: the label, the value in its unit, the name to use in options."""
    width = max(len(metric_label(n)) for n in METRIC_NAMES)
    lines: list[str] = []
    for group, names in METRIC_GROUPS.items():
        lines.append(group_label(group))
        lines.extend(
            f"  {metric_label(name):<{width}}  {metric_value(name, metrics.get(name)):>14}   {name}" for name in names
        )
    return "\n".join(lines)


def equity_chart(document: ResultDocument, *, title: str = "", benchmark: str = "") -> str:
    """The result's chart as SVG (kubetrader.results.chart): equity with the benchmark's buy-and-hold
    scaled to the same start, drawdown, and rolling Sharpe with volatility on its right axis."""
    from kubetrader.results import chart

    equity = document.equity
    lines = [chart.Line(equity, chart.BLUE, 1.2, "strategy")]
    if document.benchmark_returns is not None and equity:
        bench = chart.growth(equity[0], document.benchmark_returns)
        lines.append(chart.Line(bench, chart.GREY, 0.9, f"{benchmark} buy & hold".strip()))
    rolled = analysis.rolling([], document.returns)
    panels = [
        chart.Panel(lines, "equity", weight=3, legend=True),
        chart.Panel([chart.Line([100 * v for v in chart.drawdown(equity)], chart.RED, fill=True)], "drawdown %",
                    percent=True),
        chart.Panel(
            [
                chart.Line(rolled.sharpe, chart.BLUE, 0.9),
                chart.Line([None if v is None else 100 * v for v in rolled.volatility], chart.ORANGE, 0.8,
                           right_axis=True),
            ],
            f"Sharpe ({rolled.window} d)",
            right_label="volatility %",
            zero_line=True,
        ),
    ]  # fmt: skip
    meta = document.metadata
    return chart.render(document.dates, panels, title=title or f"{meta.strategy} on {', '.join(meta.symbols)}")


def plot_equity(document: ResultDocument, path: Path, *, title: str = "", benchmark: str = "") -> Path:
    """Write `equity_chart` to `path` (an .svg)."""
    from kubetrader.results.store import atomic_write_text

    return atomic_write_text(path, equity_chart(document, title=title, benchmark=benchmark))


def monthly_returns(dates: Sequence[str], equity: Sequence[float]) -> list[tuple[int, list[float]]]:
    """Compounded return per calendar month: one row per year, months 1-12 (NaN where the equity has no
    day), then the year's. Each period runs from the last equity of the one before (the first from the
    first equity); on arrays, as pandas' groupby-last and shift gave it."""
    import numpy as np

    values = np.asarray(equity, dtype=np.float64)
    years = np.array([int(d[:4]) for d in dates])
    months = years * 12 + np.array([int(d[5:7]) - 1 for d in dates])

    def period_returns(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        last = np.append(np.flatnonzero(np.diff(keys) != 0), keys.size - 1)  # each period's last day
        ends = values[last]
        starts = np.concatenate(([values[0]], ends[:-1]))
        return keys[last], ends / starts - 1.0

    month_keys, month_values = period_returns(months)
    year_keys, year_values = period_returns(years)
    rows = []
    for year, year_value in zip(year_keys.tolist(), year_values.tolist(), strict=True):
        cells = [math.nan] * 12
        for key, value in zip(month_keys.tolist(), month_values.tolist(), strict=True):
            if key // 12 == year:
                cells[key % 12] = value
        rows.append((year, [*cells, year_value]))
    return rows


def _cell_colour(value: float) -> str:
    if not math.isfinite(value):
        return "#ffffff"
    strength = min(abs(value) / 0.10, 1.0)
    if value >= 0:
        return f"rgba(39, 174, 96, {0.15 + 0.65 * strength:.2f})"
    return f"rgba(192, 57, 43, {0.15 + 0.65 * strength:.2f})"


def _monthly_html(table: list[tuple[int, list[float]]]) -> str:
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "Year"]
    head = "".join(f"<th>{m}</th>" for m in months)
    rows = []
    for year, values in table:
        cells = []
        for value in values:
            text = "" if not math.isfinite(value) else percent(value, 1)
            cells.append(f'<td style="background:{_cell_colour(value)}">{text}</td>')
        rows.append(f"<tr><th>{year}</th>{''.join(cells)}</tr>")
    return f'<table class="monthly"><tr><th></th>{head}</tr>{"".join(rows)}</table>'


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:20px;margin-bottom:4px} h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:13px} table{border-collapse:collapse;font-size:13px}
td,th{padding:3px 8px;text-align:right} th{text-align:left;font-weight:600}
.headline td{font-size:18px;font-weight:600;padding:4px 18px} .headline th{color:#666;font-weight:400;padding:0 18px}
.groups{display:flex;flex-wrap:wrap;gap:24px} .groups table td:first-child{text-align:left;color:#444}
.monthly td{min-width:44px;text-align:center} .chart svg{max-width:100%;height:auto}
"""


def _metric_cell(name: str, value: float | None) -> str:
    tip, label = html.escape(metric_help(name)), html.escape(metric_label(name))
    return f'<td title="{tip}">{label}</td><td>{metric_value(name, value)}</td>'


def _trade_table(trades: list[dict[str, Any]], *, open_positions: bool = False) -> str:
    head = ["Symbol", "Entry", "Entry price", "Size", "Exit", "Exit price", "PnL", "Net PnL", "Commission", "Bars"]
    if open_positions:
        head[4:6] = ["Status", "Last close"]
    rows = []
    record: dict[Any, Any]
    for record in trades:
        exit_cells = (
            ["open", MISSING] if open_positions else [timestamp(record["exit_time"]), money(record["exit_price"])]
        )
        cells = [
            html.escape(str(record["symbol"])),
            timestamp(record["entry_time"]),
            money(record["entry_price"]),
            f"{record['size']:,.0f}",
            *exit_cells,
            money(record["pnl"]),
            money(record["pnl_net"]),
            money(record["commission"]),
            f"{record['bars_held']:,}",
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{h}</th>" for h in head)
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"


def write_tearsheet(document: ResultDocument, result: BacktestResult, plot: Path, path: Path) -> Path:
    """A self-contained HTML page: headline metrics, every metric by group, the plot, monthly returns,
    the deepest drawdowns, strategy against benchmark, the cost settings, trades and open positions."""
    from kubetrader.results.store import atomic_write_text

    meta = document.metadata
    metrics = document.metrics
    headline = "".join(
        f'<th title="{html.escape(metric_help(n))}">{html.escape(metric_label(n))}</th>' for n in HEADLINE_METRICS
    )
    headline_values = "".join(f"<td>{metric_value(n, metrics.get(n))}</td>" for n in HEADLINE_METRICS)
    groups = []
    for group, names in METRIC_GROUPS.items():
        rows = "".join(f"<tr>{_metric_cell(n, metrics.get(n))}</tr>" for n in names)
        groups.append(f"<div><h3>{group_label(group)}</h3><table>{rows}</table></div>")
    image = plot.read_text(encoding="utf-8") if plot.exists() else ""
    trades = result.trade_rows()
    closed, still_open = closed_trades(trades), open_positions(trades)
    shown = closed[-25:]
    params = ", ".join(f"{k}={v}" for k, v in result.spec.strategy.params.items()) or "defaults"
    episodes = analysis.top_drawdowns(document.dates, document.equity)
    drawdown_rows = "".join(
        f"<tr><td>{e.peak}</td><td>{e.trough}</td><td>{e.recovered or 'not yet'}</td>"
        f"<td>{percent(e.depth)}</td><td>{MISSING if e.days is None else f'{e.days:,}'}</td></tr>"
        for e in episodes
    )
    bench = analysis.benchmark_metrics(document.dates, document.benchmark_returns)
    versus = "".join(
        f'<tr><td title="{html.escape(metric_help(n))}">{html.escape(metric_label(n))}</td>'
        f"<td>{metric_value(n, metrics.get(n))}</td><td>{metric_value(n, bench.get(n))}</td></tr>"
        for n in analysis.SIDE_BY_SIDE
    )
    costs = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
        for k, v in analysis.cost_settings(document.spec).items()
    )
    open_html = (
        f"<h2>Open at the end ({len(still_open)}, not counted as trades; PnL unrealised at the last close)</h2>"
        + _trade_table(still_open, open_positions=True)
        if len(still_open)
        else ""
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(meta.id)}</title><style>{_CSS}</style></head>
<body>
<h1>{html.escape(meta.strategy)} ({html.escape(params)}) on {html.escape(", ".join(meta.symbols))}</h1>
<div class="meta">{meta.start} to {meta.end} &middot; result {html.escape(meta.id)} &middot;
spec {meta.spec_hash[:12]} &middot; data {meta.data_hash[:12]} &middot; kubetrader {meta.package_version},
Backtrader {meta.backtrader_version} &middot; {len(document.risk_events)} risk events</div>
<h2>Headline</h2><table class="headline"><tr>{headline}</tr><tr>{headline_values}</tr></table>
<h2>Equity, drawdown, rolling Sharpe and volatility</h2><div class="chart">{image}</div>
<h2>Monthly returns</h2>{_monthly_html(monthly_returns(document.dates, document.equity))}
<div class="groups">
<div><h2>Strategy and benchmark ({html.escape(result.spec.benchmark_symbol)} buy &amp; hold)</h2>
<table><tr><th></th><th>Strategy</th><th>Benchmark</th></tr>{versus}</table></div>
<div><h2>Top {len(episodes)} drawdowns</h2>
<table><tr><th>Peak</th><th>Trough</th><th>Recovered</th><th>Depth</th><th>Days</th></tr>{drawdown_rows}</table></div>
<div><h2>Costs and slippage</h2><table>{costs}</table></div>
</div>
<h2>All metrics</h2><div class="groups">{"".join(groups)}</div>
<h2>Last {len(shown)} of {len(closed)} trades</h2>{_trade_table(shown)}
{open_html}
</body></html>
"""
    return atomic_write_text(path, page)


def write_quantstats_tearsheet(document: ResultDocument, path: Path) -> Path:
    """QuantStats' HTML report (`qs.reports.html`) of the stored daily returns, against the benchmark.

    An option next to the native tearsheet, for users who know QuantStats' layout: it computes its
    own metrics under its own definitions (the differences are tabled in kubetrader.metrics), takes
    seconds, and needs the optional extra `kubetrader[quantstats]`.
    """
    try:
        import quantstats as qs
    except ImportError:
        raise SpecError(
            "--tearsheet",
            "quantstats is not installed: pip install 'kubetrader[quantstats]', or use --tearsheet native",
        ) from None
    import pandas as pd

    index = pd.DatetimeIndex(document.dates)
    returns = pd.Series(document.returns, index=index, name="Strategy").iloc[1:]
    benchmark = None
    if document.benchmark_returns:
        benchmark = pd.Series(document.benchmark_returns, index=index, name="Benchmark").iloc[1:]
    title = f"{document.metadata.name}: {document.metadata.strategy} on {', '.join(document.metadata.symbols)}"
    import logging

    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)  # its Arial-not-found chatter
    with tempfile.TemporaryDirectory() as scratch:
        produced = Path(scratch) / "quantstats.html"
        qs.reports.html(returns, benchmark=benchmark, output=str(produced), title=title)
        data = produced.read_bytes()
    from kubetrader.results.store import atomic_write_text

    return atomic_write_text(path, data.decode("utf-8"))
