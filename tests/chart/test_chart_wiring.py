"""The chart agrees with the rest of the repository: images.env, kind-config.yaml's port
mappings, the operator's settings, the engine's and the dashboard's environment variables."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.fixtures.chart import ROOT, RenderedChart, chart_scenarios, expand_env

SCENARIOS = chart_scenarios()
BUNDLED_THIRD_PARTY = ("redis:", "postgres:")


def images_env() -> dict[str, str]:
    """images/images.env with make's $(VAR) references expanded."""
    raw: dict[str, str] = {}
    for line in (ROOT / "images" / "images.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            raw[key.strip()] = value.strip()

    def expand(value: str) -> str:
        return re.sub(r"\$\((\w+)\)", lambda m: expand(raw[m.group(1)]), value)

    return {key: expand(value) for key, value in raw.items()}


def _containers(rendered: RenderedChart) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{where}/{c['name']}", c)
        for where, pod in rendered.pod_specs()
        for c in [*pod.get("initContainers", []), *pod["containers"]]
    ]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


class _AnySecret(dict[tuple[str, str], str]):
    """Every (Secret, key) holds a value naming itself, so an expanded URL shows where its password came from."""

    def __missing__(self, ref: tuple[str, str]) -> str:
        return f"{ref[0]}.{ref[1]}"


def _expanded(container: dict[str, Any]) -> dict[str, str]:
    return expand_env(container.get("env", []), _AnySecret())


def test_chart_default_images_equal_images_env(rendered_chart_scenarios: dict[str, RenderedChart]) -> None:
    env = images_env()
    expected = {
        "engine": env["ENGINE_IMAGE"],
        "operator": env["OPERATOR_IMAGE"],
        "dashboard": env["DASHBOARD_IMAGE"],
    }
    assert expected["engine"] == "ghcr.io/kubetrader/engine:0.1.0"  # the expansion itself works
    rendered = rendered_chart_scenarios["default"]
    used = {c["image"] for _, c in _containers(rendered)}
    ours = {image for image in used if not image.startswith(BUNDLED_THIRD_PARTY)}
    assert ours == set(expected.values())
    images_by_component = {
        "operator": rendered.get("Deployment", "kubetrader-operator"),
        "engine": rendered.get("Deployment", "kubetrader-worker"),
        "dashboard": rendered.get("Deployment", "kubetrader-api"),
    }
    for component, doc in images_by_component.items():
        assert doc["spec"]["template"]["spec"]["containers"][0]["image"] == expected[component]
    operator = rendered.get("Deployment", "kubetrader-operator")["spec"]["template"]["spec"]["containers"][0]
    assert _env(operator)["KUBETRADER_OPERATOR_IMAGE"] == expected["engine"]


def test_chart_app_version_is_the_image_tag() -> None:
    chart = yaml.safe_load((ROOT / "charts" / "kubetrader" / "Chart.yaml").read_text())
    assert chart["appVersion"] == images_env()["IMAGE_TAG"]


def test_node_ports_match_kind_port_mappings(rendered_chart_scenarios: dict[str, RenderedChart]) -> None:
    kind = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    (control_plane,) = [n for n in kind["nodes"] if n["role"] == "control-plane"]
    mapped = {m["containerPort"]: m["hostPort"] for m in control_plane["extraPortMappings"]}
    assert len([n for n in kind["nodes"] if n["role"] == "worker"]) == 2
    node_ports = {
        svc["metadata"]["name"]: port["nodePort"]
        for svc in rendered_chart_scenarios["default"].of_kind("Service")
        if svc["spec"].get("type") == "NodePort"
        for port in svc["spec"]["ports"]
    }
    assert set(node_ports) == {"kubetrader-dashboard", "kubetrader-api", "kubetrader-mlflow"}
    assert set(node_ports.values()) == set(mapped)
    assert all(mapped[p] == p for p in node_ports.values()), "host ports equal the NodePorts (NOTES.txt URLs)"


def test_kind_node_image_is_pinned_to_a_release_with_network_policy_support() -> None:
    kind = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    for node in kind["nodes"]:
        match = re.fullmatch(r"kindest/node:v1\.(\d+)\.\d+@sha256:[0-9a-f]{64}", node["image"])
        assert match and int(match.group(1)) >= 31, node["image"]  # kind >= 0.24 node images: v1.31+


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_operator_environment_names_are_fields_of_its_settings(
    scenario: str, rendered_chart_scenarios: dict[str, RenderedChart]
) -> None:
    from kubetrader_operator.live.settings import LiveSettings
    from kubetrader_operator.scaling.handlers import ScalerSettings
    from kubetrader_operator.settings import OperatorSettings
    from kubetrader_operator.study.settings import StudySettings

    known = {f"KUBETRADER_OPERATOR_{name.upper()}" for name in OperatorSettings.model_fields}
    known |= {f"KUBETRADER_SCALER_{name.upper()}" for name in ScalerSettings.model_fields}
    known |= {f"KUBETRADER_OPERATOR_{name.upper()}" for name in StudySettings.model_fields}
    known |= {f"KUBETRADER_OPERATOR_LIVE_{name.upper()}" for name in LiveSettings.model_fields}
    known |= {"HOME", "REDIS_PASSWORD"}  # from the Secret, substituted into KUBETRADER_OPERATOR_REDIS_URL
    rendered = rendered_chart_scenarios[scenario]
    operator = rendered.get("Deployment", "kubetrader-operator")["spec"]["template"]["spec"]["containers"][0]
    env = _env(operator)
    assert set(env) <= known, sorted(set(env) - known)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_operator_settings_parse_from_the_rendered_environment(
    scenario: str, rendered_chart_scenarios: dict[str, RenderedChart], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubetrader_operator.settings import OperatorSettings

    rendered = rendered_chart_scenarios[scenario]
    operator = rendered.get("Deployment", "kubetrader-operator")["spec"]["template"]["spec"]["containers"][0]
    for name, value in _expanded(operator).items():
        monkeypatch.setenv(name, value)
    settings = OperatorSettings()
    engine_sa = "kubetrader-engine"
    assert settings.service_account == engine_sa
    assert settings.run_as_user == 10001
    operator_values = rendered.values.get("operator", {})
    if operator_values.get("watchAllNamespaces"):
        assert settings.namespaces == []  # kopf --all-namespaces
        assert rendered.of_kind("ClusterRole") and not [r for r in rendered.of_kind("Role") if "secrets" in str(r)]
    else:
        assert settings.namespaces == (operator_values.get("watchNamespaces") or ["kubetrader"])
    # The Jobs' ServiceAccount and data PVC exist in every namespace the operator watches.
    service_accounts = rendered.of_kind("ServiceAccount")
    accounts = {(sa["metadata"].get("namespace", "kubetrader"), sa["metadata"]["name"]) for sa in service_accounts}
    assert {(ns, engine_sa) for ns in settings.namespaces} <= accounts
    assert settings.redis_url and settings.redis_url.startswith("redis://")
    data = rendered.values.get("data", {}).get("existingClaim") or "kubetrader-data"
    assert settings.data_pvc == data
    if rendered.values.get("mlflow", {}).get("enabled", True):
        assert settings.mlflow_tracking_uri == "http://kubetrader-mlflow.kubetrader.svc:5000"
        rendered.get("Service", "kubetrader-mlflow")


def test_operator_runs_one_replica_with_recreate_because_kopf_runs_standalone(
    rendered_chart_scenarios: dict[str, RenderedChart],
) -> None:
    from kubetrader_operator.__main__ import kopf_args

    assert "--standalone" in kopf_args()
    operator = rendered_chart_scenarios["default"].get("Deployment", "kubetrader-operator")
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}


def test_external_scenario_points_everything_at_the_external_services(
    rendered_chart_scenarios: dict[str, RenderedChart],
) -> None:
    rendered = rendered_chart_scenarios["external"]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in rendered.documents}
    for bundled in ("kubetrader-redis", "kubetrader-postgresql", "kubetrader-mlflow"):
        assert not [k for k in kinds if k[1] == bundled], bundled
    api = rendered.get("Deployment", "kubetrader-api")["spec"]["template"]["spec"]["containers"][0]
    env = _env(api)
    assert env["KUBETRADER_REDIS_URL"] == "redis://redis-master.infra.svc:6379/2"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.infra.svc:5000"
    assert env["KUBETRADER_MLFLOW_UI_URL"] == "https://mlflow.example.com"
    assert env["POSTGRES_PASSWORD"] == {"secretKeyRef": {"name": "kubetrader-postgres", "key": "password"}}
    assert (
        env["KUBETRADER_OPTUNA_STORAGE"]
        == "postgresql+psycopg2://kubetrader:$(POSTGRES_PASSWORD)@postgres.infra.svc:5432/optuna"
    )
    assert env["KUBETRADER_API_TOKEN"] == {"secretKeyRef": {"name": "kubetrader-api-token", "key": "token"}}
    assert env["KUBETRADER_SESSION_SECRET"] == {
        "secretKeyRef": {"name": "kubetrader-dashboard-session-key", "key": "secret"}
    }
    assert not [d for d in rendered.of_kind("Secret")], "existing Secrets are used, none generated"
    assert not [d for d in rendered.of_kind("PersistentVolumeClaim")], "data.existingClaim is used"


def test_dashboard_settings_accept_the_rendered_api_environment(
    rendered_chart_scenarios: dict[str, RenderedChart], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubetrader_dashboard.settings import Settings

    api = rendered_chart_scenarios["default"].get("Deployment", "kubetrader-api")["spec"]["template"]["spec"]
    env = _expanded(api["containers"][0])
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KUBETRADER_API_TOKEN", "x" * 48)
    settings = Settings()
    assert settings.environment == "production"
    assert str(settings.results_dir) == "/data/results"
    assert settings.redis_url == "redis://:kubetrader-redis.password@kubetrader-redis.kubetrader.svc:6379/0"
    assert settings.namespace == "kubetrader"
    ui = rendered_chart_scenarios["default"].get("Deployment", "kubetrader-dashboard")["spec"]["template"]["spec"]
    assert _env(ui["containers"][0])["FASTAPI_BACKEND_URL"] == "http://kubetrader-api.kubetrader.svc:8000"


def test_streamlit_runs_the_dashboard_app_of_the_installed_package(
    rendered_chart_scenarios: dict[str, RenderedChart],
) -> None:
    ui = rendered_chart_scenarios["default"].get("Deployment", "kubetrader-dashboard")
    container = ui["spec"]["template"]["spec"]["containers"][0]
    app = container["args"][1]
    prefix = "/opt/venv/lib/python3.11/site-packages/"
    assert container["command"] == ["streamlit"] and container["args"][0] == "run"
    assert app.startswith(prefix)
    assert (ROOT / "dashboard" / app.removeprefix(prefix)).is_file()


def test_generated_secrets_are_kept_across_upgrades_with_lookup(
    rendered_chart_scenarios: dict[str, RenderedChart],
) -> None:
    template = (ROOT / "charts" / "kubetrader" / "templates" / "secrets.yaml").read_text()
    helpers = (ROOT / "charts" / "kubetrader" / "templates" / "_helpers.tpl").read_text()
    assert template.count('include "kubetrader.keptRandom"') == 1  # one loop renders every generated Secret
    assert 'lookup "v1" "Secret"' in helpers
    secrets = rendered_chart_scenarios["default"].of_kind("Secret")
    assert {s["metadata"]["name"] for s in secrets} == {
        "kubetrader-postgresql",
        "kubetrader-api-token",
        "kubetrader-redis",
        "kubetrader-dashboard-session",
        "kubetrader-mlflow-auth",
        "kubetrader-mlflow-server",
        "kubetrader-study-signing",
    }
    assert all(s["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for s in secrets)


def test_redis_keeps_every_task(rendered_chart_scenarios: dict[str, RenderedChart]) -> None:
    redis = rendered_chart_scenarios["default"].get("StatefulSet", "kubetrader-redis")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--appendonly"] == "yes"
    assert pairs["--appendfsync"] == "everysec"
    assert pairs["--maxmemory-policy"] == "noeviction"
    assert redis["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "2Gi"


def test_mlflow_schema_is_migrated_by_kubetrader_before_servers_start(
    rendered_chart_scenarios: dict[str, RenderedChart],
) -> None:
    rendered = rendered_chart_scenarios["default"]
    hook = rendered.get("Job", "kubetrader-mlflow-migrate")
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade"
    (migrate,) = hook["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] + migrate["args"][:2] == ["kubetrader", "mlflow", "migrate"]
    server = rendered.get("Deployment", "kubetrader-mlflow")["spec"]["template"]["spec"]
    (init,) = server["initContainers"]
    assert init["args"] == migrate["args"]
    assert _env(init)["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://kubetrader:$(POSTGRES_PASSWORD)@")
