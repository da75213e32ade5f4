"""The chart's MLflow sync loop (templates/mlflow-sync.yaml) and the operator's `--tracking-mode
later`, which go together: the Jobs leave their runs for later only where the loop runs on their
data volume, and the loop logs with the Jobs' own MLflow URI and credentials, restricted and
without API access. Rendered with the real Helm engine, checked against Kubernetes' schemas."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from kubetrader.cli.mlflow_cmd import sync as sync_command
from kubetrader.specs import BacktestSpec, parse_resource
from kubetrader_operator.backtest.builders import build_job, job_options
from kubetrader_operator.jobs import DATA_DIR, RESULTS_DIR, security_context
from kubetrader_operator.settings import OperatorSettings
from tests.fixtures.chart import NAMESPACE, RenderedChart, expand_env, parse_manifests, render_chart
from tests.helpers import EXAMPLES

KUBERNETES_VERSION = kubernetes_validate.latest_version()
SYNC = "kubetrader-mlflow-sync"


class _AnySecret(dict[tuple[str, str], str]):
    """Every (Secret, key) holds a value naming itself: an expanded env shows where each came from."""

    def __missing__(self, ref: tuple[str, str]) -> str:
        return f"<{ref[0]}.{ref[1]}>"


def _render(values: dict[str, Any]) -> RenderedChart:
    templates = render_chart(values)
    return RenderedChart("sync", values, templates, parse_manifests(templates))


def _sync(rendered: RenderedChart) -> list[dict[str, Any]]:
    return [d for d in rendered.of_kind("Deployment") if d["metadata"]["name"] == SYNC]


def _operator_settings(rendered: RenderedChart, monkeypatch: pytest.MonkeyPatch) -> OperatorSettings:
    """The operator's settings exactly as the chart's env makes them in its pod."""
    operator = rendered.get("Deployment", "kubetrader-operator")["spec"]["template"]["spec"]["containers"][0]
    monkeypatch.delenv("KUBETRADER_OPERATOR_TRACKING_SYNC_NAMESPACES", raising=False)
    for name, value in expand_env(operator["env"], _AnySecret()).items():
        monkeypatch.setenv(name, value)
    return OperatorSettings()


def _backtest_job(settings: OperatorSettings, namespace: str = NAMESPACE) -> dict[str, Any]:
    spec = parse_resource(yaml.safe_load((EXAMPLES / "backtest-sma.yaml").read_text())).spec
    assert isinstance(spec, BacktestSpec)
    return build_job("sma-orcl", namespace, spec, job_options(settings, {}))


def _mlflow_env(container: dict[str, Any]) -> dict[str, str]:
    """MLflow's client variables as the kubelet makes them (Secrets by name and key)."""
    env = expand_env(container["env"], _AnySecret())
    return {k: v for k, v in env.items() if k.startswith("MLFLOW_TRACKING_")}


def test_by_default_the_loop_runs_on_the_jobs_volume_and_the_jobs_leave_their_runs_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rendered = _render({})
    [deployment] = _sync(rendered)
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    settings = _operator_settings(rendered, monkeypatch)
    assert settings.tracking_sync_namespaces == [NAMESPACE]
    job = _backtest_job(settings)
    job_pod = job["spec"]["template"]["spec"]
    job_container = job_pod["containers"][0]
    assert job_container["args"][-2:] == ["--tracking-mode", "later"]
    assert (
        "--tracking-mode"
        not in _backtest_job(settings, namespace="elsewhere")["spec"]["template"]["spec"]["containers"][0]["args"]
    )  # another namespace: its own PVC, no sync reads it

    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    # the same volume, at the same place, read where the Jobs write
    claim = {v["name"]: v for v in pod["volumes"]}["data"]["persistentVolumeClaim"]["claimName"]
    assert claim == settings.data_pvc == "kubetrader-data"
    assert {"name": "data", "mountPath": DATA_DIR} in container["volumeMounts"]
    assert f"--results={RESULTS_DIR}" in container["args"]
    assert any(m["name"] == "data" and m["mountPath"] == DATA_DIR for m in job_container["volumeMounts"])
    # the Jobs' MLflow: URI and credentials from the same Secret and keys
    assert _mlflow_env(container) == _mlflow_env(job_container)
    assert _mlflow_env(container)["MLFLOW_TRACKING_URI"] == "http://kubetrader-mlflow.kubetrader.svc:5000"
    assert _mlflow_env(container)["MLFLOW_TRACKING_PASSWORD"] == "<kubetrader-mlflow-auth.password>"


def test_the_loop_is_restricted_non_root_read_only_and_has_no_api_token() -> None:
    [deployment] = _sync(_render({}))
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}  # never two pods attaching the volume
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "kubetrader-engine"  # bound to no Role
    # exactly the Jobs' restrictions (kubetrader_operator.jobs.security_context): uid 10001, non-root,
    # read-only root, no capabilities, seccomp RuntimeDefault
    job_pod, job_container = security_context(job_options(OperatorSettings(), {}))
    assert job_pod["runAsUser"] == 10001 and job_container["readOnlyRootFilesystem"] is True
    assert {k: v for k, v in pod["securityContext"].items() if k != "fsGroupChangePolicy"} == job_pod
    [container] = pod["containers"]
    assert container["securityContext"] == job_container
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]  # MLflow's staging of artifacts and the heartbeat
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert "/tmp/mlflow-sync.alive" in " ".join(container["livenessProbe"]["exec"]["command"])


def test_the_loop_runs_the_cli_it_names_with_the_cluster_mlflow_pinned() -> None:
    """The args parse with the engine's own `kubetrader mlflow sync` (a renamed option fails here),
    and --tracking-uri is the Jobs' URI, so no marker on the shared volume picks the destination."""
    rendered = _render({"mlflow": {"sync": {"intervalSeconds": 2.5}}})
    [deployment] = _sync(rendered)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["kubetrader"] and container["args"][:2] == ["mlflow", "sync"]
    env = expand_env(container["env"], _AnySecret())
    args = [arg.replace("$(MLFLOW_TRACKING_URI)", env["MLFLOW_TRACKING_URI"]) for arg in container["args"][2:]]
    params = sync_command.make_context("sync", args).params
    assert params["interval"] == 2.5
    assert params["tracking_uri"] == env["MLFLOW_TRACKING_URI"]
    assert str(params["results_dir"]) == RESULTS_DIR
    assert params["studies"] is False  # a study's marker needs PostgreSQL's password, which this pod has not
    assert str(params["heartbeat"]) == "/tmp/mlflow-sync.alive"


@pytest.mark.parametrize(
    "values",
    [
        {"mlflow": {"sync": {"enabled": False}}},
        {"mlflow": {"enabled": False}},  # and no external trackingUri: no MLflow at all
    ],
    ids=["sync-off", "no-mlflow"],
)
def test_without_the_loop_the_jobs_log_before_they_exit(
    values: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = _render(values)
    assert _sync(rendered) == []
    assert not [p for p in rendered.of_kind("NetworkPolicy") if p["metadata"]["name"] == SYNC]
    settings = _operator_settings(rendered, monkeypatch)
    assert settings.tracking_sync_namespaces == []
    args = _backtest_job(settings)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--tracking-mode" not in args  # the engine's default in a pod: wait


def test_the_loop_reaches_only_the_bundled_mlflow_and_the_external_one_wherever_it_is() -> None:
    bundled = _render({})
    policy = bundled.get("NetworkPolicy", SYNC)
    assert policy["spec"]["ingress"] == [] and policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert [rule["ports"] for rule in policy["spec"]["egress"]] == [
        [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        [{"protocol": "TCP", "port": 5000}],
    ]
    mlflow_from = bundled.get("NetworkPolicy", "kubetrader-mlflow")["spec"]["ingress"][0]["from"]
    assert any(
        peer["podSelector"]["matchLabels"].get("app.kubernetes.io/component") == "mlflow-sync" for peer in mlflow_from
    )

    external = _render({"mlflow": {"enabled": False, "external": {"trackingUri": "https://mlflow.example.com"}}})
    [deployment] = _sync(external)
    env = expand_env(deployment["spec"]["template"]["spec"]["containers"][0]["env"], _AnySecret())
    assert env["MLFLOW_TRACKING_URI"] == "https://mlflow.example.com"
    assert external.get("NetworkPolicy", SYNC)["spec"]["policyTypes"] == ["Ingress"]  # egress open


def test_the_values_schema_refuses_a_misspelt_sync_key() -> None:
    import helm_python

    with pytest.raises(helm_python.HelmValuesError, match="intervalSecond"):
        render_chart({"mlflow": {"sync": {"intervalSecond": 5}}})
    with pytest.raises(helm_python.HelmValuesError):
        render_chart({"mlflow": {"sync": {"intervalSeconds": 0}}})
