"""The MLflow I/O: experiments, runs, batches, artifacts and the SIGTERM guard.

Everything else in the package is pure; this is the one module that talks to a
tracking store. Round trips are few on purpose (a run costs: create, one
`log_batch`, the artifact uploads side by side, terminate), because a study logs
thousands of trials and a Job pays every one of them. MlflowClient's own
`log_artifacts` and `set_terminated` each fetch the whole run first (to find the
artifact location, and to print the run's URL); the run created here already says
where its artifacts go, and the URL is not printed.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from kubetrader.tracking import naming, settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

# mlflow.utils.validation: MAX_PARAMS_TAGS_PER_BATCH, MAX_METRICS_PER_BATCH, MAX_ENTITIES_PER_BATCH
_MAX_PARAMS_TAGS = 100
_MAX_METRICS = 1000
_MAX_ENTITIES = 1000
# Concurrent artifact uploads to a tracking server (a run has about six files).
_UPLOAD_THREADS = 8

_experiment_ids: dict[tuple[str, str], str] = {}
_lock = threading.Lock()


def get_client(tracking_uri: str | None = None) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=settings.tracking_uri(tracking_uri))


def _experiment_name(experiment: str | naming.ExperimentPath) -> str:
    return experiment.name if isinstance(experiment, naming.ExperimentPath) else experiment


def ensure_experiment(client: MlflowClient, experiment: str | naming.ExperimentPath) -> str:
    """The experiment's id, created (with its level tags) when absent. Safe under races:
    two processes creating the same experiment both end up with the one that won."""
    from mlflow.exceptions import MlflowException

    name = _experiment_name(experiment)
    uri = client.tracking_uri
    cached = _experiment_ids.get((uri, name))
    if cached:
        return cached
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        experiment_id = str(found.experiment_id)
    else:
        tags = {naming.MANAGED: "true"}
        path = experiment if isinstance(experiment, naming.ExperimentPath) else _try_parse(name)
        if path is not None:
            tags.update(path.tags())
        try:
            experiment_id = client.create_experiment(name, artifact_location=settings.artifact_root(uri), tags=tags)
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code) and "already exists" not in str(exc):
                raise
            again = client.get_experiment_by_name(name)
            if again is None:
                raise
            experiment_id = str(again.experiment_id)
    with _lock:
        _experiment_ids[(uri, name)] = experiment_id
    return experiment_id


def _try_parse(name: str) -> naming.ExperimentPath | None:
    try:
        return naming.ExperimentPath.parse(name)
    except ValueError:
        return None


def log_batch(
    client: MlflowClient,
    run_id: str,
    *,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
    step: int = 0,
) -> None:
    """Params, metrics and tags in as few `log_batch` calls as MLflow's limits allow (one, usually)."""
    from mlflow.entities import Metric, Param, RunTag

    stamp = int(time.time() * 1000)
    pending_params = [Param(str(k), str(v)[:6000]) for k, v in (params or {}).items()]
    pending_metrics = [Metric(str(k), float(v), stamp, step) for k, v in (metrics or {}).items()]
    pending_tags = [RunTag(str(k), str(v)[:8000]) for k, v in (tags or {}).items()]
    while pending_params or pending_metrics or pending_tags:
        batch_params, pending_params = pending_params[:_MAX_PARAMS_TAGS], pending_params[_MAX_PARAMS_TAGS:]
        room_tags = _MAX_PARAMS_TAGS - len(batch_params)
        batch_tags, pending_tags = pending_tags[:room_tags], pending_tags[room_tags:]
        room_metrics = min(_MAX_METRICS, _MAX_ENTITIES - len(batch_params) - len(batch_tags))
        batch_metrics, pending_metrics = pending_metrics[:room_metrics], pending_metrics[room_metrics:]
        client.log_batch(run_id, metrics=batch_metrics, params=batch_params, tags=batch_tags, synchronous=True)


def log_run(
    experiment: str | naming.ExperimentPath,
    *,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    artifacts_dir: Path | None = None,
    parent_run_id: str | None = None,
    status: str = "FINISHED",
    start_time: int | None = None,
    end_time: int | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Log one complete run (a backtest, or a trial under `parent_run_id`) and return its id.

    The run is terminated last, so a run whose status is still RUNNING was interrupted
    half-way: that is how `sync` tells a complete run from a broken one.
    """
    if isinstance(experiment, naming.ExperimentPath):  # runs carry the levels too: queries filter on them
        tags = {**experiment.tags(), **tags}
    with settings.short_http_timeouts():
        client = get_client(tracking_uri)
        experiment_id = ensure_experiment(client, experiment)
        with open_run(client, experiment_id, tags=tags, parent_run_id=parent_run_id, start_time=start_time) as handle:
            log_batch(client, handle.run_id, params=params, metrics=metrics)
            if artifacts_dir is not None:
                log_artifacts(client, handle.artifact_uri, Path(artifacts_dir))
            handle.status = status
            handle.end_time = end_time
        return handle.run_id


def log_artifacts(client: MlflowClient, artifact_uri: str, directory: Path) -> None:
    """Upload every file under `directory` to a run's artifact location (`artifact_uri`, from the run
    itself: no extra round trip to look it up). Through a tracking server the files go up side by
    side; each is a separate HTTP request."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    files = sorted(path for path in directory.rglob("*") if path.is_file())
    if not files:
        return
    repository = get_artifact_repository(artifact_uri, tracking_uri=client.tracking_uri)
    if len(files) == 1 or isinstance(repository, LocalArtifactRepository):
        repository.log_artifacts(str(directory))
        return

    def upload(path: Path) -> None:
        parent = path.parent.relative_to(directory).as_posix()
        repository.log_artifact(str(path), None if parent == "." else parent)

    with ThreadPoolExecutor(max_workers=min(_UPLOAD_THREADS, len(files))) as pool:
        for _ in pool.map(upload, files):  # re-raises the first failed upload
            pass


@dataclass
class RunHandle:
    """An open run; set `status` before leaving the `open_run` block to choose how it ends."""

    client: MlflowClient
    run_id: str
    artifact_uri: str = ""
    status: str = "FINISHED"
    end_time: int | None = None


# Runs open in this process; the SIGTERM handler marks them KILLED.
_open_runs: dict[str, RunHandle] = {}


class _Handler:
    """The SIGTERM handler that was in place before ours (None: ours is not installed)."""

    previous: Any = None


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Mark every open run KILLED, then do what the process would have done without us."""
    with _lock:
        handles = list(_open_runs.values())
        _open_runs.clear()
    for handle in handles:
        with contextlib.suppress(Exception):  # best effort: the process is going away
            handle.client.set_terminated(handle.run_id, status="KILLED")
    previous = _Handler.previous
    _restore_handler()
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        raise SystemExit(128 + signum)


def _install_handler() -> None:
    if threading.current_thread() is not threading.main_thread() or _Handler.previous is not None:
        return
    _Handler.previous = signal.signal(signal.SIGTERM, _on_sigterm)


def _restore_handler() -> None:
    if _Handler.previous is None or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, _Handler.previous)
    _Handler.previous = None


@contextlib.contextmanager
def open_run(
    client: MlflowClient,
    experiment_id: str,
    *,
    tags: Mapping[str, str] | None = None,
    parent_run_id: str | None = None,
    start_time: int | None = None,
) -> Iterator[RunHandle]:
    """Create a run; end it FINISHED (or `handle.status`), FAILED on an exception, KILLED on SIGTERM.

    While the run is open a SIGTERM handler is installed (main thread only), so a Job
    deleted by Kubernetes does not leave a run RUNNING for ever.
    """
    all_tags = dict(tags or {})
    if parent_run_id:
        all_tags[naming.PARENT_RUN_ID] = parent_run_id
    run = client.create_run(experiment_id, start_time=start_time, tags=all_tags, run_name=all_tags.get(naming.RUN_NAME))
    handle = RunHandle(client, run.info.run_id, artifact_uri=str(run.info.artifact_uri))
    with _lock:
        _open_runs[handle.run_id] = handle
    _install_handler()
    try:
        yield handle
    except BaseException:
        if _forget(handle.run_id):
            with contextlib.suppress(Exception):
                client.set_terminated(handle.run_id, status="FAILED")
        raise
    else:
        if _forget(handle.run_id):
            client.set_terminated(handle.run_id, status=handle.status, end_time=handle.end_time)


def _forget(run_id: str) -> bool:
    """Drop a run from the open set; False when the SIGTERM handler already ended it."""
    with _lock:
        known = _open_runs.pop(run_id, None) is not None
        empty = not _open_runs
    if empty:
        _restore_handler()
    return known


@dataclass
class ParentRun:
    """A study: the parent run, its child runs (trials) and the best one."""

    handle: RunHandle
    experiment_name: str
    tracking_uri: str
    inherited_tags: dict[str, str] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.handle.run_id

    def log_child(
        self,
        *,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str] | None = None,
        artifacts_dir: Path | None = None,
        status: str = "FINISHED",
    ) -> str:
        """Log one trial as a complete child run; returns its run id."""
        child_tags = {**self.inherited_tags, naming.KIND: "trial", **(tags or {})}
        run_id = log_run(
            self.experiment_name,
            params=params,
            metrics=metrics,
            tags=child_tags,
            artifacts_dir=artifacts_dir,
            parent_run_id=self.run_id,
            status=status,
            tracking_uri=self.tracking_uri,
        )
        self.children.append(run_id)
        return run_id

    def mark_best(self, child_run_id: str, *, metrics: Mapping[str, float] | None = None) -> None:
        """Tag the best trial, and record its id (and metrics) on the parent."""
        client = self.handle.client
        client.set_tag(child_run_id, naming.BEST_TRIAL, "true")
        log_batch(client, self.run_id, metrics=metrics or {}, tags={"best_run_id": child_run_id})

    def log(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        log_batch(self.handle.client, self.run_id, params=params, metrics=metrics, tags=tags)


@contextlib.contextmanager
def start_parent_run(
    experiment: str | naming.ExperimentPath,
    *,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    run_name: str | None = None,
    tracking_uri: str | None = None,
) -> Iterator[ParentRun]:
    """Open a study's parent run; trials are logged with `ParentRun.log_child`.

    The parent ends FINISHED when the block ends, FAILED on an exception, KILLED on SIGTERM.
    """
    client = get_client(tracking_uri)
    experiment_id = ensure_experiment(client, experiment)
    parent_tags = {naming.KIND: "study", **(tags or {})}
    if isinstance(experiment, naming.ExperimentPath):
        parent_tags.update(experiment.tags())
    if run_name:
        parent_tags[naming.RUN_NAME] = run_name
    with open_run(client, experiment_id, tags=parent_tags) as handle:
        inherited = {k: v for k, v in parent_tags.items() if k in naming.LEVEL_TAGS}
        parent = ParentRun(handle, _experiment_name(experiment), client.tracking_uri, inherited)
        if params:
            parent.log(params=params)
        yield parent
