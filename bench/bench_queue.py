"""Work-queue benchmark: 5 symbols x 4 strategies on 5 years of daily bars, with 1 and 2 local workers,
and the queue's own cost per task with a no-op handler over 1000 tasks.

Goals: queue overhead < 2 ms/task; 2 workers >= 1.8x faster than 1 (needs 2 idle cores);
average backtest with full metrics well under 0.7 s.

"Cold" is the first batch on fresh worker processes (each loads the data sets once), "warm" the
same 20 again on the same processes. Overhead with the engine =
(workers x wall - sum of handler times) / tasks: everything a worker spent not running a
backtest (claim, result write, hand-offs, the uneven tail).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from kubetrader.queue import NewTask, WorkQueue, embedded_redis
from kubetrader.queue.campaign import campaign_tasks, wait_for_batch
from kubetrader.queue.local import local_workers
from kubetrader.queue.stats import queue_stats
from kubetrader.specs import BacktestSpec, MatrixSpec

SYMBOLS = ["ORCL", "NVDA", "YHOO", "GOOG", "SYNTH"]  # four real; SYNTH is seeded synthetic bars
STRATEGIES = [
    "strategies.sma_crossover.SMACrossover",
    "strategies.rsi_momentum.RSIMomentum",
    "strategies.bollinger_reversion.BollingerReversion",
    "strategies.donchian_breakout.DonchianBreakout",
]
NOOP_TASKS = 1000


def prepare_store(root: Path) -> None:
    """Register the bundled symbols and a synthetic fifth one, so workers only read."""
    import datetime as dt

    from kubetrader.data import DataStore
    from kubetrader.data.bundled import register_bundled
    from kubetrader.data.synthetic import synthetic_bars

    store = DataStore(root)
    for symbol in SYMBOLS[:4]:
        register_bundled(store, symbol, "1d")
    store.merge("SYNTH", "1d", synthetic_bars(periods=7 * 252, start=dt.date(2007, 1, 1), seed=7), source="synthetic")


def campaign_spec() -> BacktestSpec:
    base = BacktestSpec.model_validate(
        {
            "strategy": {"path": STRATEGIES[0]},
            "data": {"symbols": ["ORCL"], "start": "2009-01-01", "end": "2013-12-31"},
        }
    )
    return base.model_copy(update={"matrix": MatrixSpec(symbols=SYMBOLS, strategies=STRATEGIES)})


def wait_for_workers(queue: WorkQueue, count: int, timeout: float = 120) -> None:
    """Start-up (imports, engine warm-up) is not what we measure: wait until all workers are idle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = queue_stats(queue.redis, prefix=queue.prefix)
        if sum(1 for w in stats.workers if w.alive and w.state == "idle") >= count:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{count} workers did not come up")


def run_campaign(
    url: str, workers: int, out: Path, handler: str, batches: list[tuple[str, list[NewTask]]]
) -> list[dict[str, float]]:
    """Run the batches one after the other on the same worker processes; one row per batch."""
    prefix = f"bench{workers}{handler.rsplit(':', 1)[-1]}"
    queue = WorkQueue.from_url(url, prefix=prefix)
    rows = []
    with local_workers(url, workers, prefix=prefix, output_dir=out, handler=handler):
        wait_for_workers(queue, workers)
        for batch, tasks in batches:
            started = time.perf_counter()
            queue.enqueue(batch, tasks)
            stats = wait_for_batch(queue, batch, poll=0.05)
            wall = time.perf_counter() - started
            results = queue.results(batch)
            handler_total = sum(r.run_seconds or 0 for r in results.values())
            rows.append(
                {
                    "tasks": len(tasks),
                    "failed": stats.failed,
                    "wall": wall,
                    "avg_run": handler_total / max(len(results), 1),
                    "overhead_ms": (workers * wall - handler_total) / len(tasks) * 1000,
                }
            )
    return rows


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
        root = Path(tmp)
        prepare_store(root / "data")
        os.environ["KUBETRADER_DATA_DIR"] = str(root / "data")
        spec = campaign_spec()
        rows: list[tuple[str, dict[str, float]]] = []
        engine = "kubetrader.queue.handlers:run_backtest"
        with embedded_redis(root / "redis") as url:
            for workers in (1, 2):
                tasks = campaign_tasks(spec, name=f"bench{workers}")
                cold, warm = run_campaign(url, workers, root / "out", engine, [("cold", tasks), ("warm", tasks)])
                rows.append((f"20 backtests, {workers} worker(s), cold", cold))
                rows.append((f"20 backtests, {workers} worker(s), warm", warm))
            noop = [NewTask(id=f"n{i}", spec={}) for i in range(NOOP_TASKS)]
            (noop_row,) = run_campaign(url, 1, root / "out", "kubetrader.queue.handlers:noop", [("noop", noop)])
            rows.append((f"{NOOP_TASKS} no-op tasks, 1 worker", noop_row))
    by_label = dict(rows)
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f} (cold: first batch of fresh")
    print("worker processes, each loads the data sets; warm: the same 20 again on the same processes)")
    print(f"{'run':<36} {'wall s':>8} {'avg s/backtest':>15} {'overhead ms/task':>17} {'failed':>7}")
    for label, row in rows:
        print(
            f"{label:<36} {row['wall']:8.2f} {row['avg_run']:15.3f} {row['overhead_ms']:17.2f} {int(row['failed']):7d}"
        )
    for kind in ("cold", "warm"):
        one = by_label[f"20 backtests, 1 worker(s), {kind}"]
        two = by_label[f"20 backtests, 2 worker(s), {kind}"]
        print(f"speed-up 2 workers vs 1 ({kind}): {one['wall'] / two['wall']:.2f}x (goal >= 1.8x)")
    print(f"queue overhead (no-op): {noop_row['overhead_ms']:.2f} ms/task (goal < 2 ms)")
    warm_one = by_label["20 backtests, 1 worker(s), warm"]
    print(f"average backtest (1 worker, warm): {warm_one['avg_run']:.3f} s (goal well under 0.7 s)")
    return 1 if any(row["failed"] for _, row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
