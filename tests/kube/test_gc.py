"""The garbage collector of the emulated API: after the DELETE, by owner uid, for each propagation policy."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_until
from tests.kube.cluster import EmulatedCluster

NS = "research"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmulatedCluster]:
    """Without the collector's own passes: each test says when it runs (`collect_garbage`)."""
    with EmulatedCluster(workdir=tmp_path, gc=False, namespaces=[NS]) as running:
        yield running


def configmap(name: str, *owners: dict[str, Any], block: bool = False) -> dict[str, Any]:
    refs = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": o["metadata"]["name"],
            "uid": o["metadata"]["uid"],
            **({"blockOwnerDeletion": True} if block else {}),
        }
        for o in owners
    ]
    meta: dict[str, Any] = {"name": name, "namespace": NS, **({"ownerReferences": refs} if refs else {})}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


def names(cluster: EmulatedCluster) -> list[str]:
    return sorted(c["metadata"]["name"] for c in cluster.select("ConfigMap", NS))


def test_background_deletion_returns_first_and_the_collector_then_deletes_the_chain(cluster: EmulatedCluster) -> None:
    root = cluster.create(configmap("root"))
    child = cluster.create(configmap("child", root))
    cluster.create(configmap("grandchild", child))
    cluster.create(configmap("bystander"))

    cluster.delete("ConfigMap", NS, "root", policy="Background")

    assert names(cluster) == ["bystander", "child", "grandchild"]  # the DELETE returned: dependents still there
    assert cluster.collect_garbage() == 2
    assert names(cluster) == ["bystander"]


def test_the_collector_runs_by_itself_shortly_after_the_owner_is_deleted(tmp_path: Path) -> None:
    with EmulatedCluster(workdir=tmp_path, namespaces=[NS]) as cluster:
        root = cluster.create(configmap("root"))
        cluster.create(configmap("child", root))
        cluster.delete("ConfigMap", NS, "root")
        wait_until(lambda: names(cluster) == [], what="the child collected")


def test_a_new_owner_under_the_old_name_does_not_keep_the_old_ones_dependents(cluster: EmulatedCluster) -> None:
    old = cluster.create(configmap("owner"))
    cluster.create(configmap("child", old))
    cluster.delete("ConfigMap", NS, "owner")
    cluster.create(configmap("owner"))  # same name, new uid

    assert cluster.collect_garbage() == 1
    assert names(cluster) == ["owner"]


def test_a_dependent_with_two_owners_stays_until_the_last_one_goes(cluster: EmulatedCluster) -> None:
    first, second = cluster.create(configmap("first")), cluster.create(configmap("second"))
    cluster.create(configmap("shared", first, second))

    cluster.delete("ConfigMap", NS, "first")
    cluster.collect_garbage()
    shared = cluster.get("ConfigMap", NS, "shared")
    assert shared is not None
    assert [r["name"] for r in shared["metadata"]["ownerReferences"]] == ["second"]  # the dangling one removed

    cluster.delete("ConfigMap", NS, "second")
    cluster.collect_garbage()
    assert names(cluster) == []


def test_orphan_propagation_keeps_the_dependents_and_drops_their_reference(cluster: EmulatedCluster) -> None:
    root = cluster.create(configmap("root"))
    cluster.create(configmap("child", root))

    deleted = cluster.delete("ConfigMap", NS, "root", policy="Orphan")

    assert deleted["metadata"]["finalizers"] == ["orphan"] and deleted["metadata"]["deletionTimestamp"]
    cluster.collect_garbage()
    assert names(cluster) == ["child"]
    child = cluster.get("ConfigMap", NS, "child")
    assert child is not None and "ownerReferences" not in child["metadata"]


def test_foreground_deletes_blocking_dependents_before_the_owner(cluster: EmulatedCluster) -> None:
    root = cluster.create(configmap("root"))
    child = cluster.create(configmap("child", root, block=True))
    cluster.create(configmap("grandchild", child, block=True))
    # the grandchild holds a finalizer of its own: the chain waits for it
    grandchild = cluster.patch("ConfigMap", NS, "grandchild", {"metadata": {"finalizers": ["example.com/hold"]}})
    assert grandchild["metadata"]["finalizers"] == ["example.com/hold"]

    deleted = cluster.delete("ConfigMap", NS, "root", policy="Foreground")

    assert deleted["metadata"]["finalizers"] == ["foregroundDeletion"] and deleted["metadata"]["deletionTimestamp"]
    cluster.collect_garbage()
    assert names(cluster) == ["child", "grandchild", "root"]  # all waiting on the grandchild
    held = cluster.get("ConfigMap", NS, "child")
    assert held is not None and held["metadata"]["finalizers"] == ["foregroundDeletion"]

    cluster.patch("ConfigMap", NS, "grandchild", {"metadata": {"finalizers": None}})
    cluster.collect_garbage()
    assert names(cluster) == []


def test_a_job_deleted_without_a_policy_orphans_its_pods_as_batch_v1_does(cluster: EmulatedCluster) -> None:
    job = cluster.create(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "run", "namespace": NS},
            "spec": {
                "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}
            },
        }
    )
    ref = {"apiVersion": "batch/v1", "kind": "Job", "name": "run", "uid": job["metadata"]["uid"]}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "run-x", "namespace": NS, "ownerReferences": [ref]}}
    cluster.create({**pod, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})

    cluster.delete("Job", NS, "run")
    cluster.collect_garbage()

    assert cluster.get("Job", NS, "run") is None
    kept = cluster.get("Pod", NS, "run-x")
    assert kept is not None and "ownerReferences" not in kept["metadata"]


def test_kubectl_style_delete_options_pick_the_policy_over_http(cluster: EmulatedCluster) -> None:
    root = cluster.create(configmap("root"))
    cluster.create(configmap("child", root))
    body = json.dumps({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Orphan"}).encode()
    request = urllib.request.Request(
        f"{cluster.url}/api/v1/namespaces/{NS}/configmaps/root",
        data=body,
        method="DELETE",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {cluster.admin_token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["metadata"]["finalizers"] == ["orphan"]
    cluster.collect_garbage()
    assert names(cluster) == ["child"]
