"""A seeded study gives the same trials and best point at any parallelism, whatever order results arrive in."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from kubetrader.optimize.evaluation import Evaluation
from kubetrader.optimize.study import StudyDriver
from kubetrader.specs import BacktestSpec, OptimizationStudySpec

SPEC: dict[str, Any] = {
    "backtest": {
        "strategy": {"path": "strategies.sma_crossover.SMACrossover"},
        "data": {"symbols": ["ORCL"], "start": "2010-01-01", "end": "2012-12-31"},
    },
    "space": {"fast": {"type": "int", "low": 5, "high": 30}, "slow": {"type": "int", "low": 20, "high": 80, "step": 5}},
    "constraints": ["fast < slow"],
    "trials": 24,
    "sampler": {"type": "tpe", "seed": 7, "startupTrials": 4, "batchSize": 4},
}


class ShuffledEvaluator:
    """Runs nothing: a trial's value is a fixed function of its params, and results come back
    in an order chosen by `order_seed`, a few at a time, like workers finishing at random."""

    def __init__(self, capacity: int, order_seed: int) -> None:
        self.capacity = capacity
        self._rng = random.Random(order_seed)
        self._running: dict[str, Evaluation] = {}

    def submit(self, key: str, spec: BacktestSpec) -> None:
        fast, slow = spec.strategy.params["fast"], spec.strategy.params["slow"]
        value = -((float(fast) - 17) ** 2) - (float(slow) - 60) ** 2 / 100  # type: ignore[arg-type]
        self._running[key] = Evaluation(key=key, metrics={"sharpe_ratio": value})

    def collect(self, timeout: float) -> list[Evaluation]:
        keys = list(self._running)
        self._rng.shuffle(keys)
        return [self._running.pop(k) for k in keys[: self._rng.randint(1, len(keys))]] if keys else []

    def lookup(self, key: str) -> Evaluation | None:
        return None

    def in_flight(self, key: str) -> bool:
        return False

    def cancel(self) -> None:
        self._running.clear()


def run(tmp_path: Path, parallelism: int, order_seed: int) -> tuple[list[dict[str, Any]], Any]:
    spec = OptimizationStudySpec.model_validate({**SPEC, "parallelism": parallelism})
    name = f"repro-{parallelism}-{order_seed}"
    driver = StudyDriver(
        spec,
        study_name=name,
        storage_url=f"journal://{tmp_path / (name + '.log')}",
        evaluator=ShuffledEvaluator(parallelism, order_seed),
        collect_timeout=0,
    )
    summary = driver.run()
    import optuna

    from kubetrader.optimize.study import open_storage

    study = optuna.load_study(study_name=name, storage=open_storage(f"journal://{tmp_path / (name + '.log')}"))
    evaluated = [t.params for t in study.trials if not t.user_attrs.get("infeasible")]
    return evaluated, (summary.best_value, summary.best_params)


def test_the_same_seed_gives_the_same_trials_and_best_point_at_any_parallelism_and_arrival_order(
    tmp_path: Path,
) -> None:
    serial, serial_best = run(tmp_path, parallelism=1, order_seed=0)
    assert len(serial) == 24
    for parallelism, order_seed in ((2, 1), (4, 2), (4, 3)):
        trials, best = run(tmp_path, parallelism, order_seed)
        assert trials == serial, f"parallelism {parallelism}, arrival order {order_seed}"
        assert best == serial_best
