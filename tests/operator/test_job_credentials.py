"""What the operator's Jobs get from Secrets for #21: MLflow's user and password (every Job that
logs), and the cmaes signing key (study drivers only); never a value in the Job spec."""

from __future__ import annotations

import kubernetes_validate
import yaml

from kubetrader.optimize.signing import KEY_ENV
from kubetrader.specs import BacktestSpec, parse_resource
from kubetrader_operator.backtest.builders import build_job as build_backtest_job
from kubetrader_operator.backtest.builders import job_options
from kubetrader_operator.settings import OperatorSettings
from kubetrader_operator.study.builders import build_job as build_study_job
from kubetrader_operator.study.builders import parse_study_spec
from tests.helpers import EXAMPLES

BACKTEST = parse_resource(yaml.safe_load((EXAMPLES / "backtest-sma.yaml").read_text())).spec
STUDY = parse_study_spec(yaml.safe_load((EXAMPLES / "study-sma.yaml").read_text())["spec"])
assert isinstance(BACKTEST, BacktestSpec)
AUTH = OperatorSettings(
    image="engine:test",
    mlflow_tracking_uri="http://mlflow:5000",
    mlflow_auth_secret="kubetrader-mlflow-auth",
    mlflow_username="kubetrader",
)


def _env(job: dict) -> dict[str, dict]:
    return {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_backtest_and_study_jobs_sign_in_to_mlflow_from_the_secret() -> None:
    options = job_options(AUTH, {})
    jobs = [
        build_backtest_job("sma", "research", BACKTEST, options),
        build_study_job("tune", "research", STUDY, options, redis_url="redis://redis:6379/0"),
    ]
    for job in jobs:
        kubernetes_validate.validate(job, "1.37", strict=True)
        env = _env(job)
        assert env["MLFLOW_TRACKING_USERNAME"] == {"name": "MLFLOW_TRACKING_USERNAME", "value": "kubetrader"}
        assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "kubetrader-mlflow-auth",
            "key": "password",
        }
    in_secret = job_options(AUTH.model_copy(update={"mlflow_username": None}), {})
    ref = _env(build_backtest_job("sma", "research", BACKTEST, in_secret))["MLFLOW_TRACKING_USERNAME"]
    assert ref["valueFrom"]["secretKeyRef"] == {"name": "kubetrader-mlflow-auth", "key": "username"}
    plain = OperatorSettings(image="engine:test", mlflow_tracking_uri="http://mlflow:5000")
    assert "MLFLOW_TRACKING_PASSWORD" not in _env(
        build_backtest_job("sma", "research", BACKTEST, job_options(plain, {}))
    )


def test_only_study_drivers_get_the_signing_key() -> None:
    options = job_options(AUTH, {})
    study = build_study_job(
        "tune", "research", STUDY, options, redis_url="redis://redis:6379/0", signing_secret="kubetrader-study-signing"
    )
    key = _env(study)[KEY_ENV]
    ref = {"name": "kubetrader-study-signing", "key": "key", "optional": True}  # only cmaes needs it
    assert key == {"name": KEY_ENV, "valueFrom": {"secretKeyRef": ref}}
    assert KEY_ENV not in _env(build_backtest_job("sma", "research", BACKTEST, options))
