"""API discovery as kube-apiserver serves it: legacy lists and aggregated discovery (apidiscovery.k8s.io/v2).

kubectl 1.37 asks `/api` and `/apis` with
`Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json`;
a server that answers with that content type hands over every group, version and resource in
two requests (k8s.io/api/apidiscovery/v2 types.go; KEP-3352 "Aggregated Discovery"). A client
that asks plain JSON gets the legacy documents: `APIVersions` at `/api`, `APIGroupList` at
`/apis`, `APIGroup` at `/apis/<group>`, `APIResourceList` at `/api/v1` and `/apis/<group>/<v>`.

What kmock's own discovery got wrong and kubectl tripped on: the core list said
`groupVersion: "/v1"` (so `kubectl get pods` found no resource type "pods"), and subresources
were listed like resources with the parent's short names and categories (so `kubectl get
kubetrader` tried to list `optimizationstudies/status`). In the real server a subresource entry
(`pods/log`, `backtests/status`) has its own verbs and no short names, singular name or
categories (k8s.io/apiserver endpoints/installer.go).

Pure functions over the emulator's registered kinds (`resource -> ResourceInfo`).
"""

from __future__ import annotations

import platform
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kmock import ResourceInfo, resource

Obj = dict[str, Any]
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
# What each subresource the emulator serves answers to (the real server's verbs for them).
SUBRESOURCE_VERBS = {"status": ["get", "patch", "update"], "log": ["get"], "scale": ["get", "patch", "update"]}
# A subresource whose kind is not its parent's (installer.go sets the APIResource's group, version
# and kind from the storage's GroupVersionKind): `deployments/scale` is an autoscaling/v1 Scale.
SUBRESOURCE_KINDS = {"scale": ("autoscaling", "v1", "Scale")}


def wants_aggregated(accept: str) -> bool:
    """Whether the Accept header asks for aggregated discovery v2 (any position in the list)."""
    for part in accept.split(","):
        params = {p.strip() for p in part.split(";")}
        if {"g=apidiscovery.k8s.io", "v=v2", "as=APIGroupDiscoveryList"} <= params:
            return True
    return False


def _groups(kinds: Mapping[resource, ResourceInfo]) -> dict[str, list[str]]:
    """Group name -> its versions, in the order registered (the first is the preferred one)."""
    groups: dict[str, list[str]] = {}
    for res in kinds:
        assert res.group is not None and res.version is not None
        versions = groups.setdefault(res.group, [])
        if res.version not in versions:
            versions.append(res.version)
    return groups


def _group_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def api_versions(server_address: str) -> Obj:
    """`GET /api` (legacy): the core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _api_group(group: str, versions: list[str]) -> Obj:
    listed = [{"groupVersion": _group_version(group, v), "version": v} for v in versions]
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}


def api_group_list(kinds: Mapping[resource, ResourceInfo]) -> Obj:
    """`GET /apis` (legacy): every named group (the core group is at `/api`)."""
    groups = [_api_group(g, vs) for g, vs in _groups(kinds).items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(kinds: Mapping[resource, ResourceInfo], group: str) -> Obj | None:
    """`GET /apis/<group>`, or None when the group is not served."""
    versions = _groups(kinds).get(group)
    if not group or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_api_group(group, versions)}


def _served(kinds: Mapping[resource, ResourceInfo], group: str, version: str) -> list[tuple[resource, ResourceInfo]]:
    return [(res, info) for res, info in kinds.items() if res.group == group and res.version == version]


def _verbs(info: ResourceInfo) -> list[str]:
    return sorted(info.verbs)


def api_resource_list(kinds: Mapping[resource, ResourceInfo], group: str, version: str) -> Obj | None:
    """`GET /api/v1` or `/apis/<group>/<version>`: resources, then each subresource on its own line."""
    served = _served(kinds, group, version)
    if not served:
        return None
    resources: list[Obj] = []
    for res, info in served:
        entry: Obj = {
            "name": res.plural,
            "singularName": info.singular or "",
            "namespaced": bool(info.namespaced),
            "kind": info.kind,
            "verbs": _verbs(info),
        }
        if info.shortnames:
            entry["shortNames"] = sorted(info.shortnames)
        if info.categories:
            entry["categories"] = sorted(info.categories)
        resources.append(entry)
        for sub in sorted(info.subresources):
            line: Obj = {
                "name": f"{res.plural}/{sub}",
                "singularName": "",
                "namespaced": bool(info.namespaced),
                "kind": info.kind,
                "verbs": SUBRESOURCE_VERBS.get(sub, ["get"]),
            }
            if sub in SUBRESOURCE_KINDS:
                line["group"], line["version"], line["kind"] = SUBRESOURCE_KINDS[sub]
            resources.append(line)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": _group_version(group, version),
        "resources": resources,
    }


def _response_kind(res: resource, info: ResourceInfo, subresource: str | None = None) -> Obj:
    if subresource in SUBRESOURCE_KINDS:
        group, version, kind = SUBRESOURCE_KINDS[subresource]
        return {"group": group, "version": version, "kind": kind}
    return {"group": res.group, "version": res.version, "kind": info.kind}


def _discovered_resource(res: resource, info: ResourceInfo) -> Obj:
    entry: Obj = {
        "resource": res.plural,
        "responseKind": _response_kind(res, info),
        "scope": "Namespaced" if info.namespaced else "Cluster",
        "singularResource": info.singular or "",
        "verbs": _verbs(info),
    }
    if info.shortnames:
        entry["shortNames"] = sorted(info.shortnames)
    if info.categories:
        entry["categories"] = sorted(info.categories)
    if info.subresources:
        entry["subresources"] = [
            {
                "subresource": sub,
                "responseKind": _response_kind(res, info, sub),
                "verbs": SUBRESOURCE_VERBS.get(sub, ["get"]),
            }
            for sub in sorted(info.subresources)
        ]
    return entry


def aggregated(kinds: Mapping[resource, ResourceInfo], *, core: bool) -> Obj:
    """`GET /api` (core=True) or `/apis` with aggregated discovery: an `APIGroupDiscoveryList`."""
    items = []
    for group, versions in _groups(kinds).items():
        if (group == "") != core:
            continue
        items.append(
            {
                "metadata": {"name": group} if group else {},
                "versions": [
                    {
                        "version": version,
                        "resources": [_discovered_resource(r, i) for r, i in _served(kinds, group, version)],
                        "freshness": "Current",
                    }
                    for version in versions
                ],
            }
        )
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items}


def _target_version() -> str:
    """The Kubernetes version of the cluster the chart is installed on: kind-config.yaml's node image."""
    text = (Path(__file__).resolve().parents[2] / "kind-config.yaml").read_text()
    found = re.search(r"kindest/node:v(\d+\.\d+\.\d+)", text)
    if found is None:
        raise RuntimeError("kind-config.yaml names no kindest/node:vX.Y.Z image")
    return found.group(1)


# The version the emulated API reports at /version and whose OpenAPI schemas it serves.
KUBERNETES_VERSION = _target_version()


def server_version() -> Obj:
    """`GET /version`: a version.Info as kube-apiserver reports it."""
    major, minor, _ = KUBERNETES_VERSION.split(".")
    return {
        "major": major,
        "minor": minor,
        "emulationMajor": major,
        "emulationMinor": minor,
        "gitVersion": f"v{KUBERNETES_VERSION}",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": platform.python_version(),
        "compiler": "kubetrader-emulator",
        "platform": f"{platform.system().lower()}/{platform.machine()}",
    }
