"""The NetworkPolicy evaluator against the cases kubernetes.io's Network Policies page spells out."""

from __future__ import annotations

from typing import Any

import pytest

from tests.kube.network_policy import (
    ContainerPort,
    External,
    NetworkPolicyError,
    Pod,
    allowed_connections,
    connection_allowed,
    namespace_labels,
)

NAMESPACES = namespace_labels({"app": {"team": "a"}, "other": {"team": "b"}})
WEB = Pod("web", "app", {"role": "web"}, (ContainerPort(80, name="http"),))
DB = Pod("db", "app", {"role": "db"}, (ContainerPort(5432, name="pg"), ContainerPort(9187, name="metrics")))
CLIENT = Pod("client", "app", {"role": "client"})
STRANGER = Pod("client", "other", {"role": "client"})


def policy(name: str, namespace: str = "app", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def test_a_pod_no_policy_selects_accepts_everything_and_one_selecting_policy_isolates_it() -> None:
    assert connection_allowed([], NAMESPACES, STRANGER, DB, 5432)
    deny = policy("deny", podSelector={"matchLabels": {"role": "db"}}, policyTypes=["Ingress"])
    assert not connection_allowed([deny], NAMESPACES, CLIENT, DB, 5432)
    assert connection_allowed([deny], NAMESPACES, CLIENT, WEB, 80)  # not selected: still open
    assert connection_allowed([deny], NAMESPACES, DB, DB, 5432)  # a pod cannot block itself


def test_policies_are_additive_and_ports_and_peers_narrow_a_rule() -> None:
    deny = policy("deny-all", podSelector={}, policyTypes=["Ingress"])
    from_client = policy(
        "db-from-client",
        podSelector={"matchLabels": {"role": "db"}},
        ingress=[{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}], "ports": [{"port": "pg"}]}],
    )
    policies = [deny, from_client]
    assert connection_allowed(policies, NAMESPACES, CLIENT, DB, 5432)
    assert not connection_allowed(policies, NAMESPACES, CLIENT, DB, 9187)  # the named port is pg only
    assert not connection_allowed(policies, NAMESPACES, WEB, DB, 5432)
    assert not connection_allowed(policies, NAMESPACES, STRANGER, DB, 5432)  # podSelector alone: own namespace
    assert not connection_allowed(policies, NAMESPACES, CLIENT, WEB, 80)
    assert allowed_connections(policies, NAMESPACES, [CLIENT, WEB, STRANGER], [DB, WEB]) == {
        ("app/client", "app/db", 5432)
    }


def test_namespace_and_pod_selector_in_one_peer_is_and_in_two_peers_is_or() -> None:
    both = policy(
        "and",
        podSelector={"matchLabels": {"role": "db"}},
        ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}, "podSelector": {}}]}],
    )
    assert connection_allowed([both], NAMESPACES, STRANGER, DB, 5432)
    assert not connection_allowed([both], NAMESPACES, CLIENT, DB, 5432)
    spoofable = policy(
        "spoofable",
        podSelector={"matchLabels": {"role": "db"}},
        ingress=[{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "client"}}}]}],
    )
    assert connection_allowed([spoofable], NAMESPACES, STRANGER, DB, 5432)  # any namespace
    by_name = policy(
        "by-name",
        podSelector={"matchLabels": {"role": "db"}},
        ingress=[
            {
                "from": [
                    {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "app"}},
                        "podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["client"]}]},
                    }
                ]
            }
        ],
    )
    assert connection_allowed([by_name], NAMESPACES, CLIENT, DB, 5432)
    assert not connection_allowed([by_name], NAMESPACES, STRANGER, DB, 5432)


def test_egress_isolation_needs_both_ends_and_ip_blocks_match_only_outside_addresses() -> None:
    ib = External("203.0.113.10", (ContainerPort(4001),))
    elsewhere = External("198.51.100.7", (ContainerPort(443),))
    egress = policy(
        "web-out",
        podSelector={"matchLabels": {"role": "web"}},
        policyTypes=["Egress"],
        egress=[
            {
                "to": [{"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"]}}],
                "ports": [{"port": 4000, "endPort": 4002}],
            }
        ],
    )
    assert connection_allowed([egress], NAMESPACES, WEB, ib, 4001)
    assert not connection_allowed([egress], NAMESPACES, WEB, ib, 4003)
    assert not connection_allowed([egress], NAMESPACES, WEB, External("203.0.113.200"), 4001)  # except
    assert not connection_allowed([egress], NAMESPACES, WEB, elsewhere, 443)
    assert not connection_allowed([egress], NAMESPACES, WEB, DB, 5432)  # egress-isolated, DB is open
    assert connection_allowed([egress], NAMESPACES, CLIENT, DB, 5432)
    assert connection_allowed([egress], NAMESPACES, elsewhere, WEB, 80)  # ingress not isolated
    # policyTypes absent: Egress counts once egress rules exist
    implicit = policy(
        "implicit", podSelector={"matchLabels": {"role": "web"}}, egress=[{"ports": [{"port": 53, "protocol": "UDP"}]}]
    )
    assert not connection_allowed([implicit], NAMESPACES, WEB, DB, 5432)
    assert connection_allowed([implicit], NAMESPACES, WEB, DB, 53, "UDP")
    assert not connection_allowed([implicit], NAMESPACES, CLIENT, WEB, 80)  # and Ingress with no rule: deny


@pytest.mark.parametrize(
    ("peer", "problem"),
    [
        ({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}, "ipBlock may not be combined"),
        ({}, "must specify a peer"),
        ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}, "values set can't be empty"),
        ({"ipBlock": {"cidr": "10.0.0.1/8"}}, "Invalid value"),
        ({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/8"]}}, "strict subset"),
    ],
)
def test_an_invalid_peer_is_an_error_naming_the_field(peer: dict[str, Any], problem: str) -> None:
    bad = policy("bad", podSelector={}, ingress=[{"from": [peer]}])
    with pytest.raises(NetworkPolicyError, match=problem) as caught:
        connection_allowed([bad], NAMESPACES, External("10.1.2.3") if "ipBlock" in peer else CLIENT, DB, 5432)
    assert "spec.ingress[0].from[0]" in str(caught.value)
