"""The dashboard API under the RBAC the chart gives its ServiceAccount: the real API (create_app)
serves every route that reaches the cluster (the health ping, the three lists, submitting a
Backtest and an OptimizationStudy, the Logs page's pods, pod logs and Events) against the emulated
API with the chart's ServiceAccount token; every request those routes make is allowed, every verb
the chart grants is used, and the API cannot start live trading (no route submits a LiveDeployment,
and its ServiceAccount may not create one)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from tests.helpers import EXAMPLES
from tests.kube import chart_rbac
from tests.kube.authn import service_account
from tests.kube.cluster import EmulatedCluster
from tests.kube.crd_validation import load_crds

API = service_account(chart_rbac.NAMESPACE, f"{chart_rbac.RELEASE}-api")
VALUES: dict[str, Any] = {}


def example(file: str, name: str) -> dict[str, Any]:
    doc = copy.deepcopy(yaml.safe_load((EXAMPLES / file).read_text()))
    doc["metadata"] = {"name": name, "namespace": chart_rbac.NAMESPACE}
    return doc


@pytest.fixture
def api_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatedCluster]:
    with EmulatedCluster(load_crds().values(), workdir=tmp_path) as cluster:
        cluster.apply(chart_rbac.rbac_manifests(VALUES), chart_rbac.NAMESPACE)
        monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig_for(API, tmp_path / "api.kubeconfig")))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        yield cluster


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "kubetrader",
                                              "app.kubernetes.io/component": "worker"}},
        "spec": {"containers": [{"name": "worker", "image": "kubetrader/engine:test"}]},
    }  # fmt: skip


def test_the_api_uses_exactly_what_the_chart_grants_it(api_cluster: EmulatedCluster, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from kubetrader_dashboard.api.main import create_app
    from kubetrader_dashboard.services.cluster import ClusterService
    from tests.fixtures.dashboard import API_TOKEN, dashboard_settings

    api_cluster.create(_pod("kubetrader-worker-0"), chart_rbac.NAMESPACE)
    (tmp_path / "worker.log").write_text("worker started\n")
    api_cluster.attach_log(chart_rbac.NAMESPACE, "kubetrader-worker-0", "worker", tmp_path / "worker.log")
    (tmp_path / "results" / "backtests").mkdir(parents=True)
    settings = dashboard_settings(tmp_path / "results", None, None, kubernetes="auto", namespace=chart_rbac.NAMESPACE,
                                  api_token_role="trader")  # fmt: skip
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    with TestClient(create_app(settings), headers=auth) as client:
        health = {c["name"]: c for c in client.get("/api/v1/health").json()["components"]}
        assert health["kubernetes"]["status"] == "ok", health["kubernetes"]
        for plural in ("backtests", "optimizationstudies", "livedeployments"):
            listed = client.get(f"/api/v1/cluster/{plural}").json()
            assert listed["available"], (plural, listed)
        assert client.get("/api/v1/live").status_code == 200
        for file, name, path in (("backtest-sma.yaml", "from-the-api", "/api/v1/backtests"),
                                 ("study-sma.yaml", "study-from-the-api", "/api/v1/studies")):  # fmt: skip
            submitted = client.post(path, json=example(file, name))
            assert submitted.status_code == 202, submitted.text
        logs = client.get("/api/v1/logs").json()
        assert logs["cluster_reason"] is None, logs["cluster_reason"]
        assert "pod.kubetrader-worker-0" in [s["key"] for s in logs["items"]]
        assert client.get("/api/v1/logs/pod.kubetrader-worker-0").json()["lines"] == ["worker started"]
        events = client.get("/api/v1/events").json()
        assert events["available"], events
    assert api_cluster.get("Backtest", chart_rbac.NAMESPACE, "from-the-api") is not None

    assert api_cluster.emulator is not None
    records = api_cluster.emulator.access.records(API)
    assert not [r.describe() for r in records if not r.allowed]
    granted, used = chart_rbac.grants_and_uses(API, [(VALUES, [r.attributes for r in records])])
    assert not chart_rbac.describe_atoms(granted - used), "granted to the API but never used"

    direct = ClusterService("auto", chart_rbac.NAMESPACE)  # past the API's routes: its ServiceAccount itself
    assert direct.available, direct.reason
    with pytest.raises(ApiException) as refused:
        direct.create(example("live-paper.yaml", "live-from-the-api"))
    assert refused.value.status == 403
    assert json.loads(refused.value.body)["message"] == (
        'livedeployments.kubetrader.io is forbidden: User "system:serviceaccount:kubetrader:kubetrader-api" '
        'cannot create resource "livedeployments" in API group "kubetrader.io" in the namespace "kubetrader"'
    )
