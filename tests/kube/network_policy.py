"""A pure NetworkPolicy evaluator: policies x pods x namespaces -> may this connection happen?

The semantics are Kubernetes' own (https://kubernetes.io/docs/concepts/services-networking/network-policies/,
"The two sorts of pod isolation", "Behavior of to and from selectors", and the
networking.k8s.io/v1 API reference of NetworkPolicySpec / NetworkPolicyPeer / NetworkPolicyPort):

- A pod is isolated for ingress (egress) once any NetworkPolicy of ITS namespace selects it
  with that policy type; otherwise that direction is unrestricted. Policies are additive: an
  isolated pod accepts what the union of the selecting policies' rules allows.
- `policyTypes` absent: `Ingress`, plus `Egress` when the policy has egress rules.
- A connection needs both ends: the source's egress and the destination's ingress must allow it.
- A rule with no (or empty) `from`/`to` matches every peer; no (or empty) `ports` every port.
- A peer: `podSelector` alone = pods of the policy's namespace; `namespaceSelector` alone = every
  pod of the matching namespaces; both = the matching pods of the matching namespaces;
  `ipBlock` = the CIDR minus `except`, and nothing else may be set beside it.
- Every namespace carries `kubernetes.io/metadata.name: <name>` (GA in 1.22).
- A port: `protocol` (default TCP), `port` a number (with `endPort` a range) or a name, which
  means the destination pod's container port of that name; no `port` means every port.
- A pod can always reach itself. Traffic from the pod's node (kubelet probes) is always allowed:
  the node is no endpoint here.

Stricter than some plugins, on purpose: an `ipBlock` never matches a pod (the docs: ipBlock is
for cluster-external IPs, what a plugin does with pod IPs is implementation-defined), so a
policy must use selectors for in-cluster peers. Invalid policies raise `NetworkPolicyError`
rather than being read some way.

Used by tests/kube/test_network_policy.py (the chart's and the operator's policies) and meant
for any emulated data path (a node agent asks `connection_allowed` before it connects two pods).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.kube.selectors import SelectorError, matches_label_selector

Obj = dict[str, Any]
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
PROTOCOLS = ("TCP", "UDP", "SCTP")
POLICY_TYPES = ("Ingress", "Egress")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod")


class NetworkPolicyError(ValueError):
    """A NetworkPolicy the API server (or the evaluator) would not accept, naming the field."""


@dataclass(frozen=True)
class ContainerPort:
    port: int
    protocol: str = "TCP"
    name: str | None = None


@dataclass(frozen=True)
class Pod:
    """A pod as the policies see it: where it lives, its labels, its container ports."""

    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    ports: tuple[ContainerPort, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class External:
    """An address outside the cluster (only `ipBlock` peers match it)."""

    ip: str
    ports: tuple[ContainerPort, ...] = ()

    @property
    def key(self) -> str:
        return self.ip


Endpoint = Pod | External


def namespace_labels(namespaces: Mapping[str, Mapping[str, str]] | Iterable[str]) -> dict[str, dict[str, str]]:
    """Namespace name -> labels, each with the `kubernetes.io/metadata.name` label the API server sets."""
    items = namespaces.items() if isinstance(namespaces, Mapping) else ((n, {}) for n in namespaces)
    return {name: {**dict(labels), NAMESPACE_NAME_LABEL: name} for name, labels in items}


def policy_types(policy: Obj) -> tuple[str, ...]:
    spec = policy.get("spec") or {}
    types = spec.get("policyTypes")
    if types is None:
        return ("Ingress", "Egress") if spec.get("egress") else ("Ingress",)
    for value in types:
        if value not in POLICY_TYPES:
            raise NetworkPolicyError(f"{_name(policy)}: spec.policyTypes: Unsupported value: {value!r}")
    return tuple(types)


def _name(policy: Obj) -> str:
    meta = policy.get("metadata") or {}
    return f"NetworkPolicy {meta.get('namespace')}/{meta.get('name')}"


def _selector_matches(policy: Obj, where: str, labels: Mapping[str, str], selector: Obj | None) -> bool:
    try:
        return matches_label_selector(dict(labels), selector)
    except SelectorError as exc:
        raise NetworkPolicyError(f"{_name(policy)}: {where}: {exc}") from exc


def selects(policy: Obj, pod: Pod) -> bool:
    """Does the policy apply to the pod (same namespace, `spec.podSelector` matches)?"""
    if (policy.get("metadata") or {}).get("namespace") != pod.namespace:
        return False
    spec = policy.get("spec") or {}
    if "podSelector" not in spec:
        raise NetworkPolicyError(f"{_name(policy)}: spec.podSelector: Required value")
    return _selector_matches(policy, "spec.podSelector", pod.labels, spec["podSelector"])


def _peer_matches(
    policy: Obj, where: str, peer: Obj, endpoint: Endpoint, namespaces: Mapping[str, Mapping[str, str]]
) -> bool:
    block = peer.get("ipBlock")
    if block is not None:
        if "podSelector" in peer or "namespaceSelector" in peer:
            raise NetworkPolicyError(f"{_name(policy)}: {where}: ipBlock may not be combined with a selector")
        return isinstance(endpoint, External) and _in_block(policy, f"{where}.ipBlock", block, endpoint.ip)
    if "podSelector" not in peer and "namespaceSelector" not in peer:
        raise NetworkPolicyError(f"{_name(policy)}: {where}: must specify a peer")
    if not isinstance(endpoint, Pod):
        return False
    if "namespaceSelector" in peer:
        if endpoint.namespace not in namespaces:
            raise NetworkPolicyError(f"namespace {endpoint.namespace} of pod {endpoint.name} is not known")
        in_namespace = _selector_matches(
            policy, f"{where}.namespaceSelector", namespaces[endpoint.namespace], peer["namespaceSelector"]
        )
    else:
        in_namespace = endpoint.namespace == (policy.get("metadata") or {}).get("namespace")
    if not in_namespace:
        return False
    return _selector_matches(policy, f"{where}.podSelector", endpoint.labels, peer.get("podSelector") or {})


def _in_block(policy: Obj, where: str, block: Obj, ip: str) -> bool:
    try:
        network = ipaddress.ip_network(block["cidr"], strict=True)
        excepted = [ipaddress.ip_network(e, strict=True) for e in block.get("except") or []]
    except (KeyError, ValueError) as exc:
        raise NetworkPolicyError(f"{_name(policy)}: {where}.cidr: Invalid value: {exc}") from exc
    for exception in excepted:
        if exception.version != network.version or not exception.subnet_of(network):  # type: ignore[arg-type]
            raise NetworkPolicyError(f"{_name(policy)}: {where}.except: must be a strict subset of `cidr`")
    address = ipaddress.ip_address(ip)
    return address in network and not any(address in e for e in excepted)


def _port_matches(policy: Obj, where: str, entry: Obj, destination: Endpoint, port: int, protocol: str) -> bool:
    entry_protocol = entry.get("protocol") or "TCP"
    if entry_protocol not in PROTOCOLS:
        raise NetworkPolicyError(f"{_name(policy)}: {where}.protocol: Unsupported value: {entry_protocol!r}")
    if entry_protocol != protocol:
        return False
    wanted = entry.get("port")
    end = entry.get("endPort")
    if wanted is None:
        if end is not None:
            raise NetworkPolicyError(f"{_name(policy)}: {where}.endPort: may not be set without port")
        return True
    if isinstance(wanted, str):
        if end is not None:
            raise NetworkPolicyError(f"{_name(policy)}: {where}.endPort: may not be set with a named port")
        named = [p for p in destination.ports if p.name == wanted and p.protocol == protocol]
        return any(p.port == port for p in named)
    if not 1 <= int(wanted) <= 65535:
        raise NetworkPolicyError(f"{_name(policy)}: {where}.port: must be between 1 and 65535")
    if end is None:
        return port == int(wanted)
    if int(end) < int(wanted):
        raise NetworkPolicyError(f"{_name(policy)}: {where}.endPort: must be greater than or equal to port")
    return int(wanted) <= port <= int(end)


def _rule_allows(
    policy: Obj,
    where: str,
    rule: Obj,
    peers_key: str,
    peer: Endpoint,
    destination: Endpoint,
    port: int,
    protocol: str,
    namespaces: Mapping[str, Mapping[str, str]],
) -> bool:
    peers: Sequence[Obj] = rule.get(peers_key) or []
    if peers and not any(
        _peer_matches(policy, f"{where}.{peers_key}[{i}]", p, peer, namespaces) for i, p in enumerate(peers)
    ):
        return False
    entries: Sequence[Obj] = rule.get("ports") or []
    return not entries or any(
        _port_matches(policy, f"{where}.ports[{i}]", e, destination, port, protocol) for i, e in enumerate(entries)
    )


def _direction_allows(
    direction: str,
    policies: Iterable[Obj],
    namespaces: Mapping[str, Mapping[str, str]],
    subject: Pod,
    peer: Endpoint,
    destination: Endpoint,
    port: int,
    protocol: str,
) -> bool:
    """Ingress (peer -> subject) or egress (subject -> peer) as the subject's policies allow it."""
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    isolated = False
    for policy in policies:
        if direction not in policy_types(policy) or not selects(policy, subject):
            continue
        isolated = True
        for i, rule in enumerate((policy.get("spec") or {}).get(rules_key) or []):
            where = f"spec.{rules_key}[{i}]"
            if _rule_allows(policy, where, rule, peers_key, peer, destination, port, protocol, namespaces):
                return True
    return not isolated


def connection_allowed(
    policies: Iterable[Obj],
    namespaces: Mapping[str, Mapping[str, str]],
    source: Endpoint,
    destination: Endpoint,
    port: int,
    protocol: str = "TCP",
) -> bool:
    """May `source` open a connection to `destination` on `port`? Both ends' policies must agree.

    `namespaces` is `namespace_labels(...)`: every pod's namespace must be in it.
    """
    if protocol not in PROTOCOLS:
        raise NetworkPolicyError(f"protocol {protocol!r} is none of {', '.join(PROTOCOLS)}")
    if source == destination:
        return True  # a pod cannot block access to itself
    policies = list(policies)
    if isinstance(source, Pod) and not _direction_allows(
        "Egress", policies, namespaces, source, destination, destination, port, protocol
    ):
        return False
    return not isinstance(destination, Pod) or _direction_allows(
        "Ingress", policies, namespaces, destination, source, destination, port, protocol
    )


def allowed_connections(
    policies: Iterable[Obj],
    namespaces: Mapping[str, Mapping[str, str]],
    sources: Iterable[Endpoint],
    destinations: Iterable[Endpoint],
) -> set[tuple[str, str, int]]:
    """Every (source key, destination key, port) allowed, over each destination's declared ports."""
    policies, destinations = list(policies), list(destinations)
    return {
        (source.key, destination.key, p.port)
        for source in sources
        for destination in destinations
        if source != destination
        for p in destination.ports
        if connection_allowed(policies, namespaces, source, destination, p.port, p.protocol)
    }


def _template(doc: Obj) -> Obj | None:
    kind = doc.get("kind")
    if kind == "Pod":
        return doc
    spec = doc.get("spec") or {}
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return spec.get("template")


def pods_from_manifests(documents: Iterable[Obj], default_namespace: str) -> list[Pod]:
    """One Pod per workload (its pod template's labels and container ports), in its namespace.

    A Job's pods also get `job-name`/`controller-uid` labels from the API server; no policy here
    selects on them, so they are left out.
    """
    pods: list[Pod] = []
    for doc in documents:
        if doc.get("kind") not in WORKLOAD_KINDS:
            continue
        template = _template(doc) or {}
        meta = doc.get("metadata") or {}
        ports = tuple(
            ContainerPort(int(p["containerPort"]), p.get("protocol") or "TCP", p.get("name"))
            for container in (template.get("spec") or {}).get("containers") or []
            for p in container.get("ports") or []
        )
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        pods.append(Pod(f"{doc['kind']}/{meta['name']}", meta.get("namespace") or default_namespace, labels, ports))
    return pods


def policies_from_manifests(documents: Iterable[Obj], default_namespace: str) -> list[Obj]:
    """The NetworkPolicies among the documents, each with its namespace filled in (as the server stores it)."""
    policies = []
    for doc in documents:
        if doc.get("kind") != "NetworkPolicy":
            continue
        if doc.get("apiVersion") != "networking.k8s.io/v1":
            raise NetworkPolicyError(f"NetworkPolicy {doc['metadata']['name']}: apiVersion {doc.get('apiVersion')}")
        meta = {**doc["metadata"], "namespace": doc["metadata"].get("namespace") or default_namespace}
        policies.append({**doc, "metadata": meta})
    return policies
