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
