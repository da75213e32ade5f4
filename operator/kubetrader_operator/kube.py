"""The one module that talks to the Kubernetes API (besides kopf itself).

Everything returns plain dicts as the API server sends them (camelCase), so the
pure builders and status functions work on the same shapes as the tests.
Calls are synchronous: the handlers that use them are sync and kopf runs them in
its thread pool, so the event loop never blocks.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kubetrader.specs import API_GROUP, API_VERSION
from kubetrader_operator.labels import stale_child

BACKTESTS = "backtests"
CONFLICT_RETRIES = 8
T = TypeVar("T")


class ConflictError(Exception):
    """The object changed since it was read (HTTP 409): read it again and retry."""


class StaleChildError(Exception):
    """The child's name is taken by an object this owner must not adopt (`labels.stale_child` says why)."""


_lock = threading.Lock()
_clients: dict[str, client.ApiClient] = {}  # one shared client, kept in a dict to avoid `global`


def api_client() -> client.ApiClient:
    """A shared client: in-cluster credentials in a pod, the kubeconfig elsewhere (tests, laptops)."""
    with _lock:
        if "default" not in _clients:
            configuration = client.Configuration()
            if os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(client_configuration=configuration)
            else:
                # Read KUBECONFIG now, not at import time as the library's default does.
                config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration)
            _clients["default"] = client.ApiClient(configuration)
        return _clients["default"]


def reset_client() -> None:
    """Forget the cached client (a test points the kubeconfig at a new emulator)."""
    with _lock:
        _clients.clear()


def _json(response: Any) -> dict[str, Any]:
    return dict(json.loads(response.data))


def _call(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
    """Call a client method; None for 404, ConflictError for 409."""
    try:
        return _json(fn(*args, _preload_content=False, **kwargs))
    except ApiException as exc:
        if exc.status == 404:
            return None
        if exc.status == 409:
            raise ConflictError(str(exc.reason)) from exc
        raise


def create_if_absent(manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create a ConfigMap or Job unless one of that name exists; (object, created?).

    A 409 means a previous attempt (maybe before a restart) got there first: the
    existing object is adopted, never replaced and never duplicated, but only when it is
    this owner's (same owner uid, same spec hash). A child of a deleted namesake raises
    StaleChildError: the garbage collector deletes it soon after its owner went.
    """
    kind = manifest["kind"]
    namespace = manifest["metadata"]["namespace"]
    name = manifest["metadata"]["name"]
    if kind == "ConfigMap":
        api: Any = client.CoreV1Api(api_client())
        create, read = api.create_namespaced_config_map, api.read_namespaced_config_map
    elif kind == "Job":
        api = client.BatchV1Api(api_client())
        create, read = api.create_namespaced_job, api.read_namespaced_job
    else:
        raise ValueError(f"cannot create a {kind}")
    try:
        created = _call(create, namespace, manifest)
    except ConflictError:
        existing = _call(read, name, namespace)
        if existing is None:  # deleted between the 409 and the read: let the caller retry
            raise
        reason = stale_child(existing, manifest)
        if reason is not None:
            raise StaleChildError(reason) from None
        return existing, False
    assert created is not None
    return created, True


def read_job(namespace: str, name: str) -> dict[str, Any] | None:
    return _call(client.BatchV1Api(api_client()).read_namespaced_job, name, namespace)


def delete_job(namespace: str, name: str) -> None:
    """Delete a Job and (in the background) its pods."""
    body = client.V1DeleteOptions(propagation_policy="Background")
    _call(client.BatchV1Api(api_client()).delete_namespaced_job, name, namespace, body=body)


def list_job_pods(namespace: str, job_name: str) -> list[dict[str, Any]]:
    pods = _call(client.CoreV1Api(api_client()).list_namespaced_pod, namespace, label_selector=f"job-name={job_name}")
    return list((pods or {}).get("items", []))


def read_custom(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    """One of our custom resources (`plural`: backtests, optimizationstudies, ...), or None."""
    api = client.CustomObjectsApi(api_client())
    return _call(api.get_namespaced_custom_object, API_GROUP, API_VERSION, namespace, plural, name)


def patch_custom_status(
    plural: str, namespace: str, name: str, status: dict[str, Any], resource_version: str
) -> dict[str, Any]:
    """Merge the status, only if the resource is still at `resource_version` (else ConflictError)."""
    api = client.CustomObjectsApi(api_client())
    body = {"metadata": {"resourceVersion": resource_version}, "status": status}
    result = _call(api.patch_namespaced_custom_object_status, API_GROUP, API_VERSION, namespace, plural, name, body)
    if result is None:
        raise ConflictError(f"{plural} {namespace}/{name} is gone")
    return result


class StatusKeptChangingError(Exception):
    """Every one of CONFLICT_RETRIES status writes lost the resourceVersion race."""


def write_custom_status(
    plural: str, namespace: str, name: str, compute: Callable[[dict[str, Any]], tuple[dict[str, Any], T | None]]
) -> tuple[dict[str, Any], T] | None:
    """Read, compute, patch with the read resourceVersion; on a conflict, read and compute again.

    The one status write of Backtests and studies: whoever loses the race recomputes from what won,
    so no update is lost. Returns (the object as read, the transition) when a write carried one (the
    caller posts its Event), else None (gone, unchanged, or written without a transition)."""
    for _ in range(CONFLICT_RETRIES):
        current = read_custom(plural, namespace, name)
        if current is None:
            return None
        status, transition = compute(current)
        if status == (current.get("status") or {}):
            return None
        try:
            patch_custom_status(plural, namespace, name, status, current["metadata"]["resourceVersion"])
        except ConflictError:
            continue
        return (current, transition) if transition is not None else None
    raise StatusKeptChangingError(f"status of {namespace}/{name} kept changing under us")


def read_backtest(namespace: str, name: str) -> dict[str, Any] | None:
    return read_custom(BACKTESTS, namespace, name)
