"""The `status` of each kind, as pydantic models so the CRD's status schema is generated too.

Only the operator writes status; the engine reports through the Job's termination
message. Conditions are the truth and `phase` is derived from them (see
`kubetrader_operator.conditions`), so a reader can trust either without them disagreeing.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _StatusModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ConditionStatus(_StatusModel):
    """One condition, as in Kubernetes API conventions (metav1.Condition)."""

    type: str = Field(max_length=316)
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    message: str = Field(default="", max_length=32768)
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"})
    observed_generation: int | None = Field(default=None, ge=0)


class HeadlineMetrics(_StatusModel):
    """The numbers `kubectl get backtests` shows; the full result is at `resultPath`."""

    sharpe_ratio: float | None = None
    total_return: float | None = None
    max_drawdown: float | None = None
    cagr: float | None = None
    num_trades: int | None = None
    # Robustness numbers, when the run computed them (a LiveDeployment's promotion may require a minimum).
    deflated_sharpe: float | None = None
    walk_forward_efficiency: float | None = None


class JobReference(_StatusModel):
    name: str
    uid: str | None = None


class MatrixCells(_StatusModel):
    """A matrix Backtest's aggregate: its cells ran on the worker pool; the table has every one."""

    total: int = Field(ge=0)
    failed: int = Field(ge=0)
    best: str | None = Field(default=None, description="Id of the cell with the best Sharpe ratio.")
    table: str | None = Field(default=None, description="Where the consolidated table (CSV) was written.")


class OpenOrder(_StatusModel):
    order_id: str
    symbol: str
    side: str
    size: float
    order_type: str
    limit_price: float | None = None
    status: str


class BacktestStatus(_StatusModel):
    phase: Literal["Pending", "Running", "Succeeded", "Failed"] | None = None
    observed_generation: int | None = Field(default=None, ge=0)
    conditions: list[ConditionStatus] = Field(default_factory=list)
    start_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    completion_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    metrics: HeadlineMetrics | None = None
    result_path: str | None = None
    mlflow_run_id: str | None = None
    job: JobReference | None = None
    cells: MatrixCells | None = None
    message: str | None = Field(default=None, description="The last failure or progress message.")


class OptimizationStudyStatus(_StatusModel):
    phase: Literal["Pending", "Running", "Succeeded", "Failed"] | None = None
    observed_generation: int | None = Field(default=None, ge=0)
    conditions: list[ConditionStatus] = Field(default_factory=list)
    start_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    completion_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    trials_done: int | None = Field(default=None, ge=0)
    trials_running: int | None = Field(default=None, ge=0)
    trials_failed: int | None = Field(default=None, ge=0)
    best_value: float | None = None
    best_params: dict[str, bool | int | float | str] | None = None
    best_trial: int | None = None
    mlflow_parent_run_id: str | None = None
    workers: int | None = Field(default=None, ge=0)
    objective: str | None = Field(default=None, description="The metric the study optimizes.")
    study_name: str | None = Field(default=None, description="The Optuna study and work-queue batch `study-{it}`.")
    job: JobReference | None = Field(default=None, description="The driver Job.")
    message: str | None = None


class LiveDeploymentStatus(_StatusModel):
    phase: Literal["Pending", "Running", "Trading", "Halted", "Stopping", "Failed"] | None = None
    observed_generation: int | None = Field(default=None, ge=0)
    conditions: list[ConditionStatus] = Field(default_factory=list)
    start_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    connected: bool | None = None
    pnl: float | None = Field(default=None, description="Today's profit and loss, in account currency.")
    equity: float | None = None
    open_orders: int | None = Field(default=None, ge=0)
    positions: dict[str, float] | None = None
    running_generation: int | None = Field(
        default=None,
        ge=0,
        description="The spec generation the runner's pod template carries (Recreate: the old runner is "
        "gone before the new one starts); below metadata.generation while an edit is refused or rolling.",
    )
    halt_reason: str | None = None
    stop_outcome: str | None = None
    last_heartbeat: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    flat_confirmed_at: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="When a fresh broker query last showed no orders and no positions.",
    )
    realized_pnl: float | None = None
    unrealized_pnl: float | None = None
    open_order_list: list[OpenOrder] | None = None
    message: str | None = None
