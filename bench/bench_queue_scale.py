"""The queue at scale: many no-op tasks on 4 workers, a real campaign on 1 and 2 workers, and the
study driver's own cost per trial.

Sizes come from the environment so the same script runs small on a laptop:

    KUBETRADER_BENCH_NOOP_TASKS       no-op tasks through 4 workers        [100000]
    KUBETRADER_BENCH_CAMPAIGN_CELLS   real backtests, 1 then 2 workers     [1000]
    KUBETRADER_BENCH_STUDY_TRIALS     driver cost at these trial counts    [100,1000,5000]

Goals (issue #17): >= 1,000 no-op tasks/s on 2 cores; <= 1 KB of Redis per finished task;
0 bytes left after a purge; 2 workers >= 1.8x one on the campaign; the study driver's cost per
trial under what 50 workers need: 50 / the campaign's measured time per cell on one worker (a daily
cell costs ~50 ms of a core, so 50 workers finish a trial every ~1 ms, ~1,000 trials/s, and the
driver must ask and tell in less).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubetrader.queue import NewTask, WorkQueue, embedded_redis
from kubetrader.queue.campaign import campaign_tasks, wait_for_batch
from kubetrader.queue.lifecycle import purge_batch, set_retention
from kubetrader.queue.local import local_workers

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# One set-up for both queue benches: the data store, the campaign matrix, waiting for the workers.
from bench_queue import STRATEGIES, SYMBOLS, campaign_spec, prepare_store, wait_for_workers  # noqa: E402


def sizes(name: str, default: str) -> list[int]:
    return [int(x) for x in os.environ.get(name, default).split(",") if x.strip()]


def noop_run(root: Path, tasks: int, workers: int = 4) -> dict[str, float]:
    """Throughput and Redis memory: before, at the peak, per finished task, after a purge."""
    with embedded_redis(root / "redis-noop", appendfsync="everysec") as url:
        queue = WorkQueue.from_url(url, prefix="scale")
        set_retention(queue.redis, 0)
        with local_workers(url, workers, prefix="scale", handler="kubetrader.queue.handlers:noop", output_dir=root):
            wait_for_workers(queue, workers)
            baseline = int(queue.redis.info("memory")["used_memory"])
            started = time.perf_counter()
            queue.enqueue("noop", (NewTask(id=f"n{i}", spec={}) for i in range(tasks)))
            wait_for_batch(queue, "noop", poll=0.2)
            wall = time.perf_counter() - started
            info = queue.redis.info("memory")
            finished = int(info["used_memory"])
            purge_batch(queue.redis, "noop", prefix="scale")
            # Queue-wide, not the batch's: the totals and the throughput window (a few KB, expiring).
            queue.redis.delete("scale:counters", *queue.redis.scan_iter("scale:finished:*"))
            time.sleep(0.5)  # UNLINK frees in the background
            after = int(queue.redis.info("memory")["used_memory"])
            keys_left = sum(1 for _ in queue.redis.scan_iter("scale:*noop*", count=1000))
    return {
        "tasks": tasks,
        "wall": wall,
        "rate": tasks / wall,
        "peak_mb": int(info["used_memory_peak"]) / 2**20,
        "per_task": (finished - baseline) / tasks,
        "after_purge": after - baseline,
        "keys_left": keys_left,
    }


def campaign_run(root: Path, cells: int) -> tuple[dict[int, float], float]:
    """Wall time of `cells` real backtests (5 years of daily bars) on 1 and on 2 workers, and the
    Redis bytes one finished cell holds (its result: metrics, meta, times) until the retention."""
    prepare_store(root / "data")
    os.environ["KUBETRADER_DATA_DIR"] = str(root / "data")
    per_pair = max(1, -(-cells // (len(SYMBOLS) * len(STRATEGIES))))
    tasks = campaign_tasks(campaign_spec(), name="scale")
    # More cells than the matrix holds: the same cells under distinct ids (each is a real backtest).
    tasks = [t.model_copy(update={"id": f"{t.id}-{k}"}) for k in range(per_pair) for t in tasks][:cells]
    walls: dict[int, float] = {}
    per_cell = 0.0
    with embedded_redis(root / "redis-campaign") as url:
        for workers in (1, 2):
            queue = WorkQueue.from_url(url, prefix=f"camp{workers}")
            with local_workers(url, workers, prefix=f"camp{workers}", output_dir=root / "out"):
                wait_for_workers(queue, workers)
                baseline = int(queue.redis.info("memory")["used_memory"])
                started = time.perf_counter()
                queue.enqueue("cells", tasks)
                stats = wait_for_batch(queue, "cells", poll=0.2)
                walls[workers] = time.perf_counter() - started
                per_cell = (int(queue.redis.info("memory")["used_memory"]) - baseline) / len(tasks)
                if stats.failed:
                    raise RuntimeError(f"{stats.failed} cells failed")
    return walls, per_cell


def study_cost(root: Path, trials: int, sampler: str, *, constant_liar: bool = True) -> float:
    """Driver seconds per trial with trials that cost nothing (so only asking and telling is left),
    50 in flight: the most 50 idle workers could get from it. TPE with its default constant liar
    asks one by one; without it a round's 50 proposals are scored in one call (MemoizedTPESampler)."""
    from kubetrader.optimize.evaluation import Evaluation
    from kubetrader.optimize.study import StudyDriver
    from kubetrader.specs import BacktestSpec, OptimizationStudySpec

    class Instant:
        capacity = 50

        def __init__(self) -> None:
            self.done: list[Evaluation] = []

        def submit(self, key: str, spec: BacktestSpec) -> None:
            fast, slow = spec.strategy.params["fast"], spec.strategy.params["slow"]
            value = -((float(fast) - 17) ** 2) - (float(slow) - 60) ** 2 / 100  # type: ignore[arg-type]
            self.done.append(Evaluation(key=key, metrics={"sharpe_ratio": value}))

        def collect(self, timeout: float) -> list[Evaluation]:
            found, self.done = self.done, []
            return found

        def lookup(self, key: str) -> Any:
            return None

        def in_flight(self, key: str) -> bool:
            return False

        def cancel(self) -> None:
            pass

    spec = OptimizationStudySpec.model_validate(
        {
            "backtest": {
                "strategy": {"path": "strategies.sma_crossover.SMACrossover"},
                "data": {"symbols": ["ORCL"], "start": "2010-01-01", "end": "2012-12-31"},
            },
            "space": {
                "fast": {"type": "int", "low": 2, "high": 200},
                "slow": {"type": "int", "low": 5, "high": 400},
            },
            "trials": trials,
            "parallelism": min(50, trials),
            "sampler": {"type": sampler, "seed": 1, "batchSize": 50, "constantLiar": constant_liar},
        }
    )
    name = f"cost-{sampler}-{trials}-{'liar' if constant_liar else 'no-liar'}"
    driver = StudyDriver(
        spec,
        study_name=name,
        storage_url=f"journal://{root / (name + '.log')}",
        evaluator=Instant(),
        collect_timeout=0,
    )
    started = time.perf_counter()
    driver.run()
    return (time.perf_counter() - started) / trials


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> int:
    noop_tasks = sizes("KUBETRADER_BENCH_NOOP_TASKS", "100000")[0]
    cells = sizes("KUBETRADER_BENCH_CAMPAIGN_CELLS", "1000")[0]
    trial_counts = [n for n in sizes("KUBETRADER_BENCH_STUDY_TRIALS", "100,1000,5000") if n > 0]
    print(f"cores: {os.cpu_count()}, {load()} (0 in a KUBETRADER_BENCH_* size skips that part)")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        root = Path(tmp)
        if noop_tasks:
            noop = noop_run(root, noop_tasks)
            header = f"{'no-op tasks, 4 workers':<24} {'tasks/s':>8} {'peak MiB':>9} {'B/task':>7}"
            print(f"\n{header} {'keys left':>9} {'B after purge':>14}   ({load()})")
            print(
                f"{noop_tasks:<24} {noop['rate']:8.0f} {noop['peak_mb']:9.1f} {noop['per_task']:7.0f} "
                f"{noop['keys_left']:9.0f} {noop['after_purge']:14.0f}"
            )
            print("goals: >= 1000 tasks/s on 2 cores, <= 1024 B/task, no key left after the purge")
            print("(B after purge: the keyspace's hash table and client buffers, which Redis shrinks lazily)")
        if cells:
            walls, per_cell = campaign_run(root, cells)
            head = f"{'real campaign':<20} {'1 worker s':>11} {'2 workers s':>12} {'cells/s (1)':>12}"
            print(f"\n{head} {'cells/s (2)':>12} {'speed-up':>9} {'Redis B/cell':>13}   ({load()})")
            print(
                f"{cells:<20} {walls[1]:11.1f} {walls[2]:12.1f} {cells / walls[1]:12.2f} {cells / walls[2]:12.2f} "
                f"{walls[1] / walls[2]:8.2f}x {per_cell:13.0f}"
            )
            print("goal: speed-up >= 1.8x (needs 2 idle cores)")
        else:
            print("\nreal campaign: skipped (KUBETRADER_BENCH_CAMPAIGN_CELLS=0; measure the speed-up on 2 idle cores)")
        if trial_counts:
            study_table(root, trial_counts, cell_seconds=walls[1] / cells if cells else None)
        else:
            print("\nstudy driver: skipped (KUBETRADER_BENCH_STUDY_TRIALS=0)")
    return 0


def study_table(root: Path, trial_counts: list[int], *, cell_seconds: float | None = None) -> None:
    """What the driver alone can hand out: ms per trial and trials per second, per sampler and size.

    Optuna and SciPy are imported first: the driver imports them lazily, and their ~0.5 s would
    otherwise land on the first (100-trial) study, 5 ms per trial that no later study pays; the
    same for the driver's sampler module."""
    import optuna.samplers._tpe.sampler  # noqa: F401
    import scipy.special  # noqa: F401

    import kubetrader.optimize.samplers  # noqa: F401

    print(f"\n{'study driver (batches of 50)':<30} " + " ".join(f"{n:>9}" for n in trial_counts))
    for label, sampler, liar in (("tpe", "tpe", True), ("tpe no liar", "tpe", False), ("random", "random", True)):
        costs = [study_cost(root, n, sampler, constant_liar=liar) for n in trial_counts]
        print(f"{label + ' ms/trial':<30} " + " ".join(f"{c * 1000:9.2f}" for c in costs))
        print(f"{label + ' trials/s':<30} " + " ".join(f"{1 / c:9.0f}" for c in costs) + f"   ({load()})")
    print("averages over a study growing from 0 to N trials (a TPE ask costs more the more trials it has")
    print("seen); tpe: the constant liar (the default) asks one by one; no liar: a round scored in one call")
    if cell_seconds:
        need = 50 / cell_seconds
        print(f"goal: 50 workers on this run's daily cells ({cell_seconds * 1000:.0f} ms each on one worker) need")
        print(f"{need:.0f} trials/s ({1000 / need:.2f} ms a trial); 167 trials/s on 0.3 s backtests")
    else:
        print("goal: 50 workers need 50 / backtest time trials/s (the campaign was skipped: no cell time measured)")


if __name__ == "__main__":
    sys.exit(main())
