"""The dashboard API under the RBAC the chart gives its ServiceAccount: every call the API's cluster
service makes (dashboard/kubetrader_dashboard/services/cluster.py: the health ping, the three
lists, submitting a Backtest and an OptimizationStudy) is allowed, every verb the chart grants
it is used, and it cannot start live trading (no route submits a LiveDeployment)."""

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


def test_the_api_uses_exactly_what_the_chart_grants_it(api_cluster: EmulatedCluster) -> None:
    from kubetrader_dashboard.services.cluster import PLURALS, ClusterService

    service = ClusterService("auto", chart_rbac.NAMESPACE)
    assert service.available, service.reason
    service.ping()
    for kind in PLURALS:
        assert service.list_resources(kind).available
    service.create(example("backtest-sma.yaml", "from-the-api"))
    service.create(example("study-sma.yaml", "study-from-the-api"))
    assert api_cluster.get("Backtest", chart_rbac.NAMESPACE, "from-the-api") is not None

    assert api_cluster.emulator is not None
    records = api_cluster.emulator.access.records(API)
    assert not [r.describe() for r in records if not r.allowed]
    granted, used = chart_rbac.grants_and_uses(API, [(VALUES, [r.attributes for r in records])])
    assert not chart_rbac.describe_atoms(granted - used), "granted to the API but never used"

    with pytest.raises(ApiException) as refused:
        service.create(example("live-paper.yaml", "live-from-the-api"))
    assert refused.value.status == 403
    assert json.loads(refused.value.body)["message"] == (
        'livedeployments.kubetrader.io is forbidden: User "system:serviceaccount:kubetrader:kubetrader-api" '
        'cannot create resource "livedeployments" in API group "kubetrader.io" in the namespace "kubetrader"'
    )
