"""Human-readable views of a result: the metrics grouped and formatted, an equity and
drawdown PNG, and a self-contained HTML tearsheet.

The tearsheet is plain HTML with the PNG embedded (base64) and the monthly returns
as a coloured table: it opens offline, weighs ~100 KB and takes a few tens of
milliseconds. quantstats' HTML report was considered and not used: it recomputes
every metric under its own definitions (which differ from ours on purpose, see
kubetrader.metrics), takes seconds, and would put two different Sharpe ratios in
front of the user. Plotly would add ~3.5 MB of JavaScript to every file to be
self-contained.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import TYPE_CHECKING

from kubetrader.specs.metrics import HEADLINE_METRICS, METRIC_GROUPS, METRIC_NAMES

if TYPE_CHECKING:
    import pandas as pd

    from kubetrader.results.schema import ResultDocument
    from kubetrader.runner import BacktestResult


PERCENT_METRICS: frozenset[str] = frozenset(
    {
        "total_return",
        "cagr",
        "avg_daily_return",
        "best_day",
        "worst_day",
        "best_month",
        "worst_month",
        "daily_win_rate",
        "annual_volatility",
        "max_drawdown",
        "avg_drawdown",
        "var_95",
        "cvar_95",
        "trade_win_rate",
        "exposure",
        "benchmark_return",
        "alpha",
        "tracking_error",
        "bull_return",
        "bear_return",
        "high_vol_return",
        "low_vol_return",
        "expectancy",
    }
)
MONEY_METRICS: frozenset[str] = frozenset({"final_value", "avg_trade_pnl"})
COUNT_METRICS: frozenset[str] = frozenset({"num_trades", "max_drawdown_duration"})


def format_metric(name: str, value: float | None) -> str:
    """'12.34%', '1,234.56', '48', '0.812' or 'n/a' (undefined)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if name in PERCENT_METRICS:
        return f"{value:.2%}"
    if name in MONEY_METRICS:
        return f"{value:,.2f}"
    if name in COUNT_METRICS:
        return f"{value:,.0f}" + (" days" if name == "max_drawdown_duration" else "")
    return f"{value:.3f}"


def metrics_table(metrics: dict[str, float | None]) -> str:
    """The metrics as aligned text, grouped (returns, risk, ratios, trades, benchmark, regimes)."""
    width = max(len(n) for n in METRIC_NAMES)
    lines: list[str] = []
    for group, names in METRIC_GROUPS.items():
        lines.append(f"{group}")
        lines.extend(f"  {name:<{width}}  {format_metric(name, metrics.get(name)):>14}" for name in names)
    return "\n".join(lines)


def drawdown(equity: pd.Series) -> pd.Series:
    return equity / equity.cummax() - 1.0


def plot_equity(result: BacktestResult, path: Path, *, title: str = "") -> Path:
    """Equity (with the benchmark's buy-and-hold, scaled to the same start) over drawdown, as a PNG."""
    import matplotlib
    import pandas as pd

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kubetrader.results.store import atomic_write

    equity = result.equity
    index = pd.DatetimeIndex(equity.index)
    dates = index.tz_convert(None) if index.tz is not None else index
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, constrained_layout=True
    )
    top.plot(dates, equity.to_numpy(), color="#1f5fa8", linewidth=1.2, label="strategy")
    if result.benchmark_returns is not None:
        bench = (1 + result.benchmark_returns.reindex(equity.index).fillna(0.0)).cumprod() * float(equity.iloc[0])
        top.plot(
            dates, bench.to_numpy(), color="#999999", linewidth=0.9, label=f"{result.spec.benchmark_symbol} buy & hold"
        )
    top.set_ylabel("equity")
    top.set_title(title or f"{result.spec.strategy.path} on {', '.join(result.spec.data.symbols)}", fontsize=11)
    top.grid(alpha=0.3)
    top.legend(loc="upper left", frameon=False)
    dd = drawdown(equity)
    bottom.fill_between(dates, dd.to_numpy() * 100, 0, color="#c0392b", alpha=0.5, linewidth=0)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    try:
        atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=100))
    finally:
        plt.close(fig)
    return path


def monthly_returns(equity: pd.Series) -> pd.DataFrame:
    """Compounded return per calendar month: years as rows, months 1-12 as columns, plus the year."""
    import pandas as pd

    index = pd.DatetimeIndex(equity.index)
    month_end = equity.groupby([index.year, index.month]).last()
    previous = month_end.shift(1)
    previous.iloc[0] = float(equity.iloc[0])
    table = (month_end / previous - 1.0).unstack()
    table = table.reindex(columns=range(1, 13))
    year_end = equity.groupby(index.year).last()
    year_start = year_end.shift(1)
    year_start.iloc[0] = float(equity.iloc[0])
    table["year"] = year_end / year_start - 1.0
    return table


def _cell_colour(value: float) -> str:
    if not math.isfinite(value):
        return "#ffffff"
    strength = min(abs(value) / 0.10, 1.0)
    if value >= 0:
        return f"rgba(39, 174, 96, {0.15 + 0.65 * strength:.2f})"
    return f"rgba(192, 57, 43, {0.15 + 0.65 * strength:.2f})"


def _monthly_html(table: pd.DataFrame) -> str:
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "Year"]
    head = "".join(f"<th>{m}</th>" for m in months)
    rows = []
    for year, values in table.iterrows():
        cells = []
        for value in values.to_numpy(dtype=float):
            text = "" if not math.isfinite(value) else f"{value:.1%}"
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
.monthly td{min-width:44px;text-align:center}
"""


def write_tearsheet(document: ResultDocument, result: BacktestResult, plot: Path, path: Path) -> Path:
    """A self-contained HTML page: headline metrics, every metric by group, the plot, monthly returns, trades."""
    from kubetrader.results.store import atomic_write_text

    meta = document.metadata
    metrics = document.metrics
    headline = "".join(f"<th>{html.escape(n)}</th>" for n in HEADLINE_METRICS)
    headline_values = "".join(f"<td>{format_metric(n, metrics.get(n))}</td>" for n in HEADLINE_METRICS)
    groups = []
    for group, names in METRIC_GROUPS.items():
        rows = "".join(f"<tr><td>{n}</td><td>{format_metric(n, metrics.get(n))}</td></tr>" for n in names)
        groups.append(f"<div><h3>{group}</h3><table>{rows}</table></div>")
    image = base64.b64encode(plot.read_bytes()).decode() if plot.exists() else ""
    trades = result.trades.tail(25)
    trade_rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_short(v))}</td>" for v in row) + "</tr>"
        for row in trades.itertuples(index=False)
    )
    trade_head = "".join(f"<th>{c}</th>" for c in trades.columns)
    params = ", ".join(f"{k}={v}" for k, v in result.spec.strategy.params.items()) or "defaults"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(meta.id)}</title><style>{_CSS}</style></head>
<body>
<h1>{html.escape(meta.strategy)} ({html.escape(params)}) on {html.escape(", ".join(meta.symbols))}</h1>
<div class="meta">{meta.start} to {meta.end} &middot; result {html.escape(meta.id)} &middot;
spec {meta.spec_hash[:12]} &middot; data {meta.data_hash[:12]} &middot; kubetrader {meta.package_version},
Backtrader {meta.backtrader_version} &middot; {len(document.risk_events)} risk events</div>
<h2>Headline</h2><table class="headline"><tr>{headline}</tr><tr>{headline_values}</tr></table>
<h2>Equity and drawdown</h2><img alt="equity and drawdown" style="max-width:100%"
 src="data:image/png;base64,{image}">
<h2>Monthly returns</h2>{_monthly_html(monthly_returns(result.equity))}
<h2>All metrics</h2><div class="groups">{"".join(groups)}</div>
<h2>Last {len(trades)} of {len(result.trades)} trades</h2><table><tr>{trade_head}</tr>{trade_rows}</table>
</body></html>
"""
    return atomic_write_text(path, page)


def _short(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.2f}"
    text = str(value)
    return text[:10] if text[:4].isdigit() and "T" in text else text
