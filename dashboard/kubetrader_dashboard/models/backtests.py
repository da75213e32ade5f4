"""Backtest results as the API returns them: a summary row, the detail, series and trades."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from kubetrader.results.analysis import DrawdownEpisode, Rolling
from kubetrader.results.schema import OrderRecord, ResultMetadata, RiskEvent


class BacktestSummary(BaseModel):
    """One row of the result list: what the index holds, no series."""

    id: str
    name: str
    strategy: str
    symbols: list[str]
    start: str
    end: str
    status: Literal["succeeded", "failed"]
    error: str | None = None
    started_at: str
    finished_at: str
    wall_seconds: float
    project: str | None = None
    asset_class: str | None = None
    strategy_family: str | None = None
    mlflow_run_id: str | None = None
    sharpe_ratio: float | None = None
    total_return: float | None = None
    max_drawdown: float | None = None
    cagr: float | None = None
    num_trades: float | None = None


class BacktestDetail(BaseModel):
    """Everything in the result document except the long series (fetched separately)."""

    id: str
    status: Literal["succeeded", "failed"]
    error: str | None = None
    metadata: ResultMetadata
    spec: dict[str, Any]
    metrics: dict[str, float | None]
    positions: dict[str, float]
    risk_events: list[RiskEvent]
    orders: list[OrderRecord]
    artifacts: dict[str, str]
    bars: int = Field(description="Points in the equity curve.")
    trade_count: int = Field(description="Closed round trips (equals the num_trades metric).")
    open_positions: int = Field(default=0, description="Positions still open at the end (not trades).")


class EquityCurve(BaseModel):
    """Daily equity, its drawdown and the benchmark's buy-and-hold scaled to the same start."""

    id: str
    dates: list[str]
    equity: list[float]
    drawdown: list[float] = Field(description="Fraction below the running peak (0 or negative).")
    benchmark_equity: list[float] | None = None


class Trade(BaseModel):
    """A closed round trip, or (`open`) a position still held when the data ended: then
    `exit_time` is None and the PnL is unrealised at the last close
    (kubetrader.results.trades). The trade log spans every result."""

    result_id: str
    strategy: str
    symbol: str
    entry_time: str
    exit_time: str | None
    entry_price: float
    exit_price: float | None
    size: float
    pnl: float
    pnl_net: float
    commission: float
    bars_held: int
    open: bool = Field(default=False, description="Still open at the end: not a trade, not counted in num_trades.")


class HistogramBin(BaseModel):
    left: float
    right: float
    count: int


class MonthlyReturn(BaseModel):
    year: int
    month: int = Field(ge=1, le=12)
    value: float


class BenchmarkComparison(BaseModel):
    strategy_return: float | None
    benchmark_return: float | None
    excess_return: float | None
    alpha: float | None
    beta: float | None
    information_ratio: float | None
    tracking_error: float | None
    correlation: float | None


class Performance(BaseModel):
    """Analytics of one result: metrics by group, benchmark, distribution, months, drawdown."""

    id: str
    metrics: dict[str, dict[str, float | None]] = Field(description="Metric groups -> name -> value.")
    benchmark: BenchmarkComparison
    return_distribution: list[HistogramBin]
    monthly_returns: list[MonthlyReturn]
    dates: list[str]
    drawdown: list[float]
    rolling: Rolling | None = None
    top_drawdowns: list[DrawdownEpisode] = Field(default_factory=list)
    benchmark_metrics: dict[str, float | None] = Field(
        default_factory=dict, description="The benchmark's buy-and-hold metrics, beside the strategy's."
    )
    costs: dict[str, str] = Field(default_factory=dict, description="Commission, fees and slippage of the run.")


class RankingRow(BaseModel):
    """One strategy (or one result) in the ranking by a metric."""

    key: str
    strategy: str
    results: int
    best: float | None
    mean: float | None
    best_result_id: str | None
    sharpe_ratio: float | None = None
    total_return: float | None = None
    max_drawdown: float | None = None


class Rankings(BaseModel):
    metric: str
    group_by: Literal["strategy", "result"]
    rows: list[RankingRow]


class DashboardSummary(BaseModel):
    """The Dashboard tab's first row: the store's counts and the newest succeeded backtest."""

    results: dict[str, int]
    latest: BacktestSummary | None
    latest_positions: dict[str, float] = Field(default_factory=dict)
    latest_risk: dict[str, float | None] = Field(default_factory=dict)
