"""`kubetrader optimize`: an Optuna study from the command line (or a study YAML)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from kubetrader.cli.options import backtest_spec_from_options, data_options, spec_error_from_validation
from kubetrader.errors import SpecError
from kubetrader.optimize.naming import study_key
from kubetrader.optimize.report import StudyReport
from kubetrader.specs import OptimizationStudySpec


@click.command("optimize")
@click.option("--strategy", required=True, help="Strategy import path, e.g. strategies.sma_crossover.SMACrossover.")
@click.option(
    "--param-space",
    "param_space",
    type=click.Path(path_type=Path),
    required=True,
    help='JSON file: {"fast": {"type": "int", "low": 5, "high": 50}, ...}.',
)
@data_options()
@click.option("--param", "params", multiple=True, help="Fixed strategy parameter NAME=VALUE (repeatable).")
@click.option("--constraint", "constraints", multiple=True, help="Constraint such as 'fast < slow' (repeatable).")
@click.option("--metric", default="sharpe_ratio", show_default=True, help="Objective: any engine metric.")
@click.option("--direction", type=click.Choice(["maximize", "minimize"]), default="maximize", show_default=True)
@click.option("--n-trials", "n_trials", type=int, default=100, show_default=True)
@click.option("--study-name", "study_name", required=True, help="Re-using a name resumes that study.")
@click.option("--sampler", type=click.Choice(["tpe", "random", "grid", "cmaes"]), default="tpe", show_default=True)
@click.option("--seed", type=int, default=None)
@click.option(
    "--screen",
    type=click.Choice(["none", "vectorized"]),
    default="none",
    show_default=True,
    help="vectorized: score the grid with the strategy's exact numpy twin, confirm the best on Backtrader.",
)
@click.option(
    "--confirm-top",
    "confirm_top",
    type=int,
    default=10,
    show_default=True,
    help="With --screen vectorized: how many of the best points to re-run on Backtrader.",
)
@click.option(
    "--workers",
    type=int,
    default=0,
    show_default=True,
    help="Local worker processes over an embedded Redis (0: evaluate in this process).",
)
@click.option("--redis", "redis_url", default=None, help="Use this Redis and its workers instead.")
@click.option(
    "--lease-seconds",
    type=float,
    default=30.0,
    show_default=True,
    help="Worker lease: a trial whose worker died is re-run after this long.",
)
@click.option(
    "--trial-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="With --workers/--redis: execution deadline of one trial; past it the trial fails [300 s + 5 ms per bar].",
)
@click.option(
    "--storage",
    envvar="KUBETRADER_OPTUNA_STORAGE",
    default=None,
    help="Optuna storage URL (default: a journal file under the data dir).",
)
@click.option("--output", type=click.Path(path_type=Path), default=Path("results"), show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def optimize(
    param_space: Path,
    constraints: tuple[str, ...],
    metric: str,
    direction: str,
    n_trials: int,
    study_name: str,
    sampler: str,
    seed: int | None,
    screen: str,
    confirm_top: int,
    workers: int,
    redis_url: str | None,
    lease_seconds: float,
    trial_timeout: float | None,
    storage: str | None,
    output: Path,
    as_json: bool,
    **options: Any,
) -> None:
    """Search a strategy's parameters with Optuna; the best point is re-run in full."""
    from kubetrader.optimize.space import load_space

    template = backtest_spec_from_options(**options)
    space = load_space(param_space)
    parallelism = max(workers, 1)
    try:
        spec = OptimizationStudySpec.model_validate(
            {
                "backtest": template.to_wire(),
                "space": {k: v.model_dump() for k, v in space.items()},
                "constraints": list(constraints),
                "objective": {"metric": metric, "direction": direction},
                "trials": n_trials,
                "parallelism": min(parallelism, n_trials),
                "sampler": {"type": sampler, "seed": seed},
                "studyName": study_name,
                "screen": screen,
                "confirmTop": confirm_top,
            }
        )
    except ValidationError as exc:
        raise spec_error_from_validation(
            exc, {"objective.metric": "--metric", "trials": "--n-trials", "confirmTop": "--confirm-top"}
        ) from None
    run_and_print(
        spec,
        name=study_name,
        output=output,
        storage=storage,
        workers=workers,
        redis_url=redis_url,
        as_json=as_json,
        lease_seconds=lease_seconds,
        trial_timeout=trial_timeout,
    )


def run_and_print(
    spec: OptimizationStudySpec,
    *,
    name: str,
    output: Path,
    storage: str | None,
    workers: int,
    redis_url: str | None,
    as_json: bool,
    lease_seconds: float = 30.0,
    trial_timeout: float | None = None,
    namespace: str | None = None,
    uid: str | None = None,
) -> StudyReport:
    """Run a study with a progress bar and print its report (shared with `run -f study.yaml`)."""
    from tqdm import tqdm

    from kubetrader.optimize.service import run_study

    with tqdm(
        total=spec.trials,
        desc=f"study {spec.study_name or name}",
        unit="trial",
        disable=as_json or not sys.stderr.isatty(),
    ) as bar:

        def on_progress(progress: Any) -> None:
            bar.n = progress.done + progress.failed
            bar.set_postfix(best=progress.best_value, running=progress.running, failed=progress.failed)
            bar.refresh()

        queue_dir = _queue_dir(study_key(name, study_name=spec.study_name, namespace=namespace, uid=uid))
        with evaluator_for(workers, redis_url, output, lease_seconds, trial_timeout, queue_dir) as evaluator:
            report = run_study(
                spec,
                name=name,
                output_dir=output,
                storage_url=storage,
                evaluator=evaluator,
                on_progress=on_progress,
                namespace=namespace,
                uid=uid,
            )
    if as_json:
        click.echo(report.model_dump_json(indent=2))
        return report
    click.echo(
        f"study {report.study_name}: {report.trials_complete} complete, {report.trials_failed} failed, "
        f"{report.trials_infeasible} infeasible (storage {report.storage})"
    )
    click.echo(f"best {report.metric} = {report.best_value} at {json.dumps(report.best_params)}")
    if report.deflated_sharpe is not None:
        click.echo(
            f"deflated Sharpe ratio (P[skill beyond the luck of every point tried]): {report.deflated_sharpe:.3f}"
        )
    if report.pbo is not None:
        click.echo(f"probability of backtest overfitting (CSCV): {report.pbo:.3f}")
    if report.confirmed_result:
        click.echo(f"confirmed on Backtrader: {report.confirmed_result}")
    for label, path in report.artifacts.items():
        click.echo(f"{label}: {output / 'studies' / path}")
    return report


def _queue_dir(study_name: str) -> Path:
    """Where a study's embedded Redis keeps its append-only file, so a restarted driver adopts its trials."""
    from kubetrader.optimize.service import data_dir

    return data_dir() / "queue" / study_name


def evaluator_for(
    workers: int,
    redis_url: str | None,
    output: Path,
    lease_seconds: float,
    trial_timeout: float | None = None,
    queue_dir: Path | None = None,
) -> Any:
    """In-process evaluation, or the work queue (embedded Redis + local workers, or a given Redis)."""
    import contextlib

    from kubetrader.optimize.evaluation import InProcessEvaluator

    if workers <= 0 and not redis_url:
        return contextlib.nullcontext(InProcessEvaluator())
    if workers < 0:
        raise SpecError("--workers", "must be >= 0")
    from kubetrader.optimize.queue_evaluator import queue_evaluator

    return queue_evaluator(
        workers=workers,
        redis_url=redis_url,
        output_dir=output,
        lease_seconds=lease_seconds,
        task_timeout=trial_timeout,
        queue_dir=queue_dir,
    )


def run_study_resource(
    spec: OptimizationStudySpec,
    *,
    name: str,
    output: Path,
    as_json: bool,
    summary_file: Path | None,
    workers: int,
    redis_url: str | None,
    storage: str | None = None,
    namespace: str | None = None,
    uid: str | None = None,
) -> None:
    """`kubetrader run -f study.yaml`: a study (or, with validation.walkForward, a walk-forward run).

    `namespace` and `uid` come from the file's metadata (the operator writes both): they key the
    study's state (kubetrader.optimize.naming).

    The summary file gets the study's headline (the operator reads it as the driver Job's
    termination message); a failure is summarized too, then raised with its exit code.
    """
    from kubetrader.cli.backtest import write_summary
    from kubetrader.errors import KubetraderError
    from kubetrader.results.runlog import capture

    study_name = spec.study_name or name
    with capture(output / "studies" / f"{study_name}.log") as run_log:
        run_log.info("study %s: %s trials of %s, objective %s", study_name, spec.trials, spec.backtest.strategy.path,
                     spec.objective.metric)  # fmt: skip
        try:
            if spec.validation is not None and spec.validation.walk_forward is not None:
                summary = _walk_forward(
                    spec, name=name, output=output, as_json=as_json, workers=workers, redis_url=redis_url,
                    namespace=namespace, uid=uid,
                )  # fmt: skip
            else:
                report = run_and_print(
                    spec,
                    name=name,
                    output=output,
                    storage=storage,
                    workers=workers,
                    redis_url=redis_url,
                    as_json=as_json,
                    namespace=namespace,
                    uid=uid,
                )
                summary = {
                    "name": name,
                    "status": "succeeded",
                    "kind": "OptimizationStudy",
                    "metric": report.metric,
                    "bestValue": report.best_value,
                    "bestParams": report.best_params,
                    "trialsComplete": report.trials_complete,
                    "trialsFailed": report.trials_failed,
                    "deflatedSharpe": report.deflated_sharpe,
                    "mlflowParentRunId": report.mlflow_parent_run_id,
                    "result": report.confirmed_result,
                    "error": None,
                }
        except KubetraderError as exc:
            run_log.error("study %s failed: %s", study_name, exc)
            write_summary(
                summary_file, {"name": name, "status": "failed", "kind": "OptimizationStudy", "error": str(exc)}
            )
            raise
        run_log.info("study %s finished: %s", study_name, {k: v for k, v in summary.items() if k != "name"})
    write_summary(summary_file, summary)


def _walk_forward(
    spec: OptimizationStudySpec,
    *,
    name: str,
    output: Path,
    as_json: bool,
    workers: int,
    redis_url: str | None,
    namespace: str | None = None,
    uid: str | None = None,
) -> dict[str, Any]:
    from kubetrader.optimize.service import data_dir
    from kubetrader.optimize.validation import run_walk_forward
    from kubetrader.results.report import metrics_table

    with evaluator_for(workers, redis_url, output, 30.0) as evaluator:
        report = run_walk_forward(
            spec, name=name, output_dir=output, data_dir=data_dir(), evaluator=evaluator, namespace=namespace, uid=uid
        )
    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        for w in report.windows:
            click.echo(
                f"window {w.index}: IS {w.in_sample[0]}..{w.in_sample[1]} best {w.best_params} "
                f"({report.metric} {w.in_sample_value}) -> OOS {w.out_of_sample[0]}..{w.out_of_sample[1]} "
                f"{report.metric} {w.out_of_sample_value}"
            )
        click.echo("\nstitched out-of-sample:")
        click.echo(metrics_table(report.out_of_sample_metrics))
        click.echo(f"\nwalk-forward efficiency (OOS CAGR / IS CAGR): {report.efficiency}")
        for label, path in report.artifacts.items():
            click.echo(f"{label}: {output / 'walkforward' / path}")
    return {
        "name": name,
        "status": "succeeded",
        "kind": "OptimizationStudy",
        "walkForward": True,
        "metric": report.metric,
        "outOfSample": {k: report.out_of_sample_metrics.get(k) for k in ("sharpe_ratio", "total_return", "cagr")},
        "windows": len(report.windows),
        "error": None,
    }
