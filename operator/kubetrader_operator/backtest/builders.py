"""Pure builders: a validated BacktestSpec -> the ConfigMap and Job that run it.

No I/O and no kopf here, so every manifest is tested by comparing dicts and by
validating them against Kubernetes' own schemas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from kubetrader.errors import EXIT_FATAL
from kubetrader.specs import GROUP_VERSION, BacktestSpec, spec_hash
from kubetrader_operator.labels import SPEC_HASH_ANNOTATION, backtest_child_name, child_labels
from kubetrader_operator.settings import ANNOTATION_PREFIX, OperatorSettings

CONFIG_DIR = "/etc/kubetrader"
SPEC_FILE = "backtest.yaml"
DATA_DIR = "/data"
RESULTS_DIR = f"{DATA_DIR}/results"
SCRATCH_DIR = "/tmp"
TERMINATION_LOG = "/dev/termination-log"
CONTAINER = "engine"


@dataclass(frozen=True)
class JobOptions:
    """The Job's knobs for one Backtest: operator settings with the annotation overrides applied."""

    image: str
    image_pull_policy: str
    service_account: str
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    backoff_limit: int
    active_deadline_seconds: int
    ttl_seconds_after_finished: int
    run_as_user: int
    data_pvc: str | None
    env: tuple[tuple[str, str], ...]


def job_options(settings: OperatorSettings, annotations: dict[str, str]) -> JobOptions:
    """Settings plus the few per-Backtest overrides; a malformed override raises ValueError naming it."""

    def override(key: str) -> str | None:
        return annotations.get(ANNOTATION_PREFIX + key)

    def integer(key: str, default: int, low: int) -> int:
        raw = override(key)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"annotation {ANNOTATION_PREFIX}{key}: {raw!r} is not an integer") from None
        if value < low:
            raise ValueError(f"annotation {ANNOTATION_PREFIX}{key}: must be at least {low}, got {value}")
        return value

    cpu = override("cpu")
    memory = override("memory")
    # The engine's own names: with KUBETRADER_REDIS_URL set, a matrix Backtest's Job drives a
    # campaign over the shared worker pool instead of running every cell itself.
    env = [("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri), ("KUBETRADER_REDIS_URL", settings.redis_url)]
    return JobOptions(
        image=settings.image,
        image_pull_policy=settings.image_pull_policy,
        service_account=settings.service_account,
        cpu_request=cpu or settings.cpu_request,
        cpu_limit=cpu or settings.cpu_limit,
        memory_request=memory or settings.memory_request,
        memory_limit=memory or settings.memory_limit,
        backoff_limit=integer("backoff-limit", settings.backoff_limit, 0),
        active_deadline_seconds=integer("active-deadline-seconds", settings.active_deadline_seconds, 1),
        ttl_seconds_after_finished=settings.ttl_seconds_after_finished,
        run_as_user=settings.run_as_user,
        data_pvc=settings.data_pvc,
        env=tuple((k, v) for k, v in env if v),
    )


def backtest_document(name: str, namespace: str, spec: BacktestSpec) -> dict[str, Any]:
    """The Backtest as the engine reads it with `kubetrader run -f` (validated, defaults filled in)."""
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Backtest",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec.to_wire(),
    }


def build_config_map(name: str, namespace: str, spec: BacktestSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": backtest_child_name(name),
            "namespace": namespace,
            "labels": child_labels("backtest-spec", name),
            "annotations": {SPEC_HASH_ANNOTATION: spec_hash(spec)},
        },
        "data": {SPEC_FILE: yaml.safe_dump(backtest_document(name, namespace, spec), sort_keys=False)},
    }


def engine_args() -> list[str]:
    return [
        "run",
        "-f",
        f"{CONFIG_DIR}/{SPEC_FILE}",
        "--output",
        RESULTS_DIR,
        "--summary-file",
        TERMINATION_LOG,
    ]


def security_context(options: JobOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = {
        "runAsNonRoot": True,
        "runAsUser": options.run_as_user,
        "runAsGroup": options.run_as_user,
        "fsGroup": options.run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return pod, container


def build_job(name: str, namespace: str, spec: BacktestSpec, options: JobOptions) -> dict[str, Any]:
    """The batch/v1 Job running the engine once for this Backtest.

    Exit code 2 (bad spec, strategy error, no data) fails the Job at once through
    the podFailurePolicy: running it again cannot help. Other failures (exit 3:
    infrastructure) count toward backoffLimit and are retried.
    """
    child = backtest_child_name(name)
    labels = child_labels("backtest", name)
    pod_security, container_security = security_context(options)
    env = [
        {"name": "KUBETRADER_BACKTEST_NAME", "value": name},
        {"name": "KUBETRADER_NAMESPACE", "value": namespace},
        {"name": "HOME", "value": SCRATCH_DIR},
        {"name": "TMPDIR", "value": SCRATCH_DIR},
        {"name": "MPLCONFIGDIR", "value": f"{SCRATCH_DIR}/matplotlib"},
        *({"name": key, "value": value} for key, value in options.env),
    ]
    data_volume: dict[str, Any] = (
        {"name": "data", "persistentVolumeClaim": {"claimName": options.data_pvc}}
        if options.data_pvc
        else {"name": "data", "emptyDir": {}}
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": child,
            "namespace": namespace,
            "labels": labels,
            "annotations": {SPEC_HASH_ANNOTATION: spec_hash(spec)},
        },
        "spec": {
            "backoffLimit": options.backoff_limit,
            "activeDeadlineSeconds": options.active_deadline_seconds,
            "ttlSecondsAfterFinished": options.ttl_seconds_after_finished,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [EXIT_FATAL]},
                    },
                    # A node drain or preemption is not the Backtest's fault: do not spend a retry on it.
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": options.service_account,
                    "automountServiceAccountToken": False,  # the engine never talks to the API server
                    "securityContext": pod_security,
                    "containers": [
                        {
                            "name": CONTAINER,
                            "image": options.image,
                            "imagePullPolicy": options.image_pull_policy,
                            "command": ["kubetrader"],
                            "args": engine_args(),
                            "env": env,
                            "resources": {
                                "requests": {"cpu": options.cpu_request, "memory": options.memory_request},
                                "limits": {"cpu": options.cpu_limit, "memory": options.memory_limit},
                            },
                            "securityContext": container_security,
                            "terminationMessagePath": TERMINATION_LOG,
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "volumeMounts": [
                                {"name": "spec", "mountPath": CONFIG_DIR, "readOnly": True},
                                {"name": "data", "mountPath": DATA_DIR},
                                {"name": "scratch", "mountPath": SCRATCH_DIR},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "spec", "configMap": {"name": child}},
                        data_volume,
                        {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
                    ],
                },
            },
        },
    }
