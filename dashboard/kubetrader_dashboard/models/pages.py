"""What one page of the dashboard shows, in one answer (`GET /pages/backtests`, `GET /pages/performance`).

A page built from many small reads paid each one's round trip and parsing on every rerun: the
Backtests page made nine calls (the list, the chosen result's detail, equity, performance,
trades and open positions, the comparison's choices, submissions, cluster resources). These
models carry exactly what the page draws, so the page makes one call, and the API reads the
result document once.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from kubetrader.results.analysis import DrawdownEpisode, Rolling
from kubetrader_dashboard.models.backtests import BacktestSummary, EquityCurve, Performance, Trade
from kubetrader_dashboard.models.common import Page
from kubetrader_dashboard.models.operations import ClusterResources, SubmissionState


class ResultChoice(BaseModel):
    """A stored result as a select box offers it (no metrics, no series)."""

    id: str
    name: str
    strategy: str
    symbols: list[str]


class Research(BaseModel):
    """The research tables beside a result's charts: the strategy's metrics next to the benchmark's
    buy and hold, the deepest drawdowns, and what the run charged for costs."""

    strategy_metrics: dict[str, float | None] = Field(description="Every grouped metric by name (finite or null).")
    benchmark_metrics: dict[str, float | None]
    top_drawdowns: list[DrawdownEpisode]
    costs: dict[str, str]


class BacktestPanel(BaseModel):
    """The result the Backtests page details: its metrics, equity and drawdown, rolling Sharpe and
    volatility, the research tables and its trades (closed first, open apart). Its spec (and the
    rest of the document) is `GET /backtests/{id}`, read when the page's expander opens."""

    id: str
    name: str
    metrics: dict[str, float | None]
    equity: EquityCurve
    rolling: Rolling | None
    research: Research
    trades: Page[Trade] = Field(description="Closed round trips, oldest first (the first `trades_limit`).")
    open_positions: Page[Trade] = Field(description="Positions still open at the end (not trades).")


class BacktestsPage(BaseModel):
    """The Backtests page: a page of the result list, the chosen result in detail, the results to
    compare, and the work submitted through this API (with the cluster's Backtests)."""

    results: Page[BacktestSummary]
    detail: BacktestPanel | None = Field(
        description="The `detail` result when it is on this page of the list, else the page's first; null when empty."
    )
    compare_choices: list[ResultChoice] = Field(description="Succeeded results, best Sharpe first.")
    submissions: list[SubmissionState]
    cluster: ClusterResources


class PerformancePage(BaseModel):
    """The Performance page: the results to choose from (newest first) and the chosen one's analytics
    and equity curve (with its benchmark)."""

    choices: list[ResultChoice]
    performance: Performance | None = Field(
        description="The `result` when it is among the choices, else the newest; null when there is none."
    )
    equity: EquityCurve | None
