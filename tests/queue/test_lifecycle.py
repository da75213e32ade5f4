"""Queue data with a lifecycle: retention TTLs, purges, memory shares, and workers riding out a full Redis."""

from __future__ import annotations

from pathlib import Path

import redis
from click.testing import CliRunner

from kubetrader.cli.monitor import monitor
from kubetrader.cli.queue_cmd import queue_group
from kubetrader.queue import NewTask, WorkQueue
from kubetrader.queue.lifecycle import memory_report, parse_duration, set_retention
from kubetrader.queue.server import redis_client
from kubetrader.queue.worker import Worker
from tests.fixtures.redis import RedisServerFactory
from tests.helpers import wait_until
from tests.queue import handlers
from tests.queue.conftest import WorkerSpawner


def tasks(n: int, **kwargs: object) -> list[NewTask]:
    return [NewTask(id=f"t{i:03d}", spec={}, **kwargs) for i in range(n)]  # type: ignore[arg-type]


def run_all(queue: WorkQueue, handler: object = handlers.succeed) -> None:
    Worker(queue, handler, worker_id="w").run(exit_when_idle=True)  # type: ignore[arg-type]


def test_a_finished_batch_expires_after_the_retention_and_a_reopened_one_does_not(redis_client: redis.Redis) -> None:
    queue = WorkQueue(redis_client)
    set_retention(redis_client, parse_duration("7d"))
    queue.enqueue("b", tasks(3))
    run_all(queue)
    week_ms = 7 * 86400 * 1000
    for key in ["kubetrader:batch:b", "kubetrader:batch:b:done", "kubetrader:task:b:t000", "kubetrader:result:b:t002"]:
        assert week_ms - 60_000 < redis_client.pttl(key) <= week_ms, key

    queue.enqueue("b", tasks(4))  # one more cell: the batch is open again, nothing of it may expire
    assert redis_client.pttl("kubetrader:result:b:t000") == -1
    assert redis_client.pttl("kubetrader:batch:b") == -1

    set_retention(redis_client, 0)  # 0 keeps finished batches until purged
    run_all(queue)
    assert redis_client.pttl("kubetrader:result:b:t003") == -1


def test_purge_by_batch_age_and_dead_letters_deletes_exactly_that(redis_client: redis.Redis, redis_url: str) -> None:
    queue = WorkQueue(redis_client)
    set_retention(redis_client, 0)
    queue.enqueue("old", tasks(3))
    queue.enqueue("dead", [NewTask(id="p", spec={}, meta={"fatal": True}), *tasks(1)])
    run_all(queue, handlers.poison)
    queue.enqueue("busy", tasks(1))
    runner = CliRunner()

    refused = runner.invoke(queue_group, ["purge", "--redis", redis_url, "--batch", "busy"])
    assert refused.exit_code != 0 and "still has queued or running tasks" in str(refused.exception)

    out = runner.invoke(queue_group, ["purge", "--redis", redis_url, "--dead-letters"], catch_exceptions=False)
    assert "1 dead-lettered tasks forgotten in 1 batches" in out.output
    assert queue.dead_letters() == [] and queue.result("dead", "p") is None
    assert queue.result("dead", "t000") is not None

    out = runner.invoke(queue_group, ["purge", "--redis", redis_url, "--older-than", "0s"], catch_exceptions=False)
    assert "2 finished batches older than 0s" in out.output
    assert not redis_client.keys("kubetrader:*:old*") and not redis_client.keys("kubetrader:*dead:*")
    assert redis_client.zrange("kubetrader:batches", 0, -1) == ["busy"]  # the active batch is left alone

    out = runner.invoke(queue_group, ["purge", "--redis", redis_url, "--batch", "busy", "--force"])
    assert out.exit_code == 0, out.output
    assert redis_client.keys("kubetrader:*busy*") == []


def test_monitor_shows_redis_memory_and_each_batch_s_share(redis_client: redis.Redis, redis_url: str) -> None:
    queue = WorkQueue(redis_client)
    queue.enqueue("big", tasks(20))
    run_all(queue, handlers.bulky)
    queue.enqueue("small", tasks(20))
    report = memory_report(redis_client)
    shares = {b.id: b for b in report.batches}
    assert shares["big"].bytes > 20 * 50_000 > shares["small"].bytes * 10
    assert 0 < shares["big"].share < 1
    out = CliRunner().invoke(monitor, ["--redis", redis_url], catch_exceptions=False)
    assert "redis memory" in out.output and "big" in out.output


def test_workers_back_off_on_a_full_redis_and_recover_after_a_purge_with_nothing_lost(
    redis_server_factory: RedisServerFactory, tmp_path: Path, spawn: WorkerSpawner
) -> None:
    server = redis_server_factory(tmp_path / "redis", appendfsync="no")
    client = redis_client(server.url)
    queue = WorkQueue(client)
    set_retention(client, 0)
    queue.enqueue("old", tasks(100))
    run_all(queue, handlers.bulky)  # 5 MB of old results
    queue.enqueue("new", tasks(20))
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", str(int(client.info("memory")["used_memory"]) + 300_000))
    errors_before = script_errors(client)
    workers = [spawn(server.url, "bulky") for _ in range(2)]

    # a write refused inside a script counts as ERR (-OOM wrapped), a plain command as OOM
    wait_until(lambda: script_errors(client) >= errors_before + 6, timeout=60, what="workers to meet -OOM")
    stalled = len(queue.results("new"))
    assert stalled < 20
    assert all(p.poll() is None for p in workers)  # backing off, not dead

    out = CliRunner().invoke(queue_group, ["purge", "--redis", server.url, "--batch", "old"], catch_exceptions=False)
    assert "batch old: 100 tasks" in out.output
    wait_until(lambda: len(queue.results("new")) == 20, timeout=60, what="the new batch to finish after the purge")
    results = queue.results("new")
    assert all(r.status == "succeeded" and len(r.data["blob"]) == 50_000 for r in results.values())
    assert all(p.poll() is None for p in workers)


def script_errors(client: redis.Redis) -> int:
    stats = client.info("errorstats")
    return sum(int(stats.get(name, {}).get("count", 0)) for name in ("errorstat_ERR", "errorstat_OOM"))


def test_purge_drops_the_per_task_window_of_queues_from_before_it_was_bounded(redis_client: redis.Redis) -> None:
    from kubetrader.queue.lifecycle import purge_older_than

    redis_client.zadd("old:finished:ok", {f"b:t{i}#1": i for i in range(100)})
    redis_client.zadd("old:finished:failed", {"b:x#1": 1})
    assert purge_older_than(redis_client, 0, prefix="old").keys == 2
    assert not redis_client.exists("old:finished:ok", "old:finished:failed")
