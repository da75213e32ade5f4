"""The operator's identity and RBAC as the Helm chart installs them, and the record of its requests.

`rbac_manifests(values)` renders charts/kubetrader with the real Helm engine and keeps the
ServiceAccounts, Roles, ClusterRoles and bindings; the operator fixture installs them into the
emulated API and runs the operator with the chart's ServiceAccount token, so a verb the chart
does not grant is refused (403) as on a cluster.

Every request the operator makes in those scenarios can be recorded (`make record-rbac`, which
sets `KUBETRADER_RECORD_OPERATOR_REQUESTS` to RECORDING) into tests/kube/operator_requests.json:
one entry per chart configuration (the values), each with the distinct requests (method, path,
verb, API group, resource, subresource, namespace, name). test_chart_rbac_replay.py replays
them against the chart's RBAC: every request allowed, and every granted verb used.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tests.fixtures.chart import NAMESPACE, RELEASE, parse_manifests, render_chart
from tests.kube.access import AccessRecord
from tests.kube.authn import service_account

Obj = dict[str, Any]
RBAC_MANIFEST_KINDS = ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
OPERATOR_SERVICE_ACCOUNT = f"{RELEASE}-operator"
OPERATOR = service_account(NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
RECORDING = Path(__file__).with_name("operator_requests.json")
RECORD_ENV = "KUBETRADER_RECORD_OPERATOR_REQUESTS"
REQUEST_FIELDS = ("method", "path", "verb", "apiGroup", "resource", "subresource", "namespace", "name")


def values_key(values: dict[str, Any]) -> str:
    """One configuration's key in the recording: its values as canonical JSON."""
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


@functools.cache
def _rendered(key: str) -> tuple[Obj, ...]:
    return tuple(parse_manifests(render_chart(json.loads(key))))


def chart_documents(values: dict[str, Any]) -> list[Obj]:
    """Every manifest the chart renders with these values (cached per values; copies)."""
    return json.loads(json.dumps(list(_rendered(values_key(values)))))


def rbac_manifests(values: dict[str, Any]) -> list[Obj]:
    """The chart's ServiceAccounts, Roles, ClusterRoles and bindings, with the release namespace
    filled in where `helm install -n kubetrader` would put them."""
    found = [doc for doc in chart_documents(values) if doc["kind"] in RBAC_MANIFEST_KINDS]
    for doc in found:
        if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
            doc["metadata"].setdefault("namespace", NAMESPACE)
    return found


def operator_environment(values: dict[str, Any]) -> dict[str, str]:
    """The operator container's plain environment variables as the chart sets them."""
    deployment = next(
        d
        for d in chart_documents(values)
        if d["kind"] == "Deployment" and d["metadata"]["name"] == OPERATOR_SERVICE_ACCOUNT
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}


def kopf_namespace_args(values: dict[str, Any]) -> list[str]:
    """`--namespace NS`... or `--all-namespaces`, as kubetrader_operator.__main__ derives them from
    the chart's KUBETRADER_OPERATOR_NAMESPACES."""
    namespaces = json.loads(operator_environment(values)["KUBETRADER_OPERATOR_NAMESPACES"])
    if not namespaces:
        return ["--all-namespaces"]
    return [arg for ns in namespaces for arg in ("--namespace", ns)]


def request_entry(record: AccessRecord) -> dict[str, str]:
    a = record.attributes
    return {
        "method": record.method,
        "path": record.path,
        "verb": a.verb,
        "apiGroup": a.api_group,
        "resource": a.resource,
        "subresource": a.subresource,
        "namespace": a.namespace,
        "name": a.name,
    }


def _entry_key(entry: dict[str, str]) -> tuple[str, ...]:
    return tuple(entry[f] for f in REQUEST_FIELDS)


def load_recording(path: Path = RECORDING) -> dict[str, Any]:
    if not path.exists():
        return {"configurations": []}
    return dict(json.loads(path.read_text()))


def recorded_requests(recording: dict[str, Any], values: dict[str, Any]) -> list[dict[str, str]]:
    key = values_key(values)
    for configuration in recording["configurations"]:
        if values_key(configuration["values"]) == key:
            return list(configuration["requests"])
    return []


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """xdist workers record at the same time: one writer at a time (a lock on the file itself)."""
    with path.open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def record(values: dict[str, Any], records: Iterable[AccessRecord], path: Path) -> None:
    """Merge these requests into the recording at `path` (sorted, distinct)."""
    with _locked(path):
        recording = load_recording(path) if path.stat().st_size else {"configurations": []}
        key = values_key(values)
        configuration = next((c for c in recording["configurations"] if values_key(c["values"]) == key), None)
        if configuration is None:
            configuration = {"values": values, "requests": []}
            recording["configurations"].append(configuration)
        merged = {_entry_key(e): e for e in configuration["requests"]}
        for r in records:
            entry = request_entry(r)
            merged.setdefault(_entry_key(entry), entry)
        configuration["requests"] = [merged[k] for k in sorted(merged)]
        recording["configurations"].sort(key=lambda c: values_key(c["values"]))
        path.write_text(json.dumps(recording, indent=1, sort_keys=True) + "\n")


def unrecorded(values: dict[str, Any], records: Iterable[AccessRecord], path: Path = RECORDING) -> list[str]:
    """Requests made now that the recording lacks (it must be re-recorded: `make record-rbac`)."""
    known = {_entry_key(e) for e in recorded_requests(load_recording(path), values)}
    missing = {_entry_key(request_entry(r)): r for r in records if _entry_key(request_entry(r)) not in known}
    return [r.describe() for r in missing.values()]
