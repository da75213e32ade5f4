"""The OptimizationStudy handlers' Kubernetes API I/O beyond what `kubetrader_operator.kube` has.

Plain dicts in and out (camelCase, as the API server sends them). Sync calls: kopf
runs sync handlers in its thread pool.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetrader.specs import API_GROUP, API_VERSION
from kubetrader_operator.kube import ConflictError, api_client, create_if_absent, delete_job, list_job_pods, read_job

__all__ = [
    "ConflictError",
    "create_if_absent",
    "delete_job",
    "list_job_pods",
    "live_pods",
    "patch_study_status",
    "read_job",
    "read_study",
]

STUDIES = "optimizationstudies"


def _call(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
    """None for 404, ConflictError for 409, anything else raises."""
    try:
        return dict(json.loads(fn(*args, _preload_content=False, **kwargs).data))
    except ApiException as exc:
        if exc.status == 404:
            return None
        if exc.status == 409:
            raise ConflictError(str(exc.reason)) from exc
        raise


def read_study(namespace: str, name: str) -> dict[str, Any] | None:
    api = client.CustomObjectsApi(api_client())
    return _call(api.get_namespaced_custom_object, API_GROUP, API_VERSION, namespace, STUDIES, name)


def patch_study_status(namespace: str, name: str, status: dict[str, Any], resource_version: str) -> dict[str, Any]:
    """Merge the status, only if the study is still at `resource_version` (else ConflictError)."""
    api = client.CustomObjectsApi(api_client())
    body = {"metadata": {"resourceVersion": resource_version}, "status": status}
    result = _call(api.patch_namespaced_custom_object_status, API_GROUP, API_VERSION, namespace, STUDIES, name, body)
    if result is None:
        raise ConflictError(f"study {namespace}/{name} is gone")
    return result


def live_pods(namespace: str, job_name: str) -> list[str]:
    """Names of the Job's pods that have not finished (the driver may still be enqueueing)."""
    return [
        pod["metadata"]["name"]
        for pod in list_job_pods(namespace, job_name)
        if (pod.get("status") or {}).get("phase") not in {"Succeeded", "Failed"}
    ]
