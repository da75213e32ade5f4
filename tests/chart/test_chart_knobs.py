"""Scheduling, metadata and exposure knobs render where they should, for every workload.

Table-driven: COMPONENT_WORKLOADS says which pods each component's values govern; every knob is
set globally, then per component, and each pod is checked. A workload added without the shared
helpers (kubetrader.podMetadata / kubetrader.podScheduling) fails the coverage test.
"""

from __future__ import annotations

from typing import Any

import helm_python
import kubernetes_validate
import pytest

from tests.fixtures.chart import RenderedChart, parse_manifests, render_chart

KUBERNETES_VERSION = kubernetes_validate.latest_version()
# component values key -> the workloads (kind/name) whose pods it shapes
COMPONENT_WORKLOADS = {
    "operator": ["Deployment/kubetrader-operator"],
    "worker": ["Deployment/kubetrader-worker"],
    "redis": ["StatefulSet/kubetrader-redis"],
    "postgresql": ["StatefulSet/kubetrader-postgresql"],
    "mlflow": ["Deployment/kubetrader-mlflow", "Job/kubetrader-mlflow-migrate"],
    "api": ["Deployment/kubetrader-api"],
    "dashboard": ["Deployment/kubetrader-dashboard"],
}
# Pods with no component values of their own: global knobs only.
GLOBAL_ONLY = ["Pod/kubetrader-helm-test", "Job/kubetrader-secrets-hook"]
# Scheduled by operator.childPods over global, as the Jobs whose volume they share
# (tests/chart/test_chart_child_pods.py checks those knobs).
CHILD_POD_LIKE = ["Deployment/kubetrader-mlflow-sync"]
WEB = {"api": 8000, "dashboard": 8501, "mlflow": 5000}

GLOBAL = {
    "nodeSelector": {"kubernetes.io/os": "linux", "pool": "global"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "kubetrader", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}}
    ]}},
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
    ],
    "priorityClassName": "platform",
    "podAnnotations": {"example.com/owner": "platform"},
    "podLabels": {"cost-center": "research"},
}  # fmt: skip


def _component_values(component: str) -> dict[str, Any]:
    return {
        "nodeSelector": {"pool": component},
        "tolerations": [{"key": component, "operator": "Exists"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}
        ]}},
        "topologySpreadConstraints": [
            {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": {"own": component}}}
        ],
        "priorityClassName": f"{component}-priority",
        "podAnnotations": {"example.com/component": component},
        "podLabels": {"team": component, "app.kubernetes.io/component": "not-the-chart-label"},
        "imagePullSecrets": [f"{component}-pull"],
    }  # fmt: skip


def _render(values: dict[str, Any]) -> RenderedChart:
    templates = render_chart(values)
    return RenderedChart("knobs", values, templates, parse_manifests(templates))


def _pods(rendered: RenderedChart) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """kind/name -> (pod metadata, pod spec) of every pod the chart renders."""
    found = {}
    for doc in rendered.of_kind("Deployment", "StatefulSet", "Job", "Pod"):
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "Pod":
            found[where] = (doc["metadata"], doc["spec"])
        else:
            found[where] = (doc["spec"]["template"]["metadata"], doc["spec"]["template"]["spec"])
    return found


@pytest.fixture(scope="module")
def global_knobs() -> RenderedChart:
    return _render({"global": GLOBAL, "images": {"pullSecrets": ["registry"]}, "auth": {"generateWithHook": True}})


def test_the_table_covers_every_pod_the_chart_renders(global_knobs: RenderedChart) -> None:
    expected = {w for workloads in COMPONENT_WORKLOADS.values() for w in workloads} | set(GLOBAL_ONLY)
    assert set(_pods(global_knobs)) == expected | set(CHILD_POD_LIKE)


@pytest.mark.parametrize(
    "workload", [w for ws in COMPONENT_WORKLOADS.values() for w in ws] + GLOBAL_ONLY + CHILD_POD_LIKE
)
def test_global_knobs_reach_every_pod(workload: str, global_knobs: RenderedChart) -> None:
    metadata, pod = _pods(global_knobs)[workload]
    assert pod["nodeSelector"] == GLOBAL["nodeSelector"]
    assert pod["tolerations"] == GLOBAL["tolerations"]
    assert pod["affinity"] == GLOBAL["affinity"]
    assert pod["priorityClassName"] == "platform"
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    (spread,) = pod["topologySpreadConstraints"]
    # Filled in with this pod's own selector labels, so each component spreads on its own.
    selector = spread.pop("labelSelector")["matchLabels"]
    assert spread == GLOBAL["topologySpreadConstraints"][0]
    assert selector.items() <= metadata["labels"].items()
    assert selector["app.kubernetes.io/component"] == metadata["labels"]["app.kubernetes.io/component"]
    assert metadata["annotations"]["example.com/owner"] == "platform"
    assert metadata["labels"]["cost-center"] == "research"
    assert metadata["labels"]["app.kubernetes.io/part-of"] == "kubetrader"


@pytest.mark.parametrize("component", sorted(COMPONENT_WORKLOADS))
def test_component_knobs_go_over_global_ones_on_that_component_only(component: str) -> None:
    rendered = _render(
        {"global": GLOBAL, "images": {"pullSecrets": ["registry"]}, component: _component_values(component)}
    )
    mine = _component_values(component)
    for workload, (metadata, pod) in _pods(rendered).items():
        if workload in COMPONENT_WORKLOADS[component]:
            assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "pool": component}, workload
            assert pod["tolerations"] == GLOBAL["tolerations"] + mine["tolerations"], workload
            assert pod["affinity"] == mine["affinity"], workload
            assert pod["topologySpreadConstraints"] == mine["topologySpreadConstraints"], workload  # its selector kept
            assert pod["priorityClassName"] == f"{component}-priority", workload
            assert pod["imagePullSecrets"] == [{"name": "registry"}, {"name": f"{component}-pull"}], workload
            assert metadata["annotations"]["example.com/component"] == component, workload
            assert metadata["annotations"]["example.com/owner"] == "platform", workload
            assert metadata["labels"]["team"] == component, workload
            # The chart's own labels win: a podLabel never moves a pod out of its Service or PDB.
            assert metadata["labels"]["app.kubernetes.io/component"] != "not-the-chart-label", workload
        else:
            assert pod["nodeSelector"] == GLOBAL["nodeSelector"], workload
            assert pod["priorityClassName"] == "platform", workload
            assert "team" not in metadata["labels"], workload


def test_without_knobs_pods_carry_no_scheduling_fields() -> None:
    for workload, (_, pod) in _pods(_render({})).items():
        for field in ("nodeSelector", "tolerations", "affinity", "topologySpreadConstraints", "priorityClassName"):
            assert field not in pod, (workload, field)
        assert "imagePullSecrets" not in pod, workload


@pytest.mark.parametrize("component", sorted(WEB))
def test_web_services_take_type_annotations_and_source_ranges(component: str) -> None:
    service = {
        "type": "LoadBalancer",
        "nodePort": 31000,
        "annotations": {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"},
        "loadBalancerSourceRanges": ["10.0.0.0/8", "2001:db8::/32"],
    }
    rendered = _render({component: {"service": service}})
    svc = rendered.get("Service", f"kubetrader-{component}")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["metadata"]["annotations"] == service["annotations"]
    assert svc["spec"]["loadBalancerSourceRanges"] == service["loadBalancerSourceRanges"]
    assert svc["spec"]["ports"] == [{"name": "http", "port": WEB[component], "targetPort": "http"}]
    kubernetes_validate.validate(svc, KUBERNETES_VERSION, strict=True)


def test_nothing_holding_data_has_a_node_port_by_default() -> None:
    rendered = _render({})
    node_ports = {s["metadata"]["name"] for s in rendered.of_kind("Service") if s["spec"].get("type") == "NodePort"}
    assert "kubetrader-mlflow" not in node_ports
    assert not {"kubetrader-redis", "kubetrader-postgresql"} & node_ports
    assert rendered.get("Service", "kubetrader-mlflow")["spec"]["type"] == "ClusterIP"


@pytest.mark.parametrize("component", sorted(WEB))
def test_ingress_and_http_route_per_web_component_with_tls(component: str) -> None:
    host = f"{component}.example.com"
    values = {
        component: {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
                "hosts": [host],
                "tls": [{"secretName": f"{component}-tls", "hosts": [host]}],
            },
            "httpRoute": {"enabled": True, "parentRefs": [{"name": "public", "namespace": "gw"}], "hostnames": [host]},
        }
    }
    rendered = _render(values)
    ingress = rendered.get("Ingress", f"kubetrader-{component}")
    kubernetes_validate.validate(ingress, KUBERNETES_VERSION, strict=True)
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"secretName": f"{component}-tls", "hosts": [host]}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == host
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": f"kubetrader-{component}", "port": {"name": "http"}}
    route = rendered.get("HTTPRoute", f"kubetrader-{component}")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gw"}]
    (backend,) = route["spec"]["rules"][0]["backendRefs"]
    assert backend == {"name": f"kubetrader-{component}", "port": WEB[component]}
    others = {d["metadata"]["name"] for d in rendered.of_kind("Ingress", "HTTPRoute")}
    assert others == {f"kubetrader-{component}"}


def test_an_enabled_ingress_without_hosts_is_refused_naming_the_field() -> None:
    with pytest.raises(helm_python.HelmValuesError, match="/dashboard/ingress/hosts"):
        render_chart({"dashboard": {"ingress": {"enabled": True}}})


def test_pdbs_cover_api_dashboard_mlflow_and_workers_but_not_the_operator() -> None:
    rendered = _render({})
    pdbs = {p["metadata"]["name"]: p for p in rendered.of_kind("PodDisruptionBudget")}
    assert set(pdbs) == {"kubetrader-api", "kubetrader-dashboard", "kubetrader-mlflow", "kubetrader-worker"}
    pods = _pods(rendered)
    for name, pdb in pdbs.items():
        kubernetes_validate.validate(pdb, KUBERNETES_VERSION, strict=True)
        assert pdb["spec"]["maxUnavailable"] == 1  # never blocks a drain of single-replica components
        selector = pdb["spec"]["selector"]["matchLabels"]
        selected = [w for w, (metadata, _) in pods.items() if selector.items() <= metadata["labels"].items()]
        assert selected == [f"Deployment/{name}"], (name, selected)


def test_a_pdb_takes_min_available_instead_and_refuses_both() -> None:
    rendered = _render({"api": {"pdb": {"maxUnavailable": None, "minAvailable": "50%"}}})
    assert rendered.get("PodDisruptionBudget", "kubetrader-api")["spec"] == {
        "minAvailable": "50%",
        "selector": {"matchLabels": {"app.kubernetes.io/name": "kubetrader", "app.kubernetes.io/instance": "kubetrader",
                                     "app.kubernetes.io/component": "api"}},
    }  # fmt: skip
    with pytest.raises(helm_python.HelmRenderError, match=r"api\.pdb: set maxUnavailable or minAvailable, not both"):
        render_chart({"api": {"pdb": {"maxUnavailable": 1, "minAvailable": 1}}})
    assert not [p for p in _render({"worker": {"pdb": {"enabled": False}}}).of_kind("PodDisruptionBudget")
                if p["metadata"]["name"] == "kubetrader-worker"]  # fmt: skip


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"worker": {"tolerations": [{"key": "a", "effect": "NoSchedul"}]}}, "/worker/tolerations/0/effect"),
        ({"api": {"service": {"type": "LoadBalancr"}}}, "/api/service/type"),
        ({"global": {"nodeSelector": {"pool": 3}}}, "/global/nodeSelector/pool"),
        ({"mlflow": {"topologySpreadConstraints": [{"maxSkew": 1}]}}, "/mlflow/topologySpreadConstraints/0"),
        ({"dashboard": {"priorityClass": "x"}}, "additional properties 'priorityClass' not allowed"),
        ({"api": {"service": {"loadBalancerSourceRanges": ["everyone"]}}}, "/api/service/loadBalancerSourceRanges/0"),
        ({"auth": {"redis": {"existingSecret": "Not_A_Name"}}}, "/auth/redis/existingSecret"),
    ],
)
def test_a_wrong_knob_fails_with_its_path(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=where):
        render_chart(values)
