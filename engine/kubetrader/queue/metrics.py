"""Prometheus metrics of the work queue: what each worker did, and the queue's depth.

Two kinds, defined once here so every process exports them under the same names:

- per worker process: tasks finished by outcome, their run time, and whether a task runs now
  (`record_task`, called by `Worker._process`);
- of the queue as a whole (pending, running, dead-lettered, Redis memory against `maxmemory`):
  `record_queue` sets them from `queue_stats` and Redis `INFO memory`. The workers refresh them
  with their heartbeat, and the operator's scaler on each look at the queue, so they are there
  even while the pool is scaled to zero.

The Grafana dashboard and the PrometheusRules of the chart use only the names in `METRIC_NAMES`
(a test checks every query against them).
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from kubetrader.queue.stats import QueueStats

log = logging.getLogger(__name__)

TASKS = Counter(
    "kubetrader_worker_tasks_total",
    "Tasks a worker finished, by outcome: done, duplicate, dead (dead-lettered), requeued (retried), "
    "released (given back on shutdown), timed_out, cancelled.",
    ["outcome"],
)
TASK_SECONDS = Histogram(
    "kubetrader_worker_task_duration_seconds",
    "Run time of one task attempt, by outcome.",
    ["outcome"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
BUSY = Gauge("kubetrader_worker_busy", "1 while the worker runs a task, else 0.")

QUEUE_PENDING = Gauge("kubetrader_queue_pending", "Tasks waiting in the work queue.", ["prefix"])
QUEUE_RUNNING = Gauge("kubetrader_queue_running", "Tasks leased to a worker.", ["prefix"])
QUEUE_DEAD = Gauge("kubetrader_queue_dead", "Tasks in the dead-letter set.", ["prefix"])
QUEUE_HEALTH = Gauge("kubetrader_queue_health", "Queue health score, 0 (broken) to 100.", ["prefix"])
QUEUE_THROUGHPUT = Gauge("kubetrader_queue_throughput_per_minute", "Tasks finished per minute.", ["prefix"])
QUEUE_WORKERS = Gauge("kubetrader_queue_workers_alive", "Workers with a fresh heartbeat.", ["prefix"])
REDIS_USED_MEMORY = Gauge("kubetrader_redis_used_memory_bytes", "Redis INFO memory: used_memory.")
REDIS_MAXMEMORY = Gauge("kubetrader_redis_maxmemory_bytes", "Redis INFO memory: maxmemory (0: no limit).")

METRICS = (
    TASKS,
    TASK_SECONDS,
    BUSY,
    QUEUE_PENDING,
    QUEUE_RUNNING,
    QUEUE_DEAD,
    QUEUE_HEALTH,
    QUEUE_THROUGHPUT,
    QUEUE_WORKERS,
    REDIS_USED_MEMORY,
    REDIS_MAXMEMORY,
)


def exported_names(*metrics: Any) -> set[str]:
    """The sample names Prometheus scrapes for these metrics (a counter's `_total`, a histogram's `_bucket`...)."""
    names: set[str] = set()
    for metric in metrics:
        for family in metric.describe():
            if family.type == "counter":
                names |= {f"{family.name}_total", f"{family.name}_created"}
            elif family.type == "histogram":
                names |= {f"{family.name}{s}" for s in ("_bucket", "_count", "_sum", "_created")}
            else:
                names.add(family.name)
    return names


METRIC_NAMES = exported_names(*METRICS)


def record_task(outcome: str, run_seconds: float) -> None:
    """Count one finished task attempt (`outcome` as the queue reported it) and time it."""
    TASKS.labels(outcome).inc()
    TASK_SECONDS.labels(outcome).observe(run_seconds)


def record_queue(stats: QueueStats, prefix: str, memory: dict[str, Any] | None = None) -> None:
    """Set the queue gauges from `queue_stats`, and Redis' memory from `INFO memory` when given."""
    QUEUE_PENDING.labels(prefix).set(stats.pending)
    QUEUE_RUNNING.labels(prefix).set(stats.running)
    QUEUE_DEAD.labels(prefix).set(stats.dead)
    QUEUE_HEALTH.labels(prefix).set(stats.health)
    QUEUE_THROUGHPUT.labels(prefix).set(stats.throughput_per_min)
    QUEUE_WORKERS.labels(prefix).set(stats.workers_alive)
    if memory is not None:
        REDIS_USED_MEMORY.set(float(memory.get("used_memory", 0)))
        REDIS_MAXMEMORY.set(float(memory.get("maxmemory", 0)))


def refresh_queue(client: Any, prefix: str) -> None:
    """Read the queue and Redis' memory (a few round trips) and set the gauges."""
    from kubetrader.queue.stats import queue_stats

    record_queue(queue_stats(client, prefix=prefix), prefix, client.info("memory"))


def serve(port: int, *, host: str = "0.0.0.0") -> None:  # a pod's metrics port, scraped from outside
    """Expose /metrics on `port` in a daemon thread (0: not at all)."""
    if port:
        start_http_server(port, addr=host)
        log.info("metrics on %s:%d/metrics", host, port)
