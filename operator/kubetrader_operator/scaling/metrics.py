"""Prometheus metrics of the scaler; `kubetrader_queue_pending` is also what the KEDA trigger reads."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

QUEUE_PENDING = Gauge("kubetrader_queue_pending", "Tasks waiting in the work queue.", ["prefix"])
QUEUE_RUNNING = Gauge("kubetrader_queue_running", "Tasks leased to a worker.", ["prefix"])
QUEUE_HEALTH = Gauge("kubetrader_queue_health", "Queue health score, 0 (broken) to 100.", ["prefix"])
QUEUE_THROUGHPUT = Gauge("kubetrader_queue_throughput_per_minute", "Tasks finished per minute.", ["prefix"])
DESIRED_REPLICAS = Gauge(
    "kubetrader_workers_desired_replicas", "Replicas the scaler wants.", ["namespace", "deployment"]
)
DECISIONS = Counter(
    "kubetrader_scaling_decisions_total", "Scaling decisions by direction.", ["namespace", "deployment", "direction"]
)
