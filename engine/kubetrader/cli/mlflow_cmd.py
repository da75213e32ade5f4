"""`kubetrader mlflow`: keep the tracking store in order (sync, migrate, indexes, archive)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from kubetrader.tracking.outcomes import SyncOutcome

_URI = click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI (default: local store).")


@click.group("mlflow")
def mlflow_group() -> None:
    """Maintain the MLflow tracking store."""


@mlflow_group.command()
@click.option("--results", "results_dir", type=click.Path(path_type=Path), default=Path("results"), show_default=True)
@click.option("--tracking-uri", help="Where to log (default: where each result was meant to go).")
@click.option("--result-id", "result_ids", multiple=True, help="Only this result (repeatable; default: all pending).")
@click.option(
    "--watch",
    "interval",
    type=click.FloatRange(min=0.1),
    default=None,
    metavar="SECONDS",
    help="Keep going: a pass every SECONDS until SIGTERM (the chart's mlflow-sync Deployment). "
    "Results MLflow cannot take yet wait for the next pass instead of ending the command.",
)
@click.option(
    "--studies/--no-studies",
    default=True,
    show_default=True,
    help="Also log the studies left pending (each needs its Optuna storage; the chart's loop has none).",
)
@click.option(
    "--heartbeat",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --watch: touch this file after each result and each pass (the liveness probe reads its age).",
)
def sync(
    results_dir: Path,
    tracking_uri: str | None,
    result_ids: tuple[str, ...],
    interval: float | None,
    studies: bool,
    heartbeat: Path | None,
) -> None:
    """Log the results waiting for MLflow (left for later, or kept when it was unreachable), each
    exactly once. Safe to run at any time and in several places at once: each marker is logged
    under an exclusive lock on the results volume, and a run is found again by its result id.

    Exit 0 when all are logged, 3 when some wait on an unreachable store (run it again later), 2
    when the store refused some (credentials; each line says what to set): retrying cannot help.
    With --watch it exits 0 on SIGTERM and retries the others on every pass."""
    from kubetrader.errors import FatalError, InfrastructureError

    if interval is not None:
        from kubetrader.tracking.watch import watch

        watch(
            lambda beat: _sync_pass(results_dir, tracking_uri, result_ids, studies=studies, on_outcome=beat),
            interval=interval,
            heartbeat=heartbeat,
        )
        return
    states = {o.state for o in _sync_pass(results_dir, tracking_uri, result_ids, studies=studies, totals=True)}
    if "failed" in states:
        raise FatalError("MLflow refused some results or studies (see each line): fix that, then sync again")
    if "pending" in states:
        raise InfrastructureError("MLflow still unreachable for some results or studies; run sync again later")


def _sync_pass(
    results_dir: Path,
    tracking_uri: str | None,
    result_ids: tuple[str, ...],
    *,
    studies: bool = True,
    totals: bool = False,
    on_outcome: Callable[[], None] | None = None,
) -> list[SyncOutcome]:
    """One pass over the pending results, then the pending studies: a line per marker as it is done,
    and (`totals`, or whenever a watch pass did something) how many were logged."""
    from kubetrader.tracking import sync_pending
    from kubetrader.tracking.studies import sync_pending_studies

    def show(outcome: SyncOutcome) -> None:
        click.echo(f"{outcome.name}\t{outcome.state}\t{outcome.run_id or outcome.message}")
        if on_outcome is not None:
            on_outcome()

    results = sync_pending(results_dir, tracking_uri=tracking_uri, result_ids=result_ids or None, on_outcome=show)
    study_outcomes = [] if result_ids or not studies else sync_pending_studies(results_dir, tracking_uri=tracking_uri)
    for outcome in study_outcomes:
        show(outcome)
    for kind, outcomes in (("results", results), ("studies", study_outcomes)):
        if outcomes or (totals and kind == "results"):
            logged = sum(o.state == "logged" for o in outcomes)
            click.echo(f"{logged} of {len(outcomes)} pending {kind} logged")
    return [*results, *study_outcomes]


@mlflow_group.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--auth-database-uri",
    envvar="MLFLOW_AUTH_DATABASE_URI",
    required=True,
    help="SQLAlchemy URL of the auth app's user store (may be MLflow's own database).",
)
@click.option(
    "--default-permission",
    envvar="MLFLOW_AUTH_DEFAULT_PERMISSION",
    type=click.Choice(["NO_PERMISSIONS", "READ", "EDIT", "MANAGE"]),
    default="READ",
    show_default=True,
    help="What users may do with experiments they did not create.",
)
@click.option(
    "--config-dir",
    type=click.Path(path_type=Path),
    envvar="TMPDIR",
    default="/tmp",
    show_default=True,
    help="Where the auth app's ini is written (mode 0600).",
)
@click.argument("server_args", nargs=-1, type=click.UNPROCESSED)
def serve(auth_database_uri: str, default_permission: str, config_dir: Path, server_args: tuple[str, ...]) -> None:
    """`mlflow server --app-name basic-auth SERVER_ARGS...` with its settings written from the
    environment (the admin: MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD)."""
    import os
    import shutil
    import sys

    from kubetrader.tracking.auth_server import server_command, write_auth_config

    config = write_auth_config(config_dir / "kubetrader-mlflow-auth", auth_database_uri, default_permission)
    argv, env = server_command(config, server_args)
    beside = Path(sys.executable).with_name("mlflow")  # this interpreter's MLflow, whatever PATH says
    os.execve(str(beside) if beside.exists() else shutil.which("mlflow") or argv[0], argv, env)


@mlflow_group.command()
@click.option("--backend-store-uri", required=True, help="SQLAlchemy URL of MLflow's database.")
def migrate(backend_store_uri: str) -> None:
    """Create or upgrade MLflow's schema once (PostgreSQL advisory lock); safe to repeat."""
    from kubetrader.tracking.maintenance import migrate as run_migration

    outcome = run_migration(backend_store_uri)
    state = "migrated" if outcome.changed else "already current"
    click.echo(f"schema {state}: {outcome.before or '(empty)'} -> {outcome.after}")


def _database_uri(explicit: str | None) -> str:
    from kubetrader.tracking import settings

    uri = explicit or settings.tracking_uri()
    if not settings.is_database_uri(uri):
        raise click.UsageError(
            f"{settings.marker_uri(uri)} is a server; pass --backend-store-uri with the URL of its database"
        )
    return uri


@mlflow_group.command()
@click.option("--backend-store-uri", help="SQLAlchemy URL of MLflow's database (default: the local store).")
def indexes(backend_store_uri: str | None) -> None:
    """Create the extra indexes the platform's queries use (idempotent)."""
    from kubetrader.tracking.maintenance import create_indexes

    for name, created in create_indexes(_database_uri(backend_store_uri)).items():
        click.echo(f"{name}\t{'created' if created else 'exists'}")


@mlflow_group.command()
@click.option("--older-than", required=True, help="Age, e.g. 90d, 12w, 36h.")
@click.option(
    "--output", "-o", type=click.Path(path_type=Path), default=Path("mlflow-archive.jsonl"), show_default=True
)
@_URI
def archive(older_than: str, output: Path, tracking_uri: str | None) -> None:
    """Append old runs' metadata to a JSONL archive, then delete them (purge with `mlflow gc`)."""
    from kubetrader.tracking.maintenance import archive_runs, parse_age

    try:
        age = parse_age(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from exc
    count = archive_runs(age, output, tracking_uri=tracking_uri)
    click.echo(f"archived and deleted {count} runs older than {older_than} -> {output}")


@mlflow_group.command("ui-hint")
@_URI
def ui_hint(tracking_uri: str | None) -> None:
    """How to open MLflow's UI on the tracking store."""
    from kubetrader.tracking import settings

    uri = settings.tracking_uri(tracking_uri)
    click.echo(f"tracking store: {settings.marker_uri(uri)}")
    click.echo(settings.ui_command(uri))
