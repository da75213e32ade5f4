"""Queue bookkeeping in one read: `queue_stats(redis) -> QueueStats`.

The CLI's `monitor`, the operator's scaler, the API and the dashboard all call
this one function, so they never disagree on what "pending" or "healthy" means.
Everything except `queue_stats` itself is a pure function over numbers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict, Field

from kubetrader.queue.workqueue import DEFAULT_PREFIX

WINDOW_MS = 900_000  # recent successes and failures: the last 15 minutes (scripts.WINDOW_MS)
THROUGHPUT_WINDOW_MS = 300_000  # tasks/min is measured over the last 5 minutes ...
MIN_RATE_SPAN_MS = 10_000  # ... or since the first finish in that window, but over at least 10 s
MAX_BATCHES = 20
WORKER_FORGET_MS = 600_000  # a worker silent this long is gone (killed pod), not "stale": stop reporting it


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkerStatus(_Model):
    id: str
    pod: str = Field(description="HOSTNAME of the worker: the pod name on Kubernetes.")
    pid: int | None = None
    state: str = Field(description="idle, busy or stopping.")
    task: str | None = Field(default=None, description="Ref (batch:id) of the task it holds.")
    processed: int = 0
    failed: int = 0
    last_seen_s: float = Field(description="Seconds since its last heartbeat.")
    alive: bool = Field(description="Heartbeat within 3 intervals.")


class BatchStats(_Model):
    id: str
    total: int
    queued: int
    running: int
    done: int
    failed: int
    cancelled: int
    created_at_ms: int
    elapsed_s: float = Field(description="From the first claim to the last finish (or now, while open).")
    throughput_per_min: float
    cancelled_flag: bool = False

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.cancelled

    @property
    def complete(self) -> bool:
        return self.total > 0 and self.finished >= self.total


class QueueStats(_Model):
    now_ms: int
    pending: int
    running: int
    dead: int
    done_total: int
    failed_total: int
    retried_total: int
    recent_done: int = Field(description="Tasks that succeeded in the last 15 minutes.")
    recent_failed: int = Field(description="Tasks dead-lettered in the last 15 minutes.")
    throughput_per_min: float
    workers: list[WorkerStatus]
    batches: list[BatchStats]
    health: int = Field(ge=0, le=100)
    health_reasons: list[str]

    @property
    def workers_alive(self) -> int:
        return sum(1 for w in self.workers if w.alive)

    @property
    def busy_pods(self) -> set[str]:
        """Pods whose live worker holds a task right now (the scaler protects them)."""
        return {w.pod for w in self.workers if w.alive and w.task}


def throughput_per_min(finishes: Sequence[tuple[int, int]], now_ms: int) -> float:
    """Tasks per minute over the window: count / span, span from the first finish seen (>= 10 s).

    `finishes` are (start of a second in ms, tasks that ended in it), as the window keeps them.
    A young batch is not diluted by a 5-minute denominator, and a stopped one
    decays towards 0 as its last finishes age.
    """
    recent = [(at, count) for at, count in finishes if at > now_ms - THROUGHPUT_WINDOW_MS and count > 0]
    if not recent:
        return 0.0
    span_ms = max(now_ms - min(at for at, _ in recent), MIN_RATE_SPAN_MS)
    return sum(count for _, count in recent) * 60_000 / span_ms


def window_minutes(now_ms: int) -> list[int]:
    """The unix minutes whose per-second counts can fall in the last 15 minutes (oldest first)."""
    return list(range((now_ms - WINDOW_MS) // 60_000, now_ms // 60_000 + 1))


def window_counts(buckets: Sequence[tuple[int, dict[str, str]]], now_ms: int) -> dict[str, list[tuple[int, int]]]:
    """Per-second counts by kind (`ok`, `failed`) within the window, from the per-minute hashes the
    queue's scripts write (`p:finished:{minute}`, fields `{kind}:{second}`)."""
    found: dict[str, list[tuple[int, int]]] = {"ok": [], "failed": []}
    for minute, fields in buckets:
        for name, value in fields.items():
            kind, _, second = name.partition(":")
            at = (minute * 60 + int(second)) * 1000
            if kind in found and at > now_ms - WINDOW_MS:
                found[kind].append((at, int(value)))
    return found


def health_score(
    *,
    pending: int,
    running: int,
    workers_alive: int,
    workers_stale: int,
    recent_done: int,
    recent_failed: int,
    throughput_per_min: float,
) -> tuple[int, list[str]]:
    """0 (broken) to 100 (fine), with the reasons for every point taken off.

    Start at 100 and subtract what an operator would worry about:
    - work waiting and no live worker: the queue cannot progress -> at most 10;
    - workers alive, tasks pending, none running: workers are not claiming -> -30;
    - workers whose heartbeat stopped (crashed or hung pods): up to -30 (share of stale);
    - failures among recently finished tasks: up to -40 (failure share);
    - a backlog that takes over an hour at the current throughput: -10.
    An idle queue with no workers is healthy: nothing is waiting.
    """
    score = 100.0
    reasons: list[str] = []
    total_workers = workers_alive + workers_stale
    if workers_stale:
        share = workers_stale / total_workers
        score -= 30 * share
        reasons.append(f"{workers_stale} of {total_workers} workers missed their heartbeat")
    finished = recent_done + recent_failed
    if recent_failed:
        share = recent_failed / finished
        score -= 40 * share
        reasons.append(f"{recent_failed} of {finished} recent tasks failed")
    if pending > 0 and workers_alive > 0 and running == 0:
        score -= 30
        reasons.append(f"{pending} tasks pending, {workers_alive} live workers, none running")
    if pending > 0 and throughput_per_min > 0 and pending / throughput_per_min > 60:
        score -= 10
        reasons.append(f"backlog of {pending} needs {pending / throughput_per_min:.0f} min at the current rate")
    if pending + running > 0 and workers_alive == 0:
        score = min(score, 10)
        reasons.append(f"{pending + running} tasks waiting and no live worker")
    return max(0, min(100, round(score))), reasons


def queue_stats(client: redis.Redis, *, prefix: str = DEFAULT_PREFIX, batches: int = MAX_BATCHES) -> QueueStats:
    """Read the whole queue's bookkeeping in a few round trips (`decode_responses=True` client)."""

    def key(*parts: str) -> str:
        return ":".join((prefix, *parts))

    seconds, micros = client.time()
    now = int(seconds) * 1000 + int(micros) // 1000
    minutes = window_minutes(now)
    pipe = client.pipeline(transaction=False)
    pipe.zcard(key("pending"))
    pipe.zcard(key("leases"))
    pipe.zcard(key("dead"))
    pipe.hgetall(key("counters"))
    pipe.zrangebyscore(key("workers"), now - WORKER_FORGET_MS, "+inf")
    pipe.zrevrange(key("batches"), 0, batches - 1)
    for minute in minutes:
        pipe.hgetall(key("finished", str(minute)))
    pending, running, dead, counters, worker_ids, batch_ids, *buckets = pipe.execute()
    window = window_counts(list(zip(minutes, buckets, strict=True)), now)
    recent_done = sum(count for _, count in window["ok"])
    recent_failed = sum(count for _, count in window["failed"])

    pipe = client.pipeline(transaction=False)
    for worker in worker_ids:
        pipe.hgetall(key("worker", worker))
    for batch in batch_ids:
        pipe.hgetall(key("batch", batch))
        for state in ("queued", "running", "done", "failed", "cancelled"):
            pipe.scard(key("batch", batch, state))
    replies = pipe.execute()
    worker_replies, batch_replies = replies[: len(worker_ids)], replies[len(worker_ids) :]

    workers = [_worker_status(wid, fields, now) for wid, fields in zip(worker_ids, worker_replies, strict=True)]
    batch_stats = [
        _batch_stats(bid, batch_replies[i * 6], batch_replies[i * 6 + 1 : i * 6 + 6], now)
        for i, bid in enumerate(batch_ids)
        if batch_replies[i * 6]  # a batch past its retention has expired; the index entry waits for a purge
    ]
    rate = throughput_per_min(window["ok"] + window["failed"], now)
    alive = sum(1 for w in workers if w.alive)
    health, reasons = health_score(
        pending=pending,
        running=running,
        workers_alive=alive,
        workers_stale=len(workers) - alive,
        recent_done=recent_done,
        recent_failed=recent_failed,
        throughput_per_min=rate,
    )
    return QueueStats(
        now_ms=now,
        pending=pending,
        running=running,
        dead=dead,
        done_total=int(counters.get("done", 0)),
        failed_total=int(counters.get("failed", 0)),
        retried_total=int(counters.get("retried", 0)),
        recent_done=recent_done,
        recent_failed=recent_failed,
        throughput_per_min=round(rate, 3),
        workers=workers,
        batches=batch_stats,
        health=health,
        health_reasons=reasons,
    )


def batch_stats(client: redis.Redis, batch: str, *, prefix: str = DEFAULT_PREFIX) -> BatchStats:
    """The counts of one batch (what a campaign driver polls), in one round trip."""
    pipe = client.pipeline(transaction=False)
    pipe.time()
    pipe.hgetall(f"{prefix}:batch:{batch}")
    for state in ("queued", "running", "done", "failed", "cancelled"):
        pipe.scard(f"{prefix}:batch:{batch}:{state}")
    (seconds, micros), meta, *counts = pipe.execute()
    return _batch_stats(batch, meta, counts, int(seconds) * 1000 + int(micros) // 1000)


def _worker_status(worker_id: str, fields: dict[str, str], now: int) -> WorkerStatus:
    if not fields:  # the hash expired: heartbeats stopped long ago, only the ZSET entry is left
        return WorkerStatus(id=worker_id, pod="?", state="lost", last_seen_s=float("inf"), alive=False)
    last_seen = int(fields.get("last_seen", 0))
    interval_ms = int(fields.get("interval_ms", 10_000))
    age_ms = max(0, now - last_seen)
    return WorkerStatus(
        id=worker_id,
        pod=fields.get("pod", "?"),
        pid=int(fields["pid"]) if fields.get("pid") else None,
        state=fields.get("state", "idle"),
        task=fields.get("task") or None,
        processed=int(fields.get("processed", 0)),
        failed=int(fields.get("failed", 0)),
        last_seen_s=age_ms / 1000,
        alive=age_ms <= 3 * interval_ms and fields.get("state") != "stopped",
    )


def _batch_stats(batch_id: str, meta: dict[str, str], counts: list[int], now: int) -> BatchStats:
    queued, running, done, failed, cancelled = counts
    first = int(meta.get("first_started_at") or 0)
    last = int(meta.get("last_finished_at") or 0)
    is_open = queued + running > 0
    end = now if is_open else (last or now)
    elapsed_ms = max(0, end - first) if first else 0
    finished = done + failed
    rate = finished * 60_000 / elapsed_ms if elapsed_ms > 0 else 0.0
    return BatchStats(
        id=batch_id,
        total=int(meta.get("total", 0)),
        queued=queued,
        running=running,
        done=done,
        failed=failed,
        cancelled=cancelled,
        created_at_ms=int(meta.get("created_at", 0)),
        elapsed_s=elapsed_ms / 1000,
        throughput_per_min=round(rate, 3),
        cancelled_flag=meta.get("cancelled") == "1",
    )


def stats_as_dict(stats: QueueStats) -> dict[str, Any]:
    """JSON-safe dict (infinite ages become null), for `monitor --json` and the API."""
    data = stats.model_dump(mode="json")
    for worker in data["workers"]:
        if worker["last_seen_s"] in (float("inf"), "Infinity"):
            worker["last_seen_s"] = None
    return json.loads(json.dumps(data))
