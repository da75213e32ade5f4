"""Credentials: one `auth` section, an existingSecret for each, Redis requirepass wired to every
client by secretKeyRef and $(REDIS_PASSWORD), the Finnhub key, GitOps-safe generation (the hook
Job, run here against the emulated API under the chart's own RBAC for it), and the lookup that
keeps generated values and refuses stale CRDs (a cluster-aware render against the emulated API)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.fixtures.chart import CHART_DIR, NAMESPACE, RELEASE, RenderedChart, expand_env, parse_manifests, render_chart
from tests.kube.authn import service_account
from tests.kube.cluster import EmulatedCluster

REDIS_URL_ENVS = ("KUBETRADER_REDIS_URL", "KUBETRADER_OPERATOR_REDIS_URL")


def _render(values: dict[str, Any]) -> RenderedChart:
    templates = render_chart(values)
    return RenderedChart("auth", values, templates, parse_manifests(templates))


def _containers(rendered: RenderedChart) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{where}/{c['name']}", c)
        for where, pod in rendered.pod_specs()
        for c in [*pod.get("initContainers", []), *pod["containers"]]
    ]


def _secret_values(rendered: RenderedChart) -> dict[tuple[str, str], str]:
    return {
        (s["metadata"]["name"], key): base64.b64decode(value).decode()
        for s in rendered.of_kind("Secret")
        if s["metadata"].get("namespace", NAMESPACE) == NAMESPACE
        for key, value in s["data"].items()
    }


def test_every_redis_client_gets_the_password_from_the_secret_and_no_manifest_holds_it() -> None:
    rendered = _render({})
    secrets = _secret_values(rendered)
    password = secrets[("kubetrader-redis", "password")]
    assert len(password) == 32
    clients = []
    for where, container in _containers(rendered):
        env = container.get("env", [])
        names = [e["name"] for e in env]
        for url_env in REDIS_URL_ENVS:
            if url_env not in names:
                continue
            clients.append(where)
            entry = env[names.index(url_env)]
            assert "$(REDIS_PASSWORD)" in entry["value"], where
            ref = env[names.index("REDIS_PASSWORD")]
            assert names.index("REDIS_PASSWORD") < names.index(url_env), f"{where}: defined after its use"
            assert ref["valueFrom"] == {"secretKeyRef": {"name": "kubetrader-redis", "key": "password"}}, where
            assert expand_env(env, secrets)[url_env].startswith(f"redis://:{password}@kubetrader-redis."), where
    assert set(clients) == {
        "Deployment/kubetrader-operator/operator",
        "Deployment/kubetrader-api/api",
        "Deployment/kubetrader-worker/worker",
        "Pod/kubetrader-helm-test/test",
    }
    # The operator passes the Secret's name (not the password) to the Jobs it creates.
    operator = dict(_containers(rendered))["Deployment/kubetrader-operator/operator"]
    env = {e["name"]: e.get("value") for e in operator["env"]}
    assert env["KUBETRADER_OPERATOR_REDIS_PASSWORD_SECRET"] == "kubetrader-redis"
    assert env["KUBETRADER_OPERATOR_REDIS_PASSWORD_KEY"] == "password"
    for doc in rendered.documents:
        if doc["kind"] != "Secret":
            assert password not in yaml.safe_dump(doc), f"{doc['kind']}/{doc['metadata']['name']} holds the password"


def test_the_bundled_redis_requires_the_password_and_its_probes_send_it() -> None:
    rendered = _render({})
    (redis,) = rendered.get("StatefulSet", "kubetrader-redis")["spec"]["template"]["spec"]["containers"]
    args = redis["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    env = expand_env(redis["env"], {("kubetrader-redis", "password"): "s3cret"})
    # redis-cli takes the password from REDISCLI_AUTH (redis.io/docs/latest/develop/tools/cli/), so the
    # probes' `redis-cli ping` authenticates without the password on a command line.
    assert env["REDISCLI_AUTH"] == "s3cret"
    assert redis["livenessProbe"]["exec"]["command"] == ["redis-cli", "ping"]


def test_the_redis_secret_is_in_every_watched_namespace_with_one_value() -> None:
    rendered = _render({"operator": {"watchNamespaces": ["kubetrader", "research", "trading"]}})
    copies = [s for s in rendered.of_kind("Secret") if s["metadata"]["name"] == "kubetrader-redis"]
    assert {s["metadata"]["namespace"] for s in copies} == {"kubetrader", "research", "trading"}
    assert len({s["data"]["password"] for s in copies}) == 1, "the Jobs in every namespace reach the same Redis"


def test_redis_auth_takes_an_existing_secret_and_an_external_server() -> None:
    rendered = _render({"auth": {"redis": {"existingSecret": "redis-creds", "key": "redis-password"}}})
    assert "kubetrader-redis" not in {s["metadata"]["name"] for s in rendered.of_kind("Secret")}
    api = rendered.get("Deployment", "kubetrader-api")["spec"]["template"]["spec"]["containers"][0]
    assert {
        "name": "REDIS_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "redis-creds", "key": "redis-password"}},
    } in api["env"]
    external = _render(
        {
            "redis": {"enabled": False, "external": {"url": "rediss://redis.infra:6380/2"}},
            "auth": {"redis": {"existingSecret": "infra-redis"}},
        }
    )
    api = external.get("Deployment", "kubetrader-api")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in api["env"]}
    assert env["KUBETRADER_REDIS_URL"] == "rediss://:$(REDIS_PASSWORD)@redis.infra:6380/2"
    plain = _render({"redis": {"enabled": False, "external": {"url": "redis://redis.infra:6379/0"}}})
    api = plain.get("Deployment", "kubetrader-api")["spec"]["template"]["spec"]["containers"][0]
    assert "REDIS_PASSWORD" not in {e["name"] for e in api["env"]}
    with pytest.raises(helm_python.HelmRenderError, match="holds credentials"):
        render_chart(
            {
                "redis": {"enabled": False, "external": {"url": "redis://:pw@r:6379/0"}},
                "auth": {"redis": {"existingSecret": "x"}},
            }
        )


def test_redis_without_auth_has_no_password_anywhere() -> None:
    rendered = _render({"auth": {"redis": {"enabled": False}}})
    (redis,) = rendered.get("StatefulSet", "kubetrader-redis")["spec"]["template"]["spec"]["containers"]
    assert "--requirepass" not in redis["args"]
    for where, container in _containers(rendered):
        assert "REDIS_PASSWORD" not in {e["name"] for e in container.get("env", [])}, where


def test_every_credential_takes_an_existing_secret_and_then_none_is_generated() -> None:
    values = {
        "auth": {
            "apiToken": {"existingSecret": "api-token", "key": "bearer"},
            "redis": {"existingSecret": "redis-creds"},
            "postgresql": {"existingSecret": "pg-creds", "key": "pg-password"},
            "finnhub": {"existingSecret": "finnhub", "key": "token"},
            "session": {"existingSecret": "dashboard-session", "key": "signing-key"},
            "mlflow": {"existingSecret": "mlflow-creds"},
            "studySigning": {"existingSecret": "study-signing", "key": "hmac"},
        }
    }
    rendered = _render(values)
    assert rendered.of_kind("Secret") == []
    refs = {
        (e["name"], e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for _, c in _containers(rendered)
        for e in c.get("env", [])
        if "valueFrom" in e
    }
    assert {
        ("KUBETRADER_API_TOKEN", "api-token", "bearer"),
        ("REDIS_PASSWORD", "redis-creds", "password"),
        ("POSTGRES_PASSWORD", "pg-creds", "pg-password"),
        ("FINNHUB_API_KEY", "finnhub", "token"),
        ("KUBETRADER_SESSION_SECRET", "dashboard-session", "signing-key"),
        ("MLFLOW_TRACKING_USERNAME", "mlflow-creds", "username"),
        ("MLFLOW_TRACKING_PASSWORD", "mlflow-creds", "password"),
        ("MLFLOW_FLASK_SERVER_SECRET_KEY", "mlflow-creds", "server-secret"),
    } == {r for r in refs if r[0] != "REDISCLI_AUTH"}
    keda = _render({**values, "keda": {"enabled": True}, "api": {"publicRead": False}})
    auth = keda.get("TriggerAuthentication", "kubetrader-worker")
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "token", "name": "api-token", "key": "bearer"}]
    # The older key keeps working.
    legacy = _render({"api": {"existingTokenSecret": "old-token"}})
    assert "kubetrader-api-token" not in {s["metadata"]["name"] for s in legacy.of_kind("Secret")}
    assert "old-token" in legacy.notes


def test_finnhub_key_reaches_the_api_from_a_secret() -> None:
    def api_env(rendered: RenderedChart) -> dict[str, Any]:
        container = rendered.get("Deployment", "kubetrader-api")["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("valueFrom", e.get("value")) for e in container["env"]}

    assert "FINNHUB_API_KEY" not in api_env(_render({}))
    given = _render({"auth": {"finnhub": {"apiKey": "fh-123"}}})
    assert api_env(given)["FINNHUB_API_KEY"] == {"secretKeyRef": {"name": "kubetrader-finnhub", "key": "apiKey"}}
    (secret,) = [s for s in given.of_kind("Secret") if s["metadata"]["name"] == "kubetrader-finnhub"]
    assert base64.b64decode(secret["data"]["apiKey"]).decode() == "fh-123"
    assert "fh-123" not in yaml.safe_dump(given.get("Deployment", "kubetrader-api"))
    # FINNHUB_API_KEY is the variable the symbol search reads.
    from kubetrader.symbols.finnhub import KEY_ENV, finnhub_key

    assert KEY_ENV == "FINNHUB_API_KEY" and finnhub_key({KEY_ENV: "fh-123"}) == "fh-123"


def test_generate_with_hook_renders_no_random_secret_but_a_job_that_creates_them() -> None:
    lookup = _render({})
    hook = _render({"auth": {"generateWithHook": True}})
    assert hook.of_kind("Secret") == []
    job = hook.get("Job", "kubetrader-secrets-hook")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    wanted = {(s["namespace"], s["name"], s["key"]) for s in json.loads(env["KUBETRADER_SECRETS"])}
    rendered = {
        (s["metadata"]["namespace"], s["metadata"]["name"], next(iter(s["data"]))) for s in lookup.of_kind("Secret")
    }
    assert wanted == rendered  # one list (kubetrader.generatedSecrets) serves both ways
    # Two renders without a cluster differ in the lookup way, never in the hook way.
    assert _secret_values(_render({})) != _secret_values(lookup)
    assert render_chart({"auth": {"generateWithHook": True}}) == render_chart({"auth": {"generateWithHook": True}})


def _hook_manifests(values: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    rendered = _render({**values, "auth": {"generateWithHook": True}})
    rbac = [d for d in rendered.documents if d["metadata"]["name"] == "kubetrader-secrets-hook"
            and d["kind"] in ("ServiceAccount", "Role", "RoleBinding")]  # fmt: skip
    job = rendered.get("Job", "kubetrader-secrets-hook")["spec"]["template"]["spec"]["containers"][0]
    return rbac, {e["name"]: e["value"] for e in job["env"]}


def _run_hook(cluster: EmulatedCluster, env: dict[str, str], tmp_path: Path) -> str:
    identity = service_account(NAMESPACE, "kubetrader-secrets-hook")
    kubeconfig = cluster.kubeconfig_for(identity, tmp_path / "hook.kubeconfig")
    run_env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    run_env.update(env, KUBECONFIG=str(kubeconfig))
    done = subprocess.run(
        [sys.executable, str(CHART_DIR / "files" / "create-secrets.py")],
        env=run_env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def _secret(cluster: EmulatedCluster, namespace: str, name: str, key: str) -> str:
    secret = cluster.get("Secret", namespace, name)
    assert secret is not None, f"{namespace}/{name}"
    return base64.b64decode(secret["data"][key]).decode()


def test_the_hook_job_creates_missing_secrets_once_under_its_own_rbac(
    kube_cluster: EmulatedCluster, tmp_path: Path
) -> None:
    values = {"operator": {"watchNamespaces": ["kubetrader", "research"]}}
    rbac, env = _hook_manifests(values)
    kube_cluster.apply(rbac, NAMESPACE)
    kube_cluster.ensure_namespace("research")
    # An API token already there (brought by hand, or by an earlier run) is kept as it is.
    kube_cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "kubetrader-api-token"},
            "data": {"token": base64.b64encode(b"mine").decode()},
        },
        namespace=NAMESPACE,
    )
    first = _run_hook(kube_cluster, env, tmp_path)
    assert "kept    Secret kubetrader/kubetrader-api-token" in first
    assert "created Secret research/kubetrader-redis" in first
    assert _secret(kube_cluster, NAMESPACE, "kubetrader-api-token", "token") == "mine"
    redis = _secret(kube_cluster, NAMESPACE, "kubetrader-redis", "password")
    assert len(redis) == 32 and redis.isalnum()
    assert _secret(kube_cluster, "research", "kubetrader-redis", "password") == redis
    postgres = _secret(kube_cluster, NAMESPACE, "kubetrader-postgresql", "password")
    second = _run_hook(kube_cluster, env, tmp_path)
    assert "created" not in second
    assert _secret(kube_cluster, NAMESPACE, "kubetrader-postgresql", "password") == postgres
    # A namespace added later gets the existing password, not a new one.
    kube_cluster.ensure_namespace("trading")
    rbac, env = _hook_manifests({"operator": {"watchNamespaces": ["kubetrader", "research", "trading"]}})
    kube_cluster.apply([d for d in rbac if d["metadata"].get("namespace") == "trading"], NAMESPACE)
    _run_hook(kube_cluster, env, tmp_path)
    assert _secret(kube_cluster, "trading", "kubetrader-redis", "password") == redis


def _cluster_render(cluster: EmulatedCluster, values: dict[str, Any]) -> dict[str, str]:
    helm_python.disable_logging()
    chart = helm_python.Chart.load(CHART_DIR)
    config = helm_python.Config(kubeconfig_path=cluster.kubeconfig, namespace=NAMESPACE)
    return config.render(chart, values, name=RELEASE, namespace=NAMESPACE, is_upgrade=True)


def test_lookup_keeps_generated_secrets_across_upgrades(kube_cluster: EmulatedCluster) -> None:
    kube_cluster.ensure_namespace(NAMESPACE)
    kube_cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "kubetrader-redis"},
            "data": {"password": base64.b64encode(b"kept-value").decode()},
        },
        namespace=NAMESPACE,
    )
    rendered = parse_manifests(_cluster_render(kube_cluster, {}))
    (secret,) = [d for d in rendered if d["kind"] == "Secret" and d["metadata"]["name"] == "kubetrader-redis"]
    assert base64.b64decode(secret["data"]["password"]).decode() == "kept-value"


def test_an_upgrade_over_stale_crds_is_refused_with_the_command_to_run(kube_cluster: EmulatedCluster) -> None:
    _cluster_render(kube_cluster, {})  # the cluster holds this chart's CRDs: no complaint
    kube_cluster.patch(
        "CustomResourceDefinition", None, "backtests.kubetrader.io",
        {"metadata": {"annotations": {"kubetrader.io/schema-sha256": "0123456789abcdef"}}},
    )  # fmt: skip
    with pytest.raises(
        helm_python.HelmRenderError, match=r"CRD backtests\.kubetrader\.io in the cluster is stale"
    ) as err:
        _cluster_render(kube_cluster, {})
    assert "kubectl apply --server-side --force-conflicts -f kubetrader/crds/" in str(err.value)
    _cluster_render(kube_cluster, {"crds": {"checkStale": False}})
