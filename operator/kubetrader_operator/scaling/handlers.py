"""The kopf timer that scales worker Deployments on queue depth.

A Deployment opts in with the label `kubetrader.io/scale-on-queue: "true"`; its
annotations set the policy (`kubetrader.io/tasks-per-worker`, `min-replicas`,
`max-replicas`, `cooldown-seconds`, `queue-prefix`). Every interval the timer
reads `queue_stats` (the same numbers `kubetrader monitor` shows), decides with
the pure rule, patches `spec.replicas`, records the decision as an Event and in
Prometheus, and marks busy pods with a high deletion cost. The time backlog was
last seen is kept in an annotation, so an operator restart does not reset the
cooldown.

No finalizer: kopf puts its finalizer on every object a timer serves (so the timer is stopped
before the object goes: nolar/kopf#833, #548), and only a running operator with its RBAC takes it
off. `helm uninstall` deletes the operator, its Roles and the worker Deployment at once, so the
worker Deployment stayed Terminating forever, on any cluster. The worker Deployment is Helm's,
not ours: the timer is registered without the finalizer (`_serve_without_finalizer`). The cost
kopf warns of, a timer left running for a deleted object, is made harmless: the timer acts only
while the `scaled_deployments` index (kept by kopf from the watch) still holds that object's uid,
so a stale timer never scales a Deployment re-created under the same name.
"""

from __future__ import annotations

import dataclasses
import time
from functools import lru_cache
from typing import Any

import kopf
import redis
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubetrader.errors import InfrastructureError
from kubetrader.queue.server import redis_client
from kubetrader.queue.stats import queue_stats
from kubetrader.queue.workqueue import DEFAULT_PREFIX, WorkQueue
from kubetrader_operator.scaling import kube_io
from kubetrader_operator.scaling.metrics import DECISIONS, DESIRED_REPLICAS, record_queue
from kubetrader_operator.scaling.rule import DELETION_COST_ANNOTATION, ScalingPolicy, decide, deletion_costs

SCALE_LABEL = "kubetrader.io/scale-on-queue"
LAST_BACKLOG_ANNOTATION = "kubetrader.io/last-backlog-at"
PREFIX_ANNOTATION = "kubetrader.io/queue-prefix"
POLICY_ANNOTATIONS = {
    "kubetrader.io/tasks-per-worker": "tasks_per_worker",
    "kubetrader.io/min-replicas": "min_replicas",
    "kubetrader.io/max-replicas": "max_replicas",
    "kubetrader.io/cooldown-seconds": "cooldown_seconds",
}


class ScalerSettings(BaseSettings):
    """`KUBETRADER_SCALER_*`; the Redis URL falls back to the operator's `KUBETRADER_OPERATOR_REDIS_URL`."""

    model_config = SettingsConfigDict(env_prefix="KUBETRADER_SCALER_", frozen=True)

    interval_seconds: float = 15.0
    redis_url: str | None = None


@lru_cache(maxsize=1)
def scaler_settings() -> ScalerSettings:
    return ScalerSettings()


def policy_from_annotations(annotations: dict[str, str]) -> ScalingPolicy:
    """The Deployment's policy; a bad value raises ValueError naming the annotation."""
    values: dict[str, Any] = {}
    for annotation, field in POLICY_ANNOTATIONS.items():
        if annotation in annotations:
            values[field] = annotations[annotation]
    try:
        return ScalingPolicy.model_validate(values)
    except ValidationError as exc:
        raise ValueError(f"scaling annotations: {exc.errors()[0]['msg']} ({values})") from exc


def _redis_url() -> str:
    from kubetrader_operator.settings import get_settings

    url = scaler_settings().redis_url or get_settings().redis_url
    if not url:
        raise kopf.TemporaryError("no Redis URL: set KUBETRADER_SCALER_REDIS_URL", delay=60)
    return url


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    # Retries connection errors for at most one timer interval, so a Redis restart costs
    # the scaler one tick (then a TemporaryError), not a handler blocked for a minute.
    return redis_client(url, retry_seconds=scaler_settings().interval_seconds)


@kopf.timer(
    "apps",
    "v1",
    "deployments",
    labels={SCALE_LABEL: "true"},
    interval=scaler_settings().interval_seconds,
    id="scale-on-queue",
)
def scale_on_queue(
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    name: str,
    namespace: str | None,
    patch: kopf.Patch,
    logger: kopf.Logger,
    uid: str | None,
    **kwargs: Any,
) -> None:
    served: kopf.Index[tuple[str, str], str] = kwargs["scaled_deployments"]
    if uid not in served.get((namespace or "default", name), ()):
        return  # a timer kopf no longer stops: its Deployment is gone or replaced (module docstring)
    annotations = dict(meta.get("annotations") or {})
    try:
        policy = policy_from_annotations(annotations)
    except ValueError as exc:
        kopf.warn(body, reason="InvalidScalingPolicy", message=str(exc))
        return
    namespace = namespace or "default"
    prefix = annotations.get(PREFIX_ANNOTATION, DEFAULT_PREFIX)
    try:
        client = _client(_redis_url())
        # Re-queue tasks of workers that died: with every pod gone (min 0) nobody else would,
        # and an expired lease counted as "running" would hold the scaler at zero forever.
        WorkQueue(client, prefix=prefix).reap()
        stats = queue_stats(client, prefix=prefix)
        memory = client.info("memory")
    except (redis.exceptions.RedisError, InfrastructureError) as exc:
        raise kopf.TemporaryError(f"cannot read the queue: {exc}", delay=scaler_settings().interval_seconds) from exc
    record_queue(stats, prefix, memory)

    current = int(spec.get("replicas", 1))
    last_raw = annotations.get(LAST_BACKLOG_ANNOTATION)
    decision = decide(
        pending=stats.pending,
        running=stats.running,
        current=current,
        last_backlog_at=float(last_raw) if last_raw else None,
        now=time.time(),
        policy=policy,
    )
    DESIRED_REPLICAS.labels(namespace, name).set(decision.replicas)
    DECISIONS.labels(namespace, name, decision.direction).inc()
    if decision.replicas != current:
        patch.spec["replicas"] = decision.replicas
        reason = "ScaledUp" if decision.direction == "up" else "ScaledDown"
        message = f"replicas {current} -> {decision.replicas}: {decision.reason}"
        kopf.info(body, reason=reason, message=message)
        logger.info(message)
    if decision.last_backlog_at is not None and f"{decision.last_backlog_at:.3f}" != last_raw:
        patch.metadata.setdefault("annotations", {})[LAST_BACKLOG_ANNOTATION] = f"{decision.last_backlog_at:.3f}"

    match_labels = dict((spec.get("selector") or {}).get("matchLabels") or {})
    if match_labels:
        pods = kube_io.list_pods(namespace, match_labels)
        wanted = deletion_costs([p["metadata"]["name"] for p in pods], stats.busy_pods)
        for pod in pods:
            pod_name = pod["metadata"]["name"]
            have = (pod["metadata"].get("annotations") or {}).get(DELETION_COST_ANNOTATION)
            if have != wanted[pod_name]:
                kube_io.annotate_pod(namespace, pod_name, {DELETION_COST_ANNOTATION: wanted[pod_name]})


@kopf.index("apps", "v1", "deployments", labels={SCALE_LABEL: "true"})
def scaled_deployments(name: str, namespace: str | None, uid: str | None, **_: Any) -> dict[tuple[str, str], str]:
    """(namespace, name) -> uid of each Deployment the scaler serves, kept by kopf from the watch
    (an entry goes when its object is deleted)."""
    return {(namespace or "default", name): uid or ""}


def _serve_without_finalizer(handler_id: str) -> None:
    """The timer `handler_id` without kopf's finalizer (module docstring). kopf 1.45 hard-codes
    `requires_finalizer=True` for timers (kopf/on.py) and has no option for it (nolar/kopf#896
    asked, closed unmerged), so the registered handler is replaced by a copy saying False."""
    spawning = kopf.get_default_registry()._spawning
    found = [h for h in spawning._handlers if h.id == handler_id]
    if len(found) != 1:
        raise RuntimeError(f"kopf registry: expected one handler {handler_id!r}, found {len(found)}")
    spawning._handlers = [
        dataclasses.replace(h, requires_finalizer=False) if h.id == handler_id else h for h in spawning._handlers
    ]


_serve_without_finalizer("scale-on-queue")
