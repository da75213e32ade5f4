"""No Service of the chart is reachable without authentication (#21 "Done when": the chart's defaults
pass a check that no Service is reachable without authentication).

For every Service of a render, the pods it selects and the container port each of its ports lands on.
A port passes when the server on it authenticates (the evidence below, read from the container as the
kubelet starts it: command, args and env expanded, Secrets resolved), or when the NetworkPolicies
admit no one but the release's own pods to it (the evaluator in tests/kube/network_policy.py, with
Kubernetes' semantics, against outsiders: an address outside the cluster, unlabelled pods in the
release's namespace and another one, and a pod of another namespace wearing the target's labels).
Anything else fails, naming the Service. The default render, every ci/ scenario and an OIDC render
are checked; a Secret a render names but does not hold (an existingSecret) is taken as the user's own.

The evidence, per server (each a reason the server refuses an anonymous request):
- kubetrader API: its own Settings, built from the container's env, in `production` with reads not
  public (every data route then needs a session, an OIDC token or the machine token;
  kubetrader_dashboard.api.deps). `/healthz` and `/metrics` stay open by design (they say nothing of
  the data: kubetrader_dashboard.api.metrics).
- MLflow: `kubetrader mlflow serve`, whose exec line is `mlflow server --app-name basic-auth`
  (kubetrader.tracking.auth_server.server_command, called here with the container's env) with an
  admin password; every route but /health answers 401 without a user (tests/tracking/test_mlflow_auth.py).
- Redis: `redis-server --requirepass <non-empty>`.
- PostgreSQL (the official image): POSTGRES_PASSWORD set and POSTGRES_HOST_AUTH_METHOD not `trust`.
  The image's docker-entrypoint.sh then writes `host all all all <method>` to pg_hba.conf, the
  method defaulting to password_encryption (scram-sha-256 since PostgreSQL 14); docs:
  github.com/docker-library/docs/blob/master/postgres/content.md, "POSTGRES_HOST_AUTH_METHOD".
- oauth2-proxy in front (auth.oidc): the proxy with an `--upstream`, and no skip-auth flag.
- The dashboard (Streamlit): it holds no credential of its own (no Secret in env or volumes) and its
  one back end is a Service that passes by its own server's authentication; every call carries the
  signed-in user's credential (kubetrader_dashboard/ui/signin.py), so an anonymous visitor gets
  the sign-in form and nothing else.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.fixtures.chart import (
    NAMESPACE,
    PINNED_AUTH_PROXY,
    RELEASE,
    WORKLOAD_KINDS,
    RenderedChart,
    chart_scenarios,
    expand_env,
    parse_manifests,
)
from tests.fixtures.chart import render_chart as _render_templates
from tests.kube.network_policy import (
    ContainerPort,
    External,
    Pod,
    connection_allowed,
    namespace_labels,
    policies_from_manifests,
)
from tests.kube.selectors import matches_label_selector

ELSEWHERE = "elsewhere"
INSTANCE = "app.kubernetes.io/instance"
SKIP_AUTH_FLAGS = ("--skip-auth-regex", "--skip-auth-route")  # oauth2-proxy: paths it serves without a sign-in


@dataclass(frozen=True)
class Target:
    """Where one port of a Service lands: a workload's container port."""

    service: str
    service_port: int
    workload: dict[str, Any]
    container: dict[str, Any]
    port: ContainerPort

    @property
    def where(self) -> str:
        return f"{self.workload['kind']}/{self.workload['metadata']['name']}/{self.container['name']}:{self.port.port}"


def render(values: dict[str, Any]) -> RenderedChart:
    templates = _render_templates(values)
    return RenderedChart("service-auth", values, templates, parse_manifests(templates))


def _pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "Pod":
        return workload
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"])


def _namespace(doc: dict[str, Any]) -> str:
    return str(doc["metadata"].get("namespace") or NAMESPACE)


def targets(rendered: RenderedChart, service: dict[str, Any]) -> list[Target]:
    """Every (workload, container port) the Service's ports reach; AssertionError when a port reaches none."""
    name = service["metadata"]["name"]
    selector = service["spec"].get("selector")
    assert selector, f"Service {name} has no selector: what answers it cannot be checked"
    found: list[Target] = []
    for port in service["spec"]["ports"]:
        wanted = port.get("targetPort", port["port"])
        protocol = port.get("protocol", "TCP")
        hits = []
        for workload in rendered.of_kind(*WORKLOAD_KINDS):
            template = _pod_template(workload)
            labels = template.get("metadata", {}).get("labels", {})
            if _namespace(workload) != _namespace(service):
                continue
            if not matches_label_selector(labels, {"matchLabels": selector}):
                continue
            for container in template["spec"]["containers"]:
                for p in container.get("ports", []):
                    if (p.get("protocol") or "TCP") == protocol and wanted in (p.get("name"), p["containerPort"]):
                        cp = ContainerPort(int(p["containerPort"]), protocol, p.get("name"))
                        hits.append(Target(name, int(port["port"]), workload, container, cp))
        assert hits, f"Service {name} port {port['port']} (targetPort {wanted}) reaches no container port"
        found.extend(hits)
    return found


class _Secrets(dict[tuple[str, str], str]):
    """The release's Secrets; one it names but does not render (an existingSecret) is the user's
    own, assumed to hold a value."""

    def __missing__(self, key: tuple[str, str]) -> str:
        return f"brought-by-the-user-{key[0]}-{key[1]}"


def _secrets(rendered: RenderedChart) -> _Secrets:
    return _Secrets(
        {
            (s["metadata"]["name"], key): base64.b64decode(value).decode()
            for s in rendered.of_kind("Secret")
            if _namespace(s) == NAMESPACE
            for key, value in (s.get("data") or {}).items()
        }
    )


def _environment(target: Target, secrets: dict[tuple[str, str], str]) -> dict[str, str]:
    return expand_env(target.container.get("env", []), secrets)


def _argv(target: Target, env: dict[str, str]) -> list[str]:
    """command + args with `$(VAR)` expanded as the kubelet does (unknown references stay as written)."""

    def expand(text: str) -> str:
        return re.sub(
            r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
            lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
            text,
        )

    return [expand(str(a)) for a in [*target.container.get("command", []), *target.container.get("args", [])]]


def _flag(argv: list[str], name: str) -> str | None:
    """The value of `--name value` or `--name=value`, else None."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


def _api_authenticates(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str | None:
    from kubetrader_dashboard.settings import Settings

    with monkeypatch.context() as scoped:
        for name in [n for n in os.environ if n.startswith("KUBETRADER_")]:
            scoped.delenv(name)
        for name, value in env.items():
            scoped.setenv(name, value)
        settings = Settings()
    if settings.environment != "production" or settings.public_read:
        return None
    return "the API (production, reads need a sign-in)"


def _mlflow_authenticates(argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str | None:
    from pathlib import Path

    from kubetrader.tracking.auth_server import server_command

    if argv[:3] != ["kubetrader", "mlflow", "serve"]:
        served = argv[:2] == ["mlflow", "server"] and _flag(argv, "--app-name") == "basic-auth"
        return "MLflow basic-auth" if served and env.get("MLFLOW_AUTH_ADMIN_PASSWORD") else None
    with monkeypatch.context() as scoped:
        for name, value in env.items():
            scoped.setenv(name, value)
        exec_argv, exec_env = server_command(Path("/tmp/basic_auth.ini"), tuple(argv[3:]))
    if _flag(exec_argv, "--app-name") == "basic-auth" and exec_env.get("MLFLOW_AUTH_ADMIN_PASSWORD"):
        return "MLflow basic-auth (kubetrader mlflow serve)"
    return None


def server_authentication(target: Target, rendered: RenderedChart, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """How the server on this port refuses anonymous requests, or None (see the module docstring)."""
    secrets = _secrets(rendered)
    env = _environment(target, secrets)
    argv = _argv(target, env)
    image = str(target.container["image"])
    if argv[:1] == ["redis-server"]:
        return "Redis requirepass" if _flag(argv, "--requirepass") else None
    if re.fullmatch(r"(docker\.io/)?(library/)?postgres[:@].*", image) and not argv:
        if env.get("POSTGRES_PASSWORD") and env.get("POSTGRES_HOST_AUTH_METHOD", "") != "trust":
            return "PostgreSQL password (scram-sha-256)"
        return None
    if "kubetrader_dashboard.api" in argv:
        return _api_authenticates(env, monkeypatch)
    if argv[:2] in (["kubetrader", "mlflow"], ["mlflow", "server"]):
        return _mlflow_authenticates(argv, env, monkeypatch)
    if "oauth2-proxy" in image:
        if _flag(argv, "--upstream") and not any(a.split("=")[0] in SKIP_AUTH_FLAGS for a in argv):
            return "oauth2-proxy"
        return None
    if argv[:2] == ["streamlit", "run"] and argv[2].endswith("kubetrader_dashboard/ui/app.py"):
        return _dashboard_delegates(target, env, rendered, monkeypatch)
    return None


def _holds_secrets(target: Target) -> bool:
    pod = _pod_template(target.workload)["spec"]
    secret_volumes = {v["name"] for v in pod.get("volumes", []) if "secret" in v or "projected" in v}
    mounted = {m["name"] for m in target.container.get("volumeMounts", [])} & secret_volumes
    from_secrets = [e for e in target.container.get("env", []) if "valueFrom" in e] + target.container.get(
        "envFrom", []
    )
    return bool(mounted or from_secrets)


def _dashboard_delegates(
    target: Target, env: dict[str, str], rendered: RenderedChart, monkeypatch: pytest.MonkeyPatch
) -> str | None:
    """The dashboard passes when it holds no credential and its back end's server authenticates."""
    if _holds_secrets(target):
        return None
    host = urlsplit(env.get("FASTAPI_BACKEND_URL", "")).hostname or ""
    backend = host.split(".")[0]
    services = [s for s in rendered.of_kind("Service") if s["metadata"]["name"] == backend]
    if not services:
        return None
    behind = [server_authentication(t, rendered, monkeypatch) for t in targets(rendered, services[0])]
    if behind and all(behind):
        return f"signs users in through {backend} ({behind[0]}), holding no credential"
    return None


def outsiders(target: Target) -> Iterator[Pod | External]:
    """Who must not reach an unauthenticated port: nobody outside the release."""
    labels = _pod_template(target.workload).get("metadata", {}).get("labels", {})
    yield External("203.0.113.7")  # a client outside the cluster (a NodePort, a LoadBalancer)
    yield Pod("stranger", NAMESPACE, {})  # any pod of the release's namespace that is not the release's
    yield Pod("stranger", ELSEWHERE, {})
    yield Pod("impostor", ELSEWHERE, dict(labels))  # the target's own labels, in another namespace
    yield Pod("other-release", NAMESPACE, {**labels, INSTANCE: f"not-{RELEASE}"})


def unauthenticated_services(rendered: RenderedChart, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Service name -> why it is reachable without authentication (empty: every Service is safe)."""
    policies = policies_from_manifests(rendered.documents, NAMESPACE)
    namespaces = namespace_labels([NAMESPACE, ELSEWHERE])
    failures: dict[str, list[str]] = {}
    for service in rendered.of_kind("Service"):
        for target in targets(rendered, service):
            if server_authentication(target, rendered, monkeypatch):
                continue
            labels = _pod_template(target.workload).get("metadata", {}).get("labels", {})
            pod = Pod(target.where, _namespace(target.workload), labels, (target.port,))
            reached_by = [
                o.key
                for o in outsiders(target)
                if connection_allowed(policies, namespaces, o, pod, target.port.port, target.port.protocol)
            ]
            if reached_by:
                failures.setdefault(service["metadata"]["name"], []).append(
                    f"port {target.service_port} -> {target.where}: no authentication, reachable from {reached_by}"
                )
    return failures


def test_no_service_of_the_default_render_is_reachable_without_authentication(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rendered = render({})
    assert len(rendered.of_kind("Service")) >= 8  # api, dashboard, mlflow, metrics, postgresql x2, redis x2
    failures = unauthenticated_services(rendered, monkeypatch)
    assert failures == {}, "\n".join(f"{name}: {'; '.join(why)}" for name, why in failures.items())


@pytest.mark.parametrize("scenario", chart_scenarios())
def test_no_service_of_any_ci_scenario_is_reachable_without_authentication(
    scenario: str, rendered_chart_scenarios: dict[str, RenderedChart], monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = unauthenticated_services(rendered_chart_scenarios[scenario], monkeypatch)
    assert failures == {}, "\n".join(f"{name}: {'; '.join(why)}" for name, why in failures.items())


def test_every_default_service_is_accounted_for_by_its_server_or_its_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """What lets each default Service pass, so a change that flips one (a server losing its
    authentication behind a policy that still saves it) shows up here."""
    rendered = render({})
    how = {
        service["metadata"]["name"]: sorted(
            {server_authentication(t, rendered, monkeypatch) or "network policy" for t in targets(rendered, service)}
        )
        for service in rendered.of_kind("Service")
    }
    assert how == {
        "kubetrader-api": ["the API (production, reads need a sign-in)"],
        "kubetrader-dashboard": [
            "signs users in through kubetrader-api (the API (production, reads need a sign-in)), holding no credential"
        ],
        "kubetrader-mlflow": ["MLflow basic-auth (kubetrader mlflow serve)"],
        "kubetrader-operator-metrics": ["network policy"],
        "kubetrader-postgresql": ["PostgreSQL password (scram-sha-256)"],
        "kubetrader-postgresql-headless": ["PostgreSQL password (scram-sha-256)"],
        "kubetrader-redis": ["Redis requirepass"],
        "kubetrader-redis-headless": ["Redis requirepass"],
    }


OIDC: dict[str, Any] = {
    "auth": {
        "oidc": {"enabled": True, "issuerUrl": "https://issuer.example.com", "clientId": "kubetrader"},
    },
    "authProxy": {"redirectUrl": "https://kubetrader.example.com/oauth2/callback", "image": PINNED_AUTH_PROXY},
}


def test_with_oidc_the_proxy_in_front_passes_too(monkeypatch: pytest.MonkeyPatch) -> None:
    oidc = {**OIDC, "auth": {**OIDC["auth"], "oidc": {**OIDC["auth"]["oidc"], "existingSecret": "oidc"}}}
    rendered = render(oidc)
    proxies = [s for s in rendered.of_kind("Service") if "auth-proxy" in s["metadata"]["name"]]
    assert proxies, "auth.oidc renders the oauth2-proxy Service"
    assert {server_authentication(t, rendered, monkeypatch) for t in targets(rendered, proxies[0])} == {"oauth2-proxy"}
    assert unauthenticated_services(rendered, monkeypatch) == {}


# Each removes one authentication setting (and what else would still hide the server): the check
# must name the Service that became reachable without authentication.
WEAKENED: dict[str, tuple[dict[str, Any], set[str]]] = {
    "public reads on the NodePort API": ({"api": {"publicRead": True}}, {"kubetrader-api", "kubetrader-dashboard"}),
    "MLflow without its auth app, as a NodePort": (
        {"auth": {"mlflow": {"enabled": False}}, "mlflow": {"service": {"type": "NodePort"}}},
        {"kubetrader-mlflow"},
    ),
    "Redis without requirepass, no policies": (
        {"auth": {"redis": {"enabled": False}}, "networkPolicy": {"enabled": False}},
        {"kubetrader-redis", "kubetrader-redis-headless", "kubetrader-operator-metrics"},
    ),
    "no NetworkPolicies: the operator's metrics port open": (
        {"networkPolicy": {"enabled": False}},
        {"kubetrader-operator-metrics"},
    ),
}


@pytest.mark.parametrize("case", sorted(WEAKENED))
def test_removing_an_authentication_setting_fails_the_check_naming_the_service(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    values, expected = WEAKENED[case]
    failures = unauthenticated_services(render(values), monkeypatch)
    assert set(failures) == expected, failures


def test_a_dashboard_holding_the_platform_token_fails_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """#21 finding 1 as it was: the Streamlit pod had KUBETRADER_API_TOKEN and added it to every API
    call, so whoever reached its NodePort acted as the platform. No value brings that back; the
    render is edited as that old template wrote it."""
    rendered = render({})
    dashboard = rendered.get("Deployment", "kubetrader-dashboard")
    (container,) = dashboard["spec"]["template"]["spec"]["containers"]
    token = {"secretKeyRef": {"name": "kubetrader-api-token", "key": "token"}}
    container["env"].append({"name": "KUBETRADER_API_TOKEN", "valueFrom": token})
    failures = unauthenticated_services(rendered, monkeypatch)
    assert set(failures) == {"kubetrader-dashboard"}, failures
