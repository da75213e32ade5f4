"""Screening with exact vectorized twins against Backtrader alone, backtesting.py and vectorbt.

ORCL daily 1995-2014 (5036 bars), SMACrossover, IB standard + 5 bps, 100k cash.
Grid: fast 2..101 x slow 10..250 step 5 = 4,900 points (points with fast >= slow are
refused by the strategy: the twin scores them NaN, Backtrader would fail them).

- screened: `screen: vectorized` study end to end (twin over the grid, self-check,
  top 10 confirmed on Backtrader on a local pool of 2 forked processes, the best's
  result files written by its confirming pipeline run).
- Backtrader alone: measured on a sample of 40 points, extrapolated to the grid on 2 workers.
- backtesting.py `Backtest.optimize` (its own process pool, 200 sampled points) and
  vectorbt (whole grid, after its numba warm-up), when installed: same crossover and
  next-open fills, but their own sizing and a percent commission, so final values are
  close, not equal (printed for 10/30).
- the full equivalence harness (kubetrader.vectorized.equivalence.harness_specs) on 2
  processes: every disagreement is printed; the goal is zero.

Goals: screened + confirmed in under 10 s; zero disagreements.
"""

from __future__ import annotations

import datetime as dt
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

FAST = range(2, 102)
SLOW = range(10, 251, 5)
SAMPLE = 40


def _study_spec() -> Any:
    from kubetrader.specs import OptimizationStudySpec
    from kubetrader.vectorized.equivalence import harness_spec

    return OptimizationStudySpec.model_validate(
        {
            "backtest": harness_spec("strategies.sma_crossover.SMACrossover", {}).to_wire(),
            "space": {
                "fast": {"type": "int", "low": 2, "high": 101},
                "slow": {"type": "int", "low": 10, "high": 250, "step": 5},
            },
            "objective": {"metric": "sharpe_ratio"},
            "screen": "vectorized",
            "confirmTop": 10,
            "trials": 4900,
            "resume": False,
        }
    )


def _screened() -> tuple[float, float, Any]:
    from kubetrader.optimize.service import run_study

    spec = _study_spec()
    out = Path(tempfile.mkdtemp(prefix="bench-screen-"))
    started = time.perf_counter()
    report = run_study(spec, name="bench-screen", output_dir=out, storage_url=f"journal://{out}/optuna.log")
    total = time.perf_counter() - started
    import json

    summary = json.loads((out / "studies" / "bench-screen-screen.json").read_text())
    return total, float(summary["screen_seconds"]), (report, summary)


def _backtrader_sample() -> float:
    import random

    from kubetrader.runner import BacktestRunner
    from kubetrader.vectorized.equivalence import harness_spec

    rng = random.Random(0)
    points = rng.sample([(f, s) for f in FAST for s in SLOW if f < s], SAMPLE)
    times = []
    for f, s in points:
        started = time.perf_counter()
        BacktestRunner(harness_spec("strategies.sma_crossover.SMACrossover", {"fast": f, "slow": s})).run()
        times.append(time.perf_counter() - started)
    return statistics.mean(times)


def _backtrader_final() -> float:
    from kubetrader.runner import BacktestRunner
    from kubetrader.vectorized.equivalence import harness_spec

    spec = harness_spec("strategies.sma_crossover.SMACrossover", {"fast": 10, "slow": 30})
    return float(BacktestRunner(spec).run().equity.iloc[-1])


def _frame() -> Any:
    from kubetrader.data import load_bars

    frame = load_bars("ORCL", timeframe="1d", start=dt.date(1995, 1, 1), end=dt.date(2014, 12, 31))
    return frame.tz_convert(None)


def _backtesting_py(frame: Any) -> tuple[str, float | None, float | None]:
    try:
        from backtesting import Backtest, Strategy
        from backtesting.lib import crossover
        from backtesting.test import SMA
    except ImportError as exc:
        return f"not installed ({exc.name})", None, None

    class SmaCross(Strategy):
        fast = 10
        slow = 30

        def init(self) -> None:
            self.f = self.I(SMA, self.data.Close, self.fast)
            self.s = self.I(SMA, self.data.Close, self.slow)

        def next(self) -> None:
            if crossover(self.f, self.s) and not self.position:
                self.buy(size=int(0.95 * self.equity // self.data.Close[-1]))
            elif crossover(self.s, self.f) and self.position:
                self.position.close()

    # Backtest.optimize pickles the strategy class to its forked workers: by reference, so a module global.
    SmaCross.__qualname__ = SmaCross.__name__
    globals()[SmaCross.__name__] = SmaCross
    data = frame.rename(columns=str.capitalize)[["Open", "High", "Low", "Close", "Volume"]]
    bt = Backtest(data, SmaCross, cash=100_000, commission=0.0005, finalize_trades=True)
    final = float(bt.run()["Equity Final [$]"])
    tries = 200
    started = time.perf_counter()
    bt.optimize(
        fast=list(FAST), slow=list(SLOW), constraint=lambda p: p.fast < p.slow, max_tries=tries, maximize="Sharpe Ratio"
    )
    per_point = (time.perf_counter() - started) / tries
    return "ok", per_point, final


def _vectorbt(frame: Any) -> tuple[str, float | None, float | None]:
    try:
        import numpy as np
        import vectorbt as vbt
    except ImportError as exc:
        return f"not installed ({exc.name})", None, None
    close, open_ = frame["close"], frame["open"]

    def run(fast: list[int], slow: list[int]) -> Any:
        f = vbt.MA.run(close, window=fast, short_name="f")
        s = vbt.MA.run(close, window=slow, short_name="s")
        entries = f.ma_crossed_above(s).vbt.fshift(1)
        exits = f.ma_crossed_below(s).vbt.fshift(1)
        return vbt.Portfolio.from_signals(
            close,
            entries.astype(bool),
            exits.astype(bool),
            price=open_.to_numpy()[:, None],
            size=0.95,
            size_type="percent",
            fees=0.0005,
            init_cash=100_000,
            freq="1D",
        )

    pairs = [(f, s) for f in FAST for s in SLOW if f < s]
    one = run([10], [30])
    final = float(np.asarray(one.final_value()).ravel()[0])
    started = time.perf_counter()
    pf = run([p[0] for p in pairs], [p[1] for p in pairs])
    pf.sharpe_ratio()
    return "ok", (time.perf_counter() - started) / len(pairs), final


def _check_one(spec: Any) -> tuple[str, list[str]]:
    from kubetrader.vectorized import check

    outcome = check(spec)
    name = spec.strategy.path.rsplit(".", 1)[-1]
    label = f"{name} {spec.strategy.params} {spec.data.symbols[0]} {spec.broker.commission.model} {spec.risk}"
    return label, outcome.differences


def _harness() -> tuple[int, list[str], float]:
    from kubetrader.vectorized.equivalence import harness_specs

    specs = harness_specs()
    started = time.perf_counter()
    bad = []
    with ProcessPoolExecutor(2) as pool:
        for label, differences in pool.map(_check_one, specs, chunksize=4):
            if differences:
                bad.append(f"{label}: {'; '.join(differences[:3])}")
    return len(specs), bad, time.perf_counter() - started


def main() -> None:
    from kubetrader.vectorized import run_twin
    from kubetrader.vectorized.equivalence import harness_spec

    frame = _frame()
    total, screen_seconds, (report, summary) = _screened()
    per_bt = _backtrader_sample()
    grid = len(FAST) * len(SLOW)
    valid = summary["points_screened"] - summary["points_undefined"]
    ours = run_twin(harness_spec("strategies.sma_crossover.SMACrossover", {"fast": 10, "slow": 30})).equity.iloc[-1]
    backtrader_final = _backtrader_final()
    if round(backtrader_final, 2) != round(float(ours), 2):
        raise SystemExit(f"twin 10/30 {ours!r} != Backtrader {backtrader_final!r}")
    bpy_status, bpy_point, bpy_final = _backtesting_py(frame)
    vbt_status, vbt_point, vbt_final = _vectorbt(frame)
    rows = [
        ("kubetrader screened + top-10 on Backtrader", total, screen_seconds / grid, float(ours)),
        ("  of which twin screening (4,900 points)", screen_seconds, None, None),
        ("Backtrader alone, 2 workers (estimated)", per_bt * valid / 2, per_bt, backtrader_final),
    ]
    if bpy_point is not None:
        rows.append(("backtesting.py optimize, 2 procs (200 pts, est.)", bpy_point * valid, bpy_point, bpy_final))
    if vbt_point is not None:
        rows.append(("vectorbt from_signals, whole grid", vbt_point * valid, vbt_point, vbt_final))
    print(f"grid: {grid} points ({valid} with fast < slow), ORCL daily {len(frame)} bars")
    print(f"{'engine':48} {'wall s':>8} {'ms/point':>9} {'final 10/30':>12} {'vs Backtrader':>14}")
    for label, wall, point, final in rows:
        ms = "" if point is None else f"{1000 * point:9.3f}"
        fin = "" if final is None else f"{final:12.2f}"
        off = "" if final is None else f"{100 * (final / backtrader_final - 1):+13.2f}%"
        print(f"{label:48} {wall:8.2f} {ms:>9} {fin:>12} {off:>14}")
    if bpy_point is None:
        print(f"backtesting.py: {bpy_status}")
    if vbt_point is None:
        print(f"vectorbt: {vbt_status}")
    goal = "met" if total < 10 else "MISSED"
    print(f"best on Backtrader: sharpe {report.best_value:.6f} at {report.best_params}; goal < 10 s {goal}")
    count, bad, seconds = _harness()
    print(f"equivalence harness: {count} specs on 2 processes in {seconds:.0f} s, disagreements: {len(bad)}")
    for line in bad[:20]:
        print("  DISAGREES", line)
    if bad:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
