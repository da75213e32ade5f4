"""Pure builders and status of an OptimizationStudy's children, compared as dicts and checked
against Kubernetes' own schemas."""

from __future__ import annotations

import copy
import json
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from kubetrader.errors import SpecError
from kubetrader.optimize.progress import PublishedProgress
from kubetrader.specs import BacktestSpec, OptimizationStudySpec, parse_resource
from kubetrader_operator.backtest.builders import build_job as build_backtest_job
from kubetrader_operator.backtest.builders import job_options
from kubetrader_operator.settings import OperatorSettings
from kubetrader_operator.study.builders import (
    STUDY_LABEL,
    build_config_map,
    build_job,
    parse_study_spec,
    study_child_name,
)
from kubetrader_operator.study.status import accepted_study_status, next_status
from tests.helpers import EXAMPLES

DOC = yaml.safe_load((EXAMPLES / "study-sma.yaml").read_text())
SPEC = parse_study_spec(DOC["spec"])
SETTINGS = OperatorSettings(image="engine:test", data_pvc="kubetrader-data", mlflow_tracking_uri="http://mlflow:5000")
REDIS = "redis://redis:6379/0"
STORAGE = "postgresql://optuna@postgres/optuna"
NOW = "2024-05-01T12:00:00Z"


def _job(**kwargs: Any) -> dict[str, Any]:
    return build_job("sma-orcl-tuning", "research", SPEC, job_options(SETTINGS, {}), redis_url=REDIS, **kwargs)


def _spec(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(DOC["spec"])
    spec.update(changes)
    return spec


def test_config_map_holds_the_validated_study_as_a_file_the_engine_reads() -> None:
    uid = "6f1c0a2b-3d4e-4f50-8a6b-7c8d9e0f1a2b"
    config_map = build_config_map("sma-orcl-tuning", "research", SPEC, uid=uid)
    kubernetes_validate.validate(config_map, "1.37", strict=True)
    document = yaml.safe_load(config_map["data"]["study.yaml"])
    assert document["kind"] == "OptimizationStudy"
    assert parse_resource(document).spec == SPEC
    # the driver keys the study's state by namespace and uid (kubetrader.optimize.naming)
    assert (document["metadata"]["namespace"], document["metadata"]["uid"]) == ("research", uid)
    assert config_map["metadata"]["name"] == "study-sma-orcl-tuning"
    assert config_map["metadata"]["labels"][STUDY_LABEL] == "sma-orcl-tuning"


def test_driver_job_runs_the_study_on_the_work_queue_with_the_operators_settings() -> None:
    job = _job(storage=STORAGE)
    kubernetes_validate.validate(job, "1.37", strict=True)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["kubetrader"]
    assert container["args"] == [
        "run", "-f", "/etc/kubetrader/study.yaml", "--output", "/data/results", "--summary-file", "/dev/termination-log"
    ]  # fmt: skip
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["KUBETRADER_REDIS_URL"] == REDIS  # `run --redis` reads it
    assert env["KUBETRADER_OPTUNA_STORAGE"] == STORAGE  # `run --storage` reads it
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "KUBETRADER_STUDY_NAME" not in env  # one source of the study's key: the spec file's metadata
    assert env["KUBETRADER_DATA_DIR"] == "/data"
    assert "KUBETRADER_OPTUNA_STORAGE" not in {
        e["name"] for e in _job()["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert job["metadata"]["labels"][STUDY_LABEL] == "sma-orcl-tuning"
    assert "kubetrader.io/backtest" not in job["metadata"]["labels"]  # the Backtest handlers must not see it


def test_the_storage_password_comes_from_its_secret_and_never_sits_in_the_job_spec() -> None:
    url = "postgresql+psycopg2://kubetrader:$(POSTGRES_PASSWORD)@postgres:5432/optuna"
    job = _job(storage=url, password_secret="kubetrader-postgresql", password_key="password")
    kubernetes_validate.validate(job, "1.37", strict=True)
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    names = [e["name"] for e in env]
    # declared before the URL, so Kubernetes substitutes it there
    assert names.index("POSTGRES_PASSWORD") < names.index("KUBETRADER_OPTUNA_STORAGE")
    password = next(e for e in env if e["name"] == "POSTGRES_PASSWORD")
    assert password == {
        "name": "POSTGRES_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "kubetrader-postgresql", "key": "password"}},
    }
    assert next(e["value"] for e in env if e["name"] == "KUBETRADER_OPTUNA_STORAGE") == url
    without_storage = _job(password_secret="kubetrader-postgresql")["spec"]["template"]["spec"]["containers"][0]
    assert "POSTGRES_PASSWORD" not in {e["name"] for e in without_storage["env"]}


def test_driver_job_has_the_backtest_jobs_pod_security_volumes_and_failure_policy() -> None:
    backtest = parse_resource(yaml.safe_load((EXAMPLES / "backtest-sma.yaml").read_text())).spec
    assert isinstance(backtest, BacktestSpec)
    reference = build_backtest_job("x", "research", backtest, job_options(SETTINGS, {}))["spec"]
    job = _job()["spec"]
    pod, ref_pod = job["template"]["spec"], reference["template"]["spec"]
    assert pod["securityContext"] == ref_pod["securityContext"]
    assert pod["containers"][0]["securityContext"] == ref_pod["containers"][0]["securityContext"]
    assert pod["containers"][0]["volumeMounts"] == ref_pod["containers"][0]["volumeMounts"]
    assert pod["volumes"][1:] == ref_pod["volumes"][1:]  # data (the PVC) and scratch
    assert pod["volumes"][0] == {"name": "spec", "configMap": {"name": "study-sma-orcl-tuning"}}
    assert job["podFailurePolicy"] == reference["podFailurePolicy"]
    assert job["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [2]
    assert pod["automountServiceAccountToken"] is False


def test_child_names_are_deterministic_and_fit_a_label_value() -> None:
    assert study_child_name("sma") == "study-sma"
    long = "a" * 80
    assert study_child_name(long) == study_child_name(long)
    assert len(study_child_name(long)) <= 52
    assert study_child_name(long) != study_child_name("a" * 79)


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"constraints": ["fast > 1000"]}, SpecError, "exclude every point"),
        ({"constraints": ["fats < slow"]}, SpecError, "fats"),
        ({"objective": {"metric": "sharpe"}}, ValidationError, "unknown metric"),
        ({"trials": 2, "parallelism": 4}, ValidationError, "must not exceed trials"),
        ({"space": {}}, ValidationError, "space"),
    ],
)
def test_specs_that_cannot_run_are_refused_with_the_reason(
    changes: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        parse_study_spec(_spec(**changes))


def _study(status: dict[str, Any] | None = None) -> dict[str, Any]:
    meta = {"name": "sma-orcl-tuning", "namespace": "research", "generation": 1}
    return {"metadata": meta, "spec": DOC["spec"], "status": status or {}}


def _progress(done: int, best: float | None) -> PublishedProgress:
    params = {"fast": 9, "slow": 40} if best is not None else {}
    return PublishedProgress(
        study_name="sma-orcl-tuning", done=done, failed=0, running=2, infeasible=0, best_value=best,
        best_params=params, updated_at=0.0,
    )  # fmt: skip


def _job_with(status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "study-sma-orcl-tuning", "uid": "u1"}, "status": status}


def test_status_follows_published_progress_then_takes_the_final_summary() -> None:
    accepted = accepted_study_status(_study(), "study-sma-orcl-tuning", study_name="s", metric="sharpe_ratio", now=NOW)
    running_job = _job_with({"startTime": NOW, "active": 1, "ready": 1})
    status, transition = next_status(
        _study(accepted), running_job, [], _progress(3, 0.5), now=NOW, start_timeout_seconds=60
    )
    assert transition is None
    assert (status["phase"], status["trialsDone"], status["trialsRunning"], status["bestValue"]) == (
        "Running", 3, 2, 0.5
    )  # fmt: skip
    assert status["bestParams"] == {"fast": 9, "slow": 40} and status["startTime"] == NOW
    summary = {"status": "succeeded", "bestValue": 0.7, "bestParams": {"fast": 7, "slow": 50}, "trialsComplete": 40,
               "trialsFailed": 1, "mlflowParentRunId": "abc"}  # fmt: skip
    pod = {
        "metadata": {"creationTimestamp": NOW},
        "status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 0, "message": json.dumps(summary)}}}]},
    }
    done_job = _job_with(
        {"startTime": NOW, "completionTime": NOW, "conditions": [{"type": "Complete", "status": "True"}]}
    )
    final, transition = next_status(
        _study(status), done_job, [pod], _progress(39, 0.6), now=NOW, start_timeout_seconds=60
    )
    assert transition is not None and transition.reason == "Succeeded" and "0.7" in transition.message
    assert (final["phase"], final["trialsDone"], final["trialsFailed"], final["trialsRunning"]) == (
        "Succeeded",
        40,
        1,
        0,
    )
    assert (final["bestValue"], final["bestParams"], final["mlflowParentRunId"]) == (0.7, summary["bestParams"], "abc")
    assert next_status(_study(final), None, [], None, now=NOW, start_timeout_seconds=60) == (final, None)


def test_a_driver_that_exits_2_fails_the_study_with_its_error() -> None:
    accepted = accepted_study_status(_study(), "study-sma-orcl-tuning", study_name="s", metric="sharpe_ratio", now=NOW)
    message = json.dumps({"status": "failed", "error": "constraints: the constraints exclude every point"})
    pod = {
        "metadata": {},
        "status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 2, "message": message}}}]},
    }
    failed = _job_with({"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]})
    status, transition = next_status(_study(accepted), failed, [pod], None, now=NOW, start_timeout_seconds=60)
    assert status["phase"] == "Failed" and status["message"] == "constraints: the constraints exclude every point"
    assert transition is not None and (transition.reason, transition.warning) == ("EngineFailed", True)


def test_spec_model_round_trips_through_the_config_map() -> None:
    assert OptimizationStudySpec.model_validate(SPEC.to_wire()) == SPEC
