"""Prometheus metrics of the operator: how often it reconciles, how long it takes, what fails."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter(
    "kubetrader_operator_reconciles_total",
    "Reconciliations by kind, handler and outcome.",
    ["kind", "handler", "outcome"],
)
FAILURES = Counter(
    "kubetrader_operator_resource_failures_total",
    "Resources that ended Failed, by kind and reason.",
    ["kind", "reason"],
)
DURATION = Histogram(
    "kubetrader_operator_reconcile_duration_seconds",
    "Time spent in one handler call.",
    ["kind", "handler"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LIVE_STOP_BLOCKED = Gauge(
    "kubetrader_operator_live_stop_blocked",
    "1 while a LiveDeployment's emergency stop cannot be confirmed flat (its StopBlocked condition), else 0.",
    ["namespace", "name"],
)


@contextmanager
def measured(kind: str, handler: str) -> Iterator[None]:
    """Count and time one handler call; an exception counts as outcome `error` and propagates."""
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        DURATION.labels(kind, handler).observe(time.perf_counter() - started)
        RECONCILES.labels(kind, handler, outcome).inc()


def serve(port: int) -> None:
    """Expose /metrics on `port` (0: not at all, e.g. several operators in one test process)."""
    if port:
        start_http_server(port)
