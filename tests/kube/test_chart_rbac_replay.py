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


# The live scenarios' chart values: the one credentials Secret they use is readable, by name.
LIVE_VALUES = {
    "live": {"enabled": True},
    "operator": {"watchNamespaces": ["trading"], "readableSecrets": ["ib-paper-credentials"]},
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
        chart_rbac.values_key(LIVE_VALUES),
        chart_rbac.values_key({}),
    }


def _secret_request(verb: str, name: str = "", namespace: str = "trading") -> rbac.RequestAttributes:
    path = f"/api/v1/namespaces/{namespace}/secrets" + (f"/{name}" if name else "")
    return rbac.RequestAttributes(
        verb=verb, path=path, resource_request=True, resource="secrets", namespace=namespace, name=name
    )


@pytest.mark.parametrize(
    ("values", "namespace"),
    [
        (LIVE_VALUES, "trading"),
        # watching every namespace: the readable Secrets are the release namespace's (rbac-operator.yaml)
        ({**LIVE_VALUES, "operator": {"watchAllNamespaces": True, "readableSecrets": ["ib-paper-credentials"]}},
         chart_rbac.NAMESPACE),
    ],
)  # fmt: skip
def test_with_live_trading_the_operator_reads_only_the_secrets_the_chart_names(
    values: dict[str, Any], namespace: str
) -> None:
    """The runner's token is derived, never read back: `get` reaches only operator.readableSecrets
    (the IB credentials checked before a gateway gets them), never another Secret, and no list/watch."""
    objects = chart_rbac.chart_objects(values)

    def allowed(attributes: rbac.RequestAttributes) -> bool:
        return rbac.authorize(chart_rbac.OPERATOR, attributes, objects).allowed

    assert allowed(_secret_request("get", "ib-paper-credentials", namespace))
    for other in ("sma-paper-runner-token", "kubetrader-postgresql", "someone-elses-secret"):
        assert not allowed(_secret_request("get", other, namespace)), other
    assert not allowed(_secret_request("list", "", namespace)) and not allowed(_secret_request("watch", "", namespace))
    # What the operator still does with the runner's token Secret: create it, delete it after a stop.
    assert allowed(_secret_request("create", "", namespace))
    assert allowed(_secret_request("delete", "sma-paper-runner-token", namespace))
