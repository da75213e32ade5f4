"""Pure builders: a validated OptimizationStudySpec -> the ConfigMap and the driver Job.

The driver is `kubetrader run -f study.yaml` (the command a user runs locally): it
enqueues trials on the Redis work queue as batch `study-{key}`, keeps
`parallelism` of them in flight while the shared worker pool (scaled on queue
depth) runs them, publishes its progress to Redis, and writes a JSON summary to
the termination message on exit. The Job's pod settings are the Backtest Job's:
same image, restricted security context, data volume and termination message.
"""

from __future__ import annotations

from typing import Any

from kubetrader.optimize.naming import study_key
from kubetrader.optimize.signing import KEY_ENV as SIGNING_ENV
from kubetrader.specs import OptimizationStudySpec
from kubetrader_operator.jobs import (
    DATA_DIR,
    JobOptions,
    engine_args,
    engine_job,
    resource_document,
    scratch_env,
    secret_env,
    spec_config_map,
)
from kubetrader_operator.labels import COMPONENT, MANAGED_BY, MANAGER, PART_OF, child_name, label_value

SPEC_FILE = "study.yaml"
STUDY_LABEL = "kubetrader.io/study"
# The driver finds these with `kubetrader run`'s envvar options (--redis, --storage).
REDIS_ENV = "KUBETRADER_REDIS_URL"
STORAGE_ENV = "KUBETRADER_OPTUNA_STORAGE"


def study_key_of(study: dict[str, Any]) -> str:
    """The key of a study resource's state: its Optuna study, work-queue batch `study-{key}` and progress
    (kubetrader.optimize.naming: namespace, spec.studyName or name, and the uid unless studyName is set)."""
    metadata, spec = study["metadata"], study.get("spec") or {}
    return study_key(
        metadata["name"], study_name=spec.get("studyName"), namespace=metadata.get("namespace"), uid=metadata.get("uid")
    )


def study_child_name(study: str) -> str:
    """Deterministic name of a study's driver Job and ConfigMap (a restart finds, not duplicates, them)."""
    return child_name("study", study)


def study_labels(component: str, study: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, PART_OF: "kubetrader", COMPONENT: component, STUDY_LABEL: label_value(study)}


def study_document(name: str, namespace: str, spec: OptimizationStudySpec) -> dict[str, Any]:
    """The OptimizationStudy as the engine reads it with `kubetrader run -f` (validated, defaults filled in)."""
    return resource_document("OptimizationStudy", name, namespace, spec)


def build_config_map(name: str, namespace: str, spec: OptimizationStudySpec, *, uid: str) -> dict[str, Any]:
    """The driver's study.yaml, with the resource's uid: the driver keys the study's state by it."""
    return spec_config_map(
        study_child_name(name),
        namespace,
        study_labels("study-spec", name),
        kind="OptimizationStudy",
        name=name,
        spec=spec,
        spec_file=SPEC_FILE,
        uid=uid,
    )


def driver_args() -> list[str]:
    """Redis and storage come from the environment (REDIS_ENV, STORAGE_ENV): URLs may hold passwords."""
    return engine_args(SPEC_FILE)


def driver_env(
    name: str,
    namespace: str,
    spec: OptimizationStudySpec,
    options: JobOptions,
    *,
    redis_url: str,
    storage: str | None,
    password_secret: str | None = None,
    password_key: str = "password",
    signing_secret: str | None = None,
    signing_key: str = "key",
) -> list[dict[str, Any]]:
    # Kubernetes expands $(POSTGRES_PASSWORD) in later values, so the storage URL can name the
    # password without holding it; the password itself comes from the Secret, in the pod only.
    password: list[dict[str, Any]] = (
        [{"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": password_secret, "key": password_key}}}]
        if password_secret and storage
        else []
    )
    # Optional: only `sampler: cmaes` needs the key, and refuses clearly without it
    # (kubetrader.optimize.signing); a namespace without the Secret still runs the other samplers.
    signing: list[dict[str, Any]] = (
        [
            {
                "name": SIGNING_ENV,
                "valueFrom": {"secretKeyRef": {"name": signing_secret, "key": signing_key, "optional": True}},
            }
        ]
        if signing_secret
        else []
    )
    env = [
        *password,
        *signing,
        *secret_env(options),
        {"name": "KUBETRADER_NAMESPACE", "value": namespace},
        {"name": REDIS_ENV, "value": redis_url},
        *([{"name": STORAGE_ENV, "value": storage}] if storage else []),
        # The default Optuna storage (a journal file) and the data cache live on the data volume.
        {"name": "KUBETRADER_DATA_DIR", "value": DATA_DIR},
        *scratch_env(),
    ]
    taken = {str(e["name"]) for e in env}
    return [*env, *({"name": k, "value": v} for k, v in options.env if k not in taken)]


def build_job(
    name: str,
    namespace: str,
    spec: OptimizationStudySpec,
    options: JobOptions,
    *,
    redis_url: str,
    storage: str | None = None,
    password_secret: str | None = None,
    password_key: str = "password",
    signing_secret: str | None = None,
    signing_key: str = "key",
) -> dict[str, Any]:
    """The batch/v1 Job running the study's driver.

    Exit code 2 (bad input, e.g. constraints excluding every point) fails the Job
    at once; other failures (exit 3: infrastructure) are retried, and a retried
    driver resumes the study: finished trials stay in the Optuna storage.
    """
    return engine_job(
        study_child_name(name),
        namespace,
        study_labels("study-driver", name),
        spec=spec,
        spec_file=SPEC_FILE,
        env=driver_env(
            name,
            namespace,
            spec,
            options,
            redis_url=redis_url,
            storage=storage,
            password_secret=password_secret,
            password_key=password_key,
            signing_secret=signing_secret,
            signing_key=signing_key,
        ),
        options=options,
    )


def parse_study_spec(raw: dict[str, Any]) -> OptimizationStudySpec:
    """The validated spec, refusing what the CRD schema cannot see; ValueError or SpecError names the problem.

    The models refuse an empty space, an unknown metric and trials < parallelism;
    here the constraints are also parsed (unknown names) and checked against the
    space (excluding every point), so such a study fails before any Job runs.
    """
    from kubetrader.optimize.constraints import parse_constraints
    from kubetrader.optimize.study import check_feasible_space

    spec = OptimizationStudySpec.model_validate(raw)
    constraints = parse_constraints(spec.constraints, spec.space)
    check_feasible_space(spec.space, constraints)
    return spec
