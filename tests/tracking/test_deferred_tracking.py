"""MLflow off the run's critical path: the result is written, the process exits, the run is logged
afterwards by `kubetrader mlflow sync`, exactly once, whatever crashed in between
(kubetrader.tracking.record, kubetrader.cli.backtest `--tracking-mode`)."""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from kubetrader.results.store import read_document
from kubetrader.tracking.record import pending_markers, sync_pending
from tests.fixtures.mlflow import python_environment
from tests.helpers import ROOT, free_port, wait_until

if TYPE_CHECKING:
    from mlflow import MlflowClient

# The CLI, then the top-level packages it imported, printed at its exit (as in tests/engine/test_cli_imports.py).
PROBE = """
import atexit, json, sys
atexit.register(lambda: print("MODULES=" + json.dumps(sorted({m.partition(".")[0] for m in sys.modules}))))
from kubetrader.cli.main import main
main()
"""


def _tracked_backtest(path: Path, project: str) -> Path:
    resource = yaml.safe_load((ROOT / "examples/backtest-sma.yaml").read_text())
    resource["spec"]["data"] |= {"start": "2008-01-01", "end": "2009-12-31"}
    resource["spec"]["tracking"] = {"enabled": True, "project": project, "assetClass": "Equities"}
    path.write_text(yaml.safe_dump(resource))
    return path


def _runs(uri: str, result_id: str) -> list[Any]:
    from mlflow import MlflowClient

    client: MlflowClient = MlflowClient(tracking_uri=uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(ids, filter_string=f"tags.result_id = '{result_id}'")) if ids else []


def _run_cli(args: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    line = next((line for line in done.stdout.splitlines() if line.startswith("MODULES=")), "MODULES=[]")
    return done, set(json.loads(line.removeprefix("MODULES=")))


def test_run_writes_its_result_and_exits_without_mlflow_then_sync_logs_it_exactly_once(
    tmp_path: Path, bundled_store: Any, local_mlflow_uri: Callable[[], str]
) -> None:
    spec = _tracked_backtest(tmp_path / "bt.yaml", "Later")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: a run that waited for MLflow could not finish
    env = python_environment(KUBETRADER_DATA_DIR=str(bundled_store.root), MLFLOW_TRACKING_URI=dead)
    done, imported = _run_cli(
        ["run", "-f", str(spec), "-o", "out", "--tracking-mode", "later", "--summary-file", "summary.json"],
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "mlflow" not in imported and "requests" not in imported  # the run never touched the tracking client
    summary = json.loads((tmp_path / "summary.json").read_text())
    result = tmp_path / summary["result"]
    document = read_document(result)
    assert document.status == "succeeded" and document.metadata.tracking == "pending"
    assert document.metadata.mlflow_run_id is None
    [marker] = pending_markers(tmp_path / "out")
    assert json.loads(marker.read_text())["result_id"] == summary["id"]

    uri = local_mlflow_uri()
    [outcome] = sync_pending(tmp_path / "out", tracking_uri=uri)
    assert (outcome.name, outcome.state) == (summary["id"], "logged")
    synced = read_document(result)
    assert (synced.metadata.tracking, synced.metadata.mlflow_run_id) == ("logged", outcome.run_id)
    assert synced.metrics == document.metrics
    assert pending_markers(tmp_path / "out") == []
    assert sync_pending(tmp_path / "out", tracking_uri=uri) == []  # nothing left to do
    assert [run.info.run_id for run in _runs(uri, summary["id"])] == [outcome.run_id]


_CRASH_BEFORE_MLFLOW = textwrap.dedent(
    """
    import os, sys
    import kubetrader.tracking.record as record
    from kubetrader.cli.main import main

    def killed(*args, **kwargs):  # the process dies the moment it would talk to MLflow
        os._exit(9)

    record.log_document = killed
    main()
    """
)


def test_a_crash_between_writing_the_result_and_logging_it_loses_nothing_and_logs_once(
    tmp_path: Path, bundled_store: Any, local_mlflow_uri: Callable[[], str]
) -> None:
    uri = local_mlflow_uri()
    spec = _tracked_backtest(tmp_path / "bt.yaml", "Crash")
    env = python_environment(KUBETRADER_DATA_DIR=str(bundled_store.root), MLFLOW_TRACKING_URI=uri)
    args = ["run", "-f", str(spec), "-o", "out", "--tracking-mode", "wait", "--summary-file", "summary.json"]
    done = subprocess.run(
        [sys.executable, "-c", _CRASH_BEFORE_MLFLOW, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 9, done.stderr
    [result] = (tmp_path / "out" / "backtests").glob("sma-orcl-*[0-9a-f].json")
    assert read_document(result).status == "succeeded"  # the result was complete before MLflow
    [marker] = pending_markers(tmp_path / "out")
    saved = marker.read_text()
    assert _runs(uri, result.stem) == []

    [outcome] = sync_pending(tmp_path / "out", tracking_uri=uri)
    assert outcome.state == "logged"
    # A sync killed after logging, before removing the marker: the next one finds the run, logs nothing new.
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(saved)
    [again] = sync_pending(tmp_path / "out", tracking_uri=uri)
    assert (again.state, again.run_id) == ("logged", outcome.run_id)
    assert [run.info.run_id for run in _runs(uri, result.stem)] == [outcome.run_id]
    assert read_document(result).metadata.mlflow_run_id == outcome.run_id


def test_background_mode_returns_first_and_the_detached_sync_logs_the_run(
    tmp_path: Path, bundled_store: Any, local_mlflow_uri: Callable[[], str]
) -> None:
    uri = local_mlflow_uri()
    spec = _tracked_backtest(tmp_path / "bt.yaml", "Background")
    env = python_environment(KUBETRADER_DATA_DIR=str(bundled_store.root), MLFLOW_TRACKING_URI=uri)
    env.pop("KUBERNETES_SERVICE_HOST", None)  # on a machine, not in a pod (see the test below)
    done, imported = _run_cli(
        ["run", "-f", str(spec), "-o", "out", "--summary-file", "summary.json"], cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "logging in the background" in done.stdout
    assert "mlflow" not in imported  # the command itself did not log
    summary = json.loads((tmp_path / "summary.json").read_text())
    result = tmp_path / summary["result"]

    def logged() -> str | None:
        return read_document(result).metadata.mlflow_run_id

    run_id = wait_until(logged, timeout=180, what="the background sync to log the run")
    assert read_document(result).metadata.tracking == "logged"
    assert wait_until(lambda: not pending_markers(tmp_path / "out"), timeout=30, what="the marker to go")
    assert [run.info.run_id for run in _runs(uri, summary["id"])] == [run_id]


def test_a_marker_another_sync_holds_is_left_to_it(
    tmp_path: Path, bundled_store: Any, local_mlflow_uri: Callable[[], str]
) -> None:
    uri = local_mlflow_uri()
    spec = _tracked_backtest(tmp_path / "bt.yaml", "Busy")
    env = python_environment(KUBETRADER_DATA_DIR=str(bundled_store.root))
    done, _ = _run_cli(["run", "-f", str(spec), "-o", "out", "--tracking-mode", "later"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    [marker] = pending_markers(tmp_path / "out")
    with marker.with_name(f".{marker.name}.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a concurrent sync in the middle of logging would
        [busy] = sync_pending(tmp_path / "out", tracking_uri=uri)
        assert busy.state == "busy" and marker.exists()
        assert _runs(uri, marker.stem) == []
    [outcome] = sync_pending(tmp_path / "out", tracking_uri=uri)
    assert outcome.state == "logged" and not marker.exists()


def test_in_a_pod_the_default_logs_the_run_before_the_job_exits_instead_of_a_doomed_background_sync(
    tmp_path: Path, bundled_store: Any, local_mlflow_uri: Callable[[], str]
) -> None:
    """A container's processes end with its main one: a Job starts no background sync and leaves no
    marker behind; it logs its run after the result is written and before it exits. (Where the
    chart's sync loop runs on the Job's volume the operator passes `--tracking-mode later` instead:
    tests/tracking/test_cluster_sync.py.)"""
    uri = local_mlflow_uri()
    spec = _tracked_backtest(tmp_path / "bt.yaml", "Pod")
    env = python_environment(
        KUBETRADER_DATA_DIR=str(bundled_store.root), MLFLOW_TRACKING_URI=uri, KUBERNETES_SERVICE_HOST="10.96.0.1"
    )
    done, _ = _run_cli(["run", "-f", str(spec), "-o", "out"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert pending_markers(tmp_path / "out") == []
    assert not list((tmp_path / "out").rglob("sync.log"))  # no background sync was started
    [result] = [p for p in (tmp_path / "out" / "backtests").glob("*.json")]
    document = json.loads(result.read_text())
    assert document["metadata"]["tracking"] == "logged" and document["metadata"]["mlflow_run_id"]
    assert len(_runs(uri, result.stem)) == 1
