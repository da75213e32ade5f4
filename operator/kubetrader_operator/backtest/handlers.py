"""kopf handlers for Backtest: thin. Parse, build, adopt, create if absent, write status.

The create/resume and Job-event handlers only put the Backtest in its work queue
(kubetrader_operator.workqueue): `work_concurrency` threads of its own do the API work, so a burst
of Backtests holds that many at a time, not one kopf worker each, and never takes kopf's threads
from the LiveDeployment handlers.
Status is written in one place (`reconcile`) with optimistic concurrency: the Job
watcher, the resync loop and the create handler may all call it; whoever loses
the resourceVersion race reads again and recomputes, so no update is lost.
kopf's own progress lives in annotations (see `main.configure`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import kopf
from pydantic import ValidationError

from kubetrader.specs import API_GROUP, API_VERSION, BacktestSpec
from kubetrader_operator import kube, resync
from kubetrader_operator.backtest.builders import build_config_map, build_job, job_options
from kubetrader_operator.backtest.status import (
    Transition,
    accepted_status,
    invalid_status,
    next_status,
    waiting_status,
)
from kubetrader_operator.conditions import is_terminal, now_iso
from kubetrader_operator.labels import BACKTEST_LABEL, MANAGED_BY, MANAGER, backtest_child_name, owner_name
from kubetrader_operator.metrics import FAILURES, measured
from kubetrader_operator.settings import get_settings
from kubetrader_operator.workqueue import Action, WorkQueue

KIND = "Backtest"
RESOURCE = (API_GROUP, API_VERSION, "backtests")
WORK_KEY = "kubetrader_backtest_work"  # the WorkQueue in kopf's operator-wide memo


def _event(backtest: dict[str, Any], transition: Transition) -> None:
    if transition.warning:
        FAILURES.labels(KIND, transition.reason).inc()
        # kopf's event poster reads only apiVersion, kind and metadata: a raw object will do.
        kopf.warn(cast(kopf.Body, backtest), reason=transition.reason, message=transition.message)
    else:
        kopf.info(cast(kopf.Body, backtest), reason=transition.reason, message=transition.message)


def _write_status(
    namespace: str, name: str, compute: Callable[[dict[str, Any]], tuple[dict[str, Any], Transition | None]]
) -> None:
    """kube.write_custom_status, its Event posted; a status that kept changing is retried by kopf."""
    try:
        written = kube.write_custom_status(kube.BACKTESTS, namespace, name, compute)
    except kube.StatusKeptChangingError as exc:
        raise kopf.TemporaryError(str(exc), delay=1) from exc
    if written is not None:
        _event(*written)


def reconcile(namespace: str, name: str) -> None:
    """Bring the Backtest's status in line with its Job and the Job's pods."""

    def compute(backtest: dict[str, Any]) -> tuple[dict[str, Any], Transition | None]:
        conditions = (backtest.get("status") or {}).get("conditions") or []
        if is_terminal(conditions):
            return backtest.get("status") or {}, None
        job_name = backtest_child_name(name)
        job = kube.read_job(namespace, job_name)
        pods = kube.list_job_pods(namespace, job_name) if job is not None else []
        return next_status(
            backtest, job, pods, now=now_iso(), start_timeout_seconds=get_settings().start_timeout_seconds
        )

    _write_status(namespace, name, compute)


def _wait_for_old_child(namespace: str, name: str, message: str) -> kopf.TemporaryError:
    """Say in status why nothing runs yet (never the old run's results); kopf retries the create."""
    _write_status(namespace, name, lambda bt: (waiting_status(bt, message, now=now_iso()), None))
    return kopf.TemporaryError(message, delay=get_settings().backoff_seconds)


def start(namespace: str, name: str) -> None:
    """Validate the spec, then create (or find) the ConfigMap and the Job that runs it.

    Reads the Backtest afresh: it runs from the work queue, maybe a while after the event."""
    with measured(KIND, "start"):
        raw = kube.read_backtest(namespace, name)
        if raw is None:
            return
        body = kopf.Body(cast(kopf.RawBody, raw))
        if is_terminal(list(body.status.get("conditions") or [])):
            return
        try:
            parsed = BacktestSpec.model_validate(dict(body.spec))
            options = job_options(get_settings(), dict(body.metadata.annotations))
        except (ValidationError, ValueError) as exc:
            message = f"invalid spec: {exc}"
            _write_status(namespace, name, lambda bt: (invalid_status(bt, message, now=now_iso()), None))
            FAILURES.labels(KIND, "InvalidSpec").inc()
            kopf.warn(body, reason="InvalidSpec", message=message)
            raise kopf.PermanentError(message) from exc
        config_map = build_config_map(name, namespace, parsed)
        job = build_job(name, namespace, parsed, options)
        kopf.adopt([config_map, job], owner=body)
        try:
            kube.create_if_absent(config_map)
            created_job, created = kube.create_if_absent(job)
        except kube.StaleChildError as exc:
            raise _wait_for_old_child(namespace, name, str(exc)) from exc
        job_name = created_job["metadata"]["name"]
        if created:
            kopf.info(body, reason="JobCreated", message=f"Job {job_name} created")
            for note in options.resources.notes:  # an override above the operator's maximum, clamped
                kopf.warn(body, reason="OverrideClamped", message=note)
        _write_status(namespace, name, lambda bt: (accepted_status(bt, job_name, now=now_iso()), None))
        reconcile(namespace, name)


def work(namespace: str, name: str, action: Action) -> None:
    """The work queue's work for one Backtest: start it (which ends with a reconcile) or reconcile it."""
    if action is Action.START:
        start(namespace, name)
    else:
        with measured(KIND, "job-event"):
            reconcile(namespace, name)


@kopf.on.startup()
async def start_work_queue(memo: kopf.Memo, **_: Any) -> None:
    """The Backtests' work queue (kubetrader_operator.workqueue): their handlers below only enqueue."""
    settings = get_settings()

    def enter_posting() -> None:  # read when the work runs: the resync loop's startup handler sets it
        memo[resync.MEMO_KEY].enter_posting()

    queue = memo[WORK_KEY] = WorkQueue(
        KIND, work, settings.work_concurrency, settings.backoff_seconds, enter=enter_posting
    )
    queue.start()


@kopf.on.cleanup()
async def stop_work_queue(memo: kopf.Memo, **_: Any) -> None:
    queue: WorkQueue | None = memo.get(WORK_KEY)  # None if the operator stopped before its startup
    if queue is not None:
        await queue.stop()


@kopf.on.probe(id="backtest_work")
def work_pending(memo: kopf.Memo, **_: Any) -> int:
    """Shown at the liveness endpoint: Backtests waiting for (or in) their start or reconcile."""
    queue: WorkQueue | None = memo.get(WORK_KEY)
    return queue.pending() if queue is not None else 0


def _enqueue(memo: kopf.Memo, namespace: str, name: str, action: Action) -> None:
    memo[resync.MEMO_KEY].capture_posting()  # the work's Events go out through this run's poster
    memo[WORK_KEY].submit((namespace, name), action)


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
async def start_backtest(name: str, namespace: str | None, status: kopf.Status, memo: kopf.Memo, **_: Any) -> None:
    """Queue the Backtest's start (`start`); async, so kopf's worker lets go of the event at once."""
    assert namespace is not None  # Backtests are namespaced (the CRD says so)
    if not is_terminal(list(status.get("conditions") or [])):
        _enqueue(memo, namespace, name, Action.START)


def resync_backtest(namespace: str, name: str) -> None:
    """Catch what events missed: a Job that vanished, never started, or finished unseen."""
    with measured(KIND, "resync"):
        reconcile(namespace, name)


# One operator-wide loop resyncs every unfinished Backtest (kubetrader_operator.resync), not a timer each.
resync.register(RESOURCE, "unfinished_backtests", resync_backtest)


def job_has_news(type: str | None, status: kopf.Status, **_: Any) -> bool:  # noqa: A002 - kopf's name
    """A kopf `when` filter: skip a Job event with no status at all (the Job as just created).

    It tells nothing `start` has not just written: `start` reconciles after creating the Job, a
    restart's listing reaches every Backtest through its resume handler, and the resync loop catches
    a Job that never starts. A Job's deletion always passes: the Backtest learns its Job is gone."""
    return type == "DELETED" or bool(status)


@kopf.on.event(
    "batch",
    "v1",
    "jobs",
    labels={MANAGED_BY: MANAGER, BACKTEST_LABEL: kopf.PRESENT},
    when=kopf.all_([resync.owner_unfinished(KIND, "unfinished_backtests"), job_has_news]),
)
async def job_changed(namespace: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A Backtest's Job changed: queue a reconcile of the Backtest's status.

    The Backtest is the Job's owner (its label value may be a shortened name: see labels.label_value);
    the Job of a finished or deleted Backtest is filtered out before this runs (resync.owner_unfinished).
    """
    assert namespace is not None
    owner = owner_name(dict(body), KIND)
    if owner is not None:
        _enqueue(memo, namespace, owner, Action.RECONCILE)
