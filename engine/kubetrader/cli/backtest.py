"""`kubetrader run -f FILE` and `kubetrader backtest ...`: one backtest (or a matrix) on this machine.

Both build a BacktestSpec and hand it to `kubetrader.pipeline.execute`, the path the
operator's Jobs take too. `--summary-file` writes a short JSON also on failure: the
Job passes `/dev/termination-log`, and the operator reads it as the container's
termination message (Kubernetes keeps at most 4 KB of it).

The spec models load when a file or the options are read, not at import: `--help` stays instant.

MLflow is off the run's critical path by default (`--tracking-mode background`): the result and
its pending marker are written, the command prints and exits, and a detached
`kubetrader mlflow sync --result-id ID` logs the run (once; kubetrader.tracking.record). In a
pod a background process dies with the container's main process, so there (KUBERNETES_SERVICE_HOST
is set in every pod) `background` means `wait`: the Job logs its run before it exits, its result
already written. `wait` logs before exiting, as a script that reads the run id wants; `later` only
leaves the marker, for a sync the user runs or the chart's sync loop (`kubetrader mlflow sync
--watch` on the data PVC): where that loop runs, the operator passes `--tracking-mode later`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from kubetrader.cli.options import backtest_spec_from_options, data_options, tracking_options
from kubetrader.errors import EXIT_FATAL, KubetraderError, SpecError
from kubetrader.startup import gc_paused, resume_gc

if TYPE_CHECKING:
    import subprocess

    from kubetrader.specs import BacktestSpec, OptimizationStudySpec
    from kubetrader.specs.resources import Metadata

SUMMARY_LIMIT = 4096
TRACKING_MODES = ("background", "wait", "later")


def _load_resource(path: Path) -> tuple[Metadata, BacktestSpec | OptimizationStudySpec]:
    """(metadata, spec) of a Backtest or OptimizationStudy YAML file; SpecError naming the field otherwise."""
    import yaml
    from pydantic import ValidationError

    from kubetrader.cli.options import spec_error_from_validation
    from kubetrader.specs import parse_resource

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(str(path), f"cannot read the file: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise SpecError(str(path), f"malformed YAML{where}: {getattr(exc, 'problem', None) or exc}") from exc
    try:
        resource = parse_resource(document)
    except ValidationError as exc:
        error = spec_error_from_validation(exc)
        raise SpecError(f"spec.{error.field}", error.problem) from exc
    except ValueError as exc:
        field, _, problem = str(exc).partition(": ")
        raise SpecError(field if problem else "resource", problem or str(exc)) from exc
    if resource.kind not in ("Backtest", "OptimizationStudy"):  # by name: no other kind's models are imported
        raise SpecError("kind", f"`kubetrader run` runs Backtest and OptimizationStudy resources, not {resource.kind}")
    return resource.metadata, cast("BacktestSpec | OptimizationStudySpec", resource.spec)


def write_summary(path: Path | None, summary: dict[str, Any]) -> None:
    """Write the short summary JSON, trimmed to fit Kubernetes' 4 KB termination message."""
    if path is None:
        return
    text = json.dumps(summary, separators=(",", ":"), default=str)
    if len(text.encode()) > SUMMARY_LIMIT:
        summary = {**summary, "error": (str(summary.get("error") or ""))[:200] or None}
        summary.pop("metrics", None)
        text = json.dumps(summary, separators=(",", ":"), default=str)[:SUMMARY_LIMIT]
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        click.echo(f"warning: cannot write summary to {path}: {exc}", err=True)


def _show(outcome: Any, *, as_json: bool, background: bool = False) -> None:
    from kubetrader.results.report import metrics_table

    if as_json:
        click.echo(json.dumps(outcome.summary(), indent=2, default=str))
        return
    if outcome.cells:
        for cell in outcome.cells:
            metrics = cell.metrics
            sharpe = metrics.get("sharpe_ratio")
            total = metrics.get("total_return")
            shown = (
                f"sharpe {sharpe:.3f}  return {total:.2%}"
                if sharpe is not None and total is not None
                else (cell.error or "")
            )
            click.echo(f"{cell.status:<9} {cell.id}  {shown}")
        click.echo(f"\ntable:      {outcome.table}")
        return
    if outcome.document is not None:
        document = outcome.document
        meta = document.metadata
        for warning in document.warnings:
            click.echo(f"warning: {warning}", err=True)
        used = f"{meta.first_bar or meta.start} .. {meta.last_bar or meta.end}"  # the bars used, not those asked for
        click.echo(f"{meta.strategy} on {', '.join(meta.symbols)}  {used}  ({meta.wall_seconds:.2f} s)\n")
        click.echo(metrics_table(document.metrics))
        click.echo(f"\nrisk events: {len(document.risk_events)}")
        if meta.tracking == "pending" and background:
            click.echo("mlflow:      logging in the background (kubetrader mlflow sync)")
        elif meta.tracking == "pending":
            click.echo("mlflow:      pending: `kubetrader mlflow sync` logs it")
        elif meta.tracking != "off":
            click.echo(f"mlflow:      {meta.tracking} {meta.mlflow_run_id or ''}")
        directory = outcome.paths.directory
        click.echo(f"result:      {outcome.paths.json}")
        for label, key in (
            ("plot", "plot"),
            ("tearsheet", "tearsheet"),
            ("equity", "equity_csv"),
            ("trades", "trades_csv"),
        ):
            if key in document.artifacts:
                click.echo(f"{label + ':':<12} {directory / document.artifacts[key]}")


def _execute(
    name: str,
    spec: BacktestSpec,
    *,
    output: Path,
    as_json: bool,
    summary_file: Path | None,
    tearsheet: str = "native",
    tracking_mode: str = "background",
) -> None:
    from kubetrader.pipeline import execute

    if tearsheet == "quantstats":
        import importlib.util

        if importlib.util.find_spec("quantstats") is None:  # refused before the run, like any bad option
            raise SpecError("--tearsheet", "quantstats is not installed: pip install 'kubetrader[quantstats]'")
    if tracking_mode == "background" and os.environ.get("KUBERNETES_SERVICE_HOST"):
        tracking_mode = "wait"  # in a pod: a detached sync would die with the container (the chart's loop: `later`)
    later = tracking_mode != "wait"
    outcome = execute(spec, name=name, output_dir=output, progress=not as_json, tracking="later" if later else "now")
    write_summary(summary_file, outcome.summary())
    pending = [o.id for o in (outcome.cells or [outcome]) if o.document and o.document.metadata.tracking == "pending"]
    background = tracking_mode == "background" and bool(pending)
    _show(outcome, as_json=as_json, background=background)
    if tearsheet == "quantstats" and outcome.document is not None and outcome.paths is not None:
        from kubetrader.results.report import write_quantstats_tearsheet

        path = write_quantstats_tearsheet(outcome.document, outcome.paths.directory / f"{outcome.id}-quantstats.html")
        if not as_json:
            click.echo(f"{'quantstats:':<12} {path}")
    if background:
        sync_in_background(output, pending)
    if outcome.status == "failed":
        if not as_json:
            click.echo(f"error: {outcome.error}", err=True)
        sys.exit(outcome.exit_code or EXIT_FATAL)


def sync_in_background(output: Path, result_ids: list[str]) -> subprocess.Popen[bytes]:
    """Start `kubetrader mlflow sync` for these results, detached (its own session, no terminal),
    and return without waiting: this process may exit at once. Its output goes to the pending
    markers' directory (`sync.log`); whatever it cannot log keeps its marker."""
    import subprocess  # here: nothing else on a run's path loads it

    from kubetrader.results.store import result_paths
    from kubetrader.tracking.record import PENDING_DIR

    directory = result_paths(output, "-").directory / PENDING_DIR
    directory.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "kubetrader.cli.main", "mlflow", "sync", "--results", str(output)]
    for result_id in result_ids:
        command += ["--result-id", result_id]
    with (directory / "sync.log").open("ab") as log_file:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not killed with this terminal's process group (Ctrl-C after exit)
            close_fds=True,
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": os.environ.get("MLFLOW_DISABLE_TELEMETRY", "true")},
        )


def _fail_early(exc: KubetraderError, *, name: str, summary_file: Path | None, as_json: bool) -> None:
    """A spec too broken to run still gets a summary (the operator reads it), then the usual exit."""
    summary: dict[str, Any] = {
        "id": None,
        "name": name,
        "status": "failed",
        "metrics": {},
        "result": None,
        "error": str(exc),
    }
    write_summary(summary_file, summary)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    raise exc


_output = click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("results"),
    show_default=True,
    help="Directory for results (written to OUTPUT/backtests/).",
)
_json = click.option("--json", "as_json", is_flag=True, help="Print the summary JSON instead of the table.")
_tracking_mode = click.option(
    "--tracking-mode",
    type=click.Choice(TRACKING_MODES),
    envvar="KUBETRADER_TRACKING_MODE",
    default="background",
    show_default=True,
    help="With tracking on: log to MLflow after exiting (background), before exiting (wait), or leave "
    "it to `kubetrader mlflow sync` (later). The result is written first in every mode.",
)
_summary = click.option(
    "--summary-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the summary JSON here, on failure too (e.g. /dev/termination-log).",
)


@click.command("run")
@click.option("-f", "--file", "file", type=click.Path(dir_okay=False, path_type=Path), required=True)
@_output
@_json
@_summary
@click.option(
    "--workers",
    type=int,
    default=0,
    show_default=True,
    help="Study: local worker processes over an embedded Redis (0: trials in this process).",
)
@click.option(
    "--redis",
    "redis_url",
    envvar="KUBETRADER_REDIS_URL",
    default=None,
    help="Study or matrix: put the work on this Redis (the cluster's pool).",
)
@click.option(
    "--storage",
    envvar="KUBETRADER_OPTUNA_STORAGE",
    default=None,
    help="Study: Optuna storage URL (default: a journal file under the data directory).",
)
@click.option(
    "--tearsheet",
    type=click.Choice(["native", "quantstats"]),
    default="native",
    show_default=True,
    help="Backtest: also write QuantStats' HTML report ({id}-quantstats.html; needs kubetrader[quantstats]).",
)
@_tracking_mode
@gc_paused
def run(
    file: Path,
    output: Path,
    as_json: bool,
    summary_file: Path | None,
    workers: int,
    redis_url: str | None,
    storage: str | None,
    tearsheet: str,
    tracking_mode: str,
) -> None:
    """Run a Backtest or OptimizationStudy YAML file locally (the same code path as the cluster's Job)."""
    try:
        metadata, spec = _load_resource(file)
    except KubetraderError as exc:
        _fail_early(exc, name=file.stem, summary_file=summary_file, as_json=as_json)
        return
    from kubetrader.specs import BacktestSpec  # loaded for either kind (a study's template is one)

    name = metadata.name
    if not isinstance(spec, BacktestSpec):
        from kubetrader.cli.optimize import run_study_resource

        resume_gc()  # a study's trials are no start-up
        run_study_resource(
            spec,
            name=name,
            output=output,
            as_json=as_json,
            summary_file=summary_file,
            workers=workers,
            redis_url=redis_url,
            storage=storage,
            namespace=metadata.namespace,
            uid=metadata.uid,
        )
        return
    if spec.matrix is not None and (workers or redis_url):
        resume_gc()
        _execute_campaign(name, spec, output=output, summary_file=summary_file, workers=workers, redis_url=redis_url)
        return
    _execute(
        name,
        spec,
        output=output,
        as_json=as_json,
        summary_file=summary_file,
        tearsheet=tearsheet,
        tracking_mode=tracking_mode,
    )


def _execute_campaign(
    name: str, spec: BacktestSpec, *, output: Path, summary_file: Path | None, workers: int, redis_url: str | None
) -> None:
    """A matrix over the work queue (the cluster's path); the batch id is the spec's, so re-running resumes."""
    from kubetrader.cli.parallel import run_with_progress
    from kubetrader.queue.campaign import headline, write_report
    from kubetrader.specs import HEADLINE_METRICS, spec_hash

    batch = f"{name}-{spec_hash(spec)[:10]}"
    result = run_with_progress(
        spec,
        name=name,
        batch=batch,
        workers=workers,
        redis_url=redis_url,
        output_dir=output,
        show_progress=sys.stderr.isatty(),
    )
    csv_path, json_path = write_report(result, output / "campaigns" / f"{batch}.csv")
    for rank, row in enumerate(result.ranking[:10], start=1):
        click.echo(f"{rank:>3}. {headline(row)}")
    click.echo(f"{result.succeeded} succeeded, {result.failed} failed; table: {csv_path}")
    best = result.ranking[0] if result.ranking else None
    write_summary(
        summary_file,
        {
            "id": batch,
            "name": name,
            "status": "failed" if result.failed or result.cancelled else "succeeded",
            "cells": result.tasks,
            "failedCells": result.failed,
            "best": best.task_id if best else None,
            "metrics": {k: best.metrics.get(k) for k in HEADLINE_METRICS} if best else {},
            "table": str(csv_path),
            "result": str(json_path),
            "error": None if not result.failed else f"{result.failed} cells failed",
        },
    )
    if result.failed or result.cancelled:
        sys.exit(EXIT_FATAL)


@click.command("backtest")
@click.option("--strategy", required=True, help="Import path, e.g. strategies.sma_crossover.SMACrossover.")
@data_options()
@click.option("--param", "params", multiple=True, help="Strategy parameter NAME=VALUE (repeatable).")
@click.option("--name", default=None, help="Result name (default: strategy class and first symbol).")
@tracking_options
@_output
@_json
@_summary
@_tracking_mode
@gc_paused
def backtest(
    strategy: str,
    output: Path,
    as_json: bool,
    summary_file: Path | None,
    name: str | None,
    tracking_mode: str,
    **options: Any,
) -> None:
    """Run one backtest from command-line options."""
    from kubetrader.cli.options import split_symbols

    symbols = split_symbols(options["symbols"])
    default_name = f"{strategy.rpartition('.')[2]}-{symbols[0] if symbols else 'none'}".lower()
    result_name = name or "".join(c if c.isalnum() or c in "-." else "-" for c in default_name)
    try:
        spec = backtest_spec_from_options(strategy=strategy, **options)
    except KubetraderError as exc:
        _fail_early(exc, name=result_name, summary_file=summary_file, as_json=as_json)
        return
    _execute(result_name, spec, output=output, as_json=as_json, summary_file=summary_file, tracking_mode=tracking_mode)
