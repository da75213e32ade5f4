"""Queue, cluster resources, live trading, studies, submissions, health and settings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from kubetrader.queue.stats import QueueStats
from kubetrader_dashboard.models.common import Availability


class QueueView(Availability):
    """The work queue as `kubetrader.queue.stats.queue_stats` reports it (the one definition of
    pending, throughput and health that the CLI, the operator's scaler and the dashboard share)."""

    stats: QueueStats | None = None


class ClusterResource(BaseModel):
    kind: str
    name: str
    namespace: str | None
    phase: str | None
    created: str | None
    metrics: dict[str, Any] = Field(default_factory=dict)
    conditions: list[dict[str, Any]] = Field(default_factory=list)


class ClusterResources(Availability):
    items: list[ClusterResource] = Field(default_factory=list)


class LivePosition(BaseModel):
    symbol: str
    size: float
    avg_price: float | None = None
    market_price: float | None = None
    market_value: float | None = None
    unrealized_pnl: float | None = None
    realized_pnl: float | None = None


class LiveOrder(BaseModel):
    order_id: str
    symbol: str
    side: str
    size: float
    order_type: str
    limit_price: float | None = None
    status: str
    submitted_at: str | None = None


class JournalEntry(BaseModel):
    time: str
    event: str
    message: str = ""
    order_ref: str | None = None


class LiveState(Availability):
    """The live runner's view (its `GET /status` and `GET /journal`): account, positions, open orders, journal.

    `account` holds the runner's numbers under stable names: `net_liquidation` (cash plus
    positions at the last price), `cash`, `session_pnl` (since the runner started),
    `realized_pnl` and `unrealized_pnl`. `heartbeat_age_seconds` is measured when the
    dashboard asked; `halted` is the reason the runner takes no new exposure, if any.
    """

    deployment: str | None = None
    mode: str | None = None
    connected: bool | None = None
    halted: str | None = None
    stopping: bool | None = None
    last_heartbeat: str | None = None
    heartbeat_age_seconds: float | None = None
    flat_confirmed_at: str | None = None
    account: dict[str, float | None] = Field(default_factory=dict)
    positions: list[LivePosition] = Field(default_factory=list)
    open_orders: list[LiveOrder] = Field(default_factory=list)
    journal: list[JournalEntry] = Field(default_factory=list)
    journal_reason: str | None = Field(default=None, description="Why the journal is missing, when it is.")
    deployments: list[ClusterResource] = Field(default_factory=list)


class StudySummary(BaseModel):
    name: str
    direction: str
    trials: int
    complete: int
    running: int
    failed: int
    pruned: int
    best_value: float | None
    best_params: dict[str, Any] | None
    started: str | None


class StudyList(Availability):
    items: list[StudySummary] = Field(default_factory=list)


class TrialRow(BaseModel):
    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    started: str | None
    finished: str | None


class StudyDetail(BaseModel):
    summary: StudySummary
    trials: list[TrialRow]
    best_so_far: list[float | None] = Field(description="Best value after each trial, in trial order.")
    param_importance: dict[str, float] | None = None
    importance_note: str | None = None


class SubmissionState(BaseModel):
    id: str
    kind: Literal["Backtest", "OptimizationStudy"]
    name: str
    target: Literal["cluster", "queue", "local"]
    state: Literal["queued", "running", "succeeded", "failed", "created"]
    submitted_at: str
    finished_at: str | None = None
    result_ids: list[str] = Field(default_factory=list)
    error: str | None = None


class ComponentHealth(BaseModel):
    name: str
    status: Literal["ok", "down", "not_configured"]
    detail: str | None = None
    latency_ms: float | None = None


class SystemResources(BaseModel):
    source: Literal["psutil", "proc"]
    cpu_percent: float | None
    cpu_count: int | None
    memory_total_mb: float | None
    memory_used_percent: float | None
    disk_total_gb: float | None
    disk_used_percent: float | None


class Alive(BaseModel):
    """The process answers: what probes and start-up scripts wait for (no detail, no sign-in)."""

    status: Literal["ok"] = "ok"


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    components: list[ComponentHealth]
    system: SystemResources
    results: dict[str, int]


class SettingEntry(BaseModel):
    name: str
    env: str
    value: str | None
    secret: bool
    description: str | None


class SettingsView(BaseModel):
    entries: list[SettingEntry]
