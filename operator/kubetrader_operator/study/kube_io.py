"""The OptimizationStudy handlers' Kubernetes API I/O beyond what `kubetrader_operator.kube` has.

Plain dicts in and out (camelCase, as the API server sends them). Sync calls: kopf
runs sync handlers in its thread pool.
"""

from __future__ import annotations

from typing import Any

from kubetrader_operator import kube
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
    "patch_study_status",
    "read_job",
    "read_study",
]

STUDIES = "optimizationstudies"


def read_study(namespace: str, name: str) -> dict[str, Any] | None:
    return kube.read_custom(STUDIES, namespace, name)


def patch_study_status(namespace: str, name: str, status: dict[str, Any], resource_version: str) -> dict[str, Any]:
    """Merge the status, only if the study is still at `resource_version` (else ConflictError)."""
    return kube.patch_custom_status(STUDIES, namespace, name, status, resource_version)


def live_pods(namespace: str, job_name: str) -> list[str]:
    """Names of the Job's pods that have not finished (the driver may still be enqueueing)."""
    return [
        pod["metadata"]["name"]
        for pod in list_job_pods(namespace, job_name)
        if (pod.get("status") or {}).get("phase") not in {"Succeeded", "Failed"}
    ]
