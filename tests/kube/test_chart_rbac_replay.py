"""The operator's recorded requests replayed against the RBAC the chart renders.

tests/kube/operator_requests.json holds every distinct request the operator made in the
scenario tests (Backtest, matrix Backtest, OptimizationStudy, LiveDeployment with delete and
emergency stop, the queue scaler), per chart configuration; `make record-rbac` re-records it, and
the operator fixture fails a scenario that makes a request the recording lacks. Here, for each
configuration:

- every recorded request is allowed by the chart's Roles and bindings (the operator's identity is
  the chart's ServiceAccount; discovery comes from the cluster's default policy), and
- every verb the chart grants the operator is used by some recorded request (least privilege),
  except the few in `NEEDED_OFF_SCENARIO`, each with the reason the scenarios cannot reach it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.kube import chart_rbac, rbac

# (role, apiGroup, resource, verb) the chart grants for paths the scenarios do not reach.
# The role is named as visit_rules names it ("Role/<namespace>/<name>" or "ClusterRole/<name>").
NEEDED_OFF_SCENARIO: dict[tuple[str, str, str], str] = {
    # Children carry ownerReferences with blockOwnerDeletion: true. Where the
    # OwnerReferencesPermissionEnforcement admission plugin is on (OpenShift enables it; upstream
    # it is opt-in, so the emulator does not run it), setting that field needs `update` on the
    # owner's finalizers subresource (kubernetes.io/docs/reference/access-authn-authz/admission-controllers/
    # #ownerreferencespermissionenforcement).
    ("kubetrader.io", "backtests/finalizers", "update"): "OwnerReferencesPermissionEnforcement",
    ("kubetrader.io", "optimizationstudies/finalizers", "update"): "OwnerReferencesPermissionEnforcement",
}


def configurations() -> list[dict[str, Any]]:
    return list(chart_rbac.load_recording()["configurations"])


def _ids() -> list[str]:
    return [chart_rbac.values_key(c["values"]) for c in configurations()]


def attributes_of(entry: dict[str, str]) -> rbac.RequestAttributes:
    return rbac.RequestAttributes(
        verb=entry["verb"],
        path=entry["path"],
        resource_request=bool(entry["resource"]),
        api_group=entry["apiGroup"],
        resource=entry["resource"],
        subresource=entry["subresource"],
        namespace=entry["namespace"],
        name=entry["name"],
    )


def chart_objects(values: dict[str, Any]) -> rbac.ObjectList:
    return rbac.ObjectList((*rbac.BOOTSTRAP_POLICY, *chart_rbac.rbac_manifests(values)))


Atom = tuple[str, str, str, tuple[str, ...]]  # (apiGroup, resource, verb, resourceNames)


def granted_atoms(values: dict[str, Any], namespaces: set[str]) -> dict[Atom, list[rbac.GrantedRule]]:
    """Every (apiGroup, resource, verb, resourceNames) a resource rule of the chart gives the
    operator, with the rules that give it (the default policy's discovery rules are the
    cluster's, not the chart's)."""
    objects = chart_objects(values)
    atoms: dict[Atom, list[rbac.GrantedRule]] = {}
    for namespace in {"", *namespaces}:
        for granted in rbac.visit_rules(chart_rbac.OPERATOR, namespace, objects):
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


def used_atoms(values: dict[str, Any], requests: list[rbac.RequestAttributes]) -> tuple[set[Atom], set[Atom]]:
    """(granted, used): the atoms of the chart's rules, and those some request is allowed by."""
    objects = chart_objects(values)
    atoms = granted_atoms(values, {r.namespace for r in requests if r.namespace})
    used: set[Atom] = set()
    for attributes in requests:
        allowing = {(g.role, g.index) for g in rbac.allowing_rules(chart_rbac.OPERATOR, attributes, objects)}
        for atom, rules in atoms.items():
            group, resource, verb, names = atom
            single = {"apiGroups": [group], "resources": [resource], "verbs": [verb], "resourceNames": list(names)}
            if any((g.role, g.index) in allowing for g in rules) and rbac.rule_allows(attributes, single):
                used.add(atom)
    return set(atoms), used


@pytest.mark.parametrize("configuration", configurations(), ids=_ids())
def test_every_recorded_operator_request_is_allowed_by_the_chart(configuration: dict[str, Any]) -> None:
    objects = chart_objects(configuration["values"])
    refused = []
    for entry in configuration["requests"]:
        attributes = attributes_of(entry)
        decision = rbac.authorize(chart_rbac.OPERATOR, attributes, objects)
        if not decision.allowed:
            refused.append(rbac.forbidden_message(chart_rbac.OPERATOR, attributes, decision.reason))
    assert configuration["requests"]
    assert not refused, "\n".join(refused)


def test_the_chart_grants_the_operator_no_verb_it_does_not_use() -> None:
    """Over all configurations: a verb granted in one and used in none is one too many."""
    granted: set[Atom] = set()
    used: set[Atom] = set()
    for configuration in configurations():
        requests = [attributes_of(e) for e in configuration["requests"]]
        config_granted, config_used = used_atoms(configuration["values"], requests)
        granted |= config_granted
        used |= config_used
    unused = sorted(
        f"{verb} {resource} ({group or 'core'})" + (f" named {list(names)}" if names else "")
        for (group, resource, verb, names) in granted - used
        if (group, resource, verb) not in NEEDED_OFF_SCENARIO
    )
    assert not unused, "granted but never used by the operator:\n" + "\n".join(unused)
    stale = sorted(
        k for k in NEEDED_OFF_SCENARIO if not any(a[:3] == k for a in granted) or any(a[:3] == k for a in used)
    )
    assert not stale, f"allow-list entries the chart no longer grants, or the scenarios now use: {stale}"


def test_the_recording_covers_every_operator_scenario_configuration() -> None:
    """Backtests and studies (chart defaults, the test namespace watched), live trading, the scaler."""
    keys = {chart_rbac.values_key(c["values"]) for c in configurations()}
    assert keys == {
        chart_rbac.values_key({"operator": {"watchNamespaces": ["research"]}}),
        chart_rbac.values_key({"live": {"enabled": True}, "operator": {"watchNamespaces": ["trading"]}}),
        chart_rbac.values_key({}),
    }
