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
from tests.kube import rbac
from tests.kube.access import AccessRecord
from tests.kube.authn import Identity, service_account

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


def chart_objects(values: dict[str, Any]) -> rbac.ObjectList:
    """The chart's RBAC objects with the cluster's default policy, for the pure evaluator."""
    return rbac.ObjectList((*rbac.BOOTSTRAP_POLICY, *rbac_manifests(values)))


# One grant of a resource rule: (apiGroup, resource, verb, resourceNames).
Atom = tuple[str, str, str, tuple[str, ...]]


def _granted_atoms(
    identity: Identity, objects: rbac.ObjectList, namespaces: Iterable[str]
) -> dict[Atom, list[rbac.GrantedRule]]:
    """Every atom a resource rule of the chart gives `identity`, with the rules that give it (the
    default policy's `system:` roles are the cluster's, not the chart's)."""
    atoms: dict[Atom, list[rbac.GrantedRule]] = {}
    for namespace in {"", *namespaces}:
        for granted in rbac.visit_rules(identity, namespace, objects):
            assert isinstance(granted, rbac.GrantedRule), granted  # the chart binds no missing role
            if granted.role.startswith("ClusterRole/system:"):
                continue
            rule = granted.rule
            names = tuple(rule.get("resourceNames") or ())
            for group in rule.get("apiGroups") or ():
                for resource in rule.get("resources") or ():
                    for verb in rule.get("verbs") or ():
                        atoms.setdefault((group, resource, verb, names), []).append(granted)
    return atoms


def grants_and_uses(
    identity: Identity, runs: Iterable[tuple[dict[str, Any], list[rbac.RequestAttributes]]]
) -> tuple[set[Atom], set[Atom]]:
    """(granted, used) over several chart configurations, each with the requests made under it:
    the atoms the chart's rules give `identity`, and those some request was allowed by."""
    granted: set[Atom] = set()
    used: set[Atom] = set()
    for values, requests in runs:
        objects = chart_objects(values)
        atoms = _granted_atoms(identity, objects, {r.namespace for r in requests if r.namespace})
        granted |= set(atoms)
        for attributes in requests:
            allowing = {(g.role, g.index) for g in rbac.allowing_rules(identity, attributes, objects)}
            for atom, rules in atoms.items():
                group, resource, verb, names = atom
                single = {"apiGroups": [group], "resources": [resource], "verbs": [verb], "resourceNames": list(names)}
                if any((g.role, g.index) in allowing for g in rules) and rbac.rule_allows(attributes, single):
                    used.add(atom)
    return granted, used


def describe_atoms(atoms: Iterable[Atom]) -> list[str]:
    return sorted(
        f"{verb} {resource} ({group or 'core'})" + (f" named {list(names)}" if names else "")
        for group, resource, verb, names in atoms
    )


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
