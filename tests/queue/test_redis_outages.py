"""Drivers and workers through Redis outages: a real server killed and restarted under them."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

from kubetrader.queue import WorkQueue
from kubetrader.queue.retry import RETRY_SECONDS_ENV, RedisOutOfMemoryError, RedisUnavailableError
from kubetrader.queue.server import RedisServer, redis_client
from kubetrader.specs import BacktestSpec
from tests.fixtures.redis import RedisServerFactory
from tests.helpers import ROOT, wait_until
from tests.queue.conftest import WorkerSpawner

CAMPAIGN: dict[str, Any] = {
    "strategy": {"path": "strategies.sma_crossover.SMACrossover"},
    "data": {"symbols": ["ORCL"], "start": "2012-01-01", "end": "2012-12-31"},
    "matrix": {"symbols": ["ORCL", "GOOG", "NVDA"], "params": {"fast": [5, 10, 15, 20]}},
}


class Background:
    """Runs `call` on a thread and hands back its result or re-raises its exception."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._result: list[Any] = []
        self._error: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self._result.append(call())
        except BaseException as exc:  # handed to the test by result()
            self._error.append(exc)

    def result(self, timeout: float) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"still running after {timeout} s"
        if self._error:
            raise self._error[0]
        return self._result[0]


def restart_when(
    server: RedisServer,
    condition: Callable[[], bool],
    *,
    down: float = 1.5,
    retry_on: tuple[type[BaseException], ...] = (),
) -> None:
    """Once `condition` holds, SIGKILL Redis, keep it down for `down` s, start it on its AOF again."""
    wait_until(condition, timeout=60, what="the run to be under way", retry_on=retry_on)
    server.kill()
    time.sleep(down)
    server.start()


def test_a_campaign_driver_rides_out_a_redis_restart_and_gathers_exactly_n_results(
    redis_server_factory: RedisServerFactory, tmp_path: Path, spawn: WorkerSpawner
) -> None:
    from kubetrader.queue.campaign import run_campaign

    server = redis_server_factory(tmp_path / "aof", appendfsync="always")
    spawn(server.url, "slow_succeed", lease_seconds=5)
    spec = BacktestSpec.model_validate(CAMPAIGN)
    driver = Background(
        lambda: run_campaign(spec, name="ride", batch="ride", workers=0, redis_url=server.url, output_dir=tmp_path)
    )
    probe = WorkQueue(redis_client(server.url))
    restart_when(server, lambda: len(probe.results("ride")) >= 2)

    report = driver.result(timeout=90)
    assert (report.tasks, report.succeeded, report.failed, report.cancelled) == (12, 12, 0, 0)
    assert len(WorkQueue(redis_client(server.url)).results("ride")) == 12


def test_a_study_driver_rides_out_a_redis_restart_and_every_trial_completes(
    redis_server_factory: RedisServerFactory, tmp_path: Path, spawn: WorkerSpawner
) -> None:
    from kubetrader.optimize.queue_evaluator import queue_evaluator
    from kubetrader.optimize.service import run_study
    from kubetrader.optimize.study import open_storage
    from kubetrader.specs import OptimizationStudySpec

    server = redis_server_factory(tmp_path / "aof", appendfsync="always")
    for _ in range(2):
        spawn(server.url, "slow_succeed", lease_seconds=5)
    spec = OptimizationStudySpec.model_validate(
        {
            "backtest": {k: v for k, v in CAMPAIGN.items() if k != "matrix"},
            "space": {"fast": {"type": "int", "low": 5, "high": 30}},
            "trials": 10,
            "parallelism": 2,
            "sampler": {"type": "random", "seed": 1},
        }
    )
    storage = f"journal://{tmp_path / 'study.log'}"

    def run() -> Any:
        with queue_evaluator(workers=0, redis_url=server.url, output_dir=tmp_path, lease_seconds=5) as evaluator:
            evaluator.capacity = 2
            return run_study(
                spec, name="ride", output_dir=tmp_path, storage_url=storage, evaluator=evaluator, confirm=False
            )

    driver = Background(run)

    def complete() -> int:
        if not (tmp_path / "study.log").exists():
            return 0
        study = optuna.load_study(study_name="ride", storage=open_storage(storage))
        return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))

    restart_when(server, lambda: complete() >= 2, retry_on=(KeyError,))  # no study in the journal yet
    report = driver.result(timeout=90)
    assert (report.trials_complete, report.trials_failed) == (10, 0)
    study = optuna.load_study(study_name="ride", storage=open_storage(storage))
    assert {t.state.name for t in study.trials} == {"COMPLETE"}


def test_parallel_with_redis_unreachable_exits_3_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    from tests.helpers import free_port

    command = [sys.executable, "-m", "kubetrader.cli.main", "parallel", "--symbols", "ORCL", "--strategies"]
    command += ["strategies.sma_crossover.SMACrossover", "--redis", f"redis://127.0.0.1:{free_port()}/0"]
    command += ["--no-progress", "--output", str(tmp_path / "out.csv")]
    env = {**_env(), RETRY_SECONDS_ENV: "1"}
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "unreachable for 1 s" in errors[0], done.stderr


def test_a_client_gives_up_after_its_deadline_with_an_infrastructure_error() -> None:
    from tests.helpers import free_port

    client = redis_client(f"redis://127.0.0.1:{free_port()}/0", retry_seconds=0.5)
    started = time.monotonic()
    with pytest.raises(RedisUnavailableError, match=r"unreachable for 0 s .*ConnectionError"):
        client.ping()
    assert 0.4 < time.monotonic() - started < 10


def test_out_of_memory_is_retried_then_reported_with_what_to_do(redis_url: str) -> None:
    client = redis_client(redis_url, retry_seconds=0.5)
    client.config_set("maxmemory", "1")  # any write is refused now (noeviction is the default policy)
    try:
        with pytest.raises(RedisOutOfMemoryError, match=r"out of memory.*kubetrader queue purge.*maxmemory"):
            WorkQueue(client).enqueue("oom", [])
    finally:
        client.config_set("maxmemory", "0")


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}
