"""The OptimizationStudy handlers' Kubernetes API I/O beyond what `kubetrader_operator.kube` has.

Plain dicts in and out (camelCase, as the API server sends them). Sync calls: kopf
runs sync handlers in its thread pool.
"""

from __future__ import annotations

from kubetrader_operator.kube import (
    ConflictError,
    StaleChildError,
    create_if_absent,
    delete_job,
    list_job_pods,
    read_job,
)

__all__ = [
    "ConflictError",
    "StaleChildError",
    "create_if_absent",
    "delete_job",
    "list_job_pods",
    "live_pods",
    "read_job",
]

STUDIES = "optimizationstudies"


def live_pods(namespace: str, job_name: str) -> list[str]:
    """Names of the Job's pods that have not finished (the driver may still be enqueueing)."""
    return [
        pod["metadata"]["name"]
        for pod in list_job_pods(namespace, job_name)
        if (pod.get("status") or {}).get("phase") not in {"Succeeded", "Failed"}
    ]
