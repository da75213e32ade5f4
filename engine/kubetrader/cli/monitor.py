"""`kubetrader monitor`: queue depth, running tasks, throughput, workers and the health score."""

from __future__ import annotations

import json
import time

import click

from kubetrader.defaults import LOCAL_REDIS_URL
from kubetrader.queue.workqueue import DEFAULT_PREFIX


@click.command()
@click.option("--redis", "redis_url", envvar="KUBETRADER_REDIS_URL", default=LOCAL_REDIS_URL, show_default=True)
@click.option("--prefix", default=DEFAULT_PREFIX, show_default=True)
@click.option("--continuous", is_flag=True, help="Refresh until interrupted.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the QueueStats JSON instead of tables.")
def monitor(redis_url: str, prefix: str, continuous: bool, interval: float, as_json: bool) -> None:
    """Show the work queue's state (the numbers the operator scales on)."""
    import redis

    from kubetrader.queue.lifecycle import memory_report
    from kubetrader.queue.retry import infrastructure_error
    from kubetrader.queue.server import redis_client
    from kubetrader.queue.stats import queue_stats, stats_as_dict

    client = redis_client(redis_url)
    while True:
        try:
            stats = queue_stats(client, prefix=prefix)
            memory = memory_report(client, prefix=prefix)
        except redis.RedisError as exc:  # retried by the client already; one line, exit 3
            raise infrastructure_error(exc, url=redis_url) from exc
        if as_json:
            click.echo(json.dumps({**stats_as_dict(stats), "memory": memory.model_dump(mode="json")}))
        else:
            if continuous:
                click.clear()
            click.echo(render(stats))
            click.echo(render_memory(memory))
        if not continuous:
            return
        time.sleep(interval)


def render(stats: object) -> str:
    from kubetrader.queue.stats import QueueStats

    assert isinstance(stats, QueueStats)
    lines = [
        f"health {stats.health}/100" + (f"  ({'; '.join(stats.health_reasons)})" if stats.health_reasons else ""),
        f"pending {stats.pending}  running {stats.running}  dead-letter {stats.dead}  "
        f"throughput {stats.throughput_per_min:.1f}/min  done {stats.done_total}  failed {stats.failed_total}  "
        f"retried {stats.retried_total}",
        "",
        f"workers: {stats.workers_alive} alive of {len(stats.workers)}",
    ]
    lines += [
        f"  {w.id:<36} {w.state:<9} {'alive' if w.alive else 'STALE':<6} seen {w.last_seen_s:6.1f}s ago  "
        f"done {w.processed:<5} failed {w.failed:<4} {w.task or ''}"
        for w in stats.workers
    ]
    lines += ["", "batches (newest first):"]
    lines += [
        f"  {b.id:<40} {b.done + b.failed + b.cancelled:>5}/{b.total:<5} queued {b.queued:<5} running {b.running:<3} "
        f"failed {b.failed:<4} {b.throughput_per_min:7.1f}/min" + ("  CANCELLED" if b.cancelled_flag else "")
        for b in stats.batches
    ]
    return "\n".join(lines)


def render_memory(memory: object) -> str:
    """Redis' memory against its maxmemory, and the batches holding the most of it."""
    from kubetrader.queue.lifecycle import MemoryReport

    assert isinstance(memory, MemoryReport)
    limit = f" of {memory.max_bytes / 2**20:.1f} MiB ({memory.used_fraction:.0%})" if memory.max_bytes else ""
    lines = [
        "",
        f"redis memory {memory.used_bytes / 2**20:.1f} MiB{limit}, peak {memory.peak_bytes / 2**20:.1f} MiB, "
        f"policy {memory.policy}",
    ]
    if memory.used_fraction is not None and memory.used_fraction > 0.8:
        lines.append("  nearly full: `kubetrader queue purge --older-than 1d` or raise maxmemory")
    lines += [
        f"  {b.id:<40} {b.tasks:>7} tasks {b.bytes / 1024:10.1f} KiB {b.share:6.1%}"
        for b in sorted(memory.batches, key=lambda b: -b.bytes)[:10]
    ]
    return "\n".join(lines)
