"""What a Backtest's status should be, given its Job and the Job's pods. Pure.

The engine reports through the container's termination message (a short JSON
summary), so the Job needs no write access to custom resources: the operator
reads the message from the pod and copies the headline metrics into status.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubetrader.specs.status import ConditionType
from kubetrader_operator.conditions import (
    Condition,
    derive_phase,
    get_condition,
    is_terminal,
    is_true,
    parse_time,
    set_condition,
)
from kubetrader_operator.labels import owner_uid

SUMMARY_TO_METRICS = {
    "sharpe_ratio": "sharpeRatio",
    "total_return": "totalReturn",
    "max_drawdown": "maxDrawdown",
    "cagr": "cagr",
    "num_trades": "numTrades",
    "deflated_sharpe": "deflatedSharpe",
    "walk_forward_efficiency": "walkForwardEfficiency",
}
# Job failure reason -> the Backtest's Failed reason
JOB_FAILURE_REASONS = {
    "PodFailurePolicy": "EngineFailed",
    "BackoffLimitExceeded": "RetriesExhausted",
    "DeadlineExceeded": "DeadlineExceeded",
}


@dataclass(frozen=True)
class Transition:
    """A change worth a Kubernetes Event (and a metric)."""

    reason: str
    message: str
    warning: bool


def parse_summary(message: str | None) -> dict[str, Any] | None:
    """The engine's JSON summary, or None when the message is plain text (logs on error)."""
    if not message:
        return None
    try:
        value = json.loads(message)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def matrix_cells(summary: dict[str, Any]) -> dict[str, Any] | None:
    """A matrix Backtest's aggregate (cells, failed cells, the best cell's id), from the campaign summary."""
    total = summary.get("cells")
    if not isinstance(total, int):
        return None
    cells: dict[str, Any] = {"total": total, "failed": int(summary.get("failedCells") or 0)}
    if summary.get("best"):
        cells["best"] = str(summary["best"])
    if summary.get("table"):
        cells["table"] = str(summary["table"])
    return cells


def headline_metrics(summary: dict[str, Any]) -> dict[str, float | int]:
    """camelCase headline metrics from the summary (metrics nested under `metrics`, or flat)."""
    nested = summary.get("metrics")
    source: dict[str, Any] = nested if isinstance(nested, dict) else summary
    metrics: dict[str, float | int] = {}
    for key, camel in SUMMARY_TO_METRICS.items():
        value = source.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics[camel] = int(value) if key == "num_trades" else float(value)
    return metrics


def latest_termination(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """`state.terminated` of the engine container of the most recent pod that finished."""
    finished = []
    for pod in pods:
        for container in pod.get("status", {}).get("containerStatuses", []) or []:
            terminated = (container.get("state") or {}).get("terminated")
            if terminated:
                created = pod["metadata"].get("creationTimestamp", "")
                finished.append((terminated.get("finishedAt") or "", created, terminated))
    return max(finished, key=lambda item: (item[0], item[1]))[2] if finished else None


def job_condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for condition in job.get("status", {}).get("conditions", []) or []:
        if condition.get("type") == type_ and condition.get("status") == "True":
            return condition
    return None


def job_started(job: dict[str, Any]) -> bool:
    status = job.get("status", {})
    return bool(
        status.get("ready")
        or status.get("succeeded")
        or status.get("failed")
        or job_condition(job, "Complete")
        or job_condition(job, "Failed")
    )


def failure_message(termination: dict[str, Any] | None, fallback: str) -> str:
    if termination is None:
        return fallback
    summary = parse_summary(termination.get("message"))
    if summary and summary.get("error"):
        return str(summary["error"])
    text = (termination.get("message") or "").strip()
    return text[-2000:] if text else f"{fallback} (exit code {termination.get('exitCode')})"


@dataclass(frozen=True)
class JobWording:
    """How status messages name what runs: a Backtest's Job, or a study's driver Job."""

    subject: str = "the Backtest"
    job: str = "the Job"
    pod: str = "the Job's pod"
    finished: str = "the engine finished"


def job_lifecycle(
    resource: dict[str, Any],
    status: dict[str, Any],
    job: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    *,
    now: str,
    start_timeout_seconds: float,
    on_complete: Callable[[dict[str, Any], dict[str, Any]], str],
    running: Callable[[dict[str, Any]], tuple[str, str]],
    wording: JobWording,
) -> tuple[dict[str, Any], Transition | None]:
    """The status an engine Job's owner should have now, and the transition to announce.

    One state machine for every kind whose work is one Job (Backtests, study drivers):
    not created / vanished / not started within the timeout -> Failed; the Job's Failed
    condition -> Failed with the engine's message; Complete -> `on_complete(status,
    summary)` fills the kind's fields and returns the Succeeded message; started ->
    Running with `running(status)` as (reason, message).
    """
    conditions: list[Condition] = list(status.get("conditions") or [])
    generation = resource["metadata"].get("generation")
    if is_terminal(conditions) or not is_true(conditions, ConditionType.ACCEPTED):
        return status, None  # finished, or not accepted yet (or waiting for an old Job): the create handler speaks
    if job is not None and owner_uid(job) != resource["metadata"].get("uid"):
        return status, None  # a deleted namesake's Job, not collected yet: never report its run

    def put(type_: str, value: bool, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, type_, value, reason, message, generation=generation, now=now)

    def fail(reason: str, message: str) -> Transition:
        put(ConditionType.RUNNING, False, reason, message)
        put(ConditionType.FAILED, True, reason, message)
        status["completionTime"] = now
        return Transition(reason, message, warning=True)

    transition: Transition | None = None
    accepted = get_condition(conditions, ConditionType.ACCEPTED)
    waited = (parse_time(now) - parse_time(accepted["lastTransitionTime"])).total_seconds() if accepted else 0.0

    if job is None:
        if waited >= start_timeout_seconds:
            reason = "JobVanished" if "job" in status else "JobNotCreated"
            message = f"{wording.job} is gone and {wording.subject} did not finish within {start_timeout_seconds:g} s"
            transition = fail(reason, message)
    else:
        status["job"] = {"name": job["metadata"]["name"], "uid": job["metadata"].get("uid")}
        job_status = job.get("status", {})
        termination = latest_termination(pods)
        if job_status.get("startTime") and "startTime" not in status:
            status["startTime"] = job_status["startTime"]
        if job_condition(job, "Complete") is not None:
            summary = parse_summary(termination.get("message") if termination else None) or {}
            message = on_complete(status, summary)
            status["completionTime"] = job_status.get("completionTime") or now
            put(ConditionType.RUNNING, False, "Completed", wording.finished)
            put(ConditionType.SUCCEEDED, True, "Completed", message)
            transition = Transition("Succeeded", message, warning=False)
        elif (failed := job_condition(job, "Failed")) is not None:
            reason = JOB_FAILURE_REASONS.get(failed.get("reason", ""), "JobFailed")
            transition = fail(reason, failure_message(termination, failed.get("message") or f"{wording.job} failed"))
        elif job_started(job):
            put(ConditionType.RUNNING, True, *running(status))
        elif waited >= start_timeout_seconds:
            transition = fail("JobNotStarted", f"{wording.pod} did not start within {start_timeout_seconds:g} s")

    status["conditions"] = conditions
    status["phase"] = derive_phase(conditions).value
    status["observedGeneration"] = generation
    if transition is not None and transition.warning:
        status["message"] = transition.message
    return status, transition


def _backtest_complete(status: dict[str, Any], summary: dict[str, Any]) -> str:
    """Headline metrics, result path, MLflow run and matrix cells from the engine's summary."""
    metrics = headline_metrics(summary)
    status["metrics"] = metrics
    result_path = summary.get("result_path") or summary.get("result")
    if result_path:
        status["resultPath"] = str(result_path)
    run_id = summary.get("mlflow_run_id") or summary.get("mlflowRunId")
    if run_id:
        status["mlflowRunId"] = str(run_id)
    cells = matrix_cells(summary)
    if cells is not None:
        status["cells"] = cells
    sharpe = metrics.get("sharpeRatio")
    message = f"Sharpe {sharpe:.2f}" if isinstance(sharpe, int | float) else "finished without a Sharpe ratio"
    if cells is not None:
        message = f"{cells['total'] - cells['failed']}/{cells['total']} cells, best {message}"
    return message


def next_status(
    backtest: dict[str, Any],
    job: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    *,
    now: str,
    start_timeout_seconds: float,
) -> tuple[dict[str, Any], Transition | None]:
    """The status the Backtest should have now, and the transition to announce (if any)."""
    return job_lifecycle(
        backtest,
        dict(backtest.get("status") or {}),
        job,
        pods,
        now=now,
        start_timeout_seconds=start_timeout_seconds,
        on_complete=_backtest_complete,
        running=lambda _: ("JobRunning", "the engine is running"),
        wording=JobWording(),
    )


def accepted_status(backtest: dict[str, Any], job_name: str, *, now: str) -> dict[str, Any]:
    """Status right after the children were created (or found)."""
    status: dict[str, Any] = dict(backtest.get("status") or {})
    generation = backtest["metadata"].get("generation")
    conditions = list(status.get("conditions") or [])
    accepted = get_condition(conditions, ConditionType.ACCEPTED)
    if accepted is None or accepted["status"] != "True":
        conditions = set_condition(
            conditions,
            ConditionType.ACCEPTED,
            True,
            "JobCreated",
            f"Job {job_name} runs the engine",
            generation=generation,
            now=now,
        )
    status.update(conditions=conditions, phase=derive_phase(conditions).value, observedGeneration=generation)
    status.setdefault("job", {"name": job_name})
    return status


WAITING_FOR_OLD_JOB = "WaitingForOldJob"


def waiting_status(resource: dict[str, Any], message: str, *, now: str) -> dict[str, Any]:
    """Status while a deleted namesake's Job still holds the name: Pending, not accepted, and why.

    No metrics, no Job: the old Job's run is not this resource's.
    """
    status: dict[str, Any] = {
        k: v for k, v in (resource.get("status") or {}).items() if k not in {"metrics", "job", "cells"}
    }
    generation = resource["metadata"].get("generation")
    conditions = set_condition(
        list(status.get("conditions") or []),
        ConditionType.ACCEPTED,
        False,
        WAITING_FOR_OLD_JOB,
        message,
        generation=generation,
        now=now,
    )
    status.update(conditions=conditions, phase=derive_phase(conditions).value, observedGeneration=generation)
    return status


def invalid_status(backtest: dict[str, Any], message: str, *, now: str) -> dict[str, Any]:
    """Status of a Backtest whose spec the models refuse: Failed, and never retried."""
    generation = backtest["metadata"].get("generation")
    conditions = list((backtest.get("status") or {}).get("conditions") or [])
    for type_, value in ((ConditionType.ACCEPTED, False), (ConditionType.FAILED, True)):
        conditions = set_condition(conditions, type_, value, "InvalidSpec", message, generation=generation, now=now)
    return {
        **(backtest.get("status") or {}),
        "conditions": conditions,
        "phase": derive_phase(conditions).value,
        "observedGeneration": generation,
        "message": message,
        "completionTime": now,
    }
