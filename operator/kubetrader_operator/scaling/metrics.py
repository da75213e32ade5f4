"""Prometheus metrics of the scaler. The queue's gauges (`kubetrader_queue_pending`, which the
KEDA trigger also reads, running, dead, Redis memory) are the engine's (`kubetrader.queue.metrics`),
defined once: the workers export the same names."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from kubetrader.queue.metrics import QUEUE_HEALTH, QUEUE_PENDING, QUEUE_RUNNING, QUEUE_THROUGHPUT, record_queue

__all__ = ["DECISIONS", "DESIRED_REPLICAS", "QUEUE_HEALTH", "QUEUE_PENDING", "QUEUE_RUNNING", "QUEUE_THROUGHPUT"]
__all__ += ["record_queue"]

DESIRED_REPLICAS = Gauge(
    "kubetrader_workers_desired_replicas", "Replicas the scaler wants.", ["namespace", "deployment"]
)
DECISIONS = Counter(
    "kubetrader_scaling_decisions_total", "Scaling decisions by direction.", ["namespace", "deployment", "direction"]
)
