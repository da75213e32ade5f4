"""What travels through the queue: a task in, a result out (pydantic at the edges).

A task is a Backtest spec in its wire form (camelCase dict) plus the bookkeeping
the queue needs: an id unique within its batch (a matrix cell id from
`expand_matrix`, or a trial id chosen by the optimizer), the batch, a priority and
how many attempts it gets. `meta` carries whatever the producer wants back with
the result (trial number, symbol and strategy for a campaign table) without the
queue having to know about it.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Ids end up inside Redis key names ("{prefix}:task:{batch}:{id}"), so no ':' and no spaces.
ID_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"

# Priorities are folded into one ZSET score with a FIFO sequence number (see queue.py);
# this bound keeps the score an exact integer inside a double.
MAX_PRIORITY = 4096


class TaskState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # in the dead-letter set: fatal error, or out of attempts
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewTask(_Model):
    """A task as the producer gives it to `WorkQueue.enqueue`."""

    id: str = Field(pattern=ID_PATTERN)
    spec: dict[str, Any] = Field(description="BacktestSpec wire dict (or any JSON the handler understands).")
    priority: int = Field(default=0, ge=-MAX_PRIORITY, le=MAX_PRIORITY, description="Higher runs first.")
    max_attempts: int = Field(default=3, ge=1, le=100)
    meta: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: float | None = Field(
        default=None, gt=0, description="Execution deadline of one attempt; past it the task is dead-lettered."
    )


class Task(_Model):
    """A claimed task, as a worker's handler sees it."""

    id: str
    batch: str
    spec: dict[str, Any]
    priority: int
    attempt: int = Field(description="1 on the first run; a re-run after a lost lease or an error adds one.")
    max_attempts: int
    meta: dict[str, Any] = Field(default_factory=dict)
    enqueued_at_ms: int
    last_error: str | None = None
    timeout_seconds: float | None = None

    @property
    def ref(self) -> str:
        return task_ref(self.batch, self.id)

    @classmethod
    def from_hash(cls, fields: dict[str, str]) -> Task:
        return cls(
            id=fields["id"],
            batch=fields["batch"],
            spec=json.loads(fields["spec"]),
            priority=int(fields["priority"]),
            attempt=int(fields["attempts"]),
            max_attempts=int(fields["max_attempts"]),
            meta=json.loads(fields.get("meta") or "{}"),
            enqueued_at_ms=int(fields["enqueued_at"]),
            last_error=fields.get("last_error") or None,
            timeout_seconds=int(fields["timeout_ms"]) / 1000 if fields.get("timeout_ms", "0") != "0" else None,
        )


class HandlerOutcome(_Model):
    """What a task handler returns on success."""

    metrics: dict[str, float | None] = Field(default_factory=dict)
    result_path: str | None = None
    data: dict[str, Any] = Field(
        default_factory=dict, description="Handler-specific payload, e.g. a trial's daily returns."
    )


class TaskResult(_Model):
    """The one result of a task, written once (the first terminal outcome wins)."""

    task_id: str
    batch: str
    status: Literal["succeeded", "failed", "cancelled"]
    metrics: dict[str, float | None] = Field(default_factory=dict)
    result_path: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    attempts: int = 0
    worker: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    enqueued_at_ms: int
    started_at_ms: int | None = None
    finished_at_ms: int
    run_seconds: float | None = Field(default=None, description="Handler time as measured by the worker.")

    @property
    def wait_seconds(self) -> float | None:
        """Enqueue to the start of the attempt that produced the result."""
        if self.started_at_ms is None:
            return None
        return (self.started_at_ms - self.enqueued_at_ms) / 1000

    @property
    def total_seconds(self) -> float:
        """Enqueue to result, on the Redis server's clock."""
        return (self.finished_at_ms - self.enqueued_at_ms) / 1000

    @classmethod
    def from_hash(cls, fields: dict[str, str]) -> TaskResult:
        def opt_int(name: str) -> int | None:
            value = fields.get(name)
            return int(value) if value else None

        run = fields.get("run_seconds")
        return cls(
            task_id=fields["task_id"],
            batch=fields["batch"],
            status=fields["status"],
            metrics=json.loads(fields.get("metrics") or "{}"),
            result_path=fields.get("result_path") or None,
            data=json.loads(fields.get("data") or "{}"),
            error=fields.get("error") or None,
            attempts=int(fields.get("attempts") or 0),
            worker=fields.get("worker") or None,
            meta=json.loads(fields.get("meta") or "{}"),
            enqueued_at_ms=int(fields["enqueued_at"]),
            started_at_ms=opt_int("started_at"),
            finished_at_ms=int(fields["finished_at"]),
            run_seconds=float(run) if run else None,
        )


def task_ref(batch: str, task_id: str) -> str:
    """The queue-wide name of a task: ids are unique within a batch, refs across batches."""
    return f"{batch}:{task_id}"
