"""The OptimizationStudy handlers' Redis I/O: the driver's published progress, and cancelling trials."""

from __future__ import annotations

import threading
from typing import Any

from kubetrader.optimize.naming import trial_batch
from kubetrader.optimize.progress import PublishedProgress, read_progress

_lock = threading.Lock()
_clients: dict[str, Any] = {}  # one client (and connection pool) per URL


def _client(url: str) -> Any:
    from kubetrader.queue.server import redis_client

    with _lock:
        if url not in _clients:
            _clients[url] = redis_client(url)
        return _clients[url]


def study_progress(url: str, study_key: str) -> PublishedProgress | None:
    """What the study's driver last published; None before its first result."""
    return read_progress(_client(url), study_key)


def cancel_trials(url: str, study_key: str) -> int:
    """Remove the study's queued trials from the work queue (idempotent); how many were removed.

    Running trials finish (their results stay in storage and MLflow) but are not retried.
    """
    from kubetrader.queue.workqueue import WorkQueue

    return WorkQueue(_client(url)).cancel_batch(trial_batch(study_key))
