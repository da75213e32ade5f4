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
    JOB_FAILURE_REASONS,
    Transition,
    accepted_status,
    failure_message,
    job_condition,
    job_started,
    latest_termination,
    parse_summary,
)
from kubetrader_operator.conditions import (
    Condition,
    derive_phase,
    get_condition,
    is_terminal,
    parse_time,
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
    conditions: list[Condition] = list(status.get("conditions") or [])
    generation = study["metadata"].get("generation")
    if is_terminal(conditions) or not conditions:
        return status, None  # finished, or not accepted yet: the create handler speaks first

    def put(type_: str, value: bool, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, type_, value, reason, message, generation=generation, now=now)

    def fail(reason: str, message: str) -> Transition:
        put(ConditionType.RUNNING, False, reason, message)
        put(ConditionType.FAILED, True, reason, message)
        status["completionTime"] = now
        status["trialsRunning"] = 0
        return Transition(reason, message, warning=True)

    transition: Transition | None = None
    accepted = get_condition(conditions, ConditionType.ACCEPTED)
    waited = (parse_time(now) - parse_time(accepted["lastTransitionTime"])).total_seconds() if accepted else 0.0
    apply_progress(status, progress)

    if job is None:
        if waited >= start_timeout_seconds:
            reason = "JobVanished" if "job" in status else "JobNotCreated"
            transition = fail(
                reason, f"the driver Job is gone and the study did not finish within {start_timeout_seconds:g} s"
            )
    else:
        status["job"] = {"name": job["metadata"]["name"], "uid": job["metadata"].get("uid")}
        job_status = job.get("status", {})
        termination = latest_termination(pods)
        if job_status.get("startTime") and "startTime" not in status:
            status["startTime"] = job_status["startTime"]
        if job_condition(job, "Complete") is not None:
            _apply_summary(status, parse_summary(termination.get("message") if termination else None) or {})
            status["completionTime"] = job_status.get("completionTime") or now
            message = _succeeded_message(status)
            put(ConditionType.RUNNING, False, "Completed", "the study driver finished")
            put(ConditionType.SUCCEEDED, True, "Completed", message)
            transition = Transition("Succeeded", message, warning=False)
        elif (failed := job_condition(job, "Failed")) is not None:
            reason = JOB_FAILURE_REASONS.get(failed.get("reason", ""), "JobFailed")
            transition = fail(reason, failure_message(termination, failed.get("message") or "the driver Job failed"))
        elif job_started(job):
            done, total = status.get("trialsDone", 0), (study.get("spec") or {}).get("trials")
            put(ConditionType.RUNNING, True, "DriverRunning", f"{done} of {total} trials done")
        elif waited >= start_timeout_seconds:
            transition = fail("JobNotStarted", f"the driver's pod did not start within {start_timeout_seconds:g} s")

    status["conditions"] = conditions
    status["phase"] = derive_phase(conditions).value
    status["observedGeneration"] = generation
    if transition is not None and transition.warning:
        status["message"] = transition.message
    return status, transition
