"""The RBAC evaluator alone (rule -> allowed or denied with the API server's exact message), the
request-to-attributes mapping, and authentication and RBAC over HTTP in the emulated API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube import authn, http_call, rbac
from tests.kube.cluster import EmulatedCluster

OPERATOR = authn.service_account("kubetrader", "kubetrader-operator")
ALICE = authn.user("alice", ("traders",))


def role(name: str, namespace: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "Role", "metadata": {"name": name, "namespace": namespace}, "rules": list(rules)}


def cluster_role(name: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "ClusterRole", "metadata": {"name": name}, "rules": list(rules)}


def binding(
    name: str, namespace: str | None, role_kind: str, role_name: str, *subjects: dict[str, Any]
) -> dict[str, Any]:
    kind = "RoleBinding" if namespace else "ClusterRoleBinding"
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": rbac.RBAC_GROUP, "kind": role_kind, "name": role_name},
        "subjects": list(subjects),
    }


SA_SUBJECT = {"kind": "ServiceAccount", "name": "kubetrader-operator", "namespace": "kubetrader"}
JOBS_CREATE = {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]}

DENIED_JOB_CREATE = (
    'jobs.batch is forbidden: User "system:serviceaccount:kubetrader:kubetrader-operator" cannot create '
    'resource "jobs" in API group "batch" in the namespace "default"'
)

# (objects, identity, method, path, query, expected message or None for allowed)
CASES: list[tuple[str, list[dict[str, Any]], authn.Identity, str, str, dict[str, str], str | None]] = [
    ("no binding at all", [], OPERATOR, "POST", "/apis/batch/v1/namespaces/default/jobs", {}, DENIED_JOB_CREATE),
    (
        "role in the namespace, bound to the ServiceAccount",
        [role("r", "default", JOBS_CREATE), binding("b", "default", "Role", "r", SA_SUBJECT)],
        OPERATOR,
        "POST",
        "/apis/batch/v1/namespaces/default/jobs",
        {},
        None,
    ),
    (
        "role in another namespace does not reach this one",
        [role("r", "other", JOBS_CREATE), binding("b", "other", "Role", "r", SA_SUBJECT)],
        OPERATOR,
        "POST",
        "/apis/batch/v1/namespaces/default/jobs",
        {},
        DENIED_JOB_CREATE,
    ),
    (
        "a RoleBinding's ServiceAccount subject without namespace means the binding's namespace",
        [
            role("r", "default", JOBS_CREATE),
            binding("b", "default", "Role", "r", {"kind": "ServiceAccount", "name": "kubetrader-operator"}),
        ],
        OPERATOR,
        "POST",
        "/apis/batch/v1/namespaces/default/jobs",
        {},
        DENIED_JOB_CREATE,
    ),
    (
        "a RoleBinding may reference a ClusterRole: it applies in the binding's namespace",
        [cluster_role("c", JOBS_CREATE), binding("b", "default", "ClusterRole", "c", SA_SUBJECT)],
        OPERATOR,
        "POST",
        "/apis/batch/v1/namespaces/default/jobs",
        {},
        None,
    ),
    (
        "wrong verb",
        [
            role("r", "default", {**JOBS_CREATE, "verbs": ["get", "list"]}),
            binding("b", "default", "Role", "r", SA_SUBJECT),
        ],
        OPERATOR,
        "POST",
        "/apis/batch/v1/namespaces/default/jobs",
        {},
        DENIED_JOB_CREATE,
    ),
    (
        "wrong API group",
        [role("r", "default", {**JOBS_CREATE, "apiGroups": [""]}), binding("b", "default", "Role", "r", SA_SUBJECT)],
        OPERATOR,
        "POST",
        "/apis/batch/v1/namespaces/default/jobs",
        {},
        DENIED_JOB_CREATE,
    ),
    (
        "the resource does not grant its subresource",
        [
            role("r", "default", {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["patch"]}),
            binding("b", "default", "Role", "r", SA_SUBJECT),
        ],
        OPERATOR,
        "PATCH",
        "/apis/batch/v1/namespaces/default/jobs/j1/status",
        {},
        'jobs.batch "j1" is forbidden: User "system:serviceaccount:kubetrader:kubetrader-operator" cannot patch '
        'resource "jobs/status" in API group "batch" in the namespace "default"',
    ),
    (
        "*/status grants every status subresource",
        [
            role("r", "default", {"apiGroups": ["batch"], "resources": ["*/status"], "verbs": ["patch"]}),
            binding("b", "default", "Role", "r", SA_SUBJECT),
        ],
        OPERATOR,
        "PATCH",
        "/apis/batch/v1/namespaces/default/jobs/j1/status",
        {},
        None,
    ),
    (
        "resourceNames restrict by name",
        [
            role(
                "r", "default", {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"], "verbs": ["get"]}
            ),
            binding("b", "default", "Role", "r", SA_SUBJECT),
        ],
        OPERATOR,
        "GET",
        "/api/v1/namespaces/default/secrets/b",
        {},
        'secrets "b" is forbidden: User "system:serviceaccount:kubetrader:kubetrader-operator" cannot get '
        'resource "secrets" in API group "" in the namespace "default"',
    ),
    (
        "resourceNames: a list naming the object by field selector is allowed",
        [
            role(
                "r", "default", {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"], "verbs": ["list"]}
            ),
            binding("b", "default", "Role", "r", SA_SUBJECT),
        ],
        OPERATOR,
        "GET",
        "/api/v1/namespaces/default/secrets",
        {"fieldSelector": "metadata.name=a"},
        None,
    ),
    (
        "resourceNames cannot allow create (the name is not in the URL)",
        [
            role(
                "r",
                "default",
                {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["a"], "verbs": ["create"]},
            ),
            binding("b", "default", "Role", "r", SA_SUBJECT),
        ],
        OPERATOR,
        "POST",
        "/api/v1/namespaces/default/secrets",
        {},
        'secrets is forbidden: User "system:serviceaccount:kubetrader:kubetrader-operator" cannot create '
        'resource "secrets" in API group "" in the namespace "default"',
    ),
    (
        "list is not watch",
        [
            role("r", "default", {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list"]}),
            binding("b", "default", "Role", "r", SA_SUBJECT),
        ],
        OPERATOR,
        "GET",
        "/apis/batch/v1/namespaces/default/jobs",
        {"watch": "true"},
        'jobs.batch is forbidden: User "system:serviceaccount:kubetrader:kubetrader-operator" cannot watch '
        'resource "jobs" in API group "batch" in the namespace "default"',
    ),
    (
        "a namespaced Role does not allow the cluster-wide list",
        [
            role("r", "default", {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list"]}),
            binding("b", "default", "Role", "r", SA_SUBJECT),
        ],
        OPERATOR,
        "GET",
        "/apis/batch/v1/jobs",
        {},
        'jobs.batch is forbidden: User "system:serviceaccount:kubetrader:kubetrader-operator" cannot list '
        'resource "jobs" in API group "batch" at the cluster scope',
    ),
    (
        "DELETE without a name is deletecollection",
        [
            role("r", "default", {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["delete"]}),
            binding("b", "default", "Role", "r", SA_SUBJECT),
        ],
        OPERATOR,
        "DELETE",
        "/apis/batch/v1/namespaces/default/jobs",
        {},
        'jobs.batch is forbidden: User "system:serviceaccount:kubetrader:kubetrader-operator" cannot deletecollection '
        'resource "jobs" in API group "batch" in the namespace "default"',
    ),
    (
        "PUT is update, not patch",
        [
            role("r", "default", {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"]}),
            binding("b", "default", "Role", "r", SA_SUBJECT),
        ],
        OPERATOR,
        "PUT",
        "/apis/apps/v1/namespaces/default/deployments/w",
        {},
        'deployments.apps "w" is forbidden: User "system:serviceaccount:kubetrader:kubetrader-operator" cannot update '
        'resource "deployments" in API group "apps" in the namespace "default"',
    ),
    (
        "a Group subject",
        [
            cluster_role("c", {"apiGroups": ["kubetrader.io"], "resources": ["backtests"], "verbs": ["*"]}),
            binding("b", None, "ClusterRole", "c", {"kind": "Group", "name": "traders"}),
        ],
        ALICE,
        "GET",
        "/apis/kubetrader.io/v1alpha1/namespaces/x/backtests/bt",
        {},
        None,
    ),
    (
        "a User subject names another user",
        [
            cluster_role("c", {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
            binding("b", None, "ClusterRole", "c", {"kind": "User", "name": "bob"}),
        ],
        ALICE,
        "DELETE",
        "/api/v1/namespaces/x/pods/p",
        {},
        'pods "p" is forbidden: User "alice" cannot delete resource "pods" in API group "" in the namespace "x"',
    ),
    (
        "the namespace itself is cluster-scoped by name",
        [],
        ALICE,
        "GET",
        "/api/v1/namespaces/x",
        {},
        'namespaces "x" is forbidden: User "alice" cannot get resource "namespaces" in API group "" '
        'in the namespace "x"',
    ),
    (
        "a binding to a missing role says so in the reason",
        [binding("b", "default", "Role", "gone", SA_SUBJECT)],
        OPERATOR,
        "POST",
        "/apis/batch/v1/namespaces/default/jobs",
        {},
        DENIED_JOB_CREATE + ': RBAC: role.rbac.authorization.k8s.io "gone" not found',
    ),
    (
        "non-resource URLs: a path without a grant",
        [],
        ALICE,
        "GET",
        "/metrics",
        {},
        'forbidden: User "alice" cannot get path "/metrics"',
    ),
    (
        "non-resource URLs: a trailing * is a prefix",
        [
            cluster_role("c", {"nonResourceURLs": ["/metrics*"], "verbs": ["get"]}),
            binding("b", None, "ClusterRole", "c", {"kind": "User", "name": "alice"}),
        ],
        ALICE,
        "GET",
        "/metrics/cadvisor",
        {},
        None,
    ),
    ("discovery for any authenticated user", [], ALICE, "GET", "/apis/batch/v1", {}, None),
    ("core discovery", [], OPERATOR, "GET", "/api/v1", {}, None),
    ("/version", [], OPERATOR, "GET", "/version", {}, None),
    ("/openapi/v3 and below", [], OPERATOR, "GET", "/openapi/v3/apis/batch/v1", {}, None),
    ("system:masters may do anything", [], authn.ADMIN, "DELETE", "/api/v1/namespaces/x/secrets", {}, None),
]


@pytest.mark.parametrize(
    ("objects", "identity", "method", "path", "query", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_rbac_decides_as_kube_apiserver(
    objects: list[dict[str, Any]],
    identity: authn.Identity,
    method: str,
    path: str,
    query: dict[str, str],
    expected: str | None,
) -> None:
    attributes = rbac.request_attributes(method, path, query)
    decision = rbac.authorize(identity, attributes, rbac.ObjectList((*rbac.BOOTSTRAP_POLICY, *objects)))
    if expected is None:
        assert decision.allowed, rbac.forbidden_message(identity, attributes, decision.reason)
    else:
        assert not decision.allowed
        assert rbac.forbidden_message(identity, attributes, decision.reason) == expected


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/namespaces/ns/pods", {}, ("list", "", "pods", "", "ns", "")),
        ("GET", "/api/v1/namespaces/ns/pods", {"watch": "1"}, ("watch", "", "pods", "", "ns", "")),
        ("GET", "/api/v1/namespaces/ns/pods/p", {"watch": "true"}, ("get", "", "pods", "", "ns", "p")),
        ("GET", "/api/v1/namespaces/ns/pods/p/log", {}, ("get", "", "pods", "log", "ns", "p")),
        ("GET", "/api/v1/watch/namespaces/ns/pods", {}, ("watch", "", "pods", "", "ns", "")),
        (
            "PATCH",
            "/apis/kubetrader.io/v1alpha1/namespaces/ns/backtests/b/status",
            {},
            ("patch", "kubetrader.io", "backtests", "status", "ns", "b"),
        ),
        ("PUT", "/api/v1/namespaces/ns/finalize", {}, ("update", "", "namespaces", "finalize", "ns", "ns")),
        (
            "GET",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            {},
            ("list", "apiextensions.k8s.io", "customresourcedefinitions", "", "", ""),
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/secrets",
            {"fieldSelector": "metadata.name!=x"},
            ("list", "", "secrets", "", "ns", ""),
        ),
        ("DELETE", "/api/v1/namespaces/ns/secrets/s", {}, ("delete", "", "secrets", "", "ns", "s")),
    ],
)
def test_request_attributes_follow_the_request_info_factory(
    method: str, path: str, query: dict[str, str], expected: tuple[str, ...]
) -> None:
    a = rbac.request_attributes(method, path, query)
    assert a.resource_request
    assert (a.verb, a.api_group, a.resource, a.subresource, a.namespace, a.name) == expected


@pytest.mark.parametrize(
    "path", ["/", "/api", "/apis", "/apis/batch", "/apis/batch/v1", "/version", "/openapi/v2", "/healthz"]
)
def test_short_paths_are_non_resource_requests(path: str) -> None:
    a = rbac.request_attributes("GET", path, {})
    assert not a.resource_request and a.verb == "get" and a.path == path


def test_service_account_identity_and_groups() -> None:
    assert OPERATOR.name == "system:serviceaccount:kubetrader:kubetrader-operator"
    assert OPERATOR.groups == ("system:serviceaccounts", "system:serviceaccounts:kubetrader", "system:authenticated")
    assert authn.parse_service_account(OPERATOR.name) == ("kubetrader", "kubetrader-operator")
    assert authn.parse_service_account("system:serviceaccount:a:b:c") is None
    assert authn.parse_service_account("alice") is None


# ---- over HTTP --------------------------------------------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmulatedCluster]:
    with EmulatedCluster(workdir=tmp_path) as running:
        yield running


def call(cluster: EmulatedCluster, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
    return http_call.call(cluster.url, method, path, token, body)


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_a_request_without_a_known_token_gets_401_with_the_real_status(
    cluster: EmulatedCluster, token: str | None
) -> None:
    for path in ("/api/v1/namespaces/default/configmaps", "/version", "/apis"):
        assert call(cluster, "GET", path, token) == (401, authn.unauthorized_status())


def test_a_service_account_is_refused_until_a_role_binding_grants_the_verb(cluster: EmulatedCluster) -> None:
    token = cluster.token_for(OPERATOR)
    pod_spec = {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}  # admission needs one
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j1"},
        "spec": {"template": {"spec": pod_spec}},
    }
    code, body = call(cluster, "POST", "/apis/batch/v1/namespaces/default/jobs", token, job)
    assert code == 403
    assert body["message"] == DENIED_JOB_CREATE
    assert (body["reason"], body["details"]) == ("Forbidden", {"group": "batch", "kind": "jobs"})
    assert cluster.get("Job", "default", "j1") is None

    cluster.apply(
        [role("jobs", "default", JOBS_CREATE), binding("jobs", "default", "Role", "jobs", SA_SUBJECT)], "default"
    )
    code, body = call(cluster, "POST", "/apis/batch/v1/namespaces/default/jobs", token, job)
    assert code == 201, body
    code, body = call(cluster, "GET", "/apis/batch/v1/namespaces/default/jobs/j1", token)
    assert code == 403 and body["details"] == {"group": "batch", "kind": "jobs", "name": "j1"}
    # Discovery and the version stay open to every authenticated user.
    assert call(cluster, "GET", "/apis/batch/v1", token)[0] == 200
    assert call(cluster, "GET", "/api/v1", token)[0] == 200
    refused = [r.describe() for r in cluster.emulator.access.refused(OPERATOR)] if cluster.emulator else []
    assert len(refused) == 2 and "cannot create resource" in refused[0] and "cannot get resource" in refused[1]


def test_the_admin_kubeconfig_is_system_masters_and_a_minted_one_is_its_identity(
    cluster: EmulatedCluster, tmp_path: Path
) -> None:
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    assert call(cluster, "GET", "/api/v1/namespaces/default/secrets", admin["users"][0]["user"]["token"])[0] == 200
    path = cluster.kubeconfig_for(ALICE, tmp_path / "alice.kubeconfig")
    alice = yaml.safe_load(path.read_text())
    assert alice["users"][0]["name"] == "alice"
    code, body = call(cluster, "GET", "/api/v1/namespaces/default/secrets", alice["users"][0]["user"]["token"])
    assert code == 403
    assert body["message"] == (
        'secrets is forbidden: User "alice" cannot list resource "secrets" in API group "" in the namespace "default"'
    )


def test_service_account_token_files_for_an_in_cluster_client(cluster: EmulatedCluster, tmp_path: Path) -> None:
    token_file = authn.write_service_account_files(tmp_path / "sa", cluster.token_for(OPERATOR), "kubetrader")
    assert (tmp_path / "sa" / "namespace").read_text() == "kubetrader"
    code, _ = call(cluster, "GET", "/version", token_file.read_text())
    assert code == 200
