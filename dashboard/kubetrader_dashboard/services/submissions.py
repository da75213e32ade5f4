"""Submitting work: a Backtest or OptimizationStudy custom-resource document.

Where it goes depends on what is there, in this order:
- a cluster: the custom resource is created and the operator takes over;
- a work queue (Redis): a Backtest's matrix cells are enqueued as one batch for the workers;
- neither: the engine runs it here, in a separate process (Backtrader holds the GIL
  for the whole run, and a thread would stall the API's other requests).

The document is validated with `kubetrader.specs.parse_resource` first, so a bad
spec is a 422 naming the field, wherever it would have run. What goes on is built from the
validated models (`submitted_manifest`), never the document as sent: its metadata is the name,
the API's namespace, the submitter, and only labels and annotations a user may set
(`check_metadata`); the operator's overrides (`kubetrader.io/...`), kopf's and Kubernetes' own
keys are the platform's.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import multiprocessing
import threading
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Literal

from kubetrader.errors import SpecError
from kubetrader.specs import BacktestSpec, OptimizationStudySpec, expand_matrix, parse_resource
from kubetrader.specs.common import GROUP_VERSION
from kubetrader.specs.resources import Resource
from kubetrader_dashboard.models.operations import SubmissionState
from kubetrader_dashboard.services.cluster import ClusterService
from kubetrader_dashboard.services.queue import QueueService

log = logging.getLogger(__name__)

Kind = Literal["Backtest", "OptimizationStudy"]


class SubmissionNotFoundError(LookupError):
    pass


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# Annotation keys whose prefix (the part before "/") is one of these, or ends in one of them,
# belong to the platform: the operator's per-resource overrides (kubetrader.io/cpu, ...),
# kopf's progress (kopf.kubetrader.io, kopf.zalando.org) and Kubernetes' reserved prefixes
# (kubernetes.io, k8s.io: "reserved for Kubernetes core components", Kubernetes docs, "Well-Known
# Labels, Annotations and Taints").
RESERVED_PREFIXES = ("kubetrader.io", "kopf.zalando.org", "kubernetes.io", "k8s.io")
# Labels: the operator reads none of ours from a resource (a `kubetrader.io/...` label, such as helm
# test's `kubetrader.io/helm-test`, is a user's tag), so only kopf's and Kubernetes' are refused.
RESERVED_LABEL_PREFIXES = ("kopf.zalando.org", "kubernetes.io", "k8s.io")
SUBMITTED_BY = "kubetrader.io/submitted-by"
METADATA_FIELDS = {"name", "namespace", "labels", "annotations"}


def _reserved(key: str, prefixes: tuple[str, ...]) -> bool:
    prefix = key.split("/", 1)[0] if "/" in key else ""
    return any(prefix == p or prefix.endswith("." + p) for p in prefixes)


def check_metadata(resource: Resource, namespace: str) -> None:
    """Refuse metadata a user may not set, as SpecError naming the field."""
    meta = resource.metadata
    extras = sorted(set(meta.model_dump(exclude_unset=True)) - METADATA_FIELDS)
    if extras:
        raise SpecError(f"metadata.{extras[0]}", "not accepted here: only name, labels and annotations are")
    if meta.namespace not in (None, namespace):
        raise SpecError("metadata.namespace", f"submissions go to {namespace!r}, not {meta.namespace!r}")
    for field, values, reserved in (
        ("labels", meta.labels, RESERVED_LABEL_PREFIXES),
        ("annotations", meta.annotations, RESERVED_PREFIXES),
    ):
        for key in values:
            if _reserved(key, reserved):
                raise SpecError(f"metadata.{field}.{key}", "reserved for the platform; a submission may not set it")


def submitted_manifest(resource: Resource, namespace: str, submitted_by: str) -> dict[str, Any]:
    """The custom resource the cluster gets: built from the validated models, not the document sent."""
    metadata: dict[str, Any] = {
        "name": resource.metadata.name,
        "namespace": namespace,
        "annotations": {**resource.metadata.annotations, SUBMITTED_BY: submitted_by},
    }
    if resource.metadata.labels:
        metadata["labels"] = dict(resource.metadata.labels)
    return {"apiVersion": GROUP_VERSION, "kind": resource.kind, "metadata": metadata, "spec": resource.spec.to_wire()}


def run_locally(document: dict[str, Any], output_dir: str, storage_url: str | None) -> list[str]:
    """Run one resource with the engine (in a worker process); returns the ids of the results written."""
    resource = parse_resource(document)
    name = resource.metadata.name
    if isinstance(resource.spec, OptimizationStudySpec):
        from kubetrader.optimize.service import run_study

        report = run_study(resource.spec, name=name, output_dir=Path(output_dir), storage_url=storage_url)
        return [str(getattr(report, "study_name", name))]
    from kubetrader import pipeline

    assert isinstance(resource.spec, BacktestSpec)
    outcome = pipeline.execute(resource.spec, name=name, output_dir=Path(output_dir), progress=False)
    if outcome.status == "failed" and not outcome.cells:
        raise RuntimeError(outcome.error or "the backtest failed")
    cells = outcome.cells or [outcome]
    return [cell.id for cell in cells]


def preflight(spec: BacktestSpec, *, check_data: bool) -> None:
    """What `kubetrader run` refuses before it starts (kubetrader.strategy_loader, kubetrader.data), as
    SpecError naming the field. The data check is skipped for the cluster, whose store is not this one."""
    from kubetrader.errors import DataError, SpecError, StrategyError
    from kubetrader.strategy_loader import check_params, load_strategy

    try:
        check_params(load_strategy(spec.strategy.path), spec.strategy.params)
    except StrategyError as exc:
        raise SpecError("spec.strategy.path", str(exc)) from None
    if not check_data:
        return
    from kubetrader.data import DataStore
    from kubetrader.data.loader import require_dataset

    store = DataStore()
    for index, symbol in enumerate(spec.data.symbols):
        try:
            require_dataset(store, symbol, spec.data.timeframe)
        except DataError as exc:
            # The engine's message ends with the store's directory: a server path stays on the server.
            raise SpecError(f"spec.data.symbols.{index}", str(exc).split(" (store: ")[0]) from None


class SubmissionService:
    def __init__(
        self,
        *,
        results_dir: Path,
        cluster: ClusterService,
        queue: QueueService,
        optuna_storage: str | None,
        workers: int,
        namespace: str,
    ) -> None:
        self.results_dir = results_dir
        self.namespace = namespace
        self.cluster = cluster
        self.queue = queue
        self.optuna_storage = optuna_storage
        self.workers = workers
        self._states: dict[str, SubmissionState] = {}
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def validate(self, document: dict[str, Any], kind: Kind) -> Resource:
        """parse_resource, plus this endpoint's kind and the checks the CLI makes before a run: the
        strategy loads and knows its params, and (when it runs here) every symbol has data.
        Raises ValueError / pydantic's ValidationError / kubetrader's SpecError."""
        if isinstance(document, dict) and document.get("kind") != kind:
            raise ValueError(f"kind: this endpoint takes {kind}, got {document.get('kind')!r}")
        resource = parse_resource(document)
        check_metadata(resource, self.namespace)
        spec = resource.spec.backtest if isinstance(resource.spec, OptimizationStudySpec) else resource.spec
        if isinstance(spec, BacktestSpec):
            preflight(spec, check_data=not self.cluster.available)
        return resource

    def _pool_for_runs(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: forking a process that runs uvicorn's threads can copy a held lock.
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def submit(self, document: dict[str, Any], kind: Kind, *, submitted_by: str) -> SubmissionState:
        resource = self.validate(document, kind)
        submission_id = uuid.uuid4().hex[:12]
        name = resource.metadata.name
        manifest = submitted_manifest(resource, self.namespace, submitted_by)
        if self.cluster.available:
            self.cluster.create(manifest)
            state = SubmissionState(
                id=submission_id, kind=kind, name=name, target="cluster", state="created", submitted_at=_now()
            )
        elif self.queue.accepts_work and isinstance(resource.spec, BacktestSpec):
            from kubetrader.queue.tasks import NewTask
            from kubetrader.queue.workqueue import WorkQueue

            cells = expand_matrix(resource.spec)
            WorkQueue(self.queue.client()).enqueue(
                submission_id,
                [NewTask(id=cell_id, spec=cell.to_wire(), meta={"name": name}) for cell_id, cell in cells],
            )
            state = SubmissionState(
                id=submission_id,
                kind=kind,
                name=name,
                target="queue",
                state="queued",
                submitted_at=_now(),
                result_ids=[cell_id for cell_id, _ in cells],
            )
        else:
            # "running" from here on: the pool starts it as soon as a worker process is free.
            state = SubmissionState(
                id=submission_id, kind=kind, name=name, target="local", state="running", submitted_at=_now()
            )
            with self._lock:
                self._states[submission_id] = state
            future = self._pool_for_runs().submit(run_locally, manifest, str(self.results_dir), self.optuna_storage)
            future.add_done_callback(functools.partial(self._finished, submission_id))
            return state
        with self._lock:
            self._states[submission_id] = state
        return state

    def _finished(self, submission_id: str, future: Future[list[str]]) -> None:
        with self._lock:
            state = self._states[submission_id]
            error = future.exception()
            if error is None:
                update: dict[str, Any] = {"state": "succeeded", "result_ids": future.result()}
            else:
                log.warning("submission %s failed: %s", submission_id, error)
                update = {"state": "failed", "error": f"{type(error).__name__}: {error}"[:2000]}
            self._states[submission_id] = state.model_copy(update={**update, "finished_at": _now()})

    def get(self, submission_id: str) -> SubmissionState:
        with self._lock:
            state = self._states.get(submission_id)
        if state is None:
            raise SubmissionNotFoundError(submission_id)
        return self._refresh_from_queue(state)

    def list_submissions(self) -> list[SubmissionState]:
        with self._lock:
            states = list(self._states.values())
        return [self._refresh_from_queue(s) for s in sorted(states, key=lambda s: s.submitted_at, reverse=True)]

    def _refresh_from_queue(self, state: SubmissionState) -> SubmissionState:
        if state.target != "queue" or state.state in ("succeeded", "failed"):
            return state
        from kubetrader.queue.workqueue import WorkQueue

        results = WorkQueue(self.queue.client()).results(state.id, state.result_ids)
        if len(results) < len(state.result_ids):
            return state.model_copy(update={"state": "running" if results else "queued"})
        failed = [r for r in results.values() if r.status != "succeeded"]
        final = state.model_copy(update={"state": "failed" if failed else "succeeded", "finished_at": _now()})
        with self._lock:
            self._states[state.id] = final
        return final

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
