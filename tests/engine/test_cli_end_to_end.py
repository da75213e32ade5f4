"""The CLI as users and the operator's Job call it: a subprocess, real files, the summary file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubetrader.results.store import read_document
from kubetrader.specs import HEADLINE_METRICS

ROOT = Path(__file__).resolve().parents[2]


def _kubetrader(args: list[str], *, store: Any, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBETRADER_DATA_DIR": str(store.root), "MPLBACKEND": "Agg"}
    command = [sys.executable, "-c", "from kubetrader.cli.main import main; main()", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False)


def test_run_example_yaml_writes_results_and_short_summary(bundled_store: Any, tmp_path: Path) -> None:
    summary_file = tmp_path / "termination-log"
    done = _kubetrader(
        ["run", "-f", str(ROOT / "examples/backtest-sma.yaml"), "--output", "out", "--summary-file", str(summary_file)],
        store=bundled_store,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "sharpe_ratio" in done.stdout and "Regimes" in done.stdout
    for label in ("result:", "plot:", "tearsheet:"):
        assert label in done.stdout
    raw = summary_file.read_bytes()
    assert len(raw) < 4096
    summary = json.loads(raw)
    assert summary["status"] == "succeeded" and summary["name"] == "sma-orcl"
    assert set(summary["metrics"]) == set(HEADLINE_METRICS)
    result = Path(tmp_path, summary["result"])
    document = read_document(result)
    assert document.status == "succeeded" and document.metadata.id == summary["id"]
    assert document.metrics["sharpe_ratio"] == summary["metrics"]["sharpe_ratio"]
    for name in document.artifacts.values():
        assert (result.parent / name).stat().st_size > 0
    tearsheet = (result.parent / document.artifacts["tearsheet"]).read_text()
    assert "<svg" in tearsheet and "Monthly returns" in tearsheet  # the chart inline (kubetrader.results.chart)
    assert document.artifacts["plot"].endswith("-equity.svg")


def test_backtest_options_with_json_and_a_failing_symbol_exits_2_with_summary(
    bundled_store: Any, tmp_path: Path
) -> None:
    summary_file = tmp_path / "summary.json"
    args = ["backtest", "--strategy", "strategies.sma_crossover.SMACrossover", "--symbols", "ZZZZ"]
    args += ["--start", "2005-01-01", "--end", "2006-12-31", "--param", "fast=5", "--param", "slow=20"]
    args += ["--json", "--output", "out", "--summary-file", str(summary_file)]
    done = _kubetrader(args, store=bundled_store, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    printed = json.loads(done.stdout)
    assert printed["status"] == "failed" and "ZZZZ" in printed["error"]
    assert json.loads(summary_file.read_text()) == printed
    document = read_document(tmp_path / "out" / "backtests" / f"{printed['id']}.json")
    assert document.status == "failed"
