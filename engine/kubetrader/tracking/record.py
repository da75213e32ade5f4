"""Recording a backtest in MLflow, and catching up later when the store was unreachable.

MLflow is a derived record, never the only copy: the result JSON and its files
are written first, by the pipeline. When the tracking store cannot be reached,
the backtest still succeeds, a pending marker is left beside the result, and
`kubetrader mlflow sync` logs it later. Every run carries its result id as a tag
and is looked up before logging, so a result is logged exactly once however many
times it is recorded or synced.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kubetrader.results.schema import ResultDocument
from kubetrader.tracking import client as mlflow_io
from kubetrader.tracking import flatten, naming, settings

log = logging.getLogger(__name__)

TrackingState = Literal["logged", "pending", "failed"]
PENDING_DIR = "tracking-pending"
_COMPLETE = ("FINISHED", "FAILED")


def record_backtest(
    document: ResultDocument, result_path: Path, *, tracking_uri: str | None = None
) -> tuple[TrackingState, str | None]:
    """Log a finished (or failed) backtest; never raises.

    Returns ("logged", run id), ("pending", None) when the store is unreachable (a
    marker is written for `kubetrader mlflow sync`), or ("failed", None) when the store
    refused the run: our credentials (logged with what to set) or a bug; retrying would not help.
    """
    uri = settings.tracking_uri(tracking_uri)
    try:
        run_id = log_document(document, Path(result_path), tracking_uri=uri)
    except Exception as exc:
        reason = settings.refusal(exc)
        if reason is not None:
            log.error("MLflow at %s refused result %s: %s", settings.marker_uri(uri), document.metadata.id, reason)
            return "failed", None
        if settings.is_unreachable(exc):
            marker = write_pending_marker(document, Path(result_path), uri, reason=str(exc))
            log.warning(
                "MLflow at %s unreachable; result kept locally, pending marker %s", settings.marker_uri(uri), marker
            )
            return "pending", None
        log.exception("MLflow refused result %s", document.metadata.id)
        return "failed", None
    return "logged", run_id


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


@dataclass(frozen=True)
class SyncOutcome:
    result_id: str
    state: TrackingState
    run_id: str | None
    message: str = ""


def sync_pending(results_dir: Path, *, tracking_uri: str | None = None) -> list[SyncOutcome]:
    """Log every pending result under `results_dir`, then update its JSON and drop its marker.

    A result that still cannot be logged keeps its marker. Logging is idempotent (result
    id tag), so a sync interrupted after logging but before removing the marker is safe.
    """
    outcomes = []
    for marker in pending_markers(results_dir):
        body = json.loads(marker.read_text())
        result_path = Path(body["result_path"])
        if not result_path.is_file():
            result_path = marker.parent.parent / f"{body['result_id']}.json"
        result_id = str(body["result_id"])
        if not result_path.is_file():
            outcomes.append(SyncOutcome(result_id, "failed", None, f"result file {result_path} is gone"))
            continue
        document = ResultDocument.model_validate_json(result_path.read_text())
        uri = settings.uri_from_marker(tracking_uri, body.get("tracking_uri"))
        try:
            run_id = log_document(document, result_path, tracking_uri=uri)
        except Exception as exc:
            reason = settings.refusal(exc)
            state: TrackingState = "pending" if settings.is_unreachable(exc) else "failed"
            outcomes.append(SyncOutcome(result_id, state, None, reason or str(exc)[:300]))
            continue
        updated = document.model_copy(
            update={"metadata": document.metadata.model_copy(update={"tracking": "logged", "mlflow_run_id": run_id})}
        )
        _atomic_write(result_path, updated.model_dump_json(indent=1))
        marker.unlink()
        outcomes.append(SyncOutcome(result_id, "logged", run_id))
    return outcomes


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
