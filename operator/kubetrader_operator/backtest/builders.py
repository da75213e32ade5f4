"""Pure builders: a validated BacktestSpec -> the ConfigMap and Job that run it.

No I/O and no kopf here, so every manifest is tested by comparing dicts and by
validating them against Kubernetes' own schemas.
"""

from __future__ import annotations

from typing import Any

from kubetrader.specs import BacktestSpec
from kubetrader_operator.jobs import (  # re-exported: the Backtest's names for the shared pieces
    CONFIG_DIR,
    CONTAINER,
    DATA_DIR,
    REDIS_PASSWORD_VAR,
    RESULTS_DIR,
    SCRATCH_DIR,
    TERMINATION_LOG,
    JobOptions,
    engine_args,
    engine_job,
    pod_redis_url,
    resource_document,
    scratch_env,
    secret_env,
    security_context,
    spec_config_map,
)
from kubetrader_operator.labels import backtest_child_name, child_labels
from kubetrader_operator.overrides import parse_overrides
from kubetrader_operator.settings import OperatorSettings

__all__ = [
    "CONFIG_DIR",
    "CONTAINER",
    "DATA_DIR",
    "RESULTS_DIR",
    "SCRATCH_DIR",
    "SPEC_FILE",
    "TERMINATION_LOG",
    "JobOptions",
    "backtest_document",
    "build_config_map",
    "build_job",
    "engine_args",
    "job_options",
    "security_context",
]

SPEC_FILE = "backtest.yaml"


def job_options(settings: OperatorSettings, annotations: dict[str, str]) -> JobOptions:
    """Settings plus the few per-Backtest overrides, clamped to the operator's maximums (the
    notes say what was clamped); a malformed override raises ValueError naming it."""
    # The engine's own names: with KUBETRADER_REDIS_URL set, a matrix Backtest's Job drives a
    # campaign over the shared worker pool instead of running every cell itself.
    secret = settings.redis_password_secret
    redis_url = pod_redis_url(settings.redis_url, password_secret=secret) if settings.redis_url else None
    env = [("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri), ("KUBETRADER_REDIS_URL", redis_url)]
    mlflow_plain, mlflow_secret = mlflow_auth_env(settings)
    return JobOptions(
        image=settings.image,
        image_pull_policy=settings.image_pull_policy,
        service_account=settings.service_account,
        resources=parse_overrides(settings, annotations),
        ttl_seconds_after_finished=settings.ttl_seconds_after_finished,
        run_as_user=settings.run_as_user,
        data_pvc=settings.data_pvc,
        env=(*((k, v) for k, v in env if v), *mlflow_plain),
        secret_env=(
            *(((REDIS_PASSWORD_VAR, secret, settings.redis_password_key),) if secret and redis_url else ()),
            *mlflow_secret,
        ),
        scheduling=settings.pod_scheduling,
        tracking_sync_namespaces=frozenset(settings.tracking_sync_namespaces),
    )


def mlflow_auth_env(settings: OperatorSettings) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str, str], ...]]:
    """MLflow's own client variables for basic auth (mlflow/environment_variables.py): (plain env,
    secret env). The user is a plain value when the settings name it, else a key of the Secret."""
    secret = settings.mlflow_auth_secret
    if not (secret and settings.mlflow_tracking_uri):
        return (), ()
    password = ("MLFLOW_TRACKING_PASSWORD", secret, settings.mlflow_password_key)
    if settings.mlflow_username:
        return (("MLFLOW_TRACKING_USERNAME", settings.mlflow_username),), (password,)
    return (), (("MLFLOW_TRACKING_USERNAME", secret, settings.mlflow_username_key), password)


def backtest_document(name: str, namespace: str, spec: BacktestSpec) -> dict[str, Any]:
    """The Backtest as the engine reads it with `kubetrader run -f` (validated, defaults filled in)."""
    return resource_document("Backtest", name, namespace, spec)


def build_config_map(name: str, namespace: str, spec: BacktestSpec) -> dict[str, Any]:
    return spec_config_map(
        backtest_child_name(name),
        namespace,
        child_labels("backtest-spec", name),
        kind="Backtest",
        name=name,
        spec=spec,
        spec_file=SPEC_FILE,
    )


def build_job(name: str, namespace: str, spec: BacktestSpec, options: JobOptions) -> dict[str, Any]:
    """The batch/v1 Job running the engine once for this Backtest (see `jobs.engine_job`).

    Where the chart's sync loop runs on the data volume, the Job leaves its MLflow run to it
    (`--tracking-mode later`): it exits once its result and the pending marker are written. A matrix
    on the work queue is unaffected: its cells are logged by the workers that run them."""
    env = [
        *secret_env(options),
        {"name": "KUBETRADER_BACKTEST_NAME", "value": name},
        {"name": "KUBETRADER_NAMESPACE", "value": namespace},
        *scratch_env(),
        *({"name": key, "value": value} for key, value in options.env),
    ]
    return engine_job(
        backtest_child_name(name),
        namespace,
        child_labels("backtest", name),
        spec=spec,
        spec_file=SPEC_FILE,
        env=env,
        options=options,
        tracking_mode=options.tracking_mode(namespace),
    )
