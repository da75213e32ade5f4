"""With Redis requirepass, the Jobs the operator creates get the password by secretKeyRef and a
URL saying $(REDIS_PASSWORD), never the password the operator itself was given."""

from __future__ import annotations

import kubernetes_validate
import yaml

from kubetrader.specs import BacktestSpec, OptimizationStudySpec, parse_resource
from kubetrader_operator.backtest.builders import build_job, job_options
from kubetrader_operator.jobs import pod_redis_url
from kubetrader_operator.settings import OperatorSettings
from kubetrader_operator.study.builders import build_job as build_study_job
from tests.fixtures.chart import expand_env
from tests.helpers import EXAMPLES

PASSWORD = "Zq81wXkP0s9dLr2T"
SECRET = {"redis_password_secret": "kubetrader-redis", "redis_password_key": "password"}
# What the operator's own environment holds once Kubernetes substituted the password there.
URL = f"redis://:{PASSWORD}@kubetrader-redis.kubetrader.svc:6379/0"


def _settings(**extra: str) -> OperatorSettings:
    return OperatorSettings(image="engine:test", redis_url=URL, **extra)  # type: ignore[arg-type]


def _env(job: dict) -> list[dict]:
    return job["spec"]["template"]["spec"]["containers"][0]["env"]


def test_pod_redis_url_puts_the_variable_where_the_password_was() -> None:
    assert (
        pod_redis_url(URL, password_secret="s") == "redis://:$(REDIS_PASSWORD)@kubetrader-redis.kubetrader.svc:6379/0"
    )
    assert pod_redis_url("rediss://app:pw@r:6380/2", password_secret="s") == "rediss://app:$(REDIS_PASSWORD)@r:6380/2"
    assert pod_redis_url("redis://r:6379/0", password_secret="s") == "redis://:$(REDIS_PASSWORD)@r:6379/0"
    assert pod_redis_url(URL, password_secret=None) == URL


def test_backtest_job_gets_the_password_by_secret_key_ref_only() -> None:
    spec = parse_resource(yaml.safe_load((EXAMPLES / "backtest-sma.yaml").read_text())).spec
    assert isinstance(spec, BacktestSpec)
    job = build_job("sma-orcl", "research", spec, job_options(_settings(**SECRET), {}))
    kubernetes_validate.validate(job, "1.37", strict=True)
    env = _env(job)
    assert env[0] == {
        "name": "REDIS_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "kubetrader-redis", "key": "password"}},
    }
    assert PASSWORD not in yaml.safe_dump(job)
    assert expand_env(env, {("kubetrader-redis", "password"): PASSWORD})["KUBETRADER_REDIS_URL"] == URL


def test_study_driver_gets_the_password_by_secret_key_ref_only() -> None:
    spec = parse_resource(yaml.safe_load((EXAMPLES / "study-sma.yaml").read_text())).spec
    assert isinstance(spec, OptimizationStudySpec)
    settings = _settings(**SECRET)
    job = build_study_job(
        "sma-study",
        "research",
        spec,
        job_options(settings, {}),
        redis_url=pod_redis_url(URL, password_secret=settings.redis_password_secret),
    )
    kubernetes_validate.validate(job, "1.37", strict=True)
    assert PASSWORD not in yaml.safe_dump(job)
    env = _env(job)
    assert [e["name"] for e in env].count("KUBETRADER_REDIS_URL") == 1
    assert expand_env(env, {("kubetrader-redis", "password"): PASSWORD})["KUBETRADER_REDIS_URL"] == URL


def test_without_a_password_secret_jobs_get_the_url_as_before() -> None:
    spec = parse_resource(yaml.safe_load((EXAMPLES / "backtest-sma.yaml").read_text())).spec
    assert isinstance(spec, BacktestSpec)
    settings = OperatorSettings(image="engine:test", redis_url="redis://r:6379/0")
    env = _env(build_job("sma-orcl", "research", spec, job_options(settings, {})))
    assert {"name": "KUBETRADER_REDIS_URL", "value": "redis://r:6379/0"} in env
    assert "REDIS_PASSWORD" not in {e["name"] for e in env}
