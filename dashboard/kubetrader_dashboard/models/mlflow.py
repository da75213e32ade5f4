"""MLflow views: the four cards, the experiment table, run lists and the comparison."""

from __future__ import annotations

from pydantic import BaseModel, Field

from kubetrader_dashboard.models.common import Availability


class ExperimentRow(BaseModel):
    experiment_id: str
    name: str
    project: str | None
    asset_class: str | None
    strategy_family: str | None
    strategy: str | None
    runs: int
    failed_runs: int
    last_run_time: int | None = Field(description="Epoch milliseconds of the newest run's start.")
    best_run_id: str | None
    best_sharpe: float | None
    best_total_return: float | None
    best_max_drawdown: float | None
    best_annual_volatility: float | None


class MlflowOverview(Availability):
    tracking_uri: str | None = Field(default=None, description="Credentials removed.")
    ui_url: str | None = None
    experiments: int = 0
    runs: int = 0
    runs_last_7_days: int = 0
    failed_runs: int = 0
    projects: list[str] = Field(default_factory=list)
    asset_classes: list[str] = Field(default_factory=list)
    strategy_families: list[str] = Field(default_factory=list)
    rows: list[ExperimentRow] = Field(default_factory=list)
    snapshot_age_seconds: float = 0.0


class RunRow(BaseModel):
    run_id: str
    experiment_id: str
    experiment_name: str | None
    run_name: str | None
    status: str
    start_time: int | None
    end_time: int | None
    sharpe_ratio: float | None
    total_return: float | None
    max_drawdown: float | None


class RunComparison(BaseModel):
    run_id: str
    experiment_name: str | None
    run_name: str | None
    status: str
    metrics: dict[str, float]
    params: dict[str, str]


class Comparison(BaseModel):
    runs: list[RunComparison]
