"""Studies and walk-forward runs in MLflow, exactly once (apart from backtest logging in `record`).

A study is one parent run found again by its tags (`kubetrader.study` = the study's
name), never created twice: a re-run, a resumed study or `kubetrader mlflow sync`
reuses it. Each finished trial is one child run keyed by `kubetrader.trial` = its
number; only trials without a finished child are logged, and a child left RUNNING by
an interrupted logger (a killed server or process) is deleted and logged again. Child
runs carry the trial's own start and end times (Optuna's `datetime_start` /
`datetime_complete`), not the moment they were logged. The parent is set RUNNING while
it is being completed and FINISHED last, so a parent still RUNNING was interrupted.
The confirmed best backtest (its own run, logged by the pipeline) becomes a nested
child of the study (`mlflow.parentRunId`) and is named on the parent.

When MLflow cannot be reached the study's report stands and a pending marker is
written beside it; `kubetrader mlflow sync` (`sync_pending_studies`) logs it later.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetrader.redaction import MASK, redact_uri
from kubetrader.tracking import naming, settings
from kubetrader.tracking.client import ensure_experiment, get_client, log_artifacts, log_batch
from kubetrader.tracking.outcomes import SyncOutcome, TrackingState
from kubetrader.tracking.record import exclusive

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

STUDY = "kubetrader.study"
TRIAL = "kubetrader.trial"
WALK_FORWARD = "kubetrader.walkforward"
CONFIRMED_RUN = "kubetrader.confirmed_run_id"
PENDING_DIR = "study-tracking-pending"
_PAGE = 1000


STORAGE_ENV = "KUBETRADER_OPTUNA_STORAGE"  # the driver's --storage, and the operator's driver Jobs


def study_storage(recorded: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The URL to open a study's storage with: the report's own when it holds no credentials,
    else the environment's when it is that storage (same URL once masked), else None.

    A report never holds a password (kubetrader.optimize.report.StudyReport), so a sync of a
    PostgreSQL-backed study needs the URL from where the driver had it."""
    if MASK not in recorded:
        return recorded
    live = environ.get(STORAGE_ENV)
    return live if live and redact_uri(live) == recorded else None


def experiment_path(tracking: Any, strategy_path: str) -> naming.ExperimentPath:
    return naming.ExperimentPath(
        tracking.project, tracking.asset_class, tracking.strategy_family, naming.strategy_name(strategy_path)
    )


def _millis(moment: Any) -> int | None:
    return int(moment.timestamp() * 1000) if moment is not None else None


def _search(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=_PAGE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _parent(
    client: MlflowClient, experiment_id: str, key_tag: str, key: str, tags: Mapping[str, str], start: int | None
) -> tuple[str, bool]:
    """The parent run keyed by `key_tag = key`, created once (the oldest wins if a race made
    two), and whether it was created now."""
    found = _search(client, experiment_id, f"tags.`{key_tag}` = {naming.quote(key)}")
    parents = sorted((r for r in found if naming.PARENT_RUN_ID not in r.data.tags), key=lambda r: r.info.start_time)
    if parents:
        run_id = str(parents[0].info.run_id)
        client.update_run(run_id, status="RUNNING")
        return run_id, False
    run = client.create_run(experiment_id, start_time=start, tags={**tags, key_tag: key}, run_name=key)
    return str(run.info.run_id), True


def log_study(
    study: Any,
    report: Any,
    *,
    tracking: Any,
    strategy_path: str,
    settings_params: Mapping[str, Any],
    studies_dir: Path,
    tracking_uri: str | None = None,
) -> str:
    """Log (or complete) the study's parent run and its trials; returns the parent's run id."""
    with settings.short_http_timeouts():
        return _log_study(study, report, tracking, strategy_path, settings_params, studies_dir, tracking_uri)


def log_study_of_spec(study: Any, report: Any, spec: Any, *, studies_dir: Path, tracking_uri: str | None = None) -> str:
    """`log_study` with what an OptimizationStudySpec says: its tracking, strategy and params (the
    driver after a study and `kubetrader mlflow sync` after an outage log the same way)."""
    return log_study(
        study,
        report,
        tracking=spec.backtest.tracking,
        strategy_path=spec.backtest.strategy.path,
        settings_params=study_params(spec, report.study_name),
        studies_dir=studies_dir,
        tracking_uri=tracking_uri,
    )


def _log_study(
    study: Any,
    report: Any,
    tracking: Any,
    strategy_path: str,
    settings_params: Mapping[str, Any],
    studies_dir: Path,
    tracking_uri: str | None,
) -> str:
    from optuna.trial import TrialState

    from kubetrader.optimize.study import ATTR_METRICS, is_infeasible

    path = experiment_path(tracking, strategy_path)
    client = get_client(tracking_uri)
    experiment_id = ensure_experiment(client, path)
    trials = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.FAIL) and not is_infeasible(t)
    ]
    levels = path.tags()
    first = min((t.datetime_start for t in trials if t.datetime_start), default=None)
    parent_id, created = _parent(
        client,
        experiment_id,
        STUDY,
        report.study_name,
        {naming.KIND: "study", **levels, naming.RUN_NAME: report.study_name},
        _millis(first),
    )
    existing = {
        r.data.tags.get(TRIAL): r
        for r in _search(client, experiment_id, f"tags.`{naming.PARENT_RUN_ID}` = {naming.quote(parent_id)}")
        if r.data.tags.get(TRIAL) is not None
    }
    best_child = None
    for trial in trials:
        key = str(trial.number)
        previous = existing.get(key)
        if previous is not None and previous.info.status != "RUNNING":
            child_id = str(previous.info.run_id)
        else:
            if previous is not None:  # an interrupted child: log it again, whole
                client.delete_run(previous.info.run_id)
            metrics = {k: float(v) for k, v in trial.user_attrs.get(ATTR_METRICS, {}).items()}
            run = client.create_run(
                experiment_id,
                start_time=_millis(trial.datetime_start),
                tags={
                    **levels,
                    naming.KIND: "trial",
                    naming.PARENT_RUN_ID: parent_id,
                    TRIAL: key,
                    STUDY: report.study_name,
                },
                run_name=f"{report.study_name}-t{key}",
            )
            child_id = str(run.info.run_id)
            log_batch(client, child_id, params=trial.params, metrics=metrics)
            status = "FINISHED" if trial.state == TrialState.COMPLETE else "FAILED"
            client.set_terminated(child_id, status=status, end_time=_millis(trial.datetime_complete))
        if trial.number == report.best_trial:
            best_child = child_id
    summary = {"best_value": report.best_value, "deflated_sharpe": report.deflated_sharpe, "pbo": report.pbo}
    log_batch(
        client,
        parent_id,
        # MLflow params are immutable: the settings are logged when the parent is created (a
        # resumed study may have widened its budget or space); the latest are tags.
        params=settings_params if created else {},
        metrics={k: float(v) for k, v in summary.items() if v is not None},
        tags={
            **{f"best.{k}": str(v) for k, v in report.best_params.items()},
            "trials_logged": str(len(trials)),
            **{f"latest.{k}": str(v) for k, v in settings_params.items()},
        },
    )
    if best_child is not None:
        client.set_tag(best_child, naming.BEST_TRIAL, "true")
        client.set_tag(parent_id, "best_run_id", best_child)
    if report.confirmed_run_id:
        client.set_tag(report.confirmed_run_id, naming.PARENT_RUN_ID, parent_id)
        client.set_tag(report.confirmed_run_id, STUDY, report.study_name)
        client.set_tag(parent_id, CONFIRMED_RUN, report.confirmed_run_id)
    _upload(client, parent_id, studies_dir, report.artifacts.values())
    client.set_terminated(parent_id, status="FINISHED")
    return parent_id


def log_walk_forward(spec: Any, report: Any, out_dir: Path, tracking_uri: str | None = None) -> str | None:
    """A walk-forward as one run keyed by its name: per-window values as steps, the stitched
    out-of-sample metrics, the efficiency, and its files. MLflow down: logged, not raised."""
    try:
        with settings.short_http_timeouts():
            return _log_walk_forward(spec, report, out_dir, tracking_uri)
    except Exception as exc:  # MLflow is a derived record: the walk-forward's files stand
        log.warning("walk-forward %s could not be logged to MLflow: %s", report.name, settings.refusal(exc) or exc)
        return None


def _log_walk_forward(spec: Any, report: Any, out_dir: Path, tracking_uri: str | None) -> str:
    path = experiment_path(spec.backtest.tracking, spec.backtest.strategy.path)
    client = get_client(tracking_uri)
    experiment_id = ensure_experiment(client, path)
    run_id, _ = _parent(
        client, experiment_id, WALK_FORWARD, report.name, {naming.KIND: "walkforward", **path.tags()}, None
    )
    metrics = {f"oos_{k}": float(v) for k, v in report.out_of_sample_metrics.items() if v is not None}
    if report.efficiency is not None:
        metrics["efficiency"] = float(report.efficiency)
    log_batch(client, run_id, metrics=metrics, tags={"windows": str(len(report.windows)), "metric": report.metric})
    from mlflow.entities import Metric

    stamp = 0
    window_metrics = [
        Metric(name, float(value), stamp, w.index)
        for w in report.windows
        for name, value in (
            ("window_in_sample_value", w.in_sample_value),
            ("window_out_of_sample_value", w.out_of_sample_value),
            ("window_deflated_sharpe", w.deflated_sharpe),
            ("window_pbo", w.pbo),
        )
        if value is not None
    ]
    for i in range(0, len(window_metrics), 1000):
        client.log_batch(run_id, metrics=window_metrics[i : i + 1000], synchronous=True)
    _upload(client, run_id, out_dir, [*report.artifacts.values(), f"{report.name}.json"])
    client.set_terminated(run_id, status="FINISHED")
    return run_id


def _upload(client: MlflowClient, run_id: str, directory: Path, names: Any) -> None:
    import shutil

    files = [directory / n for n in names if (directory / n).is_file()]
    if not files:
        return
    run = client.get_run(run_id)
    with tempfile.TemporaryDirectory() as tmp:
        for path in files:
            shutil.copy(path, Path(tmp) / path.name)
        log_artifacts(client, str(run.info.artifact_uri), Path(tmp))


def pending_marker(studies_dir: Path, study_name: str) -> Path:
    return studies_dir / PENDING_DIR / f"{study_name}.json"


def write_pending(studies_dir: Path, study_name: str, reason: str, tracking_uri: str | None) -> Path:
    marker = pending_marker(studies_dir, study_name)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(
        json.dumps({"study": study_name, "reason": reason[:500], "tracking_uri": settings.marker_uri(tracking_uri)})
    )
    return marker


def sync_pending_studies(results_dir: Path, *, tracking_uri: str | None = None) -> list[SyncOutcome]:
    """Log every study whose report has a pending marker; `run_id` is the study's parent run.

    A study that still cannot be logged keeps its marker: "pending" when the store is unreachable,
    "failed" when it refused us (credentials: the message says what to set) or the report is
    unusable."""
    outcomes: list[SyncOutcome] = []
    for marker in sorted(Path(results_dir).rglob(f"{PENDING_DIR}/*.json")):
        # Under the marker's lock, as results are (kubetrader.tracking.record.exclusive): two syncs at
        # once (the cluster's and one run by hand) would both create the parent run, and the second
        # would read a marker the first has just removed.
        with exclusive(marker) as held:
            if held is None:
                outcomes.append(SyncOutcome(marker.stem, "busy", None, "another sync holds this marker"))
            elif marker.exists():
                outcomes.append(_sync_study_marker(marker, tracking_uri))
    return outcomes


def _sync_study_marker(marker: Path, tracking_uri: str | None) -> SyncOutcome:
    import optuna

    from kubetrader.optimize.report import StudyReport
    from kubetrader.optimize.study import open_storage
    from kubetrader.specs import OptimizationStudySpec

    body = json.loads(marker.read_text())
    studies_dir = marker.parent.parent
    report_path = studies_dir / f"{body['study']}.json"
    if not report_path.is_file():
        return SyncOutcome(body["study"], "failed", None, f"report {report_path} is gone")
    report = StudyReport.model_validate_json(report_path.read_text())
    if report.spec is None:
        return SyncOutcome(report.study_name, "failed", None, "the report has no spec to log it with")
    spec = OptimizationStudySpec.model_validate(report.spec)
    storage = study_storage(report.storage)
    if storage is None:
        reason = (
            f"the report's storage {report.storage} has its credentials masked: "
            f"set {STORAGE_ENV} to the study's storage URL to log it"
        )
        return SyncOutcome(report.study_name, "pending", None, reason)
    try:
        study = optuna.load_study(study_name=report.study_name, storage=open_storage(storage))
        run_id = log_study_of_spec(
            study,
            report,
            spec,
            studies_dir=studies_dir,
            tracking_uri=settings.uri_from_marker(tracking_uri, body.get("tracking_uri")),
        )
    except Exception as exc:
        state: TrackingState = "pending" if settings.is_unreachable(exc) else "failed"
        return SyncOutcome(report.study_name, state, None, settings.refusal(exc) or str(exc)[:300])
    report.mlflow_parent_run_id = run_id
    report_path.write_text(report.model_dump_json(indent=2))
    marker.unlink()
    return SyncOutcome(report.study_name, "logged", run_id)


def study_params(spec: Any, study_name: str) -> dict[str, Any]:
    """The parent's params: what defines the study (params are immutable in MLflow: these never change)."""
    return {
        "study_name": study_name,
        "metric": spec.objective.metric,
        "direction": spec.objective.direction,
        "sampler": spec.sampler.type,
        "space": json.dumps(spec.to_wire()["space"], sort_keys=True),
    }
