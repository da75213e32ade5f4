"""Engine speed: a bare Backtrader run against the platform's run of the same strategy.

ORCL daily, full range (5036 bars), SMA 10/30, IB standard + 5 bps. One process,
warmed up, medians of several runs (wall), and the least CPU time of any run beside them
(steadier on a shared machine); `BENCH_ENGINE_RUNS` sets the number (default 7, plus 4).
Goals: platform (run + metrics + JSON/CSV files) <= 0.70 x bare (issue 20; Backtrader's own
do-nothing loop is about 0.45 x); compute_metrics < 20 ms per call (quantstats shown beside).
The SVG chart and HTML tearsheet are timed separately: they are reports, not the run.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RUNS = int(os.environ.get("BENCH_ENGINE_RUNS", "7"))


def _median(fn: Callable[[], Any], runs: int = RUNS) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _interleaved(fns: list[Callable[[], Any]], runs: int) -> tuple[list[float], list[float]]:
    """Median wall time and least CPU time of each function, run in turn `runs` times.

    The wall medians are the figures the goal is set in; the CPU minima (this process's own
    time, the least any run needed) move much less with the load of other processes on a
    shared machine, so before/after comparisons read them too."""
    for fn in fns:
        fn()  # warm-up
    wall: list[list[float]] = [[] for _ in fns]
    cpu: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, bucket, cpu_bucket in zip(fns, wall, cpu, strict=True):
            started, cpu_started = time.perf_counter(), time.process_time()
            fn()
            bucket.append(time.perf_counter() - started)
            cpu_bucket.append(time.process_time() - cpu_started)
    return [statistics.median(bucket) for bucket in wall], [min(bucket) for bucket in cpu]


def main() -> None:
    import backtrader as bt

    from kubetrader.costs import build_broker
    from kubetrader.data import load_bars
    from kubetrader.metrics import compute_metrics
    from kubetrader.pipeline import write_result
    from kubetrader.results.report import plot_equity, write_tearsheet
    from kubetrader.results.store import result_paths
    from kubetrader.runner import BacktestRunner, result_id
    from kubetrader.specs import BacktestSpec
    from strategies.sma_crossover import SMACrossover

    spec = BacktestSpec.model_validate(
        {
            "strategy": {"path": "strategies.sma_crossover.SMACrossover", "params": {"fast": 10, "slow": 30}},
            "data": {"symbols": ["ORCL"], "start": "1995-01-01", "end": "2014-12-31"},
        }
    )
    frame = load_bars("ORCL", start=dt.date(1995, 1, 1), end=dt.date(2014, 12, 31)).tz_convert(None)

    def bare() -> float:
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.broker = build_broker(spec.broker)
        cerebro.adddata(bt.feeds.PandasData(dataname=frame, openinterest=None))
        cerebro.addstrategy(SMACrossover, fast=10, slow=30)
        cerebro.run()
        return float(cerebro.broker.getvalue())

    out = Path(tempfile.mkdtemp(prefix="kt-bench-"))
    paths = result_paths(out, result_id("bench", spec))
    holder: dict[str, Any] = {}

    def platform() -> None:
        result = BacktestRunner(spec).run()
        holder["result"] = result
        write_result(result, name="bench", paths=paths, report=False)

    def run_only() -> None:
        BacktestRunner(spec).run()

    # Interleaved, so that load from other processes hits all three alike.
    (t_bare, t_platform, t_run), (c_bare, c_platform, c_run) = _interleaved([bare, platform, run_only], runs=RUNS + 4)
    result = holder["result"]
    closed = result.closed_trades
    t_metrics = _median(
        lambda: compute_metrics(
            result.equity, trades=closed, benchmark_returns=result.benchmark_returns, exposure=result.exposure
        ),
        runs=21,
    )

    def report() -> None:
        document = result.to_document("bench")
        write_tearsheet(document, result, plot_equity(document, paths.plot), paths.tearsheet)

    t_report = _median(report, runs=3)
    try:
        import warnings

        import quantstats as qs

        returns = result.equity.tz_convert(None).pct_change().dropna()
        bench = result.benchmark_returns.tz_convert(None).iloc[1:]

        def quantstats_metrics() -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                qs.reports.metrics(returns, benchmark=bench, mode="full", display=False)

        t_qs: float | None = _median(quantstats_metrics, runs=3)
    except Exception as exc:  # quantstats is a dev dependency; report rather than fail
        print(f"(quantstats not timed: {exc!r})")
        t_qs = None

    bars = len(frame)
    print(f"ORCL daily, {bars} bars, SMA 10/30, medians of {RUNS + 4} interleaved runs after warm-up\n")
    print(f"{'measure':<44}{'time':>12}{'ratio':>10}{'goal':>12}{'CPU min':>12}{'ratio':>8}")
    print(f"{'bare Backtrader run':<44}{t_bare * 1e3:>10.1f}ms{1.0:>10.2f}{'':>12}{c_bare * 1e3:>10.1f}ms{1.0:>8.2f}")
    label = "platform run only (runner + metrics)"
    cpu = f"{c_run * 1e3:>10.1f}ms{c_run / c_bare:>8.2f}"
    print(f"{label:<44}{t_run * 1e3:>10.1f}ms{t_run / t_bare:>10.2f}{'':>12}{cpu}")
    ratio = t_platform / t_bare
    label = "platform run + metrics + JSON/CSV files"
    cpu = f"{c_platform * 1e3:>10.1f}ms{c_platform / c_bare:>8.2f}"
    print(f"{label:<44}{t_platform * 1e3:>10.1f}ms{ratio:>10.2f}{'<= 0.70':>12}{cpu}")
    print(f"{'chart SVG + HTML tearsheet (report)':<44}{t_report * 1e3:>10.1f}ms{t_report / t_bare:>10.2f}{'':>12}")
    print(f"{'compute_metrics per call':<44}{t_metrics * 1e3:>10.1f}ms{'':>10}{'< 20 ms':>12}")
    if t_qs is not None:
        label = "quantstats reports.metrics (full), same data"
        print(f"{label:<44}{t_qs * 1e3:>10.1f}ms{t_qs / t_metrics:>9.0f}x{'':>12}")
    print(f"\nbare final value {bare():,.2f}  platform final value {float(result.equity.iloc[-1]):,.2f}")


if __name__ == "__main__":
    main()
