"""What every engine Job has in common: a Backtest's, a study driver's.

Both run `kubetrader run -f <spec file>` from the same image, with the spec in a
ConfigMap, the data volume, a scratch volume under a read-only root filesystem, the
restricted security context, the summary JSON as the termination message, and a
podFailurePolicy that fails at once on the engine's "bad input" exit code. One
builder makes both, so a hardening of one is a hardening of the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from kubetrader.errors import EXIT_FATAL
from kubetrader.specs import GROUP_VERSION, SpecModel, spec_hash
from kubetrader_operator.labels import SPEC_HASH_ANNOTATION
from kubetrader_operator.overrides import Overrides
from kubetrader_operator.scheduling import PodScheduling, apply_scheduling

CONFIG_DIR = "/etc/kubetrader"
DATA_DIR = "/data"
RESULTS_DIR = f"{DATA_DIR}/results"
SCRATCH_DIR = "/tmp"
TERMINATION_LOG = "/dev/termination-log"
CONTAINER = "engine"
REDIS_PASSWORD_VAR = "REDIS_PASSWORD"


@dataclass(frozen=True)
class JobOptions:
    """The Job's knobs for one Backtest: operator settings with the annotation overrides applied."""

    image: str
    image_pull_policy: str
    service_account: str
    # cpu/memory, backoff limit and deadline after the annotations, with what was clamped (notes)
    resources: Overrides
    ttl_seconds_after_finished: int
    run_as_user: int
    data_pvc: str | None
    env: tuple[tuple[str, str], ...]
    # (variable, Secret, key): env entries by secretKeyRef, placed before `env` so its values
    # may say $(variable) and Kubernetes substitutes them in the pod.
    secret_env: tuple[tuple[str, str, str], ...] = ()
    # nodeSelector, tolerations, ... of the chart's operator.childPods (kubetrader_operator.scheduling)
    scheduling: PodScheduling = field(default_factory=PodScheduling)
    # Where a sync loop logs the runs Jobs leave for later (settings.tracking_sync_namespaces).
    tracking_sync_namespaces: frozenset[str] = frozenset()

    def tracking_mode(self, namespace: str) -> str | None:
        """`later` where a sync runs on the Job's data PVC, else None (the engine's default in a pod:
        log before exiting). An emptyDir goes with the pod, and the marker with it: never later there."""
        return "later" if self.data_pvc and namespace in self.tracking_sync_namespaces else None


def pod_redis_url(url: str, *, password_secret: str | None) -> str:
    """`url` as a pod spec may hold it: with the password in a Secret, `$(REDIS_PASSWORD)` in its place.

    Kubernetes expands `$(VAR)` in env values from variables defined earlier in the list
    (kubernetes.io/docs/tasks/inject-data-application/define-interdependent-environment-variables/),
    so the Job's URL names the password without holding it. A user name (Redis ACL) is kept.
    """
    if not password_secret:
        return url
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:$({REDIS_PASSWORD_VAR})@{host}"))


def secret_env(options: JobOptions) -> list[dict[str, Any]]:
    return [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
        for name, secret, key in options.secret_env
    ]


def resource_document(
    kind: str, name: str, namespace: str, spec: SpecModel, *, uid: str | None = None
) -> dict[str, Any]:
    """The resource as the engine reads it with `kubetrader run -f` (validated, defaults filled in).

    With `uid` (a study's), the engine keys the study's state by it (kubetrader.optimize.naming)."""
    return {
        "apiVersion": GROUP_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, **({"uid": uid} if uid else {})},
        "spec": spec.to_wire(),
    }


def spec_config_map(
    child: str,
    namespace: str,
    labels: dict[str, str],
    *,
    kind: str,
    name: str,
    spec: SpecModel,
    spec_file: str,
    uid: str | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": child,
            "namespace": namespace,
            "labels": labels,
            "annotations": {SPEC_HASH_ANNOTATION: spec_hash(spec)},
        },
        "data": {spec_file: yaml.safe_dump(resource_document(kind, name, namespace, spec, uid=uid), sort_keys=False)},
    }


def engine_args(spec_file: str, *, tracking_mode: str | None = None) -> list[str]:
    args = ["run", "-f", f"{CONFIG_DIR}/{spec_file}", "--output", RESULTS_DIR, "--summary-file", TERMINATION_LOG]
    return [*args, "--tracking-mode", tracking_mode] if tracking_mode else args


def scratch_env() -> list[dict[str, str]]:
    """A read-only root filesystem: everything that writes goes to the scratch volume."""
    return [
        {"name": "HOME", "value": SCRATCH_DIR},
        {"name": "TMPDIR", "value": SCRATCH_DIR},
        {"name": "MPLCONFIGDIR", "value": f"{SCRATCH_DIR}/matplotlib"},
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


def engine_job(
    child: str,
    namespace: str,
    labels: dict[str, str],
    *,
    spec: SpecModel,
    spec_file: str,
    env: list[dict[str, Any]],
    options: JobOptions,
    tracking_mode: str | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job running `kubetrader run -f` on the spec in the ConfigMap of the same name
    (`tracking_mode`: its `--tracking-mode`, none for the engine's default).

    Exit code 2 (bad spec, strategy error, no data) fails the Job at once through the
    podFailurePolicy: running it again cannot help. Other failures (exit 3:
    infrastructure) count toward backoffLimit and are retried.
    """
    pod_security, container_security = security_context(options)
    knobs = options.resources
    data_volume: dict[str, Any] = (
        {"name": "data", "persistentVolumeClaim": {"claimName": options.data_pvc}}
        if options.data_pvc
        else {"name": "data", "emptyDir": {}}
    )
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": child,
            "namespace": namespace,
            "labels": labels,
            "annotations": {SPEC_HASH_ANNOTATION: spec_hash(spec)},
        },
        "spec": {
            "backoffLimit": knobs.backoff_limit,
            "activeDeadlineSeconds": knobs.active_deadline_seconds,
            "ttlSecondsAfterFinished": options.ttl_seconds_after_finished,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [EXIT_FATAL]},
                    },
                    # A node drain or preemption is not the run's fault: do not spend a retry on it.
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
                            "args": engine_args(spec_file, tracking_mode=tracking_mode),
                            "env": env,
                            "resources": {
                                "requests": {"cpu": knobs.cpu_request, "memory": knobs.memory_request},
                                "limits": {"cpu": knobs.cpu_limit, "memory": knobs.memory_limit},
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
    job["spec"]["template"] = apply_scheduling(job["spec"]["template"], options.scheduling)
    return job
