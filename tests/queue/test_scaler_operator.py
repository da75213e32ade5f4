"""Fault test 4: the real operator (kopf, as a process) scales a worker Deployment on a real Redis queue,
against the emulated Kubernetes API: up at once on a backlog, down only after the cooldown, busy pods
carrying the higher deletion cost."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubetrader.queue import NewTask, WorkQueue
from kubetrader.queue.server import redis_client
from kubetrader_operator.scaling.handlers import LAST_BACKLOG_ANNOTATION
from kubetrader_operator.scaling.rule import DELETION_COST_ANNOTATION
from tests.fixtures.kube import TEST_OPERATOR_ENV
from tests.helpers import ROOT, wait_until
from tests.kube import chart_rbac
from tests.kube.cluster import EmulatedCluster

pytestmark = pytest.mark.slow

# The chart's names: its scaler Role lets the operator patch only the worker Deployment of the
# release namespace (charts/kubetrader/templates/rbac-operator.yaml).
NS = chart_rbac.NAMESPACE
WORKERS = f"{chart_rbac.RELEASE}-worker"
INTERVAL = 0.5
COOLDOWN = 4.0


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": WORKERS,
            "namespace": NS,
            "labels": {"kubetrader.io/scale-on-queue": "true"},
            "annotations": {
                "kubetrader.io/tasks-per-worker": "5",
                "kubetrader.io/min-replicas": "1",
                "kubetrader.io/max-replicas": "10",
                "kubetrader.io/cooldown-seconds": str(COOLDOWN),
            },
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "worker"}},
            "template": {
                "metadata": {"labels": {"app": "worker"}},
                "spec": {"containers": [{"name": "worker", "image": "ghcr.io/kubetrader/engine:test"}]},
            },
        },
    }


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "worker"}},
        "spec": {"containers": [{"name": "worker", "image": "ghcr.io/kubetrader/engine:test"}]},
    }


@pytest.fixture
def operator_chart_values() -> dict[str, Any]:
    """The chart's defaults: the operator watches the release namespace, where the workers run."""
    return {}


@pytest.fixture
def scaler_operator(
    operator_kubeconfig: Path, operator_chart_values: dict[str, Any], redis_url: str, tmp_path: Path
) -> Iterator[subprocess.Popen[str]]:
    """The operator with the scaling handlers, as `kopf run` in its own process (fresh settings),
    as the chart's ServiceAccount under the chart's RBAC."""
    env = {
        **os.environ,
        **TEST_OPERATOR_ENV,
        "KUBECONFIG": str(operator_kubeconfig),
        "KUBETRADER_SCALER_REDIS_URL": redis_url,
        "KUBETRADER_SCALER_INTERVAL_SECONDS": str(INTERVAL),
        "PYTHONPATH": str(ROOT),
    }
    log = (tmp_path / "operator.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kopf",
            "run",
            "--standalone",
            *chart_rbac.kopf_namespace_args(operator_chart_values),
            "-m",
            "kubetrader_operator.main",
            "-m",
            "kubetrader_operator.scaling.handlers",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield process
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


def replicas(cluster: EmulatedCluster) -> int:
    obj = cluster.get("Deployment", NS, WORKERS)
    assert obj is not None
    return int(obj["spec"]["replicas"])


def cost(cluster: EmulatedCluster, name: str) -> str | None:
    obj = cluster.get("Pod", NS, name) or {}
    return (obj.get("metadata", {}).get("annotations") or {}).get(DELETION_COST_ANNOTATION)


def events(cluster: EmulatedCluster, reason: str) -> list[dict[str, Any]]:
    return [e for e in cluster.select("Event", NS) if e.get("reason") == reason]


def test_backlog_scales_workers_up_at_once_and_an_empty_queue_scales_down_only_after_the_cooldown(
    kube_cluster: EmulatedCluster, redis_url: str, scaler_operator: subprocess.Popen[str], tmp_path: Path
) -> None:
    kube_cluster.create(pod("workers-idle"))
    kube_cluster.create(pod("workers-busy"))
    queue = WorkQueue(redis_client(redis_url))
    queue.enqueue("campaign", [NewTask(id=f"t{i:02d}", spec={}) for i in range(41)])
    held = queue.claim("workers-busy-1", lease_seconds=60)  # 40 pending, 1 running on workers-busy
    assert held is not None
    queue.heartbeat(
        "workers-busy-1",
        {"pod": "workers-busy", "state": "busy", "task": held.ref, "interval_ms": "60000"},
        ttl_seconds=120,
    )
    kube_cluster.create(deployment())

    log = tmp_path / "operator.log"
    wait_until(lambda: replicas(kube_cluster) == 8, timeout=30, what=f"8 replicas; operator log: {log}")
    wait_until(
        lambda: any("1 -> 8" in e.get("message", "") for e in events(kube_cluster, "ScaledUp")),
        timeout=10,
        what="a ScaledUp event",
    )
    wait_until(lambda: cost(kube_cluster, "workers-busy") == "1000", timeout=10, what="busy pod's deletion cost")
    assert cost(kube_cluster, "workers-idle") == "0"

    queue.cancel_batch("campaign")
    queue.complete(held, "workers-busy-1", queue_outcome(), run_seconds=0.1)
    queue.heartbeat("workers-busy-1", {"pod": "workers-busy", "state": "idle", "task": ""}, ttl_seconds=120)
    emptied = time.time()
    wait_until(lambda: cost(kube_cluster, "workers-busy") == "0", timeout=10, what="the busy pod to become cheap")
    wait_until(lambda: replicas(kube_cluster) == 1, timeout=30, what="scale down to min after the cooldown")
    deployment_now = kube_cluster.get("Deployment", NS, WORKERS)
    assert deployment_now is not None
    last_backlog = float(deployment_now["metadata"]["annotations"][LAST_BACKLOG_ANNOTATION])
    assert last_backlog <= emptied
    scaled_down = wait_until(
        lambda: [e for e in events(kube_cluster, "ScaledDown") if "8 -> 1: no backlog" in e.get("message", "")],
        timeout=10,
        what="a ScaledDown event",
    )
    decided_at = dt.datetime.fromisoformat(scaled_down[0]["eventTime"]).timestamp()
    assert decided_at - last_backlog >= COOLDOWN  # not before the cooldown


def queue_outcome() -> Any:
    from kubetrader.queue import HandlerOutcome

    return HandlerOutcome(metrics={"sharpe_ratio": 1.0})


def test_the_scaler_holds_no_finalizer_so_the_workers_are_deleted_without_the_operator(
    kube_cluster: EmulatedCluster, redis_url: str, scaler_operator: subprocess.Popen[str], tmp_path: Path
) -> None:
    """`helm uninstall` deletes the operator, its Roles and the worker Deployment at once. kopf
    held every Deployment its timer served with its finalizer, which only the running operator,
    with its RBAC, could take off: the workers stayed Terminating forever (e2e-sandbox's
    uninstall phase). The scaler's timer holds none, so a deletion completes with the operator gone."""
    queue = WorkQueue(redis_client(redis_url))
    queue.enqueue("campaign", [NewTask(id=f"t{i:02d}", spec={}) for i in range(12)])
    kube_cluster.create(deployment())
    log = tmp_path / "operator.log"
    wait_until(lambda: replicas(kube_cluster) == 3, timeout=30, what=f"the scaler at work (3 replicas); log: {log}")
    obj = kube_cluster.get("Deployment", NS, WORKERS)
    assert obj is not None
    assert not obj["metadata"].get("finalizers"), obj["metadata"]
    scaler_operator.kill()  # gone at once, as when its pod and its RBAC are deleted together
    scaler_operator.wait(10)
    kube_cluster.delete("Deployment", NS, WORKERS)
    wait_until(lambda: kube_cluster.get("Deployment", NS, WORKERS) is None, timeout=10, what="the workers deleted")
