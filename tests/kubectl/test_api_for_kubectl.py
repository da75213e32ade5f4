"""What kubectl's commands need from the API, each against the emulated API with the real kubectl.

Server-side apply (create, update, conflicts, force, removal), selectors and paging, Events
through both groups, discovery, and `logs --follow` from the kubelet stand-in.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import EXAMPLES, ROOT, wait_until
from tests.kube.cluster import EmulatedCluster
from tests.kube.kubectl import KUBECTL, Kubectl
from tests.kube.kubelet import FakeKubelet

NS = "default"


@pytest.fixture
def kubectl(kube_cluster: EmulatedCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Kubectl:
    monkeypatch.chdir(ROOT)
    return Kubectl(kube_cluster.kubeconfig, tmp_path / "home")


def _example(**labels: str) -> str:
    """The example with labels (its spec is immutable: the CRD's rule refuses an edit, as a cluster does)."""
    doc = yaml.safe_load((EXAMPLES / "backtest-sma.yaml").read_text())
    doc["metadata"]["labels"] = labels
    return yaml.safe_dump(doc)


def _managers(obj: dict[str, Any]) -> dict[str, str]:
    return {e["manager"]: e["operation"] for e in obj["metadata"].get("managedFields", [])}


def test_server_side_apply_creates_updates_and_reports_conflicts(
    kube_cluster: EmulatedCluster, kubectl: Kubectl
) -> None:
    created = kubectl("apply", "--server-side", "-f", "examples/backtest-sma.yaml")
    assert created.strip() == "backtest.kubetrader.io/sma-orcl serverside-applied"
    backtest = kube_cluster.get("Backtest", NS, "sma-orcl")
    assert backtest is not None and _managers(backtest) == {"kubectl": "Apply"}
    fields = backtest["metadata"]["managedFields"][0]["fieldsV1"]
    assert fields["f:spec"]["f:strategy"]["f:params"] == {"f:fast": {}, "f:slow": {}}

    kubectl("apply", "--server-side", "-f", "-", stdin=_example(team="a"))  # the same manager: an update
    backtest = kube_cluster.get("Backtest", NS, "sma-orcl")
    assert backtest is not None
    assert backtest["metadata"]["labels"]["team"] == "a" and backtest["metadata"]["generation"] == 1

    other = kubectl.fails("apply", "--server-side", "--field-manager=alice", "-f", "-", stdin=_example(team="b"))
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .metadata.labels.team' in other
    assert "--force-conflicts" in other  # kubectl's advice, printed for the API's 409
    kubectl("apply", "--server-side", "--field-manager=alice", "--force-conflicts", "-f", "-", stdin=_example(team="b"))
    backtest = kube_cluster.get("Backtest", NS, "sma-orcl")
    assert backtest is not None and backtest["metadata"]["labels"]["team"] == "b"
    owners = {e["manager"]: e["fieldsV1"] for e in backtest["metadata"]["managedFields"]}
    assert "f:team" not in owners["kubectl"].get("f:metadata", {}).get("f:labels", {})  # taken over by force
    assert "f:team" in owners["alice"]["f:metadata"]["f:labels"]

    stale = yaml.safe_load(_example(team="c"))
    stale["metadata"].update(resourceVersion="1", uid="00000000-0000-0000-0000-000000000000")
    refused = kubectl.fails("apply", "--server-side", "--field-manager=alice", "-f", "-", stdin=yaml.safe_dump(stale))
    assert "the object has been modified" in refused  # a resourceVersion in an apply is a precondition

    # A field the manager stops applying is removed, unless someone else still owns it.
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"a": "1", "b": "2"},
    }
    kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(config_map))
    config_map["data"] = {"a": "1"}
    kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(config_map))
    stored = kube_cluster.get("ConfigMap", NS, "settings")
    assert stored is not None and stored["data"] == {"a": "1"}


def test_server_side_apply_merges_containers_by_name(kube_cluster: EmulatedCluster, kubectl: Kubectl) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}]}]},
            },
        },
    }
    kubectl("apply", "--server-side", "--field-manager=base", "-f", "-", stdin=json.dumps(deployment))
    sidecar = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy:1"}]}}},
    }
    kubectl("apply", "--server-side", "--field-manager=mesh", "-f", "-", stdin=json.dumps(sidecar))
    stored = kube_cluster.get("Deployment", NS, "web")
    assert stored is not None
    containers = stored["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("web", "nginx:1"), ("proxy", "envoy:1")]
    mesh = next(e for e in stored["metadata"]["managedFields"] if e["manager"] == "mesh")
    assert 'k:{"name":"proxy"}' in mesh["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    clash = kubectl.fails("apply", "--server-side", "--field-manager=mesh", "-f", "-", stdin=json.dumps(deployment))
    assert 'conflict with "base": .spec.template.spec.containers[name="web"].image' in clash


def test_selectors_and_paging_as_the_api_server_does(kube_cluster: EmulatedCluster, kubectl: Kubectl) -> None:
    for name, tier in (("a", "web"), ("b", "db"), ("c", None)):
        labels = {"app": "shop", **({"tier": tier} if tier else {})}
        kube_cluster.create(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS, "labels": labels}}
        )

    def names(*args: str) -> list[str]:
        return kubectl("get", "configmaps", "-o", "name", *args).split()

    assert names("-l", "tier in (web,db)") == ["configmap/a", "configmap/b"]
    assert names("-l", "tier notin (web)") == ["configmap/b", "configmap/c"]  # notin matches a missing key
    assert names("-l", "app=shop,!tier") == ["configmap/c"]
    assert names("--chunk-size=1") == ["configmap/a", "configmap/b", "configmap/c"]  # limit + continue
    raw = json.loads(kubectl("get", "--raw", "/api/v1/namespaces/default/configmaps?limit=2"))
    assert [i["metadata"]["name"] for i in raw["items"]] == ["a", "b"]
    assert raw["metadata"]["remainingItemCount"] == 1 and raw["metadata"]["continue"]
    bad = kubectl.fails("get", "configmaps", "--field-selector", "data.x=1")
    assert "field label not supported: data.x" in bad


def test_events_through_both_groups_with_field_selectors(kube_cluster: EmulatedCluster, kubectl: Kubectl) -> None:
    for name, target in (("e1", "sma-orcl"), ("e2", "other")):
        kube_cluster.create(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": NS},
                "involvedObject": {
                    "kind": "Backtest",
                    "name": target,
                    "namespace": NS,
                    "apiVersion": "kubetrader.io/v1alpha1",
                },
                "reason": "Succeeded",
                "message": f"{target} done",
                "type": "Normal",
                "source": {"component": "kubetrader-operator"},
            }
        )
    core = json.loads(kubectl("get", "events", "--field-selector", "involvedObject.name=sma-orcl", "-o", "json"))
    assert [e["metadata"]["name"] for e in core["items"]] == ["e1"]
    v1 = json.loads(
        kubectl("get", "events.v1.events.k8s.io", "--field-selector", "regarding.name=sma-orcl", "-o", "json")
    )
    (event,) = v1["items"]
    assert (event["apiVersion"], event["note"], event["regarding"]["name"]) == (
        "events.k8s.io/v1",
        "sma-orcl done",
        "sma-orcl",
    )
    assert event["reportingController"] == "kubetrader-operator"


def test_discovery_lists_core_kinds_and_no_subresources_as_kinds(
    kube_cluster: EmulatedCluster, kubectl: Kubectl
) -> None:
    resources = kubectl("api-resources", "--no-headers")
    rows = {line.split()[0]: line.split() for line in resources.splitlines()}
    assert rows["pods"][1] == "po" and rows["backtests"][1] == "bt"
    assert not any("/" in name for name in rows)
    core = json.loads(kubectl("get", "--raw", "/api/v1"))
    assert core["groupVersion"] == "v1"
    assert {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]} in core[
        "resources"
    ]
    server = kubectl("version", "-o", "json")
    assert json.loads(server)["serverVersion"]["gitVersion"].startswith("v1.")
    swagger = json.loads(kubectl("get", "--raw", "/openapi/v2"))
    assert {"io.kubetrader.v1alpha1.Backtest", "io.k8s.api.batch.v1.Job"} <= set(swagger["definitions"])
    kube_cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "quant-lab"}})
    assert kubectl("get", "namespace", "quant-lab", "-o", "name").strip() == "namespace/quant-lab"
    assert "quant-lab" in kubectl("get", "namespaces")


def test_logs_follow_streams_until_the_container_ends(
    kube_cluster: EmulatedCluster, fake_kubelet: FakeKubelet, kubectl: Kubectl
) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "ticker", "namespace": NS},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "python:3.11", "command": ["tick"]}],
                }
            },
        },
    }
    kube_cluster.create(job)
    script = (
        "import time, sys\n"
        "for i in range(3):\n"
        "    print('tick', i, flush=True)\n"
        "    time.sleep(0.7)\n"
        "print('bye', file=sys.stderr)"
    )
    runner = threading.Thread(
        target=fake_kubelet.run_job, args=(NS, "ticker"), kwargs={"program": lambda _: [sys.executable, "-c", script]}
    )
    runner.start()
    try:
        wait_until(
            lambda: (kube_cluster.get("Pod", NS, "ticker-0") or {}).get("status", {}).get("phase") == "Running",
            timeout=20,
            what="the pod running",
        )
        followed = kubectl("logs", "-f", "job/ticker")
    finally:
        runner.join()
    assert followed.splitlines() == ["tick 0", "tick 1", "tick 2", "bye"]  # stdout and stderr, to the end
    assert kubectl("logs", "ticker-0", "--tail=1") == "bye\n"


def test_get_watch_prints_a_row_per_change(kube_cluster: EmulatedCluster, kubectl: Kubectl) -> None:
    kube_cluster.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": NS}, "data": {"x": "1"}}
    )
    watching = subprocess.Popen(
        [str(KUBECTL), "get", "configmaps", "--watch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=kubectl.env,
    )
    try:
        assert watching.stdout is not None
        assert watching.stdout.readline().split() == ["NAME", "DATA", "AGE"]
        assert watching.stdout.readline().split()[:2] == ["a", "1"]
        kube_cluster.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "b", "namespace": NS},
                "data": {"x": "1", "y": "2"},
            }
        )
        assert watching.stdout.readline().split()[:2] == ["b", "2"]  # the watch event, as a Table row
    finally:
        watching.kill()
        watching.communicate()


def test_kubectl_scale_sets_replicas_through_the_scale_subresource(
    kube_cluster: EmulatedCluster, kubectl: Kubectl
) -> None:
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    kube_cluster.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template},
        }
    )
    assert kubectl("scale", "deployment/web", "--replicas=3").strip() == "deployment.apps/web scaled"
    deployment = kube_cluster.get("Deployment", NS, "web")
    assert deployment is not None and deployment["spec"]["replicas"] == 3
    # A precondition kubectl checks against the Scale it reads first.
    refused = kubectl.fails("scale", "deployment/web", "--current-replicas=2", "--replicas=1")
    assert "Expected replicas to be 2, was 3" in refused
    kubectl("scale", "deployment/web", "--current-replicas=3", "--replicas=0")
    deployment = kube_cluster.get("Deployment", NS, "web")
    assert deployment is not None and deployment["spec"]["replicas"] == 0
    # kubectl reads every request it made through /scale (its -v=6 log names the path).
    logged = kubectl.run("scale", "deployment/web", "--replicas=2", "-v=6").stderr
    assert "/apis/apps/v1/namespaces/default/deployments/web/scale" in logged
