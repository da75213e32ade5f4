"""The chart's parts of #21 items 9 and the low findings: MLflow behind its basic-auth app with
every client signing in from a Secret, no credentials in external URLs, the cmaes signing key
and the override ceilings reaching the operator."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from tests.fixtures.chart import NAMESPACE, RenderedChart, expand_env, parse_manifests, render_chart


def _render(values: dict[str, Any]) -> RenderedChart:
    templates = render_chart(values)
    return RenderedChart("mlflow-auth", values, templates, parse_manifests(templates))


def _containers(rendered: RenderedChart) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{where}/{c['name']}", c) for where, pod in rendered.pod_specs() for c in pod["containers"]]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _secrets(rendered: RenderedChart) -> dict[tuple[str, str], str]:
    import base64

    return {
        (s["metadata"]["name"], key): base64.b64decode(value).decode()
        for s in rendered.of_kind("Secret")
        if s["metadata"].get("namespace", NAMESPACE) == NAMESPACE
        for key, value in s["data"].items()
    }


def test_the_bundled_mlflow_runs_its_basic_auth_app_and_is_no_node_port() -> None:
    rendered = _render({})
    server = next(c for where, c in _containers(rendered) if where.endswith("/mlflow"))
    assert server["command"] == ["kubetrader"] and server["args"][:2] == ["mlflow", "serve"]
    env = expand_env(server["env"], _secrets(rendered))
    password = _secrets(rendered)[("kubetrader-mlflow-auth", "password")]
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == "kubetrader" and env["MLFLOW_AUTH_ADMIN_PASSWORD"] == password
    assert len(env["MLFLOW_FLASK_SERVER_SECRET_KEY"]) == 48
    assert env["MLFLOW_AUTH_DATABASE_URI"] == env["MLFLOW_BACKEND_STORE_URI"]
    assert "$(" not in env["MLFLOW_AUTH_DATABASE_URI"]
    service = rendered.get("Service", "kubetrader-mlflow")
    assert service["spec"]["type"] == "ClusterIP" and "nodePort" not in str(service["spec"]["ports"])
    assert password not in "\n".join(rendered.templates.values())  # only base64 in its Secret


def test_every_mlflow_client_signs_in_from_the_secret() -> None:
    rendered = _render({})
    clients = [(where, c) for where, c in _containers(rendered) if "MLFLOW_TRACKING_URI" in _env(c)]
    assert {where.rsplit("/", 1)[0] for where, _ in clients} >= {
        "Deployment/kubetrader-worker",
        "Deployment/kubetrader-api",
    }
    for where, container in clients:
        env = _env(container)
        assert env["MLFLOW_TRACKING_USERNAME"] == {"name": "MLFLOW_TRACKING_USERNAME", "value": "kubetrader"}, where
        ref = env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "kubetrader-mlflow-auth", "key": "password"}, where
    operator = _env(next(c for where, c in _containers(rendered) if "operator" in where))
    assert operator["KUBETRADER_OPERATOR_MLFLOW_AUTH_SECRET"]["value"] == "kubetrader-mlflow-auth"
    assert operator["KUBETRADER_OPERATOR_MLFLOW_USERNAME"]["value"] == "kubetrader"
    assert "MLFLOW_TRACKING_PASSWORD" not in operator  # the operator itself never holds it


def test_the_secrets_operator_jobs_read_exist_in_every_watched_namespace() -> None:
    rendered = _render({"operator": {"watchNamespaces": ["research"]}})
    where = {(s["metadata"]["name"], s["metadata"].get("namespace")) for s in rendered.of_kind("Secret")}
    for name in ("kubetrader-mlflow-auth", "kubetrader-study-signing"):
        assert {(name, NAMESPACE), (name, "research")} <= where
    operator = _env(next(c for w, c in _containers(rendered) if "operator" in w))
    assert operator["KUBETRADER_OPERATOR_STUDY_SIGNING_SECRET"]["value"] == "kubetrader-study-signing"
    assert operator["KUBETRADER_OPERATOR_MAX_MEMORY"]["value"] == "16Gi"
    assert operator["KUBETRADER_OPERATOR_MAX_BACKOFF_LIMIT"]["value"] == "10"


@pytest.mark.parametrize(
    "values",
    [
        {"mlflow": {"enabled": False, "external": {"trackingUri": "https://user:pw@mlflow.example"}}},
        {"mlflow": {"enabled": False, "external": {"trackingUri": "https://mlflow.example/?token=t0k"}}},
        {
            "redis": {"enabled": False, "external": {"url": "redis://:pw@redis.infra:6379/0"}},
            "auth": {"redis": {"enabled": False}},
        },
        {"redis": {"enabled": False, "external": {"url": "rediss://redis.infra:6380/0?password=pw"}}},
    ],
)
def test_credentials_in_external_urls_are_refused(values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmRenderError, match="holds credentials"):
        render_chart(values)


def test_an_external_mlflow_gets_the_user_of_its_secret() -> None:
    values = {
        "mlflow": {"enabled": False, "external": {"trackingUri": "https://mlflow.example"}},
        "auth": {"mlflow": {"existingSecret": "mlflow-user", "usernameKey": "user"}},
    }
    rendered = _render(values)
    api = _env(next(c for w, c in _containers(rendered) if w == "Deployment/kubetrader-api/api"))
    assert api["MLFLOW_TRACKING_USERNAME"]["valueFrom"]["secretKeyRef"] == {"name": "mlflow-user", "key": "user"}
    assert api["MLFLOW_TRACKING_URI"]["value"] == "https://mlflow.example"
