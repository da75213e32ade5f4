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


@pytest.mark.parametrize("configuration", configurations(), ids=_ids())
def test_every_recorded_operator_request_is_allowed_by_the_chart(configuration: dict[str, Any]) -> None:
    objects = chart_rbac.chart_objects(configuration["values"])
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
    runs = [(c["values"], [attributes_of(e) for e in c["requests"]]) for c in configurations()]
    granted, used = chart_rbac.grants_and_uses(chart_rbac.OPERATOR, runs)
    unused = chart_rbac.describe_atoms(a for a in granted - used if a[:3] not in NEEDED_OFF_SCENARIO)
    assert not unused, "granted but never used by the operator:\n" + "\n".join(unused)
    stale = sorted(
        k for k in NEEDED_OFF_SCENARIO if not any(a[:3] == k for a in granted) or any(a[:3] == k for a in used)
    )
    assert not stale, f"allow-list entries the chart no longer grants, or the scenarios now use: {stale}"


def test_the_recording_covers_every_operator_scenario_configuration() -> None:
    """Backtests, studies and the README's kubectl flows (the test namespaces watched), live
    trading, the scaler (the chart's defaults)."""
    keys = {chart_rbac.values_key(c["values"]) for c in configurations()}
    assert keys == {
        chart_rbac.values_key({"operator": {"watchNamespaces": ["default", "research"]}}),
        chart_rbac.values_key({"live": {"enabled": True}, "operator": {"watchNamespaces": ["trading"]}}),
        chart_rbac.values_key({}),
    }
