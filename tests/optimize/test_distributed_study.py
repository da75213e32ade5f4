"""Studies over the real work queue, real Redis, real workers and real backtests on ORCL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest

from kubetrader.optimize.progress import read_progress
from kubetrader.optimize.queue_evaluator import queue_evaluator
from kubetrader.optimize.service import run_study
from kubetrader.optimize.study import feasible_trials, open_storage, trial_spec
from kubetrader.queue.server import redis_client
from kubetrader.runner import BacktestRunner
from kubetrader.specs import OptimizationStudySpec
from tests.helpers import ROOT, wait_until

STUDY: dict[str, Any] = {
    "backtest": {
        "strategy": {"path": "strategies.sma_crossover.SMACrossover"},
        "data": {"symbols": ["ORCL"], "start": "2009-01-01", "end": "2012-12-31"},
    },
    "space": {"fast": {"type": "int", "low": 5, "high": 30}, "slow": {"type": "int", "low": 20, "high": 80, "step": 5}},
    "constraints": ["fast < slow"],
    "trials": 30,
    "parallelism": 2,
    "sampler": {"type": "tpe", "seed": 42},
}


def _complete(storage_url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=name, storage=open_storage(storage_url))
    return feasible_trials(study)  # infeasible points are told COMPLETE with a violated constraint


@pytest.mark.slow
def test_tpe_study_on_two_workers_matches_direct_engine_runs(redis_url: str, tmp_path: Path) -> None:
    spec = OptimizationStudySpec.model_validate(STUDY)
    storage = f"journal://{tmp_path / 'study.log'}"
    with queue_evaluator(workers=2, redis_url=redis_url, output_dir=tmp_path, lease_seconds=10) as evaluator:
        report = run_study(spec, name="dist", output_dir=tmp_path, storage_url=storage, evaluator=evaluator)
    trials = _complete(storage, "dist")
    assert report.trials_complete == len(trials) == 30
    assert all(t.params["fast"] < t.params["slow"] for t in trials)
    # every reported value is what a direct engine run of the same parameters gives (a sample of them)
    for trial in trials[::7]:
        direct = BacktestRunner(trial_spec(spec.backtest, trial.params)).run().metrics["sharpe_ratio"]
        assert trial.value == pytest.approx(direct, rel=1e-12)
    assert report.best_value == max(t.value for t in trials)
    assert report.confirmed_metrics["sharpe_ratio"] == pytest.approx(report.best_value, rel=1e-12)
    assert report.deflated_sharpe is not None and 0 <= report.deflated_sharpe <= 1
    assert (tmp_path / "studies" / report.artifacts["charts"]).stat().st_size > 10_000
    published = read_progress(redis_client(redis_url), "dist")  # what the operator puts in status
    assert published is not None
    assert (published.done, published.failed, published.running) == (30, 0, 0)
    assert published.best_value == report.best_value and published.best_params == report.best_params
    # Redis holds what the driver needs (the metrics); the daily returns are a file on the results volume
    from kubetrader.queue import WorkQueue

    queue = WorkQueue.from_url(redis_url)
    results = queue.results("study-dist")
    assert len(results) == 30 and all(not r.data and (r.result_path or "").endswith(".npy") for r in results.values())
    sizes = [queue.redis.memory_usage(queue.key("result", f"study-dist:{key}"), samples=0) for key in results]
    assert max(sizes) < 4096


@pytest.mark.slow
def test_killed_driver_resumes_without_losing_trials_or_leaving_them_running(redis_url: str, tmp_path: Path) -> None:
    storage = f"journal://{tmp_path / 'study.log'}"
    command = [
        sys.executable, "-m", "kubetrader.cli.main", "optimize",
        "--strategy", "strategies.sma_crossover.SMACrossover",
        "--param-space", str(ROOT / "examples/sma_crossover_params.json"),
        "--symbols", "ORCL", "--start", "2010-01-01", "--end", "2012-12-31",
        "--constraint", "fast < slow", "--n-trials", "16", "--study-name", "killme", "--seed", "5",
        "--workers", "2", "--redis", redis_url, "--lease-seconds", "2", "--storage", storage, "--output", str(tmp_path),
    ]  # fmt: skip
    driver = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(
            lambda: (tmp_path / "study.log").exists() and len(_complete(storage, "killme")) >= 4,
            timeout=90,
            what="4 complete trials",
            retry_on=(KeyError,),  # optuna's "Record does not exist" until the driver has created the study
        )
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and its workers die mid-study
        driver.wait()
    before = {t.number: t.value for t in _complete(storage, "killme")}

    spec = OptimizationStudySpec.model_validate(
        {
            **STUDY,
            "trials": 16,
            "space": {
                "fast": {"type": "int", "low": 5, "high": 50},
                "slow": {"type": "int", "low": 20, "high": 200, "step": 5},
            },
            "backtest": {
                **STUDY["backtest"],
                "data": {"symbols": ["ORCL"], "start": "2010-01-01", "end": "2012-12-31"},
            },
        }
    )
    with queue_evaluator(workers=2, redis_url=redis_url, output_dir=tmp_path, lease_seconds=2) as evaluator:
        report = run_study(
            spec, name="killme", output_dir=tmp_path, storage_url=storage, evaluator=evaluator, confirm=False
        )
    study = optuna.load_study(study_name="killme", storage=open_storage(storage))
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    assert "RUNNING" not in states
    after = {t.number: t.value for t in _complete(storage, "killme")}
    assert {n: after[n] for n in before} == before  # no finished trial lost or changed
    assert report.trials_complete + report.trials_failed == 16


@pytest.mark.slow
def test_restarted_driver_waits_for_adopted_in_flight_trials_that_fill_its_parallelism(
    redis_url: str, tmp_path: Path
) -> None:
    """The dead driver left 2 trials queued and RUNNING in Optuna; the new one submits nothing new
    (parallelism 2 is full), so it must listen to the adopted trials' batch on its own."""
    from kubetrader.optimize.space import parse_space, to_optuna_distributions
    from kubetrader.optimize.study import trial_key, trial_spec
    from kubetrader.queue import NewTask, WorkQueue
    from kubetrader.queue.local import local_workers

    spec = OptimizationStudySpec.model_validate({**STUDY, "trials": 2, "parallelism": 2})
    storage = f"journal://{tmp_path / 'study.log'}"
    study = optuna.create_study(study_name="adopt", storage=open_storage(storage), direction="maximize")
    queue = WorkQueue.from_url(redis_url, lease_seconds=5)
    dists = to_optuna_distributions(parse_space({k: v.model_dump() for k, v in spec.space.items()}))
    for params in ({"fast": 10, "slow": 30}, {"fast": 15, "slow": 60}):
        trial = study.ask(dists)
        # the dead driver asked Optuna for the trial and put its task on the queue, then died
        task_spec = trial_spec(spec.backtest, params).to_wire()
        queue.enqueue(
            "study-adopt", [NewTask(id=trial_key("adopt", trial.number), spec=task_spec, meta={"kind": "trial"})]
        )

    with (
        local_workers(redis_url, 2, output_dir=tmp_path, lease_seconds=5),
        queue_evaluator(workers=0, redis_url=redis_url, output_dir=tmp_path, lease_seconds=5) as evaluator,
    ):
        evaluator.capacity = 2
        report = run_study(
            spec, name="adopt", output_dir=tmp_path, storage_url=storage, evaluator=evaluator, confirm=False
        )
    assert report.trials_complete == 2
    states = {t.state.name for t in optuna.load_study(study_name="adopt", storage=open_storage(storage)).trials}
    assert states == {"COMPLETE"}


def _session_members(sid: int) -> list[int]:
    """Pids of live processes in session `sid` (field 6 of /proc/PID/stat)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


@pytest.mark.slow
def test_a_killed_optimize_with_local_workers_leaves_no_process_and_the_rerun_completes_every_trial(
    tmp_path: Path,
) -> None:
    storage = f"journal://{tmp_path / 'study.log'}"
    command = [
        sys.executable, "-m", "kubetrader.cli.main", "optimize",
        "--strategy", "strategies.sma_crossover.SMACrossover",
        "--param-space", str(ROOT / "examples/sma_crossover_params.json"),
        "--symbols", "ORCL", "--start", "2011-01-01", "--end", "2012-12-31",
        "--constraint", "fast < slow", "--n-trials", "12", "--study-name", "orphans", "--seed", "3",
        "--workers", "2", "--lease-seconds", "2", "--storage", storage, "--output", str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "KUBETRADER_DATA_DIR": str(tmp_path / "data")}
    driver = subprocess.Popen(
        command, start_new_session=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(
            lambda: (tmp_path / "study.log").exists() and len(_complete(storage, "orphans")) >= 3,
            timeout=90,
            what="3 complete trials",
            retry_on=(KeyError,),  # the journal holds no study until the driver created it
        )
        assert len(_session_members(driver.pid)) >= 4  # the driver, its Redis and its 2 workers
    finally:
        driver.kill()  # the driver alone: its children must follow it
        driver.wait()
    wait_until(lambda: not _session_members(driver.pid), timeout=20, what="the driver's Redis and workers to exit")
    assert (tmp_path / "data" / "queue" / "orphans").is_dir()  # kept for the next driver to adopt from

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    study = optuna.load_study(study_name="orphans", storage=open_storage(storage))
    evaluated = [t for t in study.trials if not t.user_attrs.get("infeasible")]  # (fast >= slow is never run)
    assert [(t.number, t.state.name, t.user_attrs) for t in evaluated if t.state.name != "COMPLETE"] == []
    assert len(evaluated) == 12  # in-flight trials adopted: none failed, none spent twice
    assert not (tmp_path / "data" / "queue" / "orphans").exists()  # a clean finish leaves no queue behind


def test_a_trial_interrupted_inside_ask_is_finished_and_run_by_the_next_driver(tmp_path: Path) -> None:
    """The dead driver's ask stored `fast` and died before `slow`: the trial is RUNNING with partial params."""
    from kubetrader.optimize.evaluation import InProcessEvaluator
    from kubetrader.optimize.study import StudyDriver

    spec = OptimizationStudySpec.model_validate({**STUDY, "trials": 3, "parallelism": 1, "constraints": []})
    storage = f"journal://{tmp_path / 'study.log'}"
    study = optuna.create_study(study_name="asked", storage=open_storage(storage), direction="maximize")
    half_asked = study.ask()
    half_asked.suggest_int("fast", 5, 30)

    calls: list[dict[str, Any]] = []

    def trial_run(trial_spec: Any) -> tuple[dict[str, float | None], list[float]]:
        calls.append(dict(trial_spec.strategy.params))
        return {"sharpe_ratio": float(len(calls))}, []

    driver = StudyDriver(spec, study_name="asked", storage_url=storage, evaluator=InProcessEvaluator(run=trial_run))
    summary = driver.run()
    trials = optuna.load_study(study_name="asked", storage=open_storage(storage)).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert summary.trials_complete == 3 and summary.trials_failed == 0
    assert set(trials[0].params) == {"fast", "slow"} and trials[0].params["fast"] == half_asked.params["fast"]
    assert trials[0].user_attrs["resumed_after_crash"] is True
    assert calls[0]["fast"] == half_asked.params["fast"]
