"""The scaler's Kubernetes API calls (pods of the worker Deployment), kept apart from the rule."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

from kubetrader_operator.kube import api_client


def list_pods(namespace: str, match_labels: dict[str, str]) -> list[dict[str, Any]]:
    """Pods selected by the Deployment's matchLabels, as the API server sends them."""
    selector = ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))
    api = client.CoreV1Api(api_client())
    response: Any = api.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
    return list(json.loads(response.data).get("items", []))


def annotate_pod(namespace: str, name: str, annotations: dict[str, str]) -> None:
    api = client.CoreV1Api(api_client())
    api.patch_namespaced_pod(name, namespace, {"metadata": {"annotations": annotations}})


def release_deployment(namespace: str, name: str, finalizer: str, label: str) -> bool:
    """Remove `finalizer` from a Deployment; False when it carried none (or is gone).

    A JSON patch with a `test` op on the entry's index, as kopf's own release does, so a list
    changed meanwhile fails the patch (422) instead of removing someone else's finalizer. The
    Deployment is read by a list on the scaler's `label` (the request kopf's watch makes: the
    operator may list Deployments, not get them)."""
    api = client.AppsV1Api(api_client())
    response: Any = api.list_namespaced_deployment(namespace, label_selector=f"{label}=true", _preload_content=False)
    items = [i for i in json.loads(response.data).get("items", []) if i["metadata"]["name"] == name]
    finalizers = list(items[0]["metadata"].get("finalizers") or []) if items else []
    if finalizer not in finalizers:
        return False
    path = f"/metadata/finalizers/{finalizers.index(finalizer)}"
    api.patch_namespaced_deployment(
        name, namespace, [{"op": "test", "path": path, "value": finalizer}, {"op": "remove", "path": path}]
    )
    return True
