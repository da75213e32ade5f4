"""Operator configuration, read once from the environment (the Helm chart sets it).

Every variable is `KUBETRADER_OPERATOR_<FIELD>`, e.g. `KUBETRADER_OPERATOR_IMAGE`.
Per-Backtest overrides are deliberately few and come from annotations (see
`OVERRIDE_ANNOTATIONS`): the spec is the portable part a user also runs locally,
while where and how big a Job runs is a cluster concern.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from kubetrader_operator.scheduling import PodScheduling

ANNOTATION_PREFIX = "kubetrader.io/"
# annotation -> what it overrides for that one Backtest's Job
OVERRIDE_ANNOTATIONS: dict[str, str] = {
    f"{ANNOTATION_PREFIX}active-deadline-seconds": "activeDeadlineSeconds of the Job",
    f"{ANNOTATION_PREFIX}backoff-limit": "backoffLimit of the Job (retries of exit-3 failures)",
    f"{ANNOTATION_PREFIX}cpu": "CPU request and limit of the engine container",
    f"{ANNOTATION_PREFIX}memory": "memory request and limit of the engine container",
}


# A Kubernetes quantity (k8s.io/apimachinery/pkg/api/resource/quantity.go's grammar, no sign).
QUANTITY_PATTERN = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$"


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBETRADER_OPERATOR_", frozen=True)

    # Where the operator looks: the listed namespaces, or every namespace when empty.
    namespaces: list[str] = Field(default_factory=list)

    # The Job.
    image: str = "ghcr.io/kubetrader/engine:0.1.0"
    image_pull_policy: str = Field(default="IfNotPresent", pattern="^(Always|IfNotPresent|Never)$")
    service_account: str = "kubetrader-backtest"
    cpu_request: str = "500m"
    cpu_limit: str = "2"
    memory_request: str = "512Mi"
    memory_limit: str = "2Gi"
    backoff_limit: int = Field(default=2, ge=0, le=20)
    active_deadline_seconds: int = Field(default=6 * 3600, ge=1)
    ttl_seconds_after_finished: int = Field(default=24 * 3600, ge=0)
    run_as_user: int = Field(default=10001, ge=1)
    # Ceilings of the override annotations (kubetrader_operator.overrides): a value above one is
    # clamped to it, with a warning Event. The chart's operator.overrideLimits.
    max_cpu: str = Field(default="8", pattern=QUANTITY_PATTERN)
    max_memory: str = Field(default="16Gi", pattern=QUANTITY_PATTERN)
    max_backoff_limit: int = Field(default=10, ge=0, le=1000)
    max_active_deadline_seconds: int = Field(default=7 * 24 * 3600, ge=1)
    data_pvc: str | None = Field(default=None, description="PVC mounted at /data (data cache and results).")
    mlflow_tracking_uri: str | None = None
    redis_url: str | None = None
    # Redis requirepass (the chart's auth.redis): the operator's own redis_url has the password
    # in it (Kubernetes substituted it in the operator's pod); the pods it creates get it from this
    # Secret by secretKeyRef instead, and their URL says $(REDIS_PASSWORD) (jobs.pod_redis_url).
    redis_password_secret: str | None = None
    redis_password_key: str = "password"
    # Where every pod the operator creates may run (Jobs, live gateways and runners): the chart's
    # operator.childPods over global, as JSON (kubetrader_operator.scheduling).
    pod_scheduling: PodScheduling = Field(default_factory=PodScheduling)
    # MLflow's basic-auth (the chart's auth.mlflow): the Jobs it creates get the user and password
    # from this Secret by secretKeyRef as MLFLOW_TRACKING_USERNAME/PASSWORD, which MLflow's client
    # sends as HTTP basic auth; no credentials in the tracking URI.
    mlflow_auth_secret: str | None = None
    mlflow_username: str | None = Field(default=None, description="The user, when the Secret holds only the password.")
    mlflow_username_key: str = "username"
    mlflow_password_key: str = "password"
    # The namespaces where the chart runs `kubetrader mlflow sync --watch` on the data PVC (its
    # mlflow.sync): a Backtest Job there leaves its MLflow run to that loop (`--tracking-mode
    # later`) and exits once its result is written. Elsewhere, or without a data PVC, nothing would
    # ever log a run left for later, so the Job logs it before it exits (the engine's default in a pod).
    tracking_sync_namespaces: list[str] = Field(default_factory=list)

    # Reconciliation.
    start_timeout_seconds: float = Field(default=600.0, gt=0, description="Job never started or vanished -> Failed.")
    resync_interval_seconds: float = Field(default=30.0, gt=0, description="Resync period of unfinished Backtests.")
    resync_idle_seconds: float = Field(default=0.0, ge=0, description="Quiet time after a change before the check.")
    # Backtests started or reconciled at once, in threads of their own (kubetrader_operator.workqueue):
    # what a burst of creations holds in memory, and never kopf's threads, which LiveDeployments need.
    work_concurrency: int = Field(default=4, ge=1, le=64)

    # kopf itself; short values make tests react fast, the chart keeps the defaults.
    watch_timeout_seconds: int = Field(default=300, gt=0)
    backoff_seconds: float = Field(default=10.0, gt=0, description="Delay before retrying a failed handler.")
    posting_level: str = "INFO"

    # Probes and metrics.
    liveness_endpoint: str = "http://0.0.0.0:8080/healthz"
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="0 turns the metrics server off.")


@lru_cache(maxsize=1)
def get_settings() -> OperatorSettings:
    """The settings of this process; read once, because kopf decorators need them at import."""
    return OperatorSettings()
