"""Whole-process start-up: what a user waits for, from typing the command to the prompt.

Interleaved runs of each command (so the machine's load hits them alike), medians:
- `kubetrader --help`;
- `kubetrader run -f examples/backtest-sma.yaml` (result JSON, CSVs, plot, tearsheet) against a
  plain Backtrader script of the same strategy with five analyzers, what a user would write
  instead (goal: at most 1.0x), reading the CSV with Backtrader's own feed (the ratios' base) or
  through pandas;
- the same run with MLflow tracking on (a local SQLite store), logged before the command exits
  (`--tracking-mode wait`, a Job's way without the chart's sync loop), after it (`background`, the
  default: a detached `mlflow sync`), or left to a sync loop (`later`, a Job's way with mlflow.sync on);
- `kubetrader live emergency-stop --help`, the import cost of the stop path (the stop itself
  needs a gateway);
- `kubetrader parallel` of one cell (its own Redis and one worker): the fixed overhead of the
  queue path (goal: at most 1.5 s).
Also how long `import kubetrader.cli.backtest` (what `run` loads before it reads the file) takes.

`KT_BENCH_CLI_ONLY=parallel` runs only the rows whose label contains that text (and the plain script,
the ratios' base); `KT_BENCH_CLI_BASE=/path/to/another/checkout` adds a "(base)" row for each
kubetrader row, the same command on that tree's code, interleaved with this tree's: a before/after
on one machine's load.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = int(os.environ.get("KT_BENCH_CLI_RUNS", "5"))
ONLY = os.environ.get("KT_BENCH_CLI_ONLY", "")
BASE = os.environ.get("KT_BENCH_CLI_BASE", "")
KUBETRADER = [sys.executable, "-m", "kubetrader.cli.main"]

# What a user writes instead of the platform: the same crossover, Backtrader's own CSV feed, IB-like
# commission, five analyzers printed at the end.
PLAIN_SCRIPT = """
import backtrader as bt, datetime as dt, sys

class SMACrossover(bt.Strategy):
    params = (("fast", 10), ("slow", 30))
    def __init__(self):
        fast, slow = bt.indicators.SMA(period=self.p.fast), bt.indicators.SMA(period=self.p.slow)
        self.cross = bt.indicators.CrossOver(fast, slow)
    def next(self):
        if not self.position and self.cross > 0:
            self.buy(size=int(0.95 * self.broker.getvalue() / self.data.close[0]))
        elif self.position and self.cross < 0:
            self.close()

cerebro = bt.Cerebro(stdstats=False)
if sys.argv[2] == "pandas":  # the bars in a DataFrame, as most users hold them
    import pandas as pd
    frame = pd.read_csv(sys.argv[1], index_col="Date", parse_dates=True).loc["2005-01-01":"2014-12-31"]
    cerebro.adddata(bt.feeds.PandasData(dataname=frame, openinterest=None))
else:
    cerebro.adddata(bt.feeds.YahooFinanceCSVData(dataname=sys.argv[1], fromdate=dt.datetime(2005, 1, 1),
                                                 todate=dt.datetime(2014, 12, 31), adjclose=True))
cerebro.addstrategy(SMACrossover)
cerebro.broker.setcash(100000)
cerebro.broker.setcommission(commission=0.005, commtype=bt.CommInfoBase.COMM_FIXED, stocklike=True)
cerebro.broker.set_slippage_perc(0.0005)
cerebro.addanalyzer(bt.analyzers.SharpeRatio, _name="sharpe", timeframe=bt.TimeFrame.Days, annualize=True)
cerebro.addanalyzer(bt.analyzers.DrawDown, _name="drawdown")
cerebro.addanalyzer(bt.analyzers.Returns, _name="returns")
cerebro.addanalyzer(bt.analyzers.TradeAnalyzer, _name="trades")
cerebro.addanalyzer(bt.analyzers.SQN, _name="sqn")
(strategy,) = cerebro.run()
print("final value", cerebro.broker.getvalue())
for name in ("sharpe", "drawdown", "returns", "trades", "sqn"):
    print(name, dict(getattr(strategy.analyzers, name).get_analysis()))
"""


Run = tuple[list[str], Path, dict[str, str]]  # command, working directory, environment


def _with_base(commands: dict[str, list[str]], env: dict[str, str]) -> dict[str, Run]:
    """Each command with its tree and environment: the rows `ONLY` selects, and with `BASE` each kubetrader
    row again on that tree's code (its engine first on the path; same interpreter, data and output)."""
    plain_label = "plain Backtrader script, 5 analyzers"
    runs: dict[str, Run] = {}
    for label, cmd in commands.items():
        if ONLY and ONLY not in label and label != plain_label:
            continue
        runs[label] = (cmd, ROOT, env)
        if BASE and cmd[:3] == KUBETRADER:
            base = Path(BASE).resolve()
            path = os.pathsep.join([str(base / "engine"), str(base), env.get("PYTHONPATH", "")])
            base_cmd = [str(base / part.removeprefix(f"{ROOT}/")) if part.startswith(f"{ROOT}/examples") else part
                        for part in cmd]  # fmt: skip
            runs[f"{label} (base)"] = (base_cmd, base, {**env, "PYTHONPATH": path})
    return runs


def _time(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one whole process: CPU time (user + system of it and its children) is
    what the machine's load inflates least, so both are shown."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr[-2000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _settle(results: Path, timeout: float = 300.0) -> None:
    """Wait (untimed) for the background MLflow sync of a tracked run to finish: its CPU must not
    land on the next command of the interleaving. Its marker goes when the run is logged."""
    deadline = time.monotonic() + timeout
    while any(results.rglob("tracking-pending/*.json")):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the background MLflow sync under {results} did not finish in {timeout:.0f} s")
        time.sleep(0.1)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="kt-bench-cli-"))
    try:
        env = {
            **os.environ,
            "KUBETRADER_DATA_DIR": str(work / "data"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        script = work / "plain.py"
        script.write_text(PLAIN_SCRIPT)
        orcl = str(ROOT / "examples/data/orcl-1995-2014.txt")
        run_cmd = [*KUBETRADER, "run", "-f", str(ROOT / "examples/backtest-sma.yaml"), "-o", str(work / "results")]
        tracked = work / "backtest-sma-tracked.yaml"
        tracked.write_text((ROOT / "examples/backtest-sma.yaml").read_text().replace("enabled: false", "enabled: true"))
        tracked_cmd = [*KUBETRADER, "run", "-f", str(tracked), "-o", str(work / "tracked")]
        commands = {
            "kubetrader --help": [*KUBETRADER, "--help"],
            "import kubetrader.cli.backtest": [sys.executable, "-c", "import kubetrader.cli.backtest"],
            "plain Backtrader script, 5 analyzers": [sys.executable, str(script), orcl, "csv"],
            "plain script, 5 analyzers, pandas feed": [sys.executable, str(script), orcl, "pandas"],
            "kubetrader run -f examples/backtest-sma.yaml": run_cmd,
            "  with tracking, MLflow before exit (wait)": [*tracked_cmd, "--tracking-mode", "wait"],
            "  with tracking, MLflow after exit (default)": tracked_cmd,
            # A cluster's Backtest Job with the chart's sync loop on: the marker only, the loop logs it.
            "  with tracking, left to the sync loop (later)": [
                *KUBETRADER, "run", "-f", str(tracked), "-o", str(work / "later"), "--tracking-mode", "later",
            ],
            "kubetrader live emergency-stop --help": [*KUBETRADER, "live", "emergency-stop", "--help"],
            "kubetrader parallel, 1 cell": [
                *KUBETRADER, "parallel", "--symbols", "ORCL", "--strategies", "strategies.sma_crossover.SMACrossover",
                "--workers", "1", "--output", str(work / "parallel"),
            ],
        }  # fmt: skip
        runs = _with_base(commands, env)
        for cmd, cwd, cmd_env in runs.values():  # warm-up: bytecode, the data store's first registration
            _time(cmd, cwd, cmd_env)
            _settle(work / "tracked")
        walls: dict[str, list[float]] = {label: [] for label in runs}
        cpus: dict[str, list[float]] = {label: [] for label in runs}
        for _ in range(RUNS):
            for label, (cmd, cwd, cmd_env) in runs.items():
                wall, cpu = _time(cmd, cwd, cmd_env)
                _settle(work / "tracked")
                walls[label].append(wall)
                cpus[label].append(cpu)
        wall_median = {label: statistics.median(values) for label, values in walls.items()}
        cpu_median = {label: statistics.median(values) for label, values in cpus.items()}
        plain_label = "plain Backtrader script, 5 analyzers"
        goals = {
            "kubetrader run -f examples/backtest-sma.yaml": "<= 1.00",
            "kubetrader parallel, 1 cell": "<= 1.5 s",
        }
        print(f"whole processes, medians of {RUNS} interleaved runs after a warm-up; ratios to the plain script\n")
        print(f"{'command':<46}{'wall':>8}{'ratio':>8}{'CPU':>8}{'ratio':>8}{'goal':>11}")
        for label in runs:
            wall, cpu = wall_median[label], cpu_median[label]
            wall_ratio, cpu_ratio = wall / wall_median[plain_label], cpu / cpu_median[plain_label]
            print(f"{label:<46}{wall:>7.2f}s{wall_ratio:>8.2f}{cpu:>7.2f}s{cpu_ratio:>8.2f}{goals.get(label, ''):>11}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
