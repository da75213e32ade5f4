"""The study driver's bookkeeping: budget, constraints, resume and crash recovery.

The trial function here is a known analytic objective (so the expected best is
known); the driver against real backtests and the work queue is tested in
tests/optimize/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubetrader.errors import SpecError
from kubetrader.optimize.evaluation import Evaluation, InProcessEvaluator
from kubetrader.optimize.study import StudyDriver, default_storage_url, open_storage
from kubetrader.specs import BacktestSpec, OptimizationStudySpec

TEMPLATE = {
    "strategy": {"path": "strategies.sma_crossover.SMACrossover", "params": {"slow": 30}},
    "data": {"symbols": ["ORCL"], "start": "2010-01-01", "end": "2012-12-31"},
}


def _study(**overrides: Any) -> OptimizationStudySpec:
    raw: dict[str, Any] = {
        "backtest": TEMPLATE,
        "space": {"fast": {"type": "int", "low": 2, "high": 40}, "slow": {"type": "int", "low": 10, "high": 60}},
        "constraints": ["fast < slow"],
        "trials": 20,
        "sampler": {"type": "tpe", "seed": 3, "startupTrials": 5},
    }
    raw.update(overrides)
    return OptimizationStudySpec.model_validate(raw)


def _objective(spec: BacktestSpec) -> tuple[dict[str, float | None], list[float]]:
    fast, slow = int(spec.strategy.params["fast"]), int(spec.strategy.params["slow"])
    assert fast < slow, "an infeasible point reached the backtest"
    return {"sharpe_ratio": -((fast - 12) ** 2) - (slow - 40) ** 2 / 10}, [0.0]


def test_driver_completes_the_budget_without_evaluating_infeasible_points(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    def objective(spec: BacktestSpec) -> tuple[dict[str, float | None], list[float]]:
        seen.append(dict(spec.strategy.params))
        return _objective(spec)

    driver = StudyDriver(
        _study(),
        study_name="s1",
        storage_url=default_storage_url("s1", tmp_path),
        evaluator=InProcessEvaluator(run=objective),
    )
    summary = driver.run()
    assert summary.trials_complete == 20 == len(seen)
    assert all(p["fast"] < p["slow"] for p in seen)
    assert summary.best_value == max(summary.trial_values)
    assert summary.best_params["fast"] < summary.best_params["slow"]


def test_rerunning_a_study_resumes_it_and_keeps_finished_trials(tmp_path: Path) -> None:
    url = default_storage_url("s2", tmp_path)
    first = StudyDriver(
        _study(trials=8), study_name="s2", storage_url=url, evaluator=InProcessEvaluator(run=_objective)
    ).run()
    second = StudyDriver(
        _study(trials=12), study_name="s2", storage_url=url, evaluator=InProcessEvaluator(run=_objective)
    ).run()
    assert first.trials_complete == 8 and second.trials_complete == 12
    assert second.trial_values[:8] == first.trial_values
    with pytest.raises(SpecError, match="already exists"):
        StudyDriver(
            _study(resume=False), study_name="s2", storage_url=url, evaluator=InProcessEvaluator(run=_objective)
        ).run()


def test_trials_left_running_by_a_killed_driver_are_adopted_or_run_by_the_next_driver(tmp_path: Path) -> None:
    """A trial whose result arrived is adopted; one that never reached the queue (the driver died
    between Optuna's ask and the enqueue) is run with its own params by the next driver, instead
    of being failed and eating the trial budget (issue 17: 38 of 40 COMPLETE after a kill)."""
    import optuna

    url = default_storage_url("s3", tmp_path)
    study = optuna.create_study(study_name="s3", storage=open_storage(url), direction="maximize")
    from kubetrader.optimize.space import parse_space, to_optuna_distributions

    dists = to_optuna_distributions(parse_space(_study().model_dump()["space"]))
    study.enqueue_trial({"fast": 10, "slow": 30})
    study.enqueue_trial({"fast": 12, "slow": 40})
    study.ask(dists)  # trial 0: its result arrives while no driver runs
    study.ask(dists)  # trial 1: lost with the driver (a feasible point: an infeasible one is told FAIL)

    evaluator = InProcessEvaluator(run=_objective)
    evaluator._done["s3-t0"] = Evaluation(key="s3-t0", metrics={"sharpe_ratio": 1.5})
    summary = StudyDriver(_study(trials=6), study_name="s3", storage_url=url, evaluator=evaluator).run()

    trials = optuna.load_study(study_name="s3", storage=open_storage(url)).get_trials(deepcopy=False)
    assert [t.state.name for t in trials if t.state.name == "RUNNING"] == []
    assert trials[0].value == 1.5  # the result that arrived while the driver was down is kept
    assert trials[1].state.name == "COMPLETE"  # run by this driver with the params it was asked with
    fast, slow = int(trials[1].params["fast"]), int(trials[1].params["slow"])
    assert trials[1].value == -((fast - 12) ** 2) - (slow - 40) ** 2 / 10
    assert not [t for t in trials if t.user_attrs.get("retry_of") is not None]
    assert summary.trials_complete == 6 and len(trials) == 6


def test_failing_trials_are_recorded_with_their_error_and_do_not_stop_the_study(tmp_path: Path) -> None:
    def flaky(spec: BacktestSpec) -> tuple[dict[str, float | None], list[float]]:
        if int(spec.strategy.params["fast"]) % 2:
            raise ValueError("odd fast periods are broken")
        return _objective(spec)

    summary = StudyDriver(
        _study(trials=10),
        study_name="s4",
        storage_url=default_storage_url("s4", tmp_path),
        evaluator=InProcessEvaluator(run=flaky),
    ).run()
    assert summary.trials_complete + summary.trials_failed == 10
    assert summary.trials_failed > 0


def test_constraints_that_exclude_every_point_fail_before_any_backtest(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="exclude every point"):
        StudyDriver(
            _study(constraints=["fast > slow + 100"]),
            study_name="s5",
            storage_url=default_storage_url("s5", tmp_path),
            evaluator=InProcessEvaluator(run=_objective),
        )
