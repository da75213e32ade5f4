"""Custom resources in a cluster, through the official kubernetes client.

Optional: with no in-cluster service account and no kubeconfig the dashboard runs
on one machine and says so, instead of failing every request.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from kubetrader.specs.common import API_GROUP, API_VERSION
from kubetrader_dashboard.models.operations import ClusterResource, ClusterResources

PLURALS = {"Backtest": "backtests", "OptimizationStudy": "optimizationstudies", "LiveDeployment": "livedeployments"}


class ClusterService:
    def __init__(self, mode: str, namespace: str) -> None:
        self.mode = mode
        self.namespace = namespace
        self._api: Any = None
        self._api_client: Any = None
        self._core: Any = None
        self._reason: str | None = None
        self._loaded = False
        self._lock = threading.Lock()

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            if self.mode == "off":
                self._reason = "Kubernetes is switched off (KUBETRADER_KUBERNETES=off)"
                return
            from kubernetes import client, config

            # A client of its own (not the package's global default), so two apps in one
            # process (tests, the benchmark) can talk to two clusters.
            configuration = client.Configuration()
            try:
                config.load_incluster_config(client_configuration=configuration)
                api_client = client.ApiClient(configuration)
            except config.ConfigException:
                try:
                    # KUBECONFIG as it is now: the kubernetes package reads it once, at its import.
                    api_client = config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))
                except (config.ConfigException, OSError, TypeError) as exc:
                    self._reason = f"no in-cluster config and no usable kubeconfig ({type(exc).__name__})"
                    return
            self._api_client = api_client
            self._api = client.CustomObjectsApi(api_client)
            self._core = client.CoreV1Api(api_client)

    def core(self) -> Any:
        """The core/v1 API (pods, their logs, events) on the same client."""
        self._load()
        return self._core

    @property
    def available(self) -> bool:
        self._load()
        return self._api is not None

    @property
    def reason(self) -> str | None:
        self._load()
        return self._reason

    def ping(self) -> None:
        """What the dashboard needs of the API server: reading its custom resources."""
        self._load()
        self._api.list_namespaced_custom_object(
            API_GROUP, API_VERSION, self.namespace, PLURALS["Backtest"], limit=1, _request_timeout=3
        )

    def list_resources(self, kind: str) -> ClusterResources:
        if not self.available:
            return ClusterResources(available=False, reason=self.reason)
        body = self._api.list_namespaced_custom_object(
            API_GROUP, API_VERSION, self.namespace, PLURALS[kind], _request_timeout=5
        )
        return ClusterResources(items=[_resource(kind, item) for item in body.get("items", [])])

    def create(self, document: dict[str, Any]) -> dict[str, Any]:
        plural = PLURALS[str(document["kind"])]
        namespace = document.get("metadata", {}).get("namespace") or self.namespace
        created: dict[str, Any] = self._api.create_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, plural, document, _request_timeout=10
        )
        return created


def _resource(kind: str, item: dict[str, Any]) -> ClusterResource:
    meta = item.get("metadata", {})
    status = item.get("status") or {}
    metrics = {k: v for k, v in status.items() if isinstance(v, int | float | str) and k not in ("phase",)}
    return ClusterResource(
        kind=kind,
        name=meta.get("name", ""),
        namespace=meta.get("namespace"),
        phase=status.get("phase"),
        created=meta.get("creationTimestamp"),
        metrics=metrics,
        conditions=list(status.get("conditions") or []),
    )
