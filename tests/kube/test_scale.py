"""The `/scale` subresource over HTTP: Deployments, StatefulSets and a CRD declaring `subresources.scale`,
its discovery entries, and `deployments/scale` as its own resource for RBAC (tests.kube.scale)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kube import authn, discovery, http_call, scale
from tests.kube.cluster import EmulatedCluster
from tests.kube.rbac import RBAC_GROUP

NS = "default"
DEPLOYMENT = f"/apis/apps/v1/namespaces/{NS}/deployments/web"
STATEFULSET = f"/apis/apps/v1/namespaces/{NS}/statefulsets/db"
WIDGET = f"/apis/example.com/v1/namespaces/{NS}/widgets/w1"
MERGE = "application/merge-patch+json"
SCALER = authn.service_account(NS, "scaler")


def pod_template(app: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": 2,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "back"]}],
            },
            "template": pod_template("web"),
        },
    }


def statefulset() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": NS},
        "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": pod_template("db")},
    }


def widget_crd() -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"size": {"type": "integer", "maximum": 10}}},
            "status": {
                "type": "object",
                "properties": {"size": {"type": "integer"}, "selector": {"type": "string"}},
            },
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.size",
                            "statusReplicasPath": ".status.size",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                }
            ],
        },
    }


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmulatedCluster]:
    with EmulatedCluster([widget_crd()], workdir=tmp_path) as running:
        yield running


def admin(cluster: EmulatedCluster, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    return http_call.call(cluster.url, method, path, cluster.admin_token, body, **kw)


def test_a_deployment_scale_is_read_and_written_as_an_autoscaling_v1_scale(cluster: EmulatedCluster) -> None:
    created = cluster.create(deployment())
    code, found = admin(cluster, "GET", DEPLOYMENT + "/scale")
    assert code == 200, found
    assert found == {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": "web",
            "namespace": NS,
            "uid": created["metadata"]["uid"],
            "resourceVersion": created["metadata"]["resourceVersion"],
            "creationTimestamp": created["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": 2},
        # labels.Selector.String(): sorted by key, `in` values sorted
        "status": {"replicas": 0, "selector": "app=web,tier in (back,front)"},
    }

    code, patched = admin(cluster, "PATCH", DEPLOYMENT + "/scale", {"spec": {"replicas": 5}}, content_type=MERGE)
    assert code == 200, patched
    assert patched["spec"] == {"replicas": 5}
    stored = cluster.get("Deployment", NS, "web")
    assert stored is not None and stored["spec"]["replicas"] == 5
    assert stored["metadata"]["generation"] == 2  # a spec change like any other
    assert patched["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]

    stale = {**found, "spec": {"replicas": 1}}  # the resourceVersion read before the patch
    code, refused = admin(cluster, "PUT", DEPLOYMENT + "/scale", stale)
    assert code == 409 and "the object has been modified" in refused["message"]
    code, replaced = admin(cluster, "PUT", DEPLOYMENT + "/scale", {**patched, "spec": {"replicas": 1}})
    assert code == 200 and replaced["spec"]["replicas"] == 1

    code, invalid = admin(cluster, "PUT", DEPLOYMENT + "/scale", {"spec": {"replicas": -1}})
    assert code == 422
    assert invalid["message"] == (
        'Scale.autoscaling "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0'
    )
    assert invalid["details"]["causes"][0]["field"] == "spec.replicas"
    after = cluster.get("Deployment", NS, "web")
    assert after is not None and after["spec"]["replicas"] == 1

    json_patch = [{"op": "replace", "path": "/spec/replicas", "value": 4}]
    code, patched = admin(
        cluster, "PATCH", DEPLOYMENT + "/scale", json_patch, content_type="application/json-patch+json"
    )
    assert code == 200 and patched["spec"]["replicas"] == 4


def test_a_statefulset_and_a_crd_with_subresources_scale_serve_it_and_other_kinds_do_not(
    cluster: EmulatedCluster,
) -> None:
    cluster.create(statefulset())
    code, found = admin(cluster, "GET", STATEFULSET + "/scale")
    assert code == 200 and found["spec"]["replicas"] == 0 and found["status"]["selector"] == "app=db"
    code, _ = admin(cluster, "PATCH", STATEFULSET + "/scale", {"spec": {"replicas": 3}}, content_type=MERGE)
    stored = cluster.get("StatefulSet", NS, "db")
    assert code == 200 and stored is not None and stored["spec"]["replicas"] == 3

    cluster.create({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1", "namespace": NS}})
    cluster.patch("Widget", NS, "w1", {"status": {"size": 1, "selector": "app=w1"}}, subresource="status")
    code, found = admin(cluster, "GET", WIDGET + "/scale")
    assert code == 200, found
    assert (found["spec"], found["status"]) == ({"replicas": 0}, {"replicas": 1, "selector": "app=w1"})
    code, _ = admin(cluster, "PATCH", WIDGET + "/scale", {"spec": {"replicas": 7}}, content_type=MERGE)
    widget = cluster.get("Widget", NS, "w1")
    assert code == 200 and widget is not None and widget["spec"] == {"size": 7}
    # The parent goes through its own admission: the CRD's schema caps the size at 10.
    code, refused = admin(cluster, "PATCH", WIDGET + "/scale", {"spec": {"replicas": 11}}, content_type=MERGE)
    assert code == 422 and "spec.size" in refused["message"], refused

    cluster.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": NS}})
    code, missing = admin(cluster, "GET", f"/api/v1/namespaces/{NS}/configmaps/c/scale")
    assert (code, missing["reason"]) == (404, "NotFound")


def test_discovery_lists_scale_subresources_as_autoscaling_v1_scale(cluster: EmulatedCluster) -> None:
    code, apps = admin(cluster, "GET", "/apis/apps/v1")
    assert code == 200
    lines = {r["name"]: r for r in apps["resources"]}
    for name in ("deployments/scale", "statefulsets/scale"):
        assert lines[name] == {
            "name": name,
            "singularName": "",
            "namespaced": True,
            "group": "autoscaling",
            "version": "v1",
            "kind": "Scale",
            "verbs": ["get", "patch", "update"],
        }
    code, widgets = admin(cluster, "GET", "/apis/example.com/v1")
    assert "widgets/scale" in {r["name"] for r in widgets["resources"]}
    assert cluster.emulator is not None
    listed = discovery.aggregated(cluster.emulator.resources._resources, core=False)
    apps_group = next(g for g in listed["items"] if g["metadata"].get("name") == "apps")
    deployments = next(r for r in apps_group["versions"][0]["resources"] if r["resource"] == "deployments")
    assert {"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}} | {
        "verbs": ["get", "patch", "update"]
    } in deployments["subresources"]


def test_rbac_authorizes_deployments_scale_as_its_own_resource(cluster: EmulatedCluster) -> None:
    cluster.create(deployment())
    token = cluster.token_for(SCALER)
    subject = {"kind": "ServiceAccount", "name": "scaler", "namespace": NS}

    def grant(name: str, resources: list[str]) -> None:
        rule = {"apiGroups": ["apps"], "resources": resources, "verbs": ["get", "patch"]}
        cluster.apply(
            [
                {"kind": "Role", "metadata": {"name": name, "namespace": NS}, "rules": [rule]},
                {
                    "kind": "RoleBinding",
                    "metadata": {"name": name, "namespace": NS},
                    "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": name},
                    "subjects": [subject],
                },
            ],
            NS,
        )

    grant("deployments", ["deployments"])  # the parent alone does not reach /scale
    body = {"spec": {"replicas": 3}}
    code, refused = http_call.call(cluster.url, "PATCH", DEPLOYMENT + "/scale", token, body, content_type=MERGE)
    assert code == 403
    assert refused["message"] == (
        'deployments.apps "web" is forbidden: User "system:serviceaccount:default:scaler" cannot patch resource '
        '"deployments/scale" in API group "apps" in the namespace "default"'
    )
    grant("scale", ["deployments/scale"])
    code, scaled = http_call.call(cluster.url, "PATCH", DEPLOYMENT + "/scale", token, body, content_type=MERGE)
    assert code == 200 and scaled["spec"]["replicas"] == 3


def test_selector_strings_follow_labels_selector_string() -> None:
    selector = {
        "matchLabels": {"b": "2", "a": "1"},
        "matchExpressions": [
            {"key": "c", "operator": "NotIn", "values": ["y", "x"]},
            {"key": "d", "operator": "Exists"},
            {"key": "e", "operator": "DoesNotExist"},
        ],
    }
    assert scale.selector_string(selector) == "a=1,b=2,c notin (x,y),d,!e"
    assert scale.selector_string(None) == ""
