"""`kubetrader run -f` of a matrix Backtest: over the queue and in process, the same cells and numbers."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

MATRIX = {
    "apiVersion": "kubetrader.io/v1alpha1",
    "kind": "Backtest",
    "metadata": {"name": "mx"},
    "spec": {
        "strategy": {"path": "strategies.sma_crossover.SMACrossover", "params": {"fast": 10, "slow": 30}},
        "data": {"symbols": ["ORCL"], "start": "2011-01-01", "end": "2012-12-31"},
        "matrix": {"symbols": ["ORCL", "NVDA"], "params": {"fast": [5, 10]}},
    },
}


def _run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(MATRIX))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "kubetrader.cli.main",
            "run",
            "-f",
            str(path),
            "--output",
            str(tmp_path / "out"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )


@pytest.mark.slow
def test_matrix_over_the_queue_matches_the_in_process_run_cell_by_cell(redis_url: str, tmp_path: Path) -> None:
    local = _run(tmp_path)
    assert local.returncode == 0, local.stderr
    table = next((tmp_path / "out" / "backtests").glob("mx-*-matrix.csv"))
    with table.open() as fh:
        in_process = {row["cell"]: float(row["sharpe_ratio"]) for row in csv.DictReader(fh)}

    summary = tmp_path / "summary.json"
    queued = _run(tmp_path, "--workers", "2", "--redis", redis_url, "--summary-file", str(summary))
    assert queued.returncode == 0, queued.stderr
    report = json.loads(Path(json.loads(summary.read_text())["result"]).read_text())
    over_queue = {row["task_id"]: row["metrics"]["sharpe_ratio"] for row in report["ranking"]}
    assert len(over_queue) == len(in_process) == 4
    for cell, sharpe in in_process.items():
        assert over_queue[cell] == pytest.approx(sharpe, abs=1e-6)  # the CSV keeps 6 decimals

    again = _run(tmp_path, "--workers", "0", "--redis", redis_url)  # same batch id: nothing runs twice
    assert again.returncode == 0, again.stderr
    assert "(0 new)" in again.stdout
