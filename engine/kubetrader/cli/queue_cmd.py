"""`kubetrader queue`: the work queue's data after the work is done (purges, retention)."""

from __future__ import annotations

import click

from kubetrader.queue.workqueue import DEFAULT_PREFIX

REDIS_OPTION = click.option(
    "--redis", "redis_url", envvar="KUBETRADER_REDIS_URL", default="redis://127.0.0.1:6379/0", show_default=True
)
PREFIX_OPTION = click.option("--prefix", default=DEFAULT_PREFIX, envvar="KUBETRADER_QUEUE_PREFIX", show_default=True)


@click.group("queue")
def queue_group() -> None:
    """Purge finished batches and dead letters, set how long finished batches are kept."""


@queue_group.command("purge")
@REDIS_OPTION
@PREFIX_OPTION
@click.option("--batch", "batches", multiple=True, help="Delete this batch (repeatable).")
@click.option("--older-than", "older_than", default=None, help="Delete finished batches older than this (7d, 12h).")
@click.option("--dead-letters", is_flag=True, help="Forget every dead-lettered task (a re-run queues it again).")
@click.option("--force", is_flag=True, help="With --batch: cancel a batch that still has work, then delete it.")
def purge(
    redis_url: str, prefix: str, batches: tuple[str, ...], older_than: str | None, dead_letters: bool, force: bool
) -> None:
    """Free Redis memory: delete batches' tasks, results and events, or the dead-letter set."""
    from kubetrader.errors import SpecError
    from kubetrader.queue.lifecycle import parse_duration, purge_batch, purge_dead_letters, purge_older_than
    from kubetrader.queue.server import redis_client

    if not (batches or older_than or dead_letters):
        raise SpecError("purge", "say what to purge: --batch ID, --older-than 7d or --dead-letters")
    client = redis_client(redis_url)
    before = int(client.info("memory")["used_memory"])
    for batch in batches:
        done = purge_batch(client, batch, prefix=prefix, force=force)
        click.echo(f"batch {batch}: {done.tasks} tasks, {done.keys} keys deleted")
    if older_than is not None:
        done = purge_older_than(client, parse_duration(older_than, field="--older-than"), prefix=prefix)
        click.echo(f"{len(done.batches)} finished batches older than {older_than}: {done.tasks} tasks deleted")
    if dead_letters:
        done = purge_dead_letters(client, prefix=prefix)
        click.echo(f"{done.tasks} dead-lettered tasks forgotten in {len(done.batches)} batches")
    after = int(client.info("memory")["used_memory"])
    click.echo(f"Redis memory {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB")


@queue_group.command("retention")
@REDIS_OPTION
@PREFIX_OPTION
@click.argument("duration")
def retention(redis_url: str, prefix: str, duration: str) -> None:
    """Keep finished batches this long (7d, 12h; 0: until purged). Workers set it at start too."""
    from kubetrader.queue.lifecycle import parse_duration, set_retention
    from kubetrader.queue.server import redis_client

    set_retention(redis_client(redis_url), parse_duration(duration, field="duration"), prefix=prefix)
    click.echo(f"finished batches are kept {duration}")
