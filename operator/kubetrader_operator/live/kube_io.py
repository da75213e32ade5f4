"""The one module of the LiveDeployment handlers that talks to the Kubernetes API.

Plain dicts in and out (camelCase, as the API server sends them). Sync calls: kopf
runs sync handlers in its thread pool.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetrader.specs import API_GROUP, API_VERSION
from kubetrader_operator.kube import ConflictError, api_client
from kubetrader_operator.live.builders import STOP_FINALIZER, names

LIVEDEPLOYMENTS = "livedeployments"
# kind -> (API class, method suffix)
_KINDS: dict[str, tuple[Any, str]] = {
    "Secret": (client.CoreV1Api, "secret"),
    "Service": (client.CoreV1Api, "service"),
    "StatefulSet": (client.AppsV1Api, "stateful_set"),
    "Deployment": (client.AppsV1Api, "deployment"),
    "NetworkPolicy": (client.NetworkingV1Api, "network_policy"),
}


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


def _method(kind: str, verb: str) -> Any:
    api_class, suffix = _KINDS[kind]
    return getattr(api_class(api_client()), f"{verb}_namespaced_{suffix}")


def create_if_absent(manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create unless an object of that name exists (then adopt it, never replace it).

    A Secret that exists is not read back (the operator may create Secrets, not read them): the
    runner's token in it was derived from the same key, so the manifest stands for it.
    """
    kind, meta = manifest["kind"], manifest["metadata"]
    try:
        created = _call(_method(kind, "create"), meta["namespace"], manifest)
    except ConflictError:
        if kind == "Secret":
            return manifest, False
        existing = read(kind, meta["namespace"], meta["name"])
        if existing is None:
            raise
        return existing, False
    assert created is not None
    return created, True


def patch(kind: str, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """A merge patch of a child (lists in it are replaced whole); the child must exist."""
    patched = _call(_method(kind, "patch"), name, namespace, body)
    if patched is None:
        raise LookupError(f"{kind} {namespace}/{name} is gone")
    return patched


def read(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return _call(_method(kind, "read"), name, namespace)


def read_credentials(namespace: str, name: str) -> dict[str, Any] | None:
    """The credentials Secret a LiveDeployment names; PermissionError when RBAC refuses the read
    (the chart grants `get` only on the Secrets listed in operator.readableSecrets)."""
    try:
        return read("Secret", namespace, name)
    except ApiException as exc:
        if exc.status == 403:
            raise PermissionError(name) from exc
        raise


def release(kind: str, namespace: str, name: str) -> None:
    """Remove our stop finalizer (if there) and delete the object; absent is fine.

    A Secret carries no finalizer and is deleted without a read (the operator may not read it).
    """
    if kind == "Secret":
        _call(_method(kind, "delete"), name, namespace, body=client.V1DeleteOptions(propagation_policy="Background"))
        return
    current = read(kind, namespace, name)
    if current is None:
        return
    finalizers = list(current["metadata"].get("finalizers") or [])
    if STOP_FINALIZER in finalizers:
        finalizers.remove(STOP_FINALIZER)
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": current["metadata"]["resourceVersion"]}}
        _call(_method(kind, "patch"), name, namespace, body)
    _call(_method(kind, "delete"), name, namespace, body=client.V1DeleteOptions(propagation_policy="Background"))


def release_children(namespace: str, deployment: str) -> None:
    """After a confirmed stop: the runner first (no trader without its gateway), then the rest."""
    n = names(deployment)
    for kind, name in (
        ("Deployment", n["runner"]),
        ("Service", n["runner"]),
        ("NetworkPolicy", n["runner-policy"]),
        ("StatefulSet", n["gateway"]),
        ("Service", n["gateway"]),
        ("NetworkPolicy", n["policy"]),
        ("Secret", n["token"]),
    ):
        release(kind, namespace, name)


def gateway_ready(namespace: str, deployment: str) -> bool:
    sts = read("StatefulSet", namespace, names(deployment)["gateway"])
    return bool(sts and (sts.get("status") or {}).get("readyReplicas", 0) >= 1)


def read_backtest(namespace: str, name: str) -> dict[str, Any] | None:
    api = client.CustomObjectsApi(api_client())
    return _call(api.get_namespaced_custom_object, API_GROUP, API_VERSION, namespace, "backtests", name)
