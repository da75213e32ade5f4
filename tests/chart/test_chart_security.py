"""Security of the rendered chart: Pod Security "restricted" for every pod, least-privilege RBAC,
no API token where none is needed, resources and probes everywhere."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.chart import RenderedChart, chart_scenarios
from tests.kube.network_policy import pods_from_manifests

SCENARIOS = chart_scenarios()
FORBIDDEN_VERBS = {"escalate", "bind", "impersonate", "*"}
# Pods that talk to the API server (custom resources; the secrets hook Job creates the generated
# Secrets under auth.generateWithHook); every other pod runs without an API token.
# helm-test: to delete the Backtest it submitted (its Role: get/delete of that one name, test_chart_helm_test.py)
API_CLIENT_COMPONENTS = {"operator", "api", "secrets-hook", "helm-test"}
SECRETS_HOOK = "kubetrader-secrets-hook"


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_pod_meets_pod_security_restricted(
    scenario: str, rendered_chart_scenarios: dict[str, RenderedChart]
) -> None:
    rendered = rendered_chart_scenarios[scenario]
    pods = list(rendered.pod_specs())
    assert len(pods) >= 4
    for where, pod in pods:
        pod_sc = pod.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, where
        assert isinstance(pod_sc.get("runAsUser"), int) and pod_sc["runAsUser"] > 0, where
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), where
        for volume in pod.get("volumes", []):
            assert "hostPath" not in volume, f"{where}: hostPath volume {volume['name']}"
        for container in _containers(pod):
            sc = container.get("securityContext", {})
            name = f"{where}/{container['name']}"
            assert sc.get("allowPrivilegeEscalation") is False, name
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], name
            assert not sc.get("capabilities", {}).get("add"), name
            assert sc.get("privileged") in (None, False), name
            assert sc.get("readOnlyRootFilesystem") is True, name
            assert sc.get("runAsUser", pod_sc["runAsUser"]) > 0, name
            assert "hostPort" not in str(container.get("ports", [])), name


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_read_only_root_filesystems_get_a_writable_tmp(
    scenario: str, rendered_chart_scenarios: dict[str, RenderedChart]
) -> None:
    for where, pod in rendered_chart_scenarios[scenario].pod_specs():
        empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for container in _containers(pod):
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert mounts.get("/tmp") in empty_dirs, f"{where}/{container['name']} has no emptyDir at /tmp"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_container_has_requests_and_limits(
    scenario: str, rendered_chart_scenarios: dict[str, RenderedChart]
) -> None:
    for where, pod in rendered_chart_scenarios[scenario].pod_specs():
        for container in _containers(pod):
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), f"{where}/{container['name']} {part}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_long_running_containers_have_liveness_and_readiness_probes(
    scenario: str, rendered_chart_scenarios: dict[str, RenderedChart]
) -> None:
    rendered = rendered_chart_scenarios[scenario]
    for doc in rendered.of_kind("Deployment", "StatefulSet"):
        for container in doc["spec"]["template"]["spec"]["containers"]:
            name = f"{doc['metadata']['name']}/{container['name']}"
            assert "livenessProbe" in container, name
            assert "readinessProbe" in container, name


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_only_the_operator_and_the_api_mount_a_service_account_token(
    scenario: str, rendered_chart_scenarios: dict[str, RenderedChart]
) -> None:
    for where, pod in rendered_chart_scenarios[scenario].pod_specs():
        component = where.split("/", 1)[1].removeprefix("kubetrader-")
        if component in API_CLIENT_COMPONENTS:
            assert pod.get("automountServiceAccountToken") is True, where
        else:
            assert pod.get("automountServiceAccountToken") is False, where


def _rules(rendered: RenderedChart) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{doc['kind']}/{doc['metadata']['name']}", rule)
        for doc in rendered.of_kind("Role", "ClusterRole")
        for rule in doc.get("rules", [])
    ]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rbac_has_no_wildcards_and_no_escalate_bind_or_impersonate(
    scenario: str, rendered_chart_scenarios: dict[str, RenderedChart]
) -> None:
    rules = _rules(rendered_chart_scenarios[scenario])
    assert rules
    for where, rule in rules:
        assert "*" not in rule.get("apiGroups", []), where
        assert "*" not in rule.get("resources", []), where
        assert not FORBIDDEN_VERBS & set(rule["verbs"]), (where, rule)
        assert not rule.get("nonResourceURLs"), where
        assert not {"roles", "clusterroles", "rolebindings", "clusterrolebindings"} & set(rule.get("resources", []))


# The live runner's token Secret: created and deleted by the operator, never read (the token is
# derived from the operator's key), listed or watched (its name depends on each LiveDeployment, so
# it cannot be narrowed by resourceNames).
LIVE_TOKEN_SECRET_RULE = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete"]}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_secrets_are_readable_only_by_name_and_only_by_the_operator(
    scenario: str, rendered_chart_scenarios: dict[str, RenderedChart]
) -> None:
    rendered = rendered_chart_scenarios[scenario]
    allowed = set(rendered.values.get("operator", {}).get("readableSecrets", []))
    live = bool(rendered.values.get("live", {}).get("enabled"))
    secret_rules = [(w, r) for w, r in _rules(rendered) if "secrets" in r.get("resources", [])]
    hook_rules = [r for w, r in secret_rules if w == f"Role/{SECRETS_HOOK}"]
    secret_rules = [(w, r) for w, r in secret_rules if w != f"Role/{SECRETS_HOOK}"]
    if rendered.values.get("auth", {}).get("generateWithHook"):
        # get only the generated Secrets by name; create cannot be narrowed by name in RBAC
        generated = {
            "kubetrader-postgresql",
            "kubetrader-api-token",
            "kubetrader-redis",
            "kubetrader-dashboard-session",
            "kubetrader-operator-runner-key",  # live trading: the key runner tokens are derived from
            "kubetrader-mlflow-auth",
            "kubetrader-mlflow-server",
            "kubetrader-study-signing",
        }
        assert {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]} in hook_rules
        gets = [r for r in hook_rules if r["verbs"] == ["get"]]
        assert gets and all(set(r["resourceNames"]) <= generated for r in gets), hook_rules
        assert len(hook_rules) == 2 * len(gets)
    else:
        assert not hook_rules
    token_rules = [(w, r) for w, r in secret_rules if r == LIVE_TOKEN_SECRET_RULE]
    by_name = [(w, r) for w, r in secret_rules if r != LIVE_TOKEN_SECRET_RULE]
    for where, _rule in secret_rules:
        assert where.startswith(("Role/kubetrader-operator", "ClusterRole/kubetrader-operator")), where
    for where, rule in by_name:
        assert rule["verbs"] == ["get"], where
        assert set(rule.get("resourceNames", [])) == allowed and allowed, where
    assert bool(by_name) == bool(allowed)
    assert bool(token_rules) == live


def test_default_install_grants_no_secret_access_at_all(rendered_chart_scenarios: dict[str, RenderedChart]) -> None:
    rules = _rules(rendered_chart_scenarios["default"])
    assert not [where for where, rule in rules if "secrets" in rule.get("resources", [])]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_workers_jobs_and_datastores_are_bound_to_no_role(
    scenario: str, rendered_chart_scenarios: dict[str, RenderedChart]
) -> None:
    rendered = rendered_chart_scenarios[scenario]
    subjects = {
        subject["name"]
        for binding in rendered.of_kind("RoleBinding", "ClusterRoleBinding")
        for subject in binding["subjects"]
    }
    hook = {SECRETS_HOOK} if rendered.values.get("auth", {}).get("generateWithHook") else set()
    # the helm test's own ServiceAccount: get/delete of its one Backtest (tests/chart/test_chart_helm_test.py)
    assert subjects == {"kubetrader-operator", "kubetrader-api", "kubetrader-helm-test"} | hook
    worker = rendered.get("Deployment", "kubetrader-worker")["spec"]["template"]["spec"]
    assert worker["serviceAccountName"] == "kubetrader-engine"


def test_live_rules_appear_only_when_live_trading_is_enabled(
    rendered_chart_scenarios: dict[str, RenderedChart],
) -> None:
    def resources(scenario: str) -> set[str]:
        return {res for _, rule in _rules(rendered_chart_scenarios[scenario]) for res in rule.get("resources", [])}

    assert {"statefulsets", "networkpolicies", "services"} <= resources("live")
    assert not {"statefulsets", "networkpolicies", "services"} & resources("default")


def test_operator_may_patch_only_the_worker_deployment(rendered_chart_scenarios: dict[str, RenderedChart]) -> None:
    rendered = rendered_chart_scenarios["default"]
    writes = [
        rule
        for _, rule in _rules(rendered)
        if "deployments" in rule.get("resources", []) and set(rule["verbs"]) - {"get", "list", "watch"}
    ]
    assert writes == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": ["kubetrader-worker"],
            "verbs": ["patch"],
        }
    ]


def test_worker_pool_opts_in_to_the_operator_scaler_unless_keda_scales_it(
    rendered_chart_scenarios: dict[str, RenderedChart],
) -> None:
    default = rendered_chart_scenarios["default"].get("Deployment", "kubetrader-worker")
    assert "replicas" not in default["spec"], "the scaler owns replicas; an upgrade must not reset them"
    assert default["metadata"]["labels"]["kubetrader.io/scale-on-queue"] == "true"
    assert default["metadata"]["annotations"] == {
        "kubetrader.io/tasks-per-worker": "4",
        "kubetrader.io/min-replicas": "0",
        "kubetrader.io/max-replicas": "4",
        "kubetrader.io/cooldown-seconds": "300",
    }
    keda = rendered_chart_scenarios["keda"]
    worker = keda.get("Deployment", "kubetrader-worker")
    assert "kubetrader.io/scale-on-queue" not in worker["metadata"]["labels"]
    scaled = keda.get("ScaledObject", "kubetrader-worker")["spec"]
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"], scaled["cooldownPeriod"]) == (0, 6, 120)
    (trigger,) = scaled["triggers"]
    assert trigger["metricType"] == "AverageValue"
    assert trigger["metadata"]["targetValue"] == "2"
    assert trigger["metadata"]["url"] == "http://kubetrader-api.kubetrader.svc:8000/api/v1/queue"
    assert trigger["metadata"]["valueLocation"] == "stats.pending"


def test_every_component_is_isolated_by_a_policy_selecting_its_own_labels(
    rendered_chart_scenarios: dict[str, RenderedChart],
) -> None:
    """Who may reach whom is tests/operator_live/test_network_reachability.py's table; here: none is left open."""
    for rendered in rendered_chart_scenarios.values():
        selected = {
            tuple(sorted(p["spec"]["podSelector"]["matchLabels"].items())) for p in rendered.of_kind("NetworkPolicy")
        }
        for pod in pods_from_manifests(rendered.documents, rendered.values.get("namespace", "kubetrader")):
            assert any(set(s) <= set(pod.labels.items()) for s in selected), f"{pod.key} in {rendered.scenario}"
