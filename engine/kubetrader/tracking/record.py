"""Recording a backtest in MLflow, now or later, and catching up when the store was unreachable.

MLflow is a derived record, never the only copy: the result JSON and its files are written
first, by the pipeline, and then a pending marker beside the result says "log me" before any
MLflow call. The marker goes only once the run is logged, so a crash at any point between the
two steps loses nothing: `kubetrader mlflow sync` finds the marker and logs the result. That is
also how logging leaves a Job's critical path (`queue_backtest`): the Job writes its result and
the marker, exits, and the run is logged by a sync afterwards (`kubetrader run --tracking-mode`).

Exactly once: every run carries its result id as a tag and is looked up before logging (a run
left half-logged by a crash is deleted first), and a marker is synced under an exclusive lock on
it, so two syncs at once (a background one and a CronJob's) cannot both log the same result.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from kubetrader.results.schema import ResultDocument
from kubetrader.tracking import client as mlflow_io
from kubetrader.tracking import flatten, naming, settings
from kubetrader.tracking.outcomes import SyncOutcome, TrackingState

log = logging.getLogger(__name__)

PENDING_DIR = "tracking-pending"
_COMPLETE = ("FINISHED", "FAILED")


def record_backtest(
    document: ResultDocument, result_path: Path, *, tracking_uri: str | None = None
) -> tuple[TrackingState, str | None]:
    """Log a finished (or failed) backtest now; never raises.

    The pending marker is written first and removed once the run is logged, so a process killed
    in between leaves the result to `kubetrader mlflow sync`. Returns ("logged", run id),
    ("pending", None) when the store is unreachable (the marker stays, with the reason), or
    ("failed", None) when the store refused the run: our credentials (logged with what to set) or
    a bug; retrying would not help, so no marker is left.
    """
    uri = settings.tracking_uri(tracking_uri)
    marker = write_pending_marker(document, Path(result_path), uri, reason="logging")
    with exclusive(marker) as held:
        if held is None:  # a sync is logging this very result: it finishes the job
            return "pending", None
        try:
            run_id = log_document(document, Path(result_path), tracking_uri=uri)
        except Exception as exc:
            if settings.is_unreachable(exc):
                write_pending_marker(document, Path(result_path), uri, reason=str(exc))
                log.warning(
                    "MLflow at %s unreachable; result kept locally, pending marker %s",
                    settings.marker_uri(uri),
                    marker,
                )
                return "pending", None
            marker.unlink(missing_ok=True)
            if (reason := settings.refusal(exc)) is not None:  # our credentials: say what to set
                log.error("MLflow at %s refused result %s: %s", settings.marker_uri(uri), document.metadata.id, reason)
            else:
                log.exception("MLflow refused result %s", document.metadata.id)
            return "failed", None
        marker.unlink(missing_ok=True)
    return "logged", run_id


def queue_backtest(document: ResultDocument, result_path: Path, *, tracking_uri: str | None = None) -> Path:
    """Leave the result for a later `kubetrader mlflow sync` (no MLflow call, no MLflow import):
    the marker, returned, is all a sync needs. The caller records `tracking: pending` in the JSON."""
    uri = settings.tracking_uri(tracking_uri)
    return write_pending_marker(document, Path(result_path), uri, reason="queued: logged by `kubetrader mlflow sync`")


def log_document(document: ResultDocument, result_path: Path, *, tracking_uri: str | None = None) -> str:
    """Log the document unless a complete run for its result id exists; returns the run id.

    Raises whatever MLflow raises: callers decide between pending and failed.
    """
    path = flatten.experiment_path(document)
    result_id = document.metadata.id
    with settings.short_http_timeouts():
        client = mlflow_io.get_client(tracking_uri)
        experiment_id = mlflow_io.ensure_experiment(client, path)
        existing = find_result_run(client, experiment_id, result_id)
        if existing is not None:
            return existing
        with tempfile.TemporaryDirectory(prefix="kubetrader-mlflow-") as staging:
            stage_artifacts(document, result_path, Path(staging))
            return mlflow_io.log_run(
                path,
                params=flatten.params_from_spec(flatten.backtest_spec(document)),
                metrics=flatten.metrics_from_document(document),
                tags=flatten.tags_from_document(document, path),
                artifacts_dir=Path(staging),
                status=flatten.run_status(document),
                start_time=flatten.iso_to_millis(document.metadata.started_at),
                end_time=flatten.iso_to_millis(document.metadata.finished_at),
                tracking_uri=client.tracking_uri,
            )


def find_result_run(client: object, experiment_id: str, result_id: str) -> str | None:
    """The complete run logged for this result, if any. Incomplete ones (interrupted half-way:
    still RUNNING, or KILLED) are deleted so that the one logged next is the only one."""
    from mlflow import MlflowClient

    assert isinstance(client, MlflowClient)
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.{naming.RESULT_ID} = {naming.quote(result_id)}", max_results=50
    )
    complete = [run for run in runs if run.info.status in _COMPLETE]
    for run in runs:
        if run.info.status not in _COMPLETE:
            client.delete_run(run.info.run_id)
    return complete[0].info.run_id if complete else None


def stage_artifacts(document: ResultDocument, result_path: Path, staging: Path) -> None:
    """Copy the result's files into one directory so they go up in one `log_artifacts` call."""
    import yaml

    base = result_path.parent
    for name, relative in document.artifacts.items():
        source = base / relative
        if not source.is_file():
            log.warning("artifact %s (%s) listed in result %s is missing", name, source, document.metadata.id)
            continue
        target = staging / Path(relative).name
        shutil.copyfile(source, target)
    (staging / "result.json").write_text(document.model_dump_json(indent=1))
    (staging / "spec.yaml").write_text(yaml.safe_dump(document.spec, sort_keys=False))


# --- pending markers and sync ---------------------------------------------------------------


def pending_marker_path(result_path: Path, result_id: str) -> Path:
    return result_path.parent / PENDING_DIR / f"{result_id}.json"


def write_pending_marker(document: ResultDocument, result_path: Path, tracking_uri: str, *, reason: str) -> Path:
    marker = pending_marker_path(result_path, document.metadata.id)
    marker.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "result_id": document.metadata.id,
        "result_path": str(result_path.resolve()),
        "tracking_uri": settings.marker_uri(tracking_uri),
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "reason": reason[:2000],
    }
    _atomic_write(marker, json.dumps(body, indent=1))
    return marker


def pending_markers(results_dir: Path) -> list[Path]:
    return sorted(Path(results_dir).rglob(f"{PENDING_DIR}/*.json"))


def sync_pending(
    results_dir: Path,
    *,
    tracking_uri: str | None = None,
    result_ids: Sequence[str] | None = None,
    on_outcome: Callable[[SyncOutcome], None] | None = None,
) -> list[SyncOutcome]:
    """Log every pending result under `results_dir` (or only those of `result_ids`), then mark its
    JSON logged and drop its marker.

    A result that still cannot be logged keeps its marker. A marker another sync holds is skipped
    ("busy"): that sync logs it. Logging is idempotent (result id tag), so a sync interrupted after
    logging but before removing the marker is safe. `on_outcome` hears of each one as it is done
    (`kubetrader mlflow sync --watch` prints it and beats its heartbeat).
    """
    wanted = set(result_ids) if result_ids is not None else None
    outcomes = []
    for marker in pending_markers(results_dir):
        if wanted is not None and marker.stem not in wanted:
            continue
        with exclusive(marker) as held:
            if held is None:
                outcome = SyncOutcome(marker.stem, "busy", None, "another sync holds this marker")
            elif not marker.exists():  # synced by the one that held it before us
                continue
            else:
                outcome = _sync_marker(marker, tracking_uri)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return outcomes


@contextlib.contextmanager
def exclusive(marker: Path) -> Iterator[object | None]:
    """An exclusive, non-blocking flock on a lock file beside the marker (the marker itself is
    replaced and unlinked, so it cannot carry the lock); None when another process has it.

    Shared by result and study markers: whoever holds it is the one process logging that marker.
    On a ReadWriteMany NFS volume the Linux client emulates flock() with a whole-file fcntl lock
    (man7.org/linux/man-pages/man2/flock.2.html, "NFS details": since Linux 2.6.12; the file must be
    open for writing, hence "a"), so syncs on different nodes exclude each other too."""
    lock_path = marker.with_name(f".{marker.name}.lock")
    try:
        handle = lock_path.open("a")
    except FileNotFoundError:  # the marker directory went with the last marker
        yield None
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        try:
            yield handle
        finally:
            if not marker.exists():
                lock_path.unlink(missing_ok=True)


def _sync_marker(marker: Path, tracking_uri: str | None) -> SyncOutcome:
    from kubetrader.results.store import write_document

    body = json.loads(marker.read_text())
    result_path = Path(body["result_path"])
    if not result_path.is_file():
        result_path = marker.parent.parent / f"{body['result_id']}.json"
    result_id = str(body["result_id"])
    if not result_path.is_file():
        return SyncOutcome(result_id, "failed", None, f"result file {result_path} is gone")
    document = ResultDocument.model_validate_json(result_path.read_text())
    uri = settings.uri_from_marker(tracking_uri, body.get("tracking_uri"))
    try:
        run_id = log_document(document, result_path, tracking_uri=uri)
    except Exception as exc:
        state: TrackingState = "pending" if settings.is_unreachable(exc) else "failed"
        return SyncOutcome(result_id, state, None, settings.refusal(exc) or str(exc)[:300])
    metadata = document.metadata.model_copy(update={"tracking": "logged", "mlflow_run_id": run_id})
    write_document(document.model_copy(update={"metadata": metadata}), result_path)
    marker.unlink()
    return SyncOutcome(result_id, "logged", run_id)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
