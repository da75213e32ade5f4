"""Result documents for the tracking tests, built from the real bundled ORCL data.

The engine pipeline (kubetrader.pipeline) had not landed when these tests were
written, so the document is computed here: an SMA crossover on ORCL daily closes,
its equity curve, round-trip trades and metrics, written to disk with the same
files the pipeline writes (equity CSV, trades CSV, plot PNG, tearsheet HTML, JSON).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from kubetrader.results.schema import ResultDocument, ResultMetadata, TradeRecord
from kubetrader.specs.metrics import METRIC_NAMES
from tests.helpers import EXAMPLES

ORCL = EXAMPLES / "data" / "orcl-1995-2014.txt"


def backtest_spec(
    *,
    project: str = "Q1_2025",
    asset_class: str = "Equities",
    family: str = "TrendFollowing",
    strategy: str = "strategies.sma_crossover.SMACrossover",
    fast: int = 10,
    slow: int = 30,
) -> dict[str, Any]:
    """A Backtest spec in wire (camelCase) form, as stored in a custom resource."""
    return {
        "strategy": {"path": strategy, "params": {"fast": fast, "slow": slow}},
        "data": {"symbols": ["ORCL"], "start": "2005-01-01", "end": "2009-12-31", "timeframe": "1d"},
        "broker": {
            "cash": 100000.0,
            "commission": {"model": "ib-standard"},
            "slippage": {"marketBps": 5.0, "limitBps": 0.0},
        },
        "risk": {"maxDrawdown": 0.5, "maxPositionSize": 5000.0},
        "tracking": {"enabled": True, "project": project, "assetClass": asset_class, "strategyFamily": family},
    }


def _compound(returns: pd.Series) -> float:
    return float(np.prod(1 + returns.to_numpy()) - 1)


def _metrics(returns: pd.Series, equity: pd.Series, bench: pd.Series, trade_pnls: list[float]) -> dict[str, Any]:
    """Every engine metric name, computed from the curve (None where undefined, as the engine does)."""
    ann = np.sqrt(252)
    vol = float(returns.std())
    drawdown = equity / equity.cummax() - 1
    monthly = (1 + returns).resample("ME").prod() - 1
    wins = [p for p in trade_pnls if p > 0]
    losses = [p for p in trade_pnls if p <= 0]
    years = (equity.index[-1] - equity.index[0]).days / 365.25
    total = float(equity.iloc[-1] / equity.iloc[0] - 1)
    beta = float(np.cov(returns, bench)[0, 1] / bench.var())
    values: dict[str, Any] = {
        "total_return": total,
        "cagr": (1 + total) ** (1 / years) - 1,
        "final_value": float(equity.iloc[-1]),
        "avg_daily_return": float(returns.mean()),
        "best_day": float(returns.max()),
        "worst_day": float(returns.min()),
        "best_month": float(monthly.max()),
        "worst_month": float(monthly.min()),
        "daily_win_rate": float((returns > 0).mean()),
        "annual_volatility": vol * ann,
        "max_drawdown": float(drawdown.min()),
        "max_drawdown_duration": float((drawdown < 0).astype(int).groupby((drawdown == 0).cumsum()).sum().max()),
        "avg_drawdown": float(drawdown[drawdown < 0].mean()),
        "var_95": float(returns.quantile(0.05)),
        "cvar_95": float(returns[returns <= returns.quantile(0.05)].mean()),
        "skew": float(scipy.stats.skew(returns.to_numpy())),
        "kurtosis": float(scipy.stats.kurtosis(returns.to_numpy())),
        "tail_ratio": float(abs(returns.quantile(0.95) / returns.quantile(0.05))),
        "sharpe_ratio": float(returns.mean() / vol * ann),
        "sortino_ratio": float(returns.mean() / returns[returns < 0].std() * ann),
        "calmar_ratio": None,
        "omega_ratio": float(returns[returns > 0].sum() / -returns[returns < 0].sum()),
        "num_trades": float(len(trade_pnls)),
        "trade_win_rate": len(wins) / len(trade_pnls) if trade_pnls else None,
        "profit_factor": sum(wins) / -sum(losses) if losses and sum(losses) else None,
        "payoff_ratio": None,
        "avg_trade_pnl": float(np.mean(trade_pnls)) if trade_pnls else None,
        "expectancy": float(np.mean(trade_pnls)) if trade_pnls else None,
        "exposure": float((returns != 0).mean()),
        "benchmark_return": _compound(bench),
        "alpha": float((returns.mean() - beta * bench.mean()) * 252),
        "beta": beta,
        "r_squared": float(np.corrcoef(returns, bench)[0, 1] ** 2),
        "information_ratio": float((returns - bench).mean() / (returns - bench).std() * ann),
        "tracking_error": float((returns - bench).std() * ann),
    }
    values["calmar_ratio"] = values["cagr"] / abs(values["max_drawdown"]) if values["max_drawdown"] else None
    for regime in ("bull", "bear", "high_vol", "low_vol"):
        values[f"{regime}_return"] = None
        values[f"{regime}_sharpe"] = None
    values["bull_return"] = _compound(returns[bench > 0])
    values["bear_return"] = _compound(returns[bench <= 0])
    assert set(values) == set(METRIC_NAMES)
    return values


def write_backtest(
    directory: Path,
    result_id: str,
    *,
    status: str = "succeeded",
    error: str | None = None,
    **spec_options: Any,
) -> tuple[ResultDocument, Path]:
    """Run the crossover on ORCL 2005-2009 and write the result JSON and its files into `directory`."""
    spec = backtest_spec(**spec_options)
    fast, slow = spec["strategy"]["params"]["fast"], spec["strategy"]["params"]["slow"]
    started = dt.datetime.now(dt.UTC)
    prices = pd.read_csv(ORCL, parse_dates=["Date"], index_col="Date")["Close"].loc["2005":"2009"]
    in_market = (prices.rolling(fast).mean() > prices.rolling(slow).mean()).shift(1, fill_value=False)
    bench = prices.pct_change().fillna(0.0)
    returns = bench.where(in_market, 0.0)
    equity = 100_000 * (1 + returns).cumprod()

    trades: list[TradeRecord] = []
    entries = prices.index[in_market & ~in_market.shift(1, fill_value=False)]
    exits = prices.index[~in_market & in_market.shift(1, fill_value=False)]
    for entry, exit_ in zip(entries, exits, strict=False):
        size = float(int(equity.loc[entry] / prices.loc[entry]))
        pnl = size * float(prices.loc[exit_] - prices.loc[entry])
        trades.append(
            TradeRecord(
                symbol="ORCL",
                entry_time=entry.date().isoformat(),
                exit_time=exit_.date().isoformat(),
                entry_price=float(prices.loc[entry]),
                exit_price=float(prices.loc[exit_]),
                size=size,
                pnl=pnl,
                pnl_net=pnl - 2.0,
                commission=2.0,
                bars_held=int(len(prices.loc[entry:exit_]) - 1),
            )
        )
    metrics = _metrics(returns, equity, bench, [t.pnl_net for t in trades])

    directory.mkdir(parents=True, exist_ok=True)
    files = directory / result_id
    files.mkdir(exist_ok=True)
    equity.rename("equity").to_csv(files / "equity.csv", index_label="date")
    pd.DataFrame([t.model_dump() for t in trades]).to_csv(files / "trades.csv", index=False)
    _plot(equity, files / "equity.png")
    (files / "tearsheet.html").write_text(
        "<html><body><h1>" + result_id + "</h1>" + pd.Series(metrics).to_frame("value").to_html() + "</body></html>"
    )
    finished = dt.datetime.now(dt.UTC)
    document = ResultDocument(
        status=status,
        error=error,
        metadata=ResultMetadata(
            id=result_id,
            name=f"sma-orcl-{fast}-{slow}",
            strategy=spec["strategy"]["path"],
            symbols=["ORCL"],
            start="2005-01-01",
            end="2009-12-31",
            spec_hash=hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16],
            data_hash=hashlib.sha256(ORCL.read_bytes()).hexdigest()[:16],
            package_version="0.1.0",
            backtrader_version="1.9.78.123",
            started_at=started.isoformat(),
            finished_at=finished.isoformat(),
            wall_seconds=(finished - started).total_seconds(),
            tracking="off",
        ),
        spec=spec,
        metrics=metrics if status == "succeeded" else {},
        dates=[d.date().isoformat() for d in equity.index],
        equity=equity.tolist(),
        returns=returns.tolist(),
        benchmark_returns=bench.tolist(),
        trades=trades,
        artifacts={
            "equity_csv": f"{result_id}/equity.csv",
            "trades_csv": f"{result_id}/trades.csv",
            "equity_plot": f"{result_id}/equity.png",
            "tearsheet": f"{result_id}/tearsheet.html",
        },
    )
    result_path = directory / f"{result_id}.json"
    result_path.write_text(document.model_dump_json(indent=1))
    return document, result_path


def _plot(equity: pd.Series, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3), dpi=60)
    ax.plot(equity.index, equity.to_numpy())
    fig.savefig(path)
    plt.close(fig)
