"""`kubetrader experiments`: the research lab's experiments and runs, from MLflow.

Thin: every command calls one ProjectManager method (the dashboard calls the same).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

_LEVELS = (
    click.option("--project", help="Project, e.g. Q1_2025."),
    click.option("--asset-class", help="Asset class, e.g. Equities."),
    click.option("--family", "strategy_family", help="Strategy family, e.g. MeanReversion."),
    click.option("--strategy", help="Strategy class name, e.g. SMACrossover."),
)
_URI = click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI (default: local store).")


def _with(options: tuple[Callable[[Any], Any], ...]) -> Callable[[Any], Any]:
    def decorate(function: Any) -> Any:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _show(frame: Any, columns: list[str] | None = None) -> None:
    import pandas as pd

    if frame.empty:
        click.echo("(nothing found)")
        return
    shown = frame[[c for c in columns if c in frame.columns]] if columns else frame
    with pd.option_context("display.max_rows", 500, "display.max_columns", 30, "display.width", 200):
        click.echo(shown.to_string(index=False))


@click.group()
def experiments() -> None:
    """List, query, compare and export the lab's experiments and runs."""


@experiments.command("list")
@_with(_LEVELS)
@click.option("--days", type=float, help="Only experiments created or with a run in the last N days.")
@_URI
def list_(
    project: str | None,
    asset_class: str | None,
    strategy_family: str | None,
    strategy: str | None,
    days: float | None,
    tracking_uri: str | None,
) -> None:
    """Experiments (Project.AssetClass.StrategyFamily.Strategy)."""
    from kubetrader.tracking import ProjectManager

    manager = ProjectManager(tracking_uri)
    if days is not None:
        frame = manager.query_recent_experiments(days)
        for key, value in (
            ("project", project),
            ("asset_class", asset_class),
            ("strategy_family", strategy_family),
            ("strategy", strategy),
        ):
            if value:
                frame = frame[frame[key] == value]
    else:
        frame = manager.experiments(
            project=project, asset_class=asset_class, strategy_family=strategy_family, strategy=strategy
        )
    _show(frame)


@experiments.command()
@_with(_LEVELS)
@click.option("--status", help="MLflow run status: FINISHED, FAILED, KILLED, RUNNING.")
@click.option("--days", type=float, help="Only runs started in the last N days.")
@click.option("--metric", "metrics", multiple=True, default=("sharpe_ratio", "total_return", "max_drawdown"))
@_URI
def query(
    project: str | None,
    asset_class: str | None,
    strategy_family: str | None,
    strategy: str | None,
    status: str | None,
    days: float | None,
    metrics: tuple[str, ...],
    tracking_uri: str | None,
) -> None:
    """Runs at the given levels, newest first."""
    from kubetrader.tracking import ProjectManager

    frame = ProjectManager(tracking_uri).runs(
        project=project,
        asset_class=asset_class,
        strategy_family=strategy_family,
        strategy=strategy,
        status=status,
        since_days=days,
    )
    _show(frame, ["run_id", "experiment", "run_name", "status", "start_time", *(f"metrics.{m}" for m in metrics)])


@experiments.command()
@click.option("--project", required=True)
@click.option("--metric", default="sharpe_ratio", show_default=True)
@click.option("--asset-class")
@_URI
def compare(project: str, metric: str, asset_class: str | None, tracking_uri: str | None) -> None:
    """Rank a project's strategies by their best finished run on a metric."""
    from kubetrader.specs.common import did_you_mean
    from kubetrader.specs.metrics import METRIC_NAMES
    from kubetrader.tracking import ProjectManager

    if metric not in METRIC_NAMES and metric != "run_duration_seconds":
        hint = did_you_mean(metric, METRIC_NAMES)
        raise click.BadParameter(f"unknown metric {metric!r}{hint}", param_hint="--metric")
    _show(ProjectManager(tracking_uri).compare_strategies(project, metric, asset_class=asset_class))


@experiments.command()
@_with(_LEVELS)
@click.option("--status")
@click.option("--days", type=float)
@click.option("--format", "format_", type=click.Choice(["csv", "json", "html"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True)
@_URI
def export(
    project: str | None,
    asset_class: str | None,
    strategy_family: str | None,
    strategy: str | None,
    status: str | None,
    days: float | None,
    format_: str,
    output: Path,
    tracking_uri: str | None,
) -> None:
    """Write the matching runs (params, metrics, tags) to a CSV, JSON or HTML file."""
    from kubetrader.tracking import ProjectManager

    manager = ProjectManager(tracking_uri)
    frame = manager.runs(
        project=project,
        asset_class=asset_class,
        strategy_family=strategy_family,
        strategy=strategy,
        status=status,
        since_days=days,
    )
    from kubetrader.tracking.projects import write_frame

    write_frame(frame, output, format_)  # type: ignore[arg-type]
    click.echo(f"wrote {len(frame)} runs to {output}")
