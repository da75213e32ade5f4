"""`kubetrader parallel` end to end (embedded Redis, a worker process, the engine) and `kubetrader monitor`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kubetrader.cli.monitor import monitor
from kubetrader.cli.parallel import parallel
from kubetrader.queue import NewTask, WorkQueue
from kubetrader.queue.server import redis_client


def test_parallel_runs_a_campaign_on_local_workers_and_writes_a_ranked_csv_and_json(
    bundled_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBETRADER_DATA_DIR", str(bundled_store.root))
    output = tmp_path / "results" / "parallel_results.csv"
    args = ["--symbols", "ORCL", "GOOG", "--strategies", "strategies.sma_crossover.SMACrossover"]
    args += ["strategies.rsi_momentum.RSIMomentum", "--start", "2012-01-01", "--end", "2013-12-31"]
    args += ["--workers", "1", "--no-progress", "--output", str(output)]
    result = CliRunner().invoke(parallel, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "4 succeeded, 0 failed" in result.output

    rows = output.read_text().splitlines()
    assert rows[0].startswith("rank,task_id,symbols,strategy,params,status,sharpe_ratio")
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2", "3", "4"]
    summary = json.loads(output.with_suffix(".json").read_text())
    assert (summary["tasks"], summary["succeeded"], summary["failed"], summary["workers"]) == (4, 4, 0, 1)
    assert summary["avg_seconds_per_backtest"] > 0 and summary["execution_seconds"] > 0
    sharpes = [row["metrics"]["sharpe_ratio"] for row in summary["ranking"]]
    assert sharpes == sorted(sharpes, reverse=True)
    assert len(list((tmp_path / "results" / "backtests").glob("parallel-*.json"))) == 4


def test_a_compact_campaign_writes_one_parquet_file_for_the_batch_and_full_files_for_the_top_k_only(
    bundled_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    monkeypatch.setenv("KUBETRADER_DATA_DIR", str(bundled_store.root))
    output = tmp_path / "results" / "parallel_results.csv"
    args = ["--symbols", "ORCL", "GOOG", "--strategies", "strategies.sma_crossover.SMACrossover"]
    args += ["strategies.rsi_momentum.RSIMomentum", "--start", "2012-01-01", "--end", "2013-12-31"]
    args += ["--workers", "1", "--no-progress", "--output", str(output), "--top-k", "1", "--batch", "small"]
    result = CliRunner().invoke(parallel, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output

    table = pq.read_table(tmp_path / "results" / "campaigns" / "small.parquet").to_pylist()
    assert len(table) == 4 and all(row["status"] == "succeeded" for row in table)
    assert [len(row["equity"]) for row in table] == [len(row["equity_dates"]) for row in table], table[0]
    assert all(len(row["equity"]) > 200 for row in table)  # (the bundled GOOG starts in 2012)
    assert all(row["metric_sharpe_ratio"] is not None for row in table)
    assert len(list((tmp_path / "results" / "backtests").glob("parallel-*.json"))) == 1  # the top 1 only
    assert not (tmp_path / "results" / "campaigns" / "small").exists()  # per-cell pieces gathered and removed
    summary = json.loads(output.with_suffix(".json").read_text())
    assert summary["ranking"][0]["result_path"] and summary["ranking"][1]["result_path"] is None


def test_monitor_prints_depth_and_health_as_json_and_as_tables(redis_url: str) -> None:
    queue = WorkQueue(redis_client(redis_url))
    queue.enqueue("shown", [NewTask(id=f"t{i}", spec={}) for i in range(3)])
    as_json = CliRunner().invoke(monitor, ["--redis", redis_url, "--json"], catch_exceptions=False)
    assert as_json.exit_code == 0
    stats = json.loads(as_json.output)
    assert (stats["pending"], stats["running"], stats["batches"][0]["id"]) == (3, 0, "shown")
    assert stats["health"] == 10  # work waiting and no worker
    tables = CliRunner().invoke(monitor, ["--redis", redis_url], catch_exceptions=False)
    assert "health 10/100" in tables.output and "pending 3" in tables.output


SMALL_CAMPAIGN = ["--symbols", "ORCL", "GOOG", "--strategies", "strategies.sma_crossover.SMACrossover"]
SMALL_CAMPAIGN += ["--start", "2012-01-01", "--end", "2013-12-31", "--workers", "1", "--no-progress"]
RUN_FIELDS = {"metadata"}  # times, wall seconds, host: what differs between any two runs of one spec


def _documents(results: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted((results / "backtests").glob("parallel-*.json")):
        document = json.loads(path.read_text())
        found[path.name] = {k: v for k, v in document.items() if k not in RUN_FIELDS}
    return found


def _cells(parquet: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows = pq.read_table(parquet).to_pylist()
    return sorted(({k: v for k, v in r.items() if k not in {"run_seconds", "worker"}} for r in rows), key=str)


def test_a_campaign_within_its_top_k_has_its_full_files_written_by_the_workers_alike_the_driver_s(
    bundled_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.setenv("KUBETRADER_DATA_DIR", str(bundled_store.root))
    # The driver's way (a Redis of the cluster's: its workers' files may be out of reach): it runs its top K again.
    by_driver = tmp_path / "driver"
    args = [*SMALL_CAMPAIGN, "--output", str(by_driver / "out.csv"), "--batch", "b", "--redis", redis_url]
    assert CliRunner().invoke(parallel, args, catch_exceptions=False).exit_code == 0

    # Its own Redis and workers, 2 cells within --top-k 10: the workers write the full files; the driver runs none.
    import kubetrader.pipeline

    def no_rerun(*_: object, **__: object) -> None:
        raise AssertionError("the driver ran a cell its worker had written full files for")

    monkeypatch.setattr(kubetrader.pipeline, "execute_one", no_rerun)
    by_workers = tmp_path / "workers"
    args = [*SMALL_CAMPAIGN, "--output", str(by_workers / "out.csv"), "--batch", "b"]
    result = CliRunner().invoke(parallel, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output

    documents = _documents(by_workers)
    assert len(documents) == 2 and documents == _documents(by_driver)
    assert _cells(by_workers / "campaigns" / "b.parquet") == _cells(by_driver / "campaigns" / "b.parquet")
    assert not (by_workers / "campaigns" / "b").exists()  # the cells' curves gathered and removed
    summary = json.loads((by_workers / "out.json").read_text())
    assert sorted(Path(row["result_path"]).name for row in summary["ranking"]) == sorted(documents)


def test_a_failed_cell_of_a_campaign_within_its_top_k_leaves_no_full_files(
    bundled_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBETRADER_DATA_DIR", str(bundled_store.root))
    args = ["--symbols", "ORCL", "NODATA", "--strategies", "strategies.sma_crossover.SMACrossover", "--workers", "1"]
    args += ["--start", "2012-01-01", "--end", "2013-12-31", "--no-progress", "--output", str(tmp_path / "o.csv")]
    result = CliRunner().invoke(parallel, [*args, "--max-attempts", "1"], catch_exceptions=False)
    assert result.exit_code == 1 and "1 succeeded, 1 failed" in result.output, result.output
    summary = json.loads((tmp_path / "o.json").read_text())
    succeeded = Path(summary["ranking"][0]["result_path"])
    assert succeeded.exists() and summary["failures"][0]["result_path"] is None
    assert [path.name for path in (tmp_path / "backtests").iterdir() if not path.name.startswith(succeeded.stem)] == []


def test_parallel_can_start_its_workers_before_it_loads_redis_py_or_the_task_models() -> None:
    # `kubetrader parallel` starts its own Redis's workers from `queue.local` first thing, so that their
    # start-up overlaps with the driver's imports: the command's module and that one must stay light.
    import subprocess
    import sys

    code = (
        "import sys, kubetrader.cli.parallel, kubetrader.queue.local; "
        "print(sorted({m.partition('.')[0] for m in sys.modules} & {'redis', 'pydantic', 'pandas', 'numpy'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout
