"""`kubetrader live run`: the same strategy class on a replay, and specs refused before any connection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kubetrader.live.journal import Journal
from tests.helpers import ROOT


def live(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubetrader.cli.main", "live", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=90,
        cwd=cwd,
        env={"PYTHONPATH": f"{ROOT / 'engine'}:{ROOT}", "PATH": "/usr/bin:/bin", "KUBETRADER_DATA_DIR": str(cwd)},
    )


def test_replay_runs_the_sma_crossover_unchanged_and_journals_every_trade(tmp_path: Path) -> None:
    journal_url = f"sqlite:///{tmp_path / 'journal.db'}"
    result = live(
        "run", "--strategy", "strategies.sma_crossover.SMACrossover", "--param", "fast=5", "--param", "slow=20",
        "--symbols", "ORCL", "--timeframe", "1d", "--replay", "--start", "2010-01-01", "--end", "2010-12-31",
        "--max-position-size", "100000", "--journal-url", journal_url, "--deployment", "replay-test",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    final = json.loads(result.stdout.strip().splitlines()[-1])
    assert final["deployment"] == "replay-test" and final["connected"] is True
    journal = Journal(journal_url, deployment="replay-test")
    try:
        fills = journal.fills()
        assert len(fills) >= 4
        assert fills[0].side == "BUY" and {f.side for f in fills} == {"BUY", "SELL"}
        assert all(i.state in ("filled", "working", "pending") for i in journal.intents())
        assert journal.positions().get("ORCL", 0.0) == final["positions"].get("ORCL", 0.0)
    finally:
        journal.close()


def test_live_mode_without_every_risk_limit_is_refused_before_connecting(tmp_path: Path) -> None:
    result = live(
        "run", "--strategy", "strategies.sma_crossover.SMACrossover", "--symbols", "ORCL", "--mode", "live",
        "--max-position-size", "100", "--port", "1", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "mode 'live' needs every risk limit" in result.stderr and "max_daily_loss" in result.stderr


def test_unknown_strategy_param_and_disallowed_module_exit_2_with_the_reason(tmp_path: Path) -> None:
    typo = live(
        "run", "--strategy", "strategies.sma_crossover.SMACrossover", "--param", "fsat=5", "--symbols", "ORCL",
        "--replay", cwd=tmp_path,
    )  # fmt: skip
    assert typo.returncode == 2 and "fsat" in typo.stderr and "fast" in typo.stderr
    outside = live("run", "--strategy", "os.path.Join", "--symbols", "ORCL", "--replay", cwd=tmp_path)
    assert outside.returncode == 2 and "outside the allowed strategy modules" in outside.stderr
