"""Pure builders: a validated OptimizationStudySpec -> the ConfigMap and the driver Job.

The driver is `kubetrader run -f study.yaml` (the command a user runs locally): it
enqueues trials on the Redis work queue as batch `study-{studyName}`, keeps
`parallelism` of them in flight while the shared worker pool (scaled on queue
depth) runs them, publishes its progress to Redis, and writes a JSON summary to
the termination message on exit. The Job's pod settings are the Backtest Job's:
same image, restricted security context, data volume and termination message.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from kubetrader.errors import EXIT_FATAL
from kubetrader.specs import GROUP_VERSION, OptimizationStudySpec
from kubetrader_operator.backtest.builders import (
    CONFIG_DIR,
    CONTAINER,
    DATA_DIR,
    RESULTS_DIR,
    SCRATCH_DIR,
    TERMINATION_LOG,
    JobOptions,
    security_context,
)
from kubetrader_operator.labels import COMPONENT, MANAGED_BY, MANAGER, PART_OF, SPEC_HASH_ANNOTATION

SPEC_FILE = "study.yaml"
STUDY_LABEL = "kubetrader.io/study"
# The driver finds these with `kubetrader run`'s envvar options (--redis, --storage).
REDIS_ENV = "KUBETRADER_REDIS_URL"
STORAGE_ENV = "KUBETRADER_OPTUNA_STORAGE"


def study_name_of(name: str, spec: OptimizationStudySpec) -> str:
    """The Optuna study (and work-queue batch `study-{it}`) a resource runs: spec.studyName or its name."""
    return spec.study_name or name


def trial_batch(study_name: str) -> str:
    """The work-queue batch of a study's trials (kubetrader.optimize.queue_evaluator.study_batch)."""
    return f"study-{study_name}"


def study_child_name(study: str) -> str:
    """Deterministic name of a study's driver Job and ConfigMap (a restart finds, not duplicates, them).

    Job names become a pod label value (63 chars) with a 5-char pod suffix appended.
    """
    name = f"study-{study}"
    if len(name) > 52:
        digest = hashlib.sha256(study.encode()).hexdigest()[:8]
        name = f"{name[:43].rstrip('-.')}-{digest}"
    return name


def study_labels(component: str, study: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, PART_OF: "kubetrader", COMPONENT: component, STUDY_LABEL: study}


def study_spec_hash(spec: OptimizationStudySpec) -> str:
    canonical = json.dumps(spec.to_wire(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def study_document(name: str, namespace: str, spec: OptimizationStudySpec) -> dict[str, Any]:
    """The OptimizationStudy as the engine reads it with `kubetrader run -f` (validated, defaults filled in)."""
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "OptimizationStudy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec.to_wire(),
    }


def build_config_map(name: str, namespace: str, spec: OptimizationStudySpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": study_child_name(name),
            "namespace": namespace,
            "labels": study_labels("study-spec", name),
            "annotations": {SPEC_HASH_ANNOTATION: study_spec_hash(spec)},
        },
        "data": {SPEC_FILE: yaml.safe_dump(study_document(name, namespace, spec), sort_keys=False)},
    }


def driver_args() -> list[str]:
    """Redis and storage come from the environment (REDIS_ENV, STORAGE_ENV): URLs may hold passwords."""
    return ["run", "-f", f"{CONFIG_DIR}/{SPEC_FILE}", "--output", RESULTS_DIR, "--summary-file", TERMINATION_LOG]


def driver_env(
    name: str, namespace: str, spec: OptimizationStudySpec, options: JobOptions, *, redis_url: str, storage: str | None
) -> list[dict[str, str]]:
    env = [
        {"name": "KUBETRADER_STUDY_NAME", "value": study_name_of(name, spec)},
        {"name": "KUBETRADER_NAMESPACE", "value": namespace},
        {"name": REDIS_ENV, "value": redis_url},
        *([{"name": STORAGE_ENV, "value": storage}] if storage else []),
        # The default Optuna storage (a journal file) and the data cache live on the data volume.
        {"name": "KUBETRADER_DATA_DIR", "value": DATA_DIR},
        {"name": "HOME", "value": SCRATCH_DIR},
        {"name": "TMPDIR", "value": SCRATCH_DIR},
        {"name": "MPLCONFIGDIR", "value": f"{SCRATCH_DIR}/matplotlib"},
    ]
    taken = {e["name"] for e in env}
    return [*env, *({"name": k, "value": v} for k, v in options.env if k not in taken)]


def build_job(
    name: str,
    namespace: str,
    spec: OptimizationStudySpec,
    options: JobOptions,
    *,
    redis_url: str,
    storage: str | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job running the study's driver.

    Exit code 2 (bad input, e.g. constraints excluding every point) fails the Job
    at once; other failures (exit 3: infrastructure) are retried, and a retried
    driver resumes the study: finished trials stay in the Optuna storage.
    """
    child = study_child_name(name)
    labels = study_labels("study-driver", name)
    pod_security, container_security = security_context(options)
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
            "annotations": {SPEC_HASH_ANNOTATION: study_spec_hash(spec)},
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
                    # A node drain or preemption is not the study's fault: do not spend a retry on it.
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": options.service_account,
                    "automountServiceAccountToken": False,  # the driver talks to Redis, never to the API server
                    "securityContext": pod_security,
                    "containers": [
                        {
                            "name": CONTAINER,
                            "image": options.image,
                            "imagePullPolicy": options.image_pull_policy,
                            "command": ["kubetrader"],
                            "args": driver_args(),
                            "env": driver_env(name, namespace, spec, options, redis_url=redis_url, storage=storage),
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


def parse_study_spec(raw: dict[str, Any]) -> OptimizationStudySpec:
    """The validated spec, refusing what the CRD schema cannot see; ValueError or SpecError names the problem.

    The models refuse an empty space, an unknown metric and trials < parallelism;
    here the constraints are also parsed (unknown names) and checked against the
    space (excluding every point), so such a study fails before any Job runs.
    """
    from kubetrader.optimize.constraints import parse_constraints
    from kubetrader.optimize.study import check_feasible_space

    spec = OptimizationStudySpec.model_validate(raw)
    constraints = parse_constraints(spec.constraints, list(spec.space))
    check_feasible_space(spec.space, constraints)
    return spec
