"""The life of queue data after the work is done: retention, purges, and what it costs in memory.

Redis holds the queue in memory, and the chart runs it with `maxmemory` and
`noeviction`: without an end to their life, tasks, results and event lists of
every batch ever run would fill it until every write is refused. So:

- a finished batch's keys get a TTL of the queue's retention (`p:config`
  `retention_ms`, written by workers from `--retention` / the chart's
  `worker.retention`; 7 days by default) inside the script that ends its last task;
- `purge_batch`, `purge_older_than` and `purge_dead_letters` delete at once
  (`kubetrader queue purge`), and clean the indexes (`p:batches`, `p:dead`) that
  outlive expired keys;
- `memory_report` says how much memory Redis uses and each batch's share
  (`kubetrader monitor`).

Deletions go through non-transactional pipelines in chunks, not one Lua script,
so purging 100,000 tasks does not block the workers' scripts for seconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel, Field

from kubetrader.errors import SpecError
from kubetrader.queue.workqueue import DEFAULT_PREFIX

DEFAULT_RETENTION = "7d"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_CHUNK = 1000
_SAMPLE = 20
BATCH_SETS = ("tasks", "queued", "running", "done", "failed", "cancelled", "events")


def parse_duration(text: str, *, field: str = "duration") -> float:
    """`7d`, `12h`, `30m`, `45s`, `2w` or plain seconds -> seconds; `0` means forever."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text))
    if not match:
        raise SpecError(field, f"{text!r} is not a duration such as 7d, 12h, 30m or 45s")
    return float(match.group(1)) * _UNITS.get(match.group(2) or "s", 1)


def set_retention(client: Any, seconds: float, *, prefix: str = DEFAULT_PREFIX) -> None:
    """How long finished batches are kept (0: until purged); read by the queue's scripts."""
    client.hset(f"{prefix}:config", "retention_ms", str(int(seconds * 1000)))


class PurgeResult(BaseModel):
    batches: list[str] = Field(default_factory=list)
    tasks: int = 0
    keys: int = 0


def _batch_keys(prefix: str, batch: str) -> list[str]:
    return [f"{prefix}:batch:{batch}", *(f"{prefix}:batch:{batch}:{what}" for what in BATCH_SETS)]


def _chunks(items: Iterable[str], size: int = _CHUNK) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _delete(client: Any, keys: Iterable[str]) -> int:
    deleted = 0
    for chunk in _chunks(keys):
        deleted += int(client.unlink(*chunk))  # UNLINK frees memory off the main thread
    return deleted


def batch_is_active(client: Any, batch: str, *, prefix: str = DEFAULT_PREFIX) -> bool:
    pipe = client.pipeline(transaction=False)
    pipe.scard(f"{prefix}:batch:{batch}:queued")
    pipe.scard(f"{prefix}:batch:{batch}:running")
    queued, running = pipe.execute()
    return bool(queued or running)


def purge_batch(client: Any, batch: str, *, prefix: str = DEFAULT_PREFIX, force: bool = False) -> PurgeResult:
    """Delete everything of one batch. An active batch is refused unless `force` (it is cancelled first)."""
    from kubetrader.queue.workqueue import WorkQueue

    if batch_is_active(client, batch, prefix=prefix):
        if not force:
            raise SpecError("--batch", f"batch {batch} still has queued or running tasks; cancel it or pass --force")
        WorkQueue(client, prefix=prefix).cancel_batch(batch)
    refs = [str(ref) for ref in client.sscan_iter(f"{prefix}:batch:{batch}:tasks", count=_CHUNK)]
    keys = [f"{prefix}:task:{ref}" for ref in refs] + [f"{prefix}:result:{ref}" for ref in refs]
    deleted = _delete(client, [*keys, *_batch_keys(prefix, batch)])
    for chunk in _chunks(refs):
        pipe = client.pipeline(transaction=False)
        pipe.zrem(f"{prefix}:dead", *chunk)
        pipe.zrem(f"{prefix}:pending", *chunk)
        pipe.zrem(f"{prefix}:leases", *chunk)
        pipe.execute()
    client.zrem(f"{prefix}:batches", batch)
    return PurgeResult(batches=[batch], tasks=len(refs), keys=deleted)


def purge_older_than(client: Any, seconds: float, *, prefix: str = DEFAULT_PREFIX) -> PurgeResult:
    """Delete every finished batch whose last task ended more than `seconds` ago (and expired leftovers)."""
    now_s, micros = client.time()
    now_ms = int(now_s) * 1000 + int(micros) // 1000
    total = PurgeResult()
    for batch in [str(b) for b in client.zrange(f"{prefix}:batches", 0, -1)]:
        fields = client.hgetall(f"{prefix}:batch:{batch}")
        if not fields:  # expired by its retention: only index entries are left
            done = purge_batch(client, batch, prefix=prefix)
        elif batch_is_active(client, batch, prefix=prefix):
            continue
        elif now_ms - int(fields.get("last_finished_at") or fields.get("created_at") or 0) >= seconds * 1000:
            done = purge_batch(client, batch, prefix=prefix)
        else:
            continue
        total.batches.append(batch)
        total.tasks += done.tasks
        total.keys += done.keys
    total.keys += _drop_dangling_dead(client, prefix)
    # The throughput window of queues written before it was bounded: one ZSET entry per finished
    # task, trimmed only by the next finish (scripts.py now keeps per-second counts that expire).
    total.keys += int(client.delete(f"{prefix}:finished:ok", f"{prefix}:finished:failed"))
    return total


def purge_dead_letters(client: Any, *, prefix: str = DEFAULT_PREFIX) -> PurgeResult:
    """Forget every dead-lettered task (task, result, batch membership): a re-run would queue it again."""
    result = PurgeResult()
    refs = [str(ref) for ref in client.zrange(f"{prefix}:dead", 0, -1)]
    touched: set[str] = set()
    for chunk in _chunks(refs):
        pipe = client.pipeline(transaction=False)
        for ref in chunk:
            batch = ref.split(":", 1)[0]
            touched.add(batch)
            pipe.srem(f"{prefix}:batch:{batch}:failed", ref)
            pipe.srem(f"{prefix}:batch:{batch}:tasks", ref)
            pipe.unlink(f"{prefix}:task:{ref}", f"{prefix}:result:{ref}")
        pipe.zrem(f"{prefix}:dead", *chunk)
        replies = pipe.execute()
        result.keys += sum(int(r) for r in replies[2::3][: len(chunk)])
        result.tasks += len(chunk)
    for batch in sorted(touched):
        if client.exists(f"{prefix}:batch:{batch}"):
            client.hset(f"{prefix}:batch:{batch}", "total", client.scard(f"{prefix}:batch:{batch}:tasks"))
    result.batches = sorted(touched)
    return result


def _drop_dangling_dead(client: Any, prefix: str) -> int:
    dropped = 0
    for chunk in _chunks(str(ref) for ref in client.zrange(f"{prefix}:dead", 0, -1)):
        pipe = client.pipeline(transaction=False)
        for ref in chunk:
            pipe.exists(f"{prefix}:result:{ref}")
        gone = [ref for ref, exists in zip(chunk, pipe.execute(), strict=True) if not exists]
        if gone:
            dropped += int(client.zrem(f"{prefix}:dead", *gone))
    return dropped


class BatchMemory(BaseModel):
    id: str
    tasks: int
    bytes: int = Field(description="Estimated from a sample of its task and result hashes.")
    share: float = Field(description="Fraction of Redis' used memory.")


class MemoryReport(BaseModel):
    used_bytes: int
    peak_bytes: int
    max_bytes: int = Field(description="Redis' maxmemory; 0: no limit.")
    policy: str
    batches: list[BatchMemory]

    @property
    def used_fraction(self) -> float | None:
        return self.used_bytes / self.max_bytes if self.max_bytes else None


def memory_report(client: Any, *, prefix: str = DEFAULT_PREFIX, batches: int = 50) -> MemoryReport:
    """Redis' memory (INFO memory) and an estimate of each recent batch's share (MEMORY USAGE samples)."""
    info = client.info("memory")
    used = int(info.get("used_memory", 0))
    rows = []
    for batch in [str(b) for b in client.zrevrange(f"{prefix}:batches", 0, batches - 1)]:
        count = int(client.scard(f"{prefix}:batch:{batch}:tasks"))
        if not count:
            continue
        sample = [str(ref) for ref in client.srandmember(f"{prefix}:batch:{batch}:tasks", _SAMPLE)]
        pipe = client.pipeline(transaction=False)
        for ref in sample:
            # SAMPLES 0: every field (the default samples 5 and misses one big result field)
            pipe.memory_usage(f"{prefix}:task:{ref}", samples=0)
            pipe.memory_usage(f"{prefix}:result:{ref}", samples=0)
        for key in _batch_keys(prefix, batch):
            pipe.memory_usage(key)
        replies = [int(r or 0) for r in pipe.execute()]
        per_task = sum(replies[: 2 * len(sample)]) / max(len(sample), 1)
        size = int(per_task * count + sum(replies[2 * len(sample) :]))
        rows.append(BatchMemory(id=batch, tasks=count, bytes=size, share=round(size / used, 4) if used else 0.0))
    return MemoryReport(
        used_bytes=used,
        peak_bytes=int(info.get("used_memory_peak", used)),
        max_bytes=int(info.get("maxmemory", 0)),
        policy=str(info.get("maxmemory_policy", "")),
        batches=rows,
    )
