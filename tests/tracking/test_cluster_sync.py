"""The cluster's sync loop: Backtest Jobs write their results with `--tracking-mode later` on the
data volume, and `kubetrader mlflow sync --watch` (the chart's mlflow-sync Deployment) logs each
exactly once, however many syncs run at once (a rolling update overlaps two pods; a person may run
one by hand with `kubectl exec`)."""

from __future__ import annotations

import fcntl
import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetrader.results.store import read_document
from kubetrader.tracking.record import pending_markers
from kubetrader.tracking.studies import pending_marker, sync_pending_studies
from tests.fixtures.mlflow import python_environment
from tests.helpers import ROOT, free_port, wait_until
from tests.tracking.test_deferred_tracking import _runs


def _matrix_backtest(path: Path) -> Path:
    """Four cells (2 symbols x 2 windows), short: four results to log."""
    resource = yaml.safe_load((ROOT / "examples/e2e/backtest-matrix.yaml").read_text())
    resource["spec"]["data"] |= {"start": "2010-01-01", "end": "2011-12-31"}
    path.write_text(yaml.safe_dump(resource))
    return path


def _watching_sync(cwd: Path, uri: str, heartbeat: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "kubetrader.cli.main", "mlflow", "sync", "--results", "out"]
    command += ["--tracking-uri", uri, "--watch", "0.2", "--heartbeat", str(heartbeat)]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    """SIGTERM, as the kubelet sends it to the container's PID 1, then its exit code and output."""
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def test_two_watching_syncs_at_once_log_each_result_a_job_left_for_later_exactly_once(
    tmp_path: Path, bundled_store: Any, local_mlflow_uri: Callable[[], str]
) -> None:
    env = python_environment(KUBETRADER_DATA_DIR=str(bundled_store.root), KUBERNETES_SERVICE_HOST="10.96.0.1")
    env.pop("KUBETRADER_REDIS_URL", None)
    spec = _matrix_backtest(tmp_path / "matrix.yaml")
    # What the operator's Job runs where the chart's sync is on (kubetrader_operator.jobs.engine_args).
    job = [sys.executable, "-m", "kubetrader.cli.main", "run", "-f", str(spec), "--output", "out"]
    done = subprocess.run(
        [*job, "--tracking-mode", "later", "--summary-file", "summary.json"],
        cwd=tmp_path,
        env={**env, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"},  # nothing listens: never waited on
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    markers = pending_markers(tmp_path / "out")
    result_ids = sorted(marker.stem for marker in markers)
    assert len(result_ids) == 4

    uri = local_mlflow_uri()
    beats = [tmp_path / "a.alive", tmp_path / "b.alive"]
    syncs = [_watching_sync(tmp_path, uri, beat, env) for beat in beats]

    def all_logged() -> bool:
        for process in syncs:
            if process.poll() is not None:
                raise AssertionError(f"a sync exited early: {process.communicate()}")
        return not pending_markers(tmp_path / "out")

    wait_until(all_logged, timeout=240, interval=0.2, what="the two syncs to log the four results")
    stopped = [_stop(process) for process in syncs]
    assert [code for code, _, _ in stopped] == [0, 0], [err for _, _, err in stopped]
    assert all(beat.is_file() for beat in beats)  # the liveness probe's file

    logged_lines = Counter(
        line.split("\t")[0]
        for _, out, _ in stopped
        for line in out.splitlines()
        if line.count("\t") == 2 and line.split("\t")[1] == "logged"
    )
    assert logged_lines == dict.fromkeys(result_ids, 1)  # each logged by one sync, once
    for result_id in result_ids:
        [run] = _runs(uri, result_id)
        document = read_document(tmp_path / "out" / "backtests" / f"{result_id}.json")
        assert (document.metadata.tracking, document.metadata.mlflow_run_id) == ("logged", run.info.run_id)


def test_a_watching_sync_keeps_a_result_the_store_cannot_take_yet_and_logs_it_on_a_later_pass(
    tmp_path: Path, bundled_store: Any, local_mlflow_uri: Callable[[], str]
) -> None:
    """Unreachable now is no reason to exit: the loop retries on its next pass."""
    env = python_environment(KUBETRADER_DATA_DIR=str(bundled_store.root), KUBERNETES_SERVICE_HOST="10.96.0.1")
    spec = yaml.safe_load((ROOT / "examples/backtest-sma.yaml").read_text())
    spec["spec"]["data"] |= {"start": "2010-01-01", "end": "2010-12-31"}
    spec["spec"]["tracking"] = {"enabled": True, "project": "Retry", "assetClass": "Equities"}
    (tmp_path / "bt.yaml").write_text(yaml.safe_dump(spec))
    job = [sys.executable, "-m", "kubetrader.cli.main", "run", "-f", "bt.yaml", "-o", "out", "--tracking-mode", "later"]
    done = subprocess.run(job, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    [marker] = pending_markers(tmp_path / "out")
    down = f"http://127.0.0.1:{free_port()}"
    beat = tmp_path / "alive"
    sync = _watching_sync(tmp_path, down, beat, env)
    # a pass has come and gone (the heartbeat is touched after each) and the marker is still there
    first = wait_until(lambda: beat.is_file() and beat.stat().st_mtime_ns, timeout=120, what="a first pass")
    wait_until(lambda: beat.stat().st_mtime_ns > first, timeout=120, what="a second pass")
    assert marker.exists() and sync.poll() is None
    code, out, err = _stop(sync)
    assert code == 0, err
    assert f"{marker.stem}\tpending\t" in out

    uri = local_mlflow_uri()
    sync = _watching_sync(tmp_path, uri, beat, env)
    wait_until(lambda: not marker.exists(), timeout=120, what="the store, now up, to take the result")
    assert _stop(sync)[0] == 0
    assert len(_runs(uri, marker.stem)) == 1


def test_a_study_marker_another_sync_holds_is_left_to_it(
    tmp_path: Path, local_mlflow_uri: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a result's marker: two syncs at once would both create the study's parent run, and the
    second would read the marker the first had just removed (FileNotFoundError)."""
    from kubetrader.optimize.evaluation import InProcessEvaluator
    from kubetrader.optimize.service import run_study
    from tests.tracking.test_study_tracking import noisy, spec, study_runs

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    run_study(
        spec(4),
        name="held",
        output_dir=tmp_path,
        storage_url=f"journal://{tmp_path / 's.log'}",
        evaluator=InProcessEvaluator(run=noisy),
        confirm=False,
    )
    marker = pending_marker(tmp_path / "studies", "held")
    assert json.loads(marker.read_text())["study"] == "held"
    uri = local_mlflow_uri()
    with marker.with_name(f".{marker.name}.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a concurrent sync in the middle of logging would
        [busy] = sync_pending_studies(tmp_path, tracking_uri=uri)
        assert busy.state == "busy" and marker.exists()
    [logged] = sync_pending_studies(tmp_path, tracking_uri=uri)
    assert logged.state == "logged" and not marker.exists()
    parents, _ = study_runs(uri, "held")
    assert [p.info.run_id for p in parents] == [logged.run_id]
