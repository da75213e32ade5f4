"""Optimization benchmark (issue 6).

1. Sampler efficiency on real data: SMA crossover, fast 5..50 step 5 x slow 20..200
   step 20 (100 points) on ORCL 2005-2014. Every grid point is backtested once on
   Backtrader; TPE and random search then run against that table (a lookup returns
   exactly what the backtest returned), over 20 seeds: evaluations needed to reach
   95 % of the grid's best Sharpe (median, worst, misses within the budget).
2. Per-trial overhead of the driver and of the queue, without the backtest: the
   driver with an instant objective in process, and over a real Redis with two
   local workers running a constant-time handler.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from kubetrader.optimize.constraints import parse_constraints
from kubetrader.optimize.evaluation import InProcessEvaluator
from kubetrader.optimize.space import grid, parse_space
from kubetrader.optimize.study import StudyDriver
from kubetrader.queue.tasks import HandlerOutcome
from kubetrader.specs import BacktestSpec, OptimizationStudySpec

SPACE = {
    "fast": {"type": "int", "low": 5, "high": 50, "step": 5},
    "slow": {"type": "int", "low": 20, "high": 200, "step": 20},
}
TEMPLATE = {
    "strategy": {"path": "strategies.sma_crossover.SMACrossover"},
    "data": {"symbols": ["ORCL"], "start": "2005-01-01", "end": "2014-12-31"},
}
CONSTRAINTS = ["fast < slow"]
SEEDS = 20
BUDGET = 100


def grid_table() -> dict[tuple[int, int], float]:
    from kubetrader.runner import BacktestRunner

    template = BacktestSpec.model_validate(TEMPLATE)
    table: dict[tuple[int, int], float] = {}
    space = parse_space(SPACE)
    for point in grid(space, parse_constraints(CONSTRAINTS, list(space))):
        spec = template.model_copy(update={"strategy": template.strategy.model_copy(update={"params": point})})
        value = BacktestRunner(spec).run().metrics["sharpe_ratio"]
        table[(point["fast"], point["slow"])] = float(value) if value is not None else float("-inf")
    return table


def evaluations_to_target(sampler: str, seed: int, table: dict[tuple[int, int], float], target: float) -> int | None:
    def lookup(spec: BacktestSpec) -> tuple[dict[str, float | None], list[float]]:
        p = spec.strategy.params
        return {"sharpe_ratio": table[(int(p["fast"]), int(p["slow"]))]}, []

    spec = OptimizationStudySpec.model_validate(
        {
            "backtest": TEMPLATE,
            "space": SPACE,
            "constraints": CONSTRAINTS,
            "trials": BUDGET,
            "sampler": {"type": sampler, "seed": seed},
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        values: list[float] = []

        def record(spec_: BacktestSpec) -> tuple[dict[str, float | None], list[float]]:
            metrics, returns = lookup(spec_)
            values.append(float(metrics["sharpe_ratio"] or 0.0))
            return metrics, returns

        StudyDriver(
            spec, study_name=f"b{seed}", storage_url=f"journal://{tmp}/s.log", evaluator=InProcessEvaluator(run=record)
        ).run()
    for n, _ in enumerate(values, start=1):
        if max(values[:n]) >= target:
            return n
    return None


def sampler_table() -> None:
    started = time.perf_counter()
    table = grid_table()
    grid_seconds = time.perf_counter() - started
    best = max(table.values())
    target = 0.95 * best if best > 0 else best
    print(
        f"grid: {len(table)} points backtested on Backtrader in {grid_seconds:.1f} s; best Sharpe {best:.4f}, "
        f"target (95 %) {target:.4f}"
    )
    print(f"{'sampler':<8} {'median evals':>12} {'worst':>6} {'misses':>7}   (budget {BUDGET}, {SEEDS} seeds)")
    for sampler in ("tpe", "random"):
        counts = [evaluations_to_target(sampler, seed, table, target) for seed in range(SEEDS)]
        hit = [c for c in counts if c is not None]
        median = statistics.median(hit) if hit else float("nan")
        print(f"{sampler:<8} {median:>12.1f} {max(hit) if hit else '-':>6} {counts.count(None):>7}")
    print(f"{'grid':<8} {len(table):>12} {len(table):>6} {0:>7}")


def constant_trial(task: Any, context: Any) -> HandlerOutcome:
    """A worker handler that answers at once: the queue's own cost per trial."""
    return HandlerOutcome(
        metrics={"sharpe_ratio": float(task.spec["strategy"]["params"]["fast"])}, data={"returns": []}
    )


def overhead_table(trials: int = 200) -> None:
    from kubetrader.optimize.queue_evaluator import QueueEvaluator
    from kubetrader.queue import WorkQueue, embedded_redis
    from kubetrader.queue.local import local_workers

    spec = OptimizationStudySpec.model_validate(
        {
            "backtest": TEMPLATE,
            "space": SPACE,
            "trials": trials,
            "parallelism": 4,
            "sampler": {"type": "random", "seed": 1},
        }
    )
    instant = InProcessEvaluator(run=lambda s: ({"sharpe_ratio": float(s.strategy.params["fast"])}, []))
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        StudyDriver(spec, study_name="inproc", storage_url=f"journal://{tmp}/a.log", evaluator=instant).run()
        in_process = (time.perf_counter() - started) / trials
        with (
            embedded_redis(Path(tmp) / "redis") as url,
            local_workers(url, 2, handler="bench.bench_optimize:constant_trial", output_dir=tmp),
        ):
            evaluator = QueueEvaluator(WorkQueue.from_url(url), capacity=4)
            started = time.perf_counter()
            StudyDriver(spec, study_name="queued", storage_url=f"journal://{tmp}/b.log", evaluator=evaluator).run()
            queued = (time.perf_counter() - started) / trials
    print(f"\nper-trial overhead without the backtest ({trials} trials, random sampler, journal storage):")
    print(f"{'path':<34} {'ms/trial':>9} {'goal':>6}")
    print(f"{'driver, in process':<34} {in_process * 1000:>9.2f} {'':>6}")
    print(f"{'driver + Redis queue + 2 workers':<34} {queued * 1000:>9.2f} {'< 20':>6}")


if __name__ == "__main__":
    sampler_table()
    overhead_table()
