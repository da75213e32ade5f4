"""`execute`: run a Backtest spec and write everything it produced; the one path the CLI and Jobs share.

One spec: run -> result JSON, equity and trades CSVs, equity/drawdown SVG, HTML
tearsheet -> MLflow when tracking is on: now (`tracking="now"`, the workers' and the
optimizer's way), or later (`tracking="later"`: only a pending marker, logged afterwards by
`kubetrader mlflow sync`, so a Job exits as soon as its result is written). A matrix spec: its cells one after the
other (with a progress bar) and a consolidated table; the distributed path runs the
same `execute_one` per cell on workers.

A failure writes a result document with `status: failed` and the error (when the
spec was valid enough to have an id), and removes the artifacts an earlier run of
the same id left, so nothing on disk looks like a success that did not happen.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from kubetrader.errors import EXIT_OK, KubetraderError
from kubetrader.results.schema import ResultDocument
from kubetrader.results.store import (
    ResultPaths,
    atomic_write_text,
    remove_stale,
    result_paths,
    write_csvs,
    write_document,
)
from kubetrader.specs import HEADLINE_METRICS, BacktestSpec, expand_matrix, spec_hash

if TYPE_CHECKING:
    from kubetrader.data import DataStore
    from kubetrader.runner import BacktestResult

log = logging.getLogger(__name__)

TrackingMode = Literal["now", "later"]


@dataclass
class ExecutionOutcome:
    """What `execute` did: the status, the document and the files, or the error and its exit code."""

    id: str
    name: str
    status: Literal["succeeded", "failed"]
    paths: ResultPaths | None = None
    document: ResultDocument | None = None
    error: str | None = None
    exit_code: int = EXIT_OK
    cells: list[ExecutionOutcome] = field(default_factory=list)
    table: Path | None = None

    @property
    def metrics(self) -> dict[str, float | None]:
        return dict(self.document.metrics) if self.document else {}

    def summary(self) -> dict[str, object]:
        """The short JSON for `--summary-file` (the Job's termination message): well under 4 KB."""
        summary: dict[str, object] = {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "metrics": {name: self.metrics.get(name) for name in HEADLINE_METRICS} if self.document else {},
            "result": str(self.paths.json) if self.paths and self.document else None,
            "error": (self.error or "")[:1000] or None,
        }
        if self.document is not None:
            if self.document.warnings:
                summary["warnings"] = [w[:300] for w in self.document.warnings[:5]]
            summary["riskEvents"] = len(self.document.risk_events)
            summary["mlflowRunId"] = self.document.metadata.mlflow_run_id
        if self.cells:
            summary["cells"] = len(self.cells)
            summary["failedCells"] = sum(1 for c in self.cells if c.status == "failed")
            summary["table"] = str(self.table) if self.table else None
        return summary


def execute(
    spec: BacktestSpec,
    *,
    name: str,
    output_dir: Path | str,
    store: DataStore | None = None,
    report: bool = True,
    progress: bool = True,
    tracking: TrackingMode = "now",
) -> ExecutionOutcome:
    """Run `spec` (one backtest, or each cell of its matrix) and write its results under `output_dir`."""
    if spec.matrix is None:
        return execute_one(spec, name=name, output_dir=output_dir, store=store, report=report, tracking=tracking)
    return _execute_matrix(
        spec, name=name, output_dir=output_dir, store=store, report=report, progress=progress, tracking=tracking
    )


def execute_one(
    spec: BacktestSpec,
    *,
    name: str,
    output_dir: Path | str,
    store: DataStore | None = None,
    report: bool = True,
    tracking: TrackingMode = "now",
) -> ExecutionOutcome:
    """Run one plain spec; never raises a KubetraderError (it is in the outcome), other errors propagate.

    With tracking on, `tracking="later"` leaves the MLflow run to `kubetrader mlflow sync` (the
    result says `tracking: pending`) instead of logging it before returning."""
    from kubetrader.results.runlog import capture
    from kubetrader.runner import BacktestRunner, result_id

    rid = result_id(name, spec)
    paths = result_paths(output_dir, rid)
    remove_stale(paths)
    with capture(paths.log) as run_log:
        run_log.info(
            "backtest %s (%s): %s on %s, %s to %s",
            name, rid, spec.strategy.path, ",".join(spec.data.symbols), spec.data.start, spec.data.end,
        )  # fmt: skip
        try:
            result = BacktestRunner(spec, store=store).run()
            document = write_result(result, name=name, paths=paths, report=report, queue_tracking=spec.tracking.enabled)
        except KubetraderError as exc:
            # to the run's log (its handler also keeps logging's last-resort handler from printing it a second
            # time beside the CLI's "error:" line)
            log.error("backtest %s failed: %s", rid, exc)
            write_document(failed_document(spec, name=name, error=str(exc)), paths.json)
            return ExecutionOutcome(rid, name, "failed", paths=paths, error=str(exc), exit_code=exc.exit_code)
        except Exception as exc:  # a bug of ours: record it as failed, then let it surface
            log.exception("backtest %s failed with an internal error", rid)
            write_document(failed_document(spec, name=name, error=f"internal error: {exc!r}"), paths.json)
            raise
        for warning in document.warnings:
            run_log.warning("backtest %s: %s", rid, warning)  # into the run's log; the CLI prints them itself
        run_log.info(
            "backtest %s succeeded in %.2f s: %s",
            rid,
            document.metadata.wall_seconds,
            ", ".join(f"{n} {document.metrics.get(n)}" for n in HEADLINE_METRICS),
        )
        if spec.tracking.enabled and tracking == "now":
            document = _track(document, paths)
        if spec.tracking.enabled:
            run_log.info("tracking: %s %s", document.metadata.tracking, document.metadata.mlflow_run_id or "")
    return ExecutionOutcome(rid, name, "succeeded", paths=paths, document=document)


def write_result(
    result: BacktestResult, *, name: str, paths: ResultPaths, report: bool = True, queue_tracking: bool = False
) -> ResultDocument:
    """CSVs, then plot and tearsheet, then the JSON last: the JSON's presence means the set is complete.

    With `queue_tracking`, the MLflow pending marker is written before the JSON, which then says
    `tracking: pending`: from the moment the result exists, nothing can lose its run (a crash
    before MLflow leaves the marker to `kubetrader mlflow sync`)."""
    artifacts = {"equity_csv": paths.equity_csv.name, "trades_csv": paths.trades_csv.name}
    write_csvs(result, paths)
    document = result.to_document(name)
    if report:
        from kubetrader.results.report import plot_equity, write_tearsheet

        title = f"{name}: {result.spec.strategy.path}"
        plot_equity(document, paths.plot, title=title, benchmark=result.spec.benchmark_symbol)
        write_tearsheet(document, result, paths.plot, paths.tearsheet)
        artifacts |= {"plot": paths.plot.name, "tearsheet": paths.tearsheet.name}
    document = document.model_copy(update={"artifacts": artifacts})
    if queue_tracking:
        from kubetrader.tracking.record import queue_backtest

        queue_backtest(document, paths.json)
        metadata = document.metadata.model_copy(update={"tracking": "pending"})
        document = document.model_copy(update={"metadata": metadata})
    write_document(document, paths.json)
    return document


def failed_document(spec: BacktestSpec, *, name: str, error: str) -> ResultDocument:
    """A result document that says, unmistakably, that the run failed and why."""
    import datetime as dt

    from kubetrader.results.provenance import result_metadata

    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    metadata = result_metadata(spec, name=name, started_at=now, finished_at=now)
    return ResultDocument(
        status="failed",
        error=error,
        metadata=metadata,
        spec=spec.to_wire(),
        metrics={},
        dates=[],
        equity=[],
        returns=[],
    )


def _track(document: ResultDocument, paths: ResultPaths) -> ResultDocument:
    """Log the result now (its pending marker is already there) and record the outcome in the JSON."""
    from kubetrader.tracking import record_backtest

    state, run_id = record_backtest(document, paths.json)
    metadata = document.metadata.model_copy(update={"tracking": state, "mlflow_run_id": run_id})
    document = document.model_copy(update={"metadata": metadata})
    write_document(document, paths.json)
    return document


def _execute_matrix(
    spec: BacktestSpec,
    *,
    name: str,
    output_dir: Path | str,
    store: DataStore | None,
    report: bool,
    progress: bool,
    tracking: TrackingMode,
) -> ExecutionOutcome:
    from tqdm import tqdm

    cells = expand_matrix(spec)
    outcomes: list[ExecutionOutcome] = []
    for _cell_id, cell in tqdm(cells, desc=name, unit="cell", disable=not progress):
        outcomes.append(
            execute_one(cell, name=name, output_dir=output_dir, store=store, report=report, tracking=tracking)
        )
    campaign_id = f"{name}-{spec_hash(spec)[:10]}"
    table = write_matrix_table(
        cells, outcomes, result_paths(output_dir, campaign_id).directory / f"{campaign_id}-matrix.csv"
    )
    failed = [o for o in outcomes if o.status == "failed"]
    exit_code = max((o.exit_code for o in failed), default=EXIT_OK)
    error = f"{len(failed)} of {len(outcomes)} cells failed; first: {failed[0].error}" if failed else None
    return ExecutionOutcome(
        campaign_id,
        name,
        "failed" if failed else "succeeded",
        error=error,
        exit_code=exit_code,
        cells=outcomes,
        table=table,
    )


def write_matrix_table(cells: list[tuple[str, BacktestSpec]], outcomes: list[ExecutionOutcome], path: Path) -> Path:
    """One row per cell: id, symbols, strategy, params, status, the headline metrics, the result file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["cell", "result_id", "symbols", "strategy", "params", "status", *HEADLINE_METRICS, "result", "error"]
    )
    for (cell_id, cell), outcome in zip(cells, outcomes, strict=True):
        metrics = outcome.metrics
        writer.writerow(
            [
                cell_id,
                outcome.id,
                " ".join(cell.data.symbols),
                cell.strategy.path,
                json.dumps(cell.strategy.params, sort_keys=True),
                outcome.status,
                *(("" if metrics.get(m) is None else f"{metrics[m]:.6g}") for m in HEADLINE_METRICS),
                outcome.paths.json.name if outcome.paths else "",
                outcome.error or "",
            ]
        )
    return atomic_write_text(path, buffer.getvalue())


__all__ = ["ExecutionOutcome", "execute", "execute_one", "failed_document", "write_result"]
