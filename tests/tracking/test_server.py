"""Against a real `mlflow server` on loopback backed by a real PostgreSQL (pgserver).

All tests here share one server per session and run on one xdist worker (the
server takes ~13 s to start; two would cost twice that). The backtest logged
first is a real engine run (kubetrader.pipeline.execute, tracking on).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from kubetrader.cli.main import cli
from kubetrader.tracking import ProjectManager, log_run, record_backtest, sync_pending
from kubetrader.tracking.maintenance import archive_runs, create_indexes, migrate, parse_age
from kubetrader.tracking.naming import ExperimentPath
from tests.fixtures.engine import backtest_spec
from tests.fixtures.mlflow import python_environment
from tests.helpers import ROOT, free_port
from tests.tracking.documents import write_backtest

if TYPE_CHECKING:
    from mlflow import MlflowClient

pytestmark = pytest.mark.xdist_group("mlflow-server")

# What a hand-built document of tests.tracking.documents uploads.
ARTIFACTS = {"equity.csv", "trades.csv", "equity.png", "tearsheet.html", "result.json", "spec.yaml"}


def _client(uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs_for_result(uri: str, result_id: str) -> list[object]:
    client = _client(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(ids, filter_string=f"tags.result_id = '{result_id}'"))


def test_engine_backtest_appears_on_the_server_with_every_param_metric_tag_and_artifact(
    tmp_path: Path, mlflow_server_url: str, bundled_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubetrader.pipeline import execute
    from kubetrader.tracking import flatten

    project = f"Srv{uuid.uuid4().hex[:6]}"
    spec = backtest_spec(
        params={"fast": 10, "slow": 30},
        start="2008-01-01",
        end="2009-12-31",
        risk={"maxDrawdown": 0.5},
        tracking={"enabled": True, "project": project, "assetClass": "Equities", "strategyFamily": "MeanReversion"},
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server_url)  # where the pipeline logs
    outcome = execute(spec, name="sma-server", output_dir=tmp_path, store=bundled_store)
    assert outcome.status == "succeeded" and outcome.document and outcome.paths, outcome.error
    document = outcome.document
    assert document.metadata.tracking == "logged"
    run_id = document.metadata.mlflow_run_id
    assert run_id
    on_disk = json.loads(outcome.paths.json.read_text())["metadata"]
    assert (on_disk["tracking"], on_disk["mlflow_run_id"]) == ("logged", run_id)

    client = _client(mlflow_server_url)
    run = client.get_run(run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == f"{project}.Equities.MeanReversion.SMACrossover"
    assert experiment.tags["project"] == project
    assert run.info.status == "FINISHED"
    assert run.data.params == flatten.params_from_spec(flatten.backtest_spec(document))
    assert run.data.params["fast"] == "10" and run.data.params["slow"] == "30"
    expected_metrics = flatten.metrics_from_document(document)
    assert {"sharpe_ratio", "max_drawdown", "total_return"} <= set(expected_metrics)
    assert set(run.data.metrics) == set(expected_metrics)
    for name, value in expected_metrics.items():
        assert run.data.metrics[name] == pytest.approx(value), name
    expected_tags = flatten.tags_from_document(document, flatten.experiment_path(document))
    assert {k: run.data.tags[k] for k in expected_tags} == expected_tags
    files = {Path(relative).name for relative in document.artifacts.values()}
    assert len(files) == 4  # equity and trades CSVs, plot, tearsheet
    assert {a.path for a in client.list_artifacts(run_id)} == files | {"result.json", "spec.yaml"}
    downloaded = Path(client.download_artifacts(run_id, "result.json", str(tmp_path / "dl")))
    assert json.loads(downloaded.read_text())["metadata"]["id"] == document.metadata.id
    plot = Path(client.download_artifacts(run_id, outcome.paths.plot.name, str(tmp_path / "dl")))
    assert plot.read_bytes() == outcome.paths.plot.read_bytes()


def test_server_down_keeps_the_result_and_sync_logs_it_exactly_once(tmp_path: Path, mlflow_server_url: str) -> None:
    results = tmp_path / "results"
    document, result_path = write_backtest(results / "backtests", "bt-offline-1", project="Offline")
    original = result_path.read_text()
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    state, run_id = record_backtest(document, result_path, tracking_uri=dead)
    assert (state, run_id) == ("pending", None)
    assert result_path.read_text() == original  # nothing lost
    marker = results / "backtests" / "tracking-pending" / "bt-offline-1.json"
    assert json.loads(marker.read_text())["result_path"] == str(result_path.resolve())

    outcomes = sync_pending(results, tracking_uri=mlflow_server_url)
    assert [(o.name, o.state) for o in outcomes] == [("bt-offline-1", "logged")]
    assert not marker.exists()
    synced = json.loads(result_path.read_text())["metadata"]
    assert synced["tracking"] == "logged" and synced["mlflow_run_id"] == outcomes[0].run_id

    # Again, through the CLI, with the marker put back (as if the first sync died before removing it).
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(json.dumps({"result_id": "bt-offline-1", "result_path": str(result_path)}))
    output = CliRunner().invoke(cli, ["mlflow", "sync", "--results", str(results), "--tracking-uri", mlflow_server_url])
    assert output.exit_code == 0, output.output
    assert f"bt-offline-1\tlogged\t{outcomes[0].run_id}" in output.output
    runs = _runs_for_result(mlflow_server_url, "bt-offline-1")
    assert len(runs) == 1


_LOG_RESULTS = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from kubetrader.results.schema import ResultDocument
    from kubetrader.tracking import record_backtest

    uri, *paths = sys.argv[1:]
    for path in map(Path, paths):
        state, run_id = record_backtest(ResultDocument.model_validate_json(path.read_text()), path, tracking_uri=uri)
        if state != "logged":
            sys.exit(f"{path.name}: {state}")
    """
)


def test_three_processes_logging_in_parallel_into_a_new_experiment_complete_every_run(
    tmp_path: Path, mlflow_server_url: str
) -> None:
    """Three Jobs at once, each creating the same (new) experiment and logging two results."""
    project = f"Par{uuid.uuid4().hex[:6]}"
    paths = [write_backtest(tmp_path, f"bt-par-{i}", project=project, fast=5 + i)[1] for i in range(6)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _LOG_RESULTS, mlflow_server_url, *map(str, paths[i::3])],
            cwd=ROOT,
            env=python_environment(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    errors = [p.communicate(timeout=240)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], errors

    runs = ProjectManager(mlflow_server_url).query_by_project(project)
    assert sorted(runs["result_id"]) == sorted(f"bt-par-{i}" for i in range(6))
    assert runs["experiment_id"].nunique() == 1
    assert set(runs["status"]) == {"FINISHED"}
    assert runs["metrics.sharpe_ratio"].notna().all()
    client = _client(mlflow_server_url)
    for run_id in runs["run_id"]:
        assert {a.path for a in client.list_artifacts(run_id)} == ARTIFACTS


# --- a lab of 30 runs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LabRun:
    name: str
    path: ExperimentPath
    status: str
    sharpe: float


@pytest.fixture(scope="module")
def lab(mlflow_server_url: str) -> Iterator[list[LabRun]]:
    """30 runs over 3 projects, 2 asset classes, 2 families (2 strategies each) and 3 statuses."""
    tag = uuid.uuid4().hex[:6]
    families = {"Trend": ("SMACrossover", "Breakout"), "MeanRev": ("Bollinger", "RSI")}
    runs = []
    for i in range(30):
        family = ("Trend", "MeanRev")[i % 2]
        path = ExperimentPath(
            f"Lab{tag}_{i % 3}", ("Equities", "FX")[(i // 2) % 2], family, families[family][(i // 4) % 2]
        )
        status = "FAILED" if i % 5 == 4 else "KILLED" if i % 7 == 6 else "FINISHED"
        runs.append(LabRun(f"lab-{i}", path, status, sharpe=round(((i * 37) % 23) / 10, 2)))
    for run in runs:
        log_run(
            run.path,
            params={"i": run.name},
            metrics={"sharpe_ratio": run.sharpe, "annual_volatility": 0.1 + run.sharpe / 10},
            tags={"mlflow.runName": run.name, "result_id": run.name, **run.path.tags()},
            status=run.status,
            tracking_uri=mlflow_server_url,
        )
    yield runs


def _names(frame: object) -> set[str]:
    return set(frame["run_name"])  # type: ignore[index]


def test_queries_by_project_asset_class_family_and_status_return_exactly_their_runs(
    lab: list[LabRun], mlflow_server_url: str
) -> None:
    manager = ProjectManager(mlflow_server_url)
    project = lab[0].path.project
    mine = [r for r in lab if r.path.project == project]
    assert _names(manager.query_by_project(project)) == {r.name for r in mine}
    assert _names(manager.query_by_asset_class("FX", project=project)) == {
        r.name for r in mine if r.path.asset_class == "FX"
    }
    assert _names(manager.query_by_strategy_family("MeanRev", project=project)) == {
        r.name for r in mine if r.path.strategy_family == "MeanRev"
    }
    for status in ("FINISHED", "FAILED", "KILLED"):
        assert _names(manager.query_by_status(status, project=project)) == {r.name for r in mine if r.status == status}
    lab_projects = {r.path.project for r in lab}
    every_failed = manager.query_by_status("FAILED")
    assert {n for n, p in zip(every_failed["run_name"], every_failed["project"], strict=True) if p in lab_projects} == {
        r.name for r in lab if r.status == "FAILED"
    }
    experiments = manager.experiments(project=project)
    assert set(experiments["name"]) == {r.path.name for r in mine}
    recent = manager.query_recent_experiments(1)
    assert {r.path.name for r in lab} <= set(recent["name"])
    assert recent.set_index("name").loc[lab[0].path.name, "runs"] == sum(r.path == lab[0].path for r in lab)


def test_compare_strategies_ranks_by_the_best_finished_run(lab: list[LabRun], mlflow_server_url: str) -> None:
    project = lab[1].path.project
    finished = [r for r in lab if r.path.project == project and r.status == "FINISHED"]
    best: dict[str, float] = {}
    for run in finished:
        best[run.path.name] = max(best.get(run.path.name, float("-inf")), run.sharpe)
    expected = sorted(best, key=lambda name: (-best[name], name))

    ranked = ProjectManager(mlflow_server_url).compare_strategies(project, "sharpe_ratio")
    assert ranked["experiment"].tolist() == expected
    assert ranked["best"].tolist() == [best[name] for name in expected]
    assert ranked["rank"].iloc[0] == 1


def test_cli_export_writes_the_queried_runs(lab: list[LabRun], mlflow_server_url: str, tmp_path: Path) -> None:
    project = lab[2].path.project
    output = tmp_path / "runs.json"
    result = CliRunner().invoke(
        cli,
        [
            "experiments",
            "export",
            "--project",
            project,
            "--format",
            "json",
            "-o",
            str(output),
            "--tracking-uri",
            mlflow_server_url,
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(output.read_text())
    assert {row["run_name"] for row in rows} == {r.name for r in lab if r.path.project == project}
    assert all("metrics.sharpe_ratio" in row for row in rows)


def test_archive_moves_only_old_runs_to_the_jsonl_file(mlflow_server_url: str, tmp_path: Path) -> None:
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    old_start = int((now - dt.timedelta(days=200)).timestamp() * 1000)
    path = ExperimentPath(f"Old{uuid.uuid4().hex[:6]}", "Equities", "Trend", "SMACrossover")
    old = [
        log_run(path, params={}, metrics={"m": 1.0}, tags={}, start_time=old_start, tracking_uri=mlflow_server_url)
        for _ in range(3)
    ]
    fresh = log_run(path, params={}, metrics={"m": 2.0}, tags={}, tracking_uri=mlflow_server_url)

    archive = tmp_path / "archive.jsonl"
    assert archive_runs(parse_age("90d"), archive, tracking_uri=mlflow_server_url) >= 3
    archived = [json.loads(line) for line in archive.read_text().splitlines()]
    assert set(old) <= {a["run_id"] for a in archived}
    assert fresh not in {a["run_id"] for a in archived}
    assert all(a["start_time"] < int(now.timestamp() * 1000) - 90 * 86_400_000 for a in archived)
    remaining = ProjectManager(mlflow_server_url).query_by_project(path.project)
    assert remaining["run_id"].tolist() == [fresh]


def test_indexes_are_created_once_on_the_server_database(migrated_postgres_database: Callable[[], str]) -> None:
    database = migrated_postgres_database()
    bare = database.replace("postgresql+psycopg2://", "postgresql://", 1)  # users may write either
    first = create_indexes(bare)
    assert all(first.values()) and len(first) == 6
    assert not any(create_indexes(database).values())
    assert migrate(bare).changed is False


def test_two_concurrent_migrations_of_an_empty_database_both_succeed(empty_postgres_database: str) -> None:
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kubetrader.cli.main",
                "mlflow",
                "migrate",
                "--backend-store-uri",
                empty_postgres_database,
            ],
            cwd=ROOT,
            env=python_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=240)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    lines = sorted(next(line for line in out.splitlines() if line.startswith("schema")) for out in outputs)
    assert lines[0].startswith("schema already current") and lines[1].startswith("schema migrated: (empty)")
    assert migrate(empty_postgres_database).changed is False
