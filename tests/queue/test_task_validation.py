"""The queue edge: names that become paths are checked where tasks enter Redis and where a
worker takes them, so a Redis writer cannot make a worker write outside its output directory
(#21 item 8: a crafted `meta.name` once put a result outside it)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from kubetrader.queue import NewTask, WorkQueue
from kubetrader.queue.server import redis_client
from kubetrader.queue.validation import TaskRefusedError, check_name, under
from kubetrader.queue.worker import Worker, WorkerSettings, load_handler
from kubetrader.specs import BacktestSpec

SPEC = BacktestSpec.model_validate(
    {
        "strategy": {"path": "strategies.sma_crossover.SMACrossover", "params": {"fast": 10, "slow": 30}},
        "data": {"symbols": ["ORCL"], "start": "2012-01-01", "end": "2012-12-31"},
    }
).to_wire()


def _write_raw(queue: WorkQueue, batch: str, task_id: str, spec: dict[str, Any], meta: dict[str, Any]) -> None:
    """A task put into Redis with the queue's own script but none of our producer's checks: what
    anyone with write access to Redis can do."""
    args = [queue.prefix, batch, "0", task_id, "0", "1", json.dumps(spec), json.dumps(meta), "0"]
    queue._enqueue(args=args)


def _run_worker(queue: WorkQueue, output: Path) -> None:
    worker = Worker(
        queue,
        load_handler("kubetrader.queue.handlers:dispatch", warm_up=False),
        settings=WorkerSettings(output_dir=output),
    )
    worker.run(exit_when_idle=True)


@pytest.mark.parametrize(
    ("batch", "task_id", "meta", "field"),
    [
        ("campaign", "cell-1", {"name": "../../escaped"}, "meta.name"),
        ("campaign", "cell-1", {"name": "x/../../../escaped"}, "meta.name"),
        ("campaign", "cell-1", {"name": "a\x00b"}, "meta.name"),
        ("..", "cell-1", {}, "batch"),
        ("campaign", "..", {"artifacts": "compact"}, "id"),
    ],
)
def test_a_task_written_straight_to_redis_with_a_path_in_its_names_is_dead_lettered_and_writes_nothing(
    redis_url: str,
    bundled_store: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    batch: str,
    task_id: str,
    meta: dict[str, Any],
    field: str,
) -> None:
    monkeypatch.setenv("KUBETRADER_DATA_DIR", str(bundled_store.root))
    root = tmp_path / "sandbox"
    output = root / "a" / "out"
    output.mkdir(parents=True)
    queue = WorkQueue(redis_client(redis_url))
    _write_raw(queue, batch, task_id, SPEC, meta)
    _run_worker(queue, output)
    result = queue.result(batch, task_id)
    assert result is not None and result.status == "failed"
    assert result.attempts == 1 and f"task refused: {field}:" in (result.error or "")
    outside = [p for p in root.rglob("*") if p.is_file() and not p.is_relative_to(output)]
    assert outside == []


def test_our_producer_refuses_the_same_names_before_anything_reaches_redis(redis_url: str) -> None:
    queue = WorkQueue(redis_client(redis_url))
    with pytest.raises(TaskRefusedError) as caught:
        queue.enqueue("campaign", [NewTask(id="cell-1", spec=SPEC, meta={"name": "../x"})])
    assert caught.value.field == "meta.name" and "'../x'" in str(caught.value)
    with pytest.raises(TaskRefusedError, match=r"spec\.matrix: a task is one backtest"):
        queue.enqueue("campaign", [NewTask(id="cell-1", spec={**SPEC, "matrix": {"symbols": ["A"] * 100}})])
    assert queue.redis.keys("*") == []


def test_a_task_carrying_a_whole_matrix_is_refused_by_the_worker(redis_url: str, tmp_path: Path) -> None:
    queue = WorkQueue(redis_client(redis_url))
    matrix = {"params": {"fast": list(range(1000)), "slow": list(range(1000))}}  # a million backtests in one task
    _write_raw(queue, "campaign", "cell-1", {**SPEC, "matrix": matrix}, {})
    _run_worker(queue, tmp_path / "out")
    result = queue.result("campaign", "cell-1")
    assert result is not None and result.status == "failed" and "spec.matrix" in (result.error or "")


@pytest.mark.parametrize("name", ["..", ".hidden", "-x", "a/b", "a\\b", "x..y", "", "a" * 254, "näme", "a b"])
def test_names_that_are_not_one_plain_path_component_are_refused(name: str) -> None:
    with pytest.raises(TaskRefusedError, match=r"meta\.name"):
        check_name(name, "meta.name")


@pytest.mark.parametrize("name", ["grid-all", "ns.study.1a2b3c4d-t17", "cell_0f3a9c", "Engine-2", "a" * 253])
def test_the_names_our_producers_use_pass(name: str) -> None:
    assert check_name(name, "meta.name") == name


def test_under_follows_symlinks_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    os.symlink(tmp_path, root / "link")
    assert under(root, "backtests", "x.json") == (root / "backtests" / "x.json").resolve()
    with pytest.raises(TaskRefusedError, match="resolves outside"):
        under(root, "link", "x.json")
