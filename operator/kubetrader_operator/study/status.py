"""What an OptimizationStudy's status should be, given its driver Job, the Job's pods and
the progress the driver publishes to Redis. Pure.

While the driver runs, the trial counts and the best value come from its published
progress (`kubetrader.optimize.progress`); when it exits, from its termination
message (the final summary), which wins: it is what the driver reported last.
"""

from __future__ import annotations

from typing import Any

from kubetrader.optimize.progress import PublishedProgress
from kubetrader.specs.status import ConditionType
from kubetrader_operator.backtest.status import (
    JobWording,
    Transition,
    accepted_status,
    job_lifecycle,
)
from kubetrader_operator.conditions import (
    derive_phase,
    is_terminal,
    set_condition,
)

__all__ = ["Transition", "accepted_study_status", "apply_progress", "next_status", "rejected_status"]


def accepted_study_status(
    study: dict[str, Any], job_name: str, *, study_name: str, metric: str, now: str
) -> dict[str, Any]:
    """Status right after the ConfigMap and the driver Job were created (or found)."""
    status = accepted_status(study, job_name, now=now)
    status.update(studyName=study_name, objective=metric)
    return status


def rejected_status(study: dict[str, Any], reason: str, message: str, *, now: str) -> dict[str, Any]:
    """Status of a study that cannot run (invalid spec, infeasible space): Failed, never retried."""
    generation = study["metadata"].get("generation")
    conditions = list((study.get("status") or {}).get("conditions") or [])
    for type_, value in ((ConditionType.ACCEPTED, False), (ConditionType.FAILED, True)):
        conditions = set_condition(conditions, type_, value, reason, message, generation=generation, now=now)
    return {
        **(study.get("status") or {}),
        "conditions": conditions,
        "phase": derive_phase(conditions).value,
        "observedGeneration": generation,
        "message": message,
        "completionTime": now,
    }


def apply_progress(status: dict[str, Any], progress: PublishedProgress | None) -> None:
    """Copy the driver's published progress into `status` (in place)."""
    if progress is None:
        return
    status.update(trialsDone=progress.done, trialsRunning=progress.running, trialsFailed=progress.failed)
    if progress.best_value is not None:
        status["bestValue"] = float(progress.best_value)
        status["bestParams"] = dict(progress.best_params)


def _apply_summary(status: dict[str, Any], summary: dict[str, Any]) -> None:
    if isinstance(summary.get("trialsComplete"), int):
        status["trialsDone"] = summary["trialsComplete"]
    if isinstance(summary.get("trialsFailed"), int):
        status["trialsFailed"] = summary["trialsFailed"]
    status["trialsRunning"] = 0
    best = summary.get("bestValue")
    if isinstance(best, int | float) and not isinstance(best, bool):
        status["bestValue"] = float(best)
        if isinstance(summary.get("bestParams"), dict):
            status["bestParams"] = summary["bestParams"]
    run_id = summary.get("mlflowParentRunId") or summary.get("mlflow_parent_run_id")
    if run_id:
        status["mlflowParentRunId"] = str(run_id)


def _succeeded_message(status: dict[str, Any]) -> str:
    metric = status.get("objective") or "objective"
    best = status.get("bestValue")
    done = status.get("trialsDone", 0)
    if best is None:
        return f"{done} trials, no best value"
    return f"best {metric} {best:.4g} at {status.get('bestParams') or {}} after {done} trials"


STUDY_WORDING = JobWording(
    subject="the study", job="the driver Job", pod="the driver's pod", finished="the study driver finished"
)


def _study_complete(status: dict[str, Any], summary: dict[str, Any]) -> str:
    _apply_summary(status, summary)
    return _succeeded_message(status)


def next_status(
    study: dict[str, Any],
    job: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    progress: PublishedProgress | None,
    *,
    now: str,
    start_timeout_seconds: float,
) -> tuple[dict[str, Any], Transition | None]:
    """The status the study should have now, and the transition to announce (if any)."""
    status: dict[str, Any] = dict(study.get("status") or {})
    conditions = list(status.get("conditions") or [])
    if is_terminal(conditions) or not conditions:
        return status, None  # finished, or not accepted yet: the create handler speaks first
    apply_progress(status, progress)
    total = (study.get("spec") or {}).get("trials")
    status, transition = job_lifecycle(
        study,
        status,
        job,
        pods,
        now=now,
        start_timeout_seconds=start_timeout_seconds,
        on_complete=_study_complete,
        running=lambda s: ("DriverRunning", f"{s.get('trialsDone', 0)} of {total} trials done"),
        wording=STUDY_WORDING,
    )
    if transition is not None and transition.warning:
        status["trialsRunning"] = 0  # a failed driver runs no trials
    return status, transition
