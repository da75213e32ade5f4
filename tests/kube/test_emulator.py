"""The emulated API server over real HTTP: generateName, watches from a resourceVersion, bounded memory,
indexes, garbage collection, and kmock reactions still overriding reads."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kube import http_call
from tests.kube.cluster import EmulatedCluster
from tests.kube.emulator import NAME_ALPHABET, NAME_SUFFIX_LENGTH

NS = "research"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmulatedCluster]:
    with EmulatedCluster(workdir=tmp_path, namespaces=[NS, "other"]) as running:
        yield running


def http(cluster: EmulatedCluster, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request as the administrator; returns (status, decoded JSON body)."""
    return http_call.call(cluster.url, method, path, cluster.admin_token, body)


def watch(cluster: EmulatedCluster, path: str) -> list[dict[str, Any]]:
    """A watch request read to its end (the query must make the server end it)."""
    request = urllib.request.Request(cluster.url + path, headers={"Authorization": f"Bearer {cluster.admin_token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return [json.loads(line) for line in response.read().splitlines() if line.strip()]


def event(reason: str) -> dict[str, Any]:
    """What kopf posts for `kopf.info(...)`: no name, a generateName."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"namespace": NS, "generateName": "kopf-event-"},
        "type": "Normal",
        "reason": reason,
        "message": f"{reason} happened",
        "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "workers", "namespace": NS},
    }


def configmap(name: str, namespace: str = NS, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, **metadata},
        "data": {"k": "v"},
    }


def test_every_event_posted_with_generate_name_is_stored_under_a_name_of_its_own(cluster: EmulatedCluster) -> None:
    reasons = ["ScaledUp", "ScaledDown", "ScaledUp", "JobCreated", "ScaledDown"]
    names = []
    for reason in reasons:
        status, created = http(cluster, "POST", f"/api/v1/namespaces/{NS}/events", event(reason))
        assert status == 201, created
        names.append(created["metadata"]["name"])

    assert len(set(names)) == len(reasons)
    for name in names:
        suffix = name.removeprefix("kopf-event-")
        assert len(suffix) == NAME_SUFFIX_LENGTH and set(suffix) <= set(NAME_ALPHABET), name
    status, listed = http(cluster, "GET", f"/api/v1/namespaces/{NS}/events")
    assert status == 200
    assert sorted(e["metadata"]["name"] for e in listed["items"]) == sorted(names)
    assert sorted(e["reason"] for e in listed["items"]) == sorted(reasons)
    assert sorted(e["reason"] for e in cluster.select("Event", NS)) == sorted(reasons)


def test_a_generated_name_that_is_taken_is_drawn_again_and_a_run_of_collisions_is_a_conflict(
    cluster: EmulatedCluster,
) -> None:
    assert cluster.emulator is not None
    cluster.create(configmap("cm-taken"))
    suffixes = iter(["taken", "taken", "fresh"])
    cluster.emulator.name_suffix = lambda: next(suffixes)

    status, created = http(cluster, "POST", f"/api/v1/namespaces/{NS}/configmaps", configmap("", generateName="cm-"))

    assert status == 201
    assert created["metadata"]["name"] == "cm-fresh"
    cluster.emulator.name_suffix = lambda: "taken"
    status, refused = http(cluster, "POST", f"/api/v1/namespaces/{NS}/configmaps", configmap("", generateName="cm-"))
    assert status == 409
    assert refused["reason"] == "AlreadyExists"
    assert {c["metadata"]["name"] for c in cluster.select("ConfigMap", NS)} == {"cm-taken", "cm-fresh"}


def test_a_watch_from_a_resource_version_replays_exactly_the_changes_after_it(cluster: EmulatedCluster) -> None:
    first = cluster.create(configmap("a"))
    since = first["metadata"]["resourceVersion"]
    cluster.create(configmap("b", labels={"app": "x"}))
    cluster.patch("ConfigMap", NS, "a", {"data": {"k": "changed"}})
    cluster.create(configmap("elsewhere", namespace="other"))
    cluster.delete("ConfigMap", NS, "b")

    events = watch(cluster, f"/api/v1/namespaces/{NS}/configmaps?watch=true&resourceVersion={since}&timeoutSeconds=0.2")

    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"),
        ("MODIFIED", "a"),
        ("DELETED", "b"),
    ]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(since)
    labelled = watch(
        cluster, f"/api/v1/configmaps?watch=true&resourceVersion={since}&timeoutSeconds=0.2&labelSelector=app%3Dx"
    )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in labelled] == [("ADDED", "b"), ("DELETED", "b")]


def test_a_watch_without_a_resource_version_starts_with_the_current_objects(cluster: EmulatedCluster) -> None:
    cluster.create(configmap("a"))
    cluster.create(configmap("b"))
    cluster.delete("ConfigMap", NS, "a")

    events = watch(cluster, f"/api/v1/namespaces/{NS}/configmaps?watch=true&timeoutSeconds=0.2")

    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b")]


def test_a_watch_from_before_the_watch_cache_is_told_410_gone(tmp_path: Path) -> None:
    with EmulatedCluster(workdir=tmp_path, namespaces=[NS, "other"]) as cluster:
        assert cluster.emulator is not None
        cluster.emulator.watch_cache_size = 3
        first = cluster.create(configmap("cm-0"))
        for i in range(1, 6):
            cluster.create(configmap(f"cm-{i}"))

        stale = watch(cluster, f"/api/v1/configmaps?watch=true&resourceVersion={first['metadata']['resourceVersion']}")

        assert len(stale) == 1 and stale[0]["type"] == "ERROR"
        assert stale[0]["object"]["code"] == 410
        assert len(cluster.emulator.watch_cache(cluster.resource_of("ConfigMap"))) == 3


def test_what_the_emulator_keeps_stays_bounded_however_long_it_runs(cluster: EmulatedCluster) -> None:
    emulator = cluster.emulator
    assert emulator is not None
    res = cluster.resource_of("ConfigMap")
    cluster.create(configmap("busy"))
    for i in range(30):
        http(cluster, "PATCH", f"/api/v1/namespaces/{NS}/configmaps/busy", {"data": {"k": str(i)}})
    cluster.create(configmap("gone"))
    cluster.delete("ConfigMap", NS, "gone")
    for _ in range(emulator.request_log_limit + 20):
        http(cluster, "GET", f"/api/v1/namespaces/{NS}/configmaps/busy")

    history = emulator.objects[res, NS, "busy"].history
    assert len(history) == emulator.history_limit
    assert history[-1] is not None and history[-1]["data"] == {"k": "29"}
    assert (res, NS, "gone") not in emulator.objects
    assert len(emulator) <= emulator.request_log_limit  # kmock: a handler is a view of its requests
    assert cluster.get("ConfigMap", NS, "busy") == http(cluster, "GET", f"/api/v1/namespaces/{NS}/configmaps/busy")[1]


def test_five_hundred_objects_are_all_stored_listed_and_fetched_by_name(cluster: EmulatedCluster) -> None:
    for n in range(5):
        cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{n}"}})
    for i in range(500):
        cluster.create(configmap(f"cm-{i:03d}", namespace=f"ns-{i % 5}", labels={"even": str(i % 2 == 0).lower()}))

    status, everything = http(cluster, "GET", "/api/v1/configmaps")
    assert status == 200 and len(everything["items"]) == 500
    assert cluster.count("ConfigMap") == 500 and cluster.count("ConfigMap", "ns-3") == 100
    _, even_in_ns0 = http(cluster, "GET", "/api/v1/namespaces/ns-0/configmaps?labelSelector=even%3Dtrue")
    assert {c["metadata"]["name"] for c in even_in_ns0["items"]} == {f"cm-{i:03d}" for i in range(0, 500, 10)}
    _, one = http(cluster, "GET", "/api/v1/namespaces/ns-2/configmaps?fieldSelector=metadata.name%3Dcm-002")
    assert [c["metadata"]["name"] for c in one["items"]] == ["cm-002"]
    status, fetched = http(cluster, "GET", "/api/v1/namespaces/ns-4/configmaps/cm-499")
    assert status == 200 and fetched["metadata"]["name"] == "cm-499"
    status, missing = http(cluster, "GET", "/api/v1/namespaces/ns-0/configmaps/cm-499")
    assert status == 404 and missing["reason"] == "NotFound"


def test_a_kmock_reaction_added_by_a_test_still_overrides_reads(cluster: EmulatedCluster) -> None:
    assert cluster.emulator is not None
    emulator = cluster.emulator
    cluster.create(configmap("real"))

    async def add_reaction(_: Any) -> None:
        emulator["get /api/v1/namespaces/research/configmaps/real"] << {"kind": "ConfigMap", "data": {"k": "mocked"}}

    cluster.call(add_reaction)

    _, overridden = http(cluster, "GET", f"/api/v1/namespaces/{NS}/configmaps/real")
    assert overridden["data"] == {"k": "mocked"}
    status, listed = http(cluster, "GET", f"/api/v1/namespaces/{NS}/configmaps")  # kmock serves it with ours
    assert status == 200 and [c["metadata"]["name"] for c in listed["items"]] == ["real"]


def test_discovery_still_lists_the_registered_kinds(cluster: EmulatedCluster) -> None:
    status, batch = http(cluster, "GET", "/apis/batch/v1")
    assert status == 200
    assert {r["name"] for r in batch["resources"]} >= {"jobs", "jobs/status"}
    status, core = http(cluster, "GET", "/api/v1")
    assert status == 200 and "events" in {r["name"] for r in core["resources"]}
