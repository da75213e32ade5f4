"""kopf handlers for OptimizationStudy: thin. Parse, build, adopt, create if absent, write status.

Status is written in one place (`reconcile`) with optimistic concurrency: the Job
watcher, the resync loop and the create handler may all call it; whoever loses
the resourceVersion race reads again and recomputes, so no update is lost.
Deleting a study stops its driver and cancels its queued trials (finished trials
stay in the Optuna storage and MLflow) before kopf removes the finalizer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, cast

import kopf
from pydantic import ValidationError

from kubetrader.errors import SpecError
from kubetrader.optimize.naming import trial_batch
from kubetrader.specs import API_GROUP, API_VERSION
from kubetrader_operator import kube, resync
from kubetrader_operator.backtest.builders import job_options
from kubetrader_operator.backtest.status import waiting_status
from kubetrader_operator.conditions import is_terminal, now_iso
from kubetrader_operator.jobs import pod_redis_url
from kubetrader_operator.labels import MANAGED_BY, MANAGER, owner_name
from kubetrader_operator.metrics import FAILURES, measured
from kubetrader_operator.settings import get_settings
from kubetrader_operator.study import kube_io, redis_io
from kubetrader_operator.study.builders import (
    STUDY_LABEL,
    build_config_map,
    build_job,
    parse_study_spec,
    study_child_name,
    study_key_of,
)
from kubetrader_operator.study.settings import get_study_settings
from kubetrader_operator.study.status import Transition, accepted_study_status, next_status, rejected_status

KIND = "OptimizationStudy"
RESOURCE = (API_GROUP, API_VERSION, "optimizationstudies")
# Decorator arguments are read once, at import; everything else is read per call.
SETTINGS = get_settings()
Compute = Callable[[dict[str, Any]], tuple[dict[str, Any], Transition | None]]


def _event(study: dict[str, Any], transition: Transition) -> None:
    # kopf's event poster reads only apiVersion, kind and metadata: a raw object will do.
    body = cast(kopf.Body, study)
    if transition.warning:
        FAILURES.labels(KIND, transition.reason).inc()
        kopf.warn(body, reason="Failed", message=f"{transition.reason}: {transition.message}")
    else:
        kopf.info(body, reason=transition.reason, message=transition.message)


def _write_status(namespace: str, name: str, compute: Compute) -> None:
    """kube.write_custom_status, its Event posted; a status that kept changing is retried by kopf."""
    try:
        written = kube.write_custom_status(kube_io.STUDIES, namespace, name, compute)
    except kube.StatusKeptChangingError as exc:
        raise kopf.TemporaryError(str(exc), delay=1) from exc
    if written is not None:
        _event(*written)


def reconcile(namespace: str, name: str) -> None:
    """Bring the study's status in line with its driver Job, the Job's pods and the published progress."""
    redis_url = get_settings().redis_url

    def compute(study: dict[str, Any]) -> tuple[dict[str, Any], Transition | None]:
        conditions = (study.get("status") or {}).get("conditions") or []
        if is_terminal(conditions):
            return study.get("status") or {}, None
        job_name = study_child_name(name)
        job = kube_io.read_job(namespace, job_name)
        pods = kube_io.list_job_pods(namespace, job_name) if job is not None else []
        progress = redis_io.study_progress(redis_url, study_key_of(study)) if redis_url else None
        timeout = SETTINGS.start_timeout_seconds
        return next_status(study, job, pods, progress, now=now_iso(), start_timeout_seconds=timeout)

    _write_status(namespace, name, compute)


def _reject(body: kopf.Body, namespace: str, name: str, reason: str, message: str) -> kopf.PermanentError:
    _write_status(namespace, name, lambda study: (rejected_status(study, reason, message, now=now_iso()), None))
    FAILURES.labels(KIND, reason).inc()
    kopf.warn(body, reason="Failed", message=f"{reason}: {message}")
    return kopf.PermanentError(message)


@kopf.on.resume(*RESOURCE, backoff=SETTINGS.backoff_seconds)
@kopf.on.create(*RESOURCE, backoff=SETTINGS.backoff_seconds)
def start_study(
    body: kopf.Body, name: str, namespace: str | None, spec: kopf.Spec, status: kopf.Status, **_: Any
) -> None:
    """Validate the spec (the space must be feasible), then create (or find) the ConfigMap and driver Job."""
    assert namespace is not None  # studies are namespaced (the CRD says so)
    with measured(KIND, "start"):
        if is_terminal(list(status.get("conditions") or [])):
            return
        settings = get_settings()
        try:
            parsed = parse_study_spec(dict(spec))
            options = job_options(settings, dict(body.metadata.annotations))
        except (ValidationError, ValueError, SpecError) as exc:
            raise _reject(body, namespace, name, "InvalidSpec", f"invalid spec: {exc}") from exc
        if not settings.redis_url:
            message = "the operator has no Redis (KUBETRADER_OPERATOR_REDIS_URL): studies run on the work queue"
            raise _reject(body, namespace, name, "NoWorkQueue", message)
        study_settings = get_study_settings()
        storage = study_settings.optuna_storage
        config_map = build_config_map(name, namespace, parsed, uid=str(body.metadata.uid))
        job = build_job(
            name,
            namespace,
            parsed,
            options,
            redis_url=pod_redis_url(settings.redis_url, password_secret=settings.redis_password_secret),
            storage=storage,
            password_secret=study_settings.optuna_password_secret,
            password_key=study_settings.optuna_password_key,
            signing_secret=study_settings.study_signing_secret,
            signing_key=study_settings.study_signing_key,
        )
        kopf.adopt([config_map, job], owner=body)
        try:
            kube_io.create_if_absent(config_map)
            created_job, created = kube_io.create_if_absent(job)
        except kube_io.StaleChildError as exc:
            message = str(exc)  # a deleted namesake's child: say so, never report its run; kopf retries
            _write_status(namespace, name, lambda study: (waiting_status(study, message, now=now_iso()), None))
            raise kopf.TemporaryError(message, delay=settings.backoff_seconds) from exc
        job_name = created_job["metadata"]["name"]
        if created:
            kopf.info(body, reason="JobCreated", message=f"driver Job {job_name} created")
            for note in options.resources.notes:  # an override above the operator's maximum, clamped
                kopf.warn(body, reason="OverrideClamped", message=note)
        study_name, metric = study_key_of(dict(body)), parsed.objective.metric

        def accepted(study: dict[str, Any]) -> tuple[dict[str, Any], None]:
            return accepted_study_status(study, job_name, study_name=study_name, metric=metric, now=now_iso()), None

        _write_status(namespace, name, accepted)
        reconcile(namespace, name)


def poll_study(namespace: str, name: str) -> None:
    """Progress: the driver publishes after every trial; also catches a Job that vanished or never started."""
    with measured(KIND, "poll"):
        reconcile(namespace, name)


# One operator-wide loop polls every accepted, unfinished study (kubetrader_operator.resync), not a timer each.
resync.register(RESOURCE, "unfinished_studies", poll_study, accepted_only=True)


@kopf.on.event(
    "batch",
    "v1",
    "jobs",
    labels={MANAGED_BY: MANAGER, STUDY_LABEL: kopf.PRESENT},
    when=resync.owner_unfinished(KIND, "unfinished_studies"),  # before acceptance, the create handler speaks
)
def driver_job_changed(namespace: str | None, body: kopf.Body, **_: Any) -> None:
    """A study's driver Job changed: update its owner's status at once (found by ownerReference)."""
    assert namespace is not None
    owner = owner_name(dict(body), KIND)
    if owner is None:
        return
    with measured(KIND, "job-event"):
        reconcile(namespace, owner)


@kopf.on.delete(*RESOURCE, backoff=SETTINGS.backoff_seconds)
def stop_study(
    body: kopf.Body, name: str, namespace: str | None, spec: kopf.Spec, runtime: dt.timedelta, **_: Any
) -> None:
    """Stop the driver, then cancel the queued trials. Every step is safe to repeat.

    Trials are cancelled first (workers stop picking them up at once) and again
    once the driver's pod is gone (it may have enqueued more in between).
    """
    assert namespace is not None
    with measured(KIND, "delete"):
        redis_url = get_settings().redis_url
        study_name = study_key_of(dict(body))  # this resource's batch only: namespace and uid are in the key
        cancelled = redis_io.cancel_trials(redis_url, study_name) if redis_url else 0
        job_name = study_child_name(name)
        kube_io.delete_job(namespace, job_name)  # background propagation: its pods go too
        pods = kube_io.live_pods(namespace, job_name)
        wait = get_study_settings().stop_wait_seconds
        if pods and runtime.total_seconds() < wait:
            raise kopf.TemporaryError(f"waiting for the driver pod(s) {', '.join(pods)} to stop", delay=1)
        cancelled += redis_io.cancel_trials(redis_url, study_name) if redis_url else 0
        message = f"driver Job {job_name} deleted; {cancelled} queued trials of {trial_batch(study_name)} cancelled"
        if pods:
            message += f"; pods {', '.join(pods)} still terminating after {wait:g} s"
        kopf.info(body, reason="Stopped", message=message)
