"""A worker process running the real engine: results, files and a bad spec dead-lettered at once."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from kubetrader.queue import NewTask, WorkQueue
from kubetrader.queue.campaign import build_report, campaign_tasks, wait_for_batch, write_report
from kubetrader.queue.local import start_worker
from kubetrader.queue.server import redis_client
from kubetrader.specs import BacktestSpec, MatrixSpec


def test_a_worker_process_runs_matrix_cells_with_the_engine_and_ranks_them(
    redis_url: str, bundled_store: Any, tmp_path: Path
) -> None:
    base = BacktestSpec.model_validate(
        {
            "strategy": {"path": "strategies.sma_crossover.SMACrossover", "params": {"fast": 10, "slow": 30}},
            "data": {"symbols": ["ORCL"], "start": "2011-01-01", "end": "2013-12-31"},
        }
    )
    spec = base.model_copy(update={"matrix": MatrixSpec(symbols=["ORCL", "GOOG"])})
    tasks = campaign_tasks(spec, name="engine")
    tasks[0] = tasks[0].model_copy(update={"meta": {**tasks[0].meta, "returns": True}})
    bad = NewTask(id="bad-spec", spec={"strategy": {"path": "strategies.x.Y"}}, max_attempts=3)
    unknown = NewTask(id="odd-kind", spec=base.to_wire(), meta={"kind": "mystery"})
    queue = WorkQueue(redis_client(redis_url))
    queue.enqueue("engine", [*tasks, bad, unknown])
    queue.enqueue("study-sma", [NewTask(id="sma-t0", spec=base.to_wire(), meta={"kind": "trial"})])

    worker = start_worker(
        redis_url,
        output_dir=tmp_path / "out",
        env={"KUBETRADER_DATA_DIR": str(bundled_store.root)},
        extra=["--exit-when-idle"],
    )
    try:
        assert worker.wait(120) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    stats = wait_for_batch(queue, "engine", timeout=5)
    assert (stats.done, stats.failed) == (2, 2)
    trial = queue.result("study-sma", "sma-t0")
    assert trial is not None and trial.status == "succeeded" and not trial.data  # returns are a file, not in Redis
    from kubetrader.optimize.trial_handler import load_returns

    returns = load_returns(trial.result_path)
    assert returns is not None and len(returns) > 500 and isinstance(trial.metrics["sharpe_ratio"], float)
    assert "unknown kind 'mystery'" in (queue.result("engine", "odd-kind").error or "")  # type: ignore[union-attr]

    results = queue.results("engine")
    assert results["bad-spec"].attempts == 1 and "ValidationError" in (results["bad-spec"].error or "")
    for task in tasks:
        result = results[task.id]
        assert result.status == "succeeded"
        assert isinstance(result.metrics["sharpe_ratio"], float)
        document = json.loads(Path(result.result_path or "").read_text())
        assert document["metrics"]["sharpe_ratio"] == result.metrics["sharpe_ratio"]
        assert document["metadata"]["symbols"] == task.meta["symbols"]
        assert result.data.get("returns", document["returns"]) == document["returns"]
    assert len(results[tasks[0].id].data["returns"]) > 500  # three years of daily returns came back
    assert "returns" not in results[tasks[1].id].data

    report = build_report(batch="engine", name="engine", tasks=tasks, results=results, execution_seconds=1.0)
    sharpes = [row.metrics["sharpe_ratio"] for row in report.ranking]
    assert sharpes == sorted(sharpes, reverse=True)  # type: ignore[type-var]
    csv_path, json_path = write_report(report, tmp_path / "campaign.csv")
    assert len(csv_path.read_text().splitlines()) == 3
    assert json.loads(json_path.read_text())["succeeded"] == 2


def test_kubetrader_help_lists_the_queue_commands() -> None:
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "kubetrader.cli.main", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("worker", "parallel", "monitor"):
        assert command in out
