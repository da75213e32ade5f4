"""Logs and Kubernetes Events, as the Logs tab shows them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from kubetrader_dashboard.models.common import Availability


class LogSource(BaseModel):
    """One log: a local run's file beside its result, or a pod's container log in the cluster."""

    key: str = Field(description="Pass to GET /logs/{key}.")
    kind: str = Field(description="Backtest, OptimizationStudy, worker, operator, or the pod's component.")
    name: str = Field(description="The resource (or pod) the log belongs to.")
    origin: Literal["local", "cluster"]
    updated: str | None = None


class LogSources(Availability):
    items: list[LogSource] = Field(default_factory=list)
    cluster_reason: str | None = Field(default=None, description="Why pod logs are missing, when they are.")


class LogText(BaseModel):
    key: str
    lines: list[str]
    truncated: bool = Field(description="Only the last `tail` lines are shown.")


class EventRow(BaseModel):
    time: str | None
    type: str | None
    reason: str | None
    kind: str | None
    name: str | None
    message: str | None
    count: int | None = None


class Events(Availability):
    items: list[EventRow] = Field(default_factory=list)
