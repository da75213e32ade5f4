"""The chart signs people in: the dashboard's pod holds no credential, the API gets the built-in
login (users Secret, generated session key) and reads that need signing in, by default."""

from __future__ import annotations

from typing import Any

from tests.fixtures.chart import RenderedChart


def _container(rendered: RenderedChart, name: str) -> dict[str, Any]:
    container: dict[str, Any] = rendered.get("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_the_dashboard_pod_holds_no_token_or_secret(rendered_chart_scenarios: dict[str, RenderedChart]) -> None:
    for scenario, rendered in rendered_chart_scenarios.items():
        ui = rendered.get("Deployment", "kubetrader-dashboard")["spec"]["template"]["spec"]
        env = _env(ui["containers"][0])
        assert "KUBETRADER_API_TOKEN" not in env, scenario
        assert not [name for name, value in env.items() if isinstance(value, dict)], f"{scenario}: secret refs"
        assert not [v for v in ui.get("volumes", []) if "secret" in v], scenario


def test_the_api_needs_sign_in_for_reads_and_has_the_built_in_login(
    rendered_chart_scenarios: dict[str, RenderedChart],
) -> None:
    rendered = rendered_chart_scenarios["default"]
    api = _container(rendered, "kubetrader-api")
    env = _env(api)
    assert env["KUBETRADER_PUBLIC_READ"] == "false"
    assert env["KUBETRADER_USERS_FILE"] == "/etc/kubetrader/users/users.yaml"
    assert env["KUBETRADER_SESSION_SECRET"] == {
        "secretKeyRef": {"name": "kubetrader-dashboard-session", "key": "secret"}
    }
    assert api["readinessProbe"]["httpGet"]["path"] == "/api/v1/healthz", "the probe needs no sign-in"
    pod = rendered.get("Deployment", "kubetrader-api")["spec"]["template"]["spec"]
    (users,) = [v for v in pod["volumes"] if v["name"] == "users"]
    assert users["secret"] == {"secretName": "kubetrader-dashboard-users", "optional": True}
    session = rendered.get("Secret", "kubetrader-dashboard-session")
    assert len(session["data"]["secret"]) >= 48 and session["metadata"]["annotations"]["helm.sh/resource-policy"]
    assert not rendered.of_kind("Deployment") or all(
        d["metadata"]["name"] != "kubetrader-auth-proxy" for d in rendered.of_kind("Deployment")
    ), "oauth2-proxy only with auth.oidc.enabled"
