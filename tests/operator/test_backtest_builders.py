"""Pure builders of a Backtest's children, compared as dicts and checked against Kubernetes' schemas."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from kubetrader.specs import BacktestSpec, parse_resource
from kubetrader_operator.backtest.builders import build_config_map, build_job, job_options
from kubetrader_operator.labels import backtest_child_name
from kubetrader_operator.settings import OperatorSettings
from tests.helpers import EXAMPLES

DOC = yaml.safe_load((EXAMPLES / "backtest-sma.yaml").read_text())
SPEC = parse_resource(DOC).spec
assert isinstance(SPEC, BacktestSpec)
SETTINGS = OperatorSettings(image="engine:test", data_pvc="kubetrader-data", mlflow_tracking_uri="http://mlflow:5000")


def _job(annotations: dict[str, str] | None = None) -> dict:
    return build_job("sma-orcl", "research", SPEC, job_options(SETTINGS, annotations or {}))


def test_config_map_holds_the_validated_spec_as_a_backtest_file_the_engine_reads() -> None:
    config_map = build_config_map("sma-orcl", "research", SPEC)
    kubernetes_validate.validate(config_map, "1.37", strict=True)
    document = yaml.safe_load(config_map["data"]["backtest.yaml"])
    assert document["kind"] == "Backtest"
    assert parse_resource(document).spec == SPEC


def test_job_runs_the_engine_with_a_summary_in_the_termination_log() -> None:
    job = _job()
    kubernetes_validate.validate(job, "1.37", strict=True)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["kubetrader"]
    assert container["args"] == [
        "run",
        "-f",
        "/etc/kubetrader/backtest.yaml",
        "--output",
        "/data/results",
        "--summary-file",
        "/dev/termination-log",
    ]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow:5000"} in container["env"]
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "kubetrader-data"}
    assert volumes["spec"]["configMap"] == {"name": backtest_child_name("sma-orcl")}


def test_job_is_restricted_and_writes_only_to_its_volumes() -> None:
    pod = _job()["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/etc/kubetrader", "/data", "/tmp"}


def test_exit_code_2_fails_the_job_without_retry_and_other_failures_count_toward_backoff() -> None:
    spec = _job()["spec"]
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    fail_job = spec["podFailurePolicy"]["rules"][0]
    on_exit = {"containerName": "engine", "operator": "In", "values": [2]}
    assert fail_job == {"action": "FailJob", "onExitCodes": on_exit}
    assert spec["backoffLimit"] == SETTINGS.backoff_limit


def test_annotations_override_deadline_retries_and_resources() -> None:
    overrides = {"active-deadline-seconds": "60", "backoff-limit": "0", "cpu": "4"}
    job = _job({f"kubetrader.io/{key}": value for key, value in overrides.items()})
    assert job["spec"]["activeDeadlineSeconds"] == 60
    assert job["spec"]["backoffLimit"] == 0
    resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"] == "4"


def test_malformed_override_names_the_annotation() -> None:
    with pytest.raises(ValueError, match=r"kubetrader\.io/backoff-limit"):
        _job({"kubetrader.io/backoff-limit": "many"})


def test_child_names_are_deterministic_and_short_enough_for_pod_labels() -> None:
    long_name = "a" * 63
    assert backtest_child_name("sma-orcl") == "bt-sma-orcl"
    assert backtest_child_name(long_name) == backtest_child_name(long_name)
    assert len(backtest_child_name(long_name)) <= 52


def _args(settings: OperatorSettings, namespace: str = "research") -> list[str]:
    job = build_job("sma-orcl", namespace, SPEC, job_options(settings, {}))
    kubernetes_validate.validate(job, "1.37", strict=True)
    return list(job["spec"]["template"]["spec"]["containers"][0]["args"])


def test_a_job_leaves_its_mlflow_run_to_the_sync_exactly_where_the_chart_runs_one_on_its_data_pvc() -> None:
    synced = SETTINGS.model_copy(update={"tracking_sync_namespaces": ["research"]})
    assert _args(synced)[-2:] == ["--tracking-mode", "later"]
    assert _args(synced).count("--tracking-mode") == 1
    # no sync there (another watched namespace), none at all, or no data PVC (an emptyDir goes with the pod)
    assert "--tracking-mode" not in _args(synced, namespace="trading")
    assert "--tracking-mode" not in _args(SETTINGS)
    assert "--tracking-mode" not in _args(synced.model_copy(update={"data_pvc": None}))


def test_a_study_driver_never_defers_its_tracking() -> None:
    """The driver logs the study at its end in one piece, nesting the confirmed best run under it
    by that run's id: a best run left for later would have no id to nest."""
    from kubetrader.specs import OptimizationStudySpec
    from kubetrader_operator.study.builders import build_job as build_study_job

    study = parse_resource(yaml.safe_load((EXAMPLES / "study-sma.yaml").read_text())).spec
    assert isinstance(study, OptimizationStudySpec)
    synced = SETTINGS.model_copy(update={"tracking_sync_namespaces": ["research"]})
    job = build_study_job("sma-study", "research", study, job_options(synced, {}), redis_url="redis://r:6379/0")
    assert "--tracking-mode" not in job["spec"]["template"]["spec"]["containers"][0]["args"]


def test_the_sync_namespaces_parse_from_the_operator_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETRADER_OPERATOR_TRACKING_SYNC_NAMESPACES", '["kubetrader"]')
    assert OperatorSettings().tracking_sync_namespaces == ["kubetrader"]
