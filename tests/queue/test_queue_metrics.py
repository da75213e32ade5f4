"""The worker's Prometheus metrics: task outcomes and durations, and the queue's depth and Redis memory."""

from __future__ import annotations

import redis
from prometheus_client import REGISTRY

from kubetrader.queue import metrics
from kubetrader.queue.tasks import NewTask
from kubetrader.queue.worker import Worker, WorkerSettings
from kubetrader.queue.workqueue import WorkQueue
from tests.queue import handlers

PREFIX = "kt-metrics"


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_worker_counts_and_times_each_outcome(redis_client: redis.Redis) -> None:
    before = {o: _value("kubetrader_worker_tasks_total", outcome=o) for o in ("done", "dead", "requeued")}
    timed = _value("kubetrader_worker_task_duration_seconds_count", outcome="done")
    queue = WorkQueue(redis_client, prefix=PREFIX)
    queue.enqueue("m", [
        NewTask(id="ok1", spec={}), NewTask(id="ok2", spec={}),
        NewTask(id="fatal", spec={}, meta={"fatal": True}),
        NewTask(id="crash", spec={}, meta={"poison": True}, max_attempts=2),
    ])  # fmt: skip
    summary = Worker(queue, handlers.poison, worker_id="w").run(exit_when_idle=True)
    assert (summary.succeeded, summary.failed) == (2, 3)
    assert _value("kubetrader_worker_tasks_total", outcome="done") - before["done"] == 2
    assert _value("kubetrader_worker_tasks_total", outcome="dead") - before["dead"] == 2  # fatal, crash at last try
    assert _value("kubetrader_worker_tasks_total", outcome="requeued") - before["requeued"] == 1
    assert _value("kubetrader_worker_task_duration_seconds_count", outcome="done") - timed == 2
    assert _value("kubetrader_worker_busy") == 0


def test_queue_gauges_read_depth_dead_letters_and_redis_memory(redis_client: redis.Redis) -> None:
    queue = WorkQueue(redis_client, prefix=PREFIX)
    queue.enqueue("depth", [NewTask(id=f"t{i}", spec={}) for i in range(3)])
    queue.enqueue("bad", [NewTask(id="fatal", spec={}, meta={"fatal": True})])
    Worker(queue, handlers.poison, worker_id="w").run(max_tasks=1)  # the highest-priority first: any one task
    metrics.refresh_queue(redis_client, PREFIX)
    pending = _value("kubetrader_queue_pending", prefix=PREFIX)
    dead = _value("kubetrader_queue_dead", prefix=PREFIX)
    assert pending + dead == 3 and pending >= 2
    memory = redis_client.info("memory")
    assert _value("kubetrader_redis_used_memory_bytes") > 0
    assert _value("kubetrader_redis_maxmemory_bytes") == float(memory["maxmemory"])


def test_queue_metrics_refresh_with_the_heartbeat_when_asked(redis_client: redis.Redis) -> None:
    queue = WorkQueue(redis_client, prefix=PREFIX)
    queue.enqueue("beat", [NewTask(id="a", spec={})])
    metrics.QUEUE_PENDING.labels(PREFIX).set(-1)
    settings = WorkerSettings(lease_seconds=0.3, heartbeat_seconds=0.05, queue_metrics=True, idle_wait_seconds=0.05)
    worker = Worker(queue, handlers.succeed, settings=settings, worker_id="w")
    worker.run(max_tasks=1)
    assert _value("kubetrader_queue_pending", prefix=PREFIX) >= 0  # set from the queue, no longer the -1 put there


def test_metric_names_list_what_prometheus_scrapes() -> None:
    assert {"kubetrader_worker_tasks_total", "kubetrader_worker_task_duration_seconds_bucket"} <= metrics.METRIC_NAMES
    assert "kubetrader_queue_dead" in metrics.METRIC_NAMES
    assert "kubetrader_worker_tasks" not in metrics.METRIC_NAMES
