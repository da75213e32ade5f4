"""Health of every store the dashboard reads, and of the machine it runs on.

CPU, memory and disk come from psutil when it is installed, else from /proc and
statvfs (Linux), so the API image does not need a compiled extension for this.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from kubetrader_dashboard.models.operations import ComponentHealth, Health, SystemResources
from kubetrader_dashboard.services.container import Services


def _check(name: str, configured: bool, probe: Callable[[], object], missing: str) -> ComponentHealth:
    if not configured:
        return ComponentHealth(name=name, status="not_configured", detail=missing)
    started = time.perf_counter()
    try:
        probe()
    except Exception as exc:  # any failure of a probe is "down", with its type (not its text: may hold secrets)
        return ComponentHealth(name=name, status="down", detail=type(exc).__name__)
    return ComponentHealth(name=name, status="ok", latency_ms=(time.perf_counter() - started) * 1000)


def system_resources(path: Path) -> SystemResources:
    existing = path if path.exists() else Path(".")
    try:
        import psutil
    except ImportError:
        return _proc_resources(existing)
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(existing))
    return SystemResources(
        source="psutil",
        cpu_percent=psutil.cpu_percent(interval=None),
        cpu_count=psutil.cpu_count(),
        memory_total_mb=memory.total / 2**20,
        memory_used_percent=memory.percent,
        disk_total_gb=disk.total / 2**30,
        disk_used_percent=disk.percent,
    )


def _proc_resources(path: Path) -> SystemResources:
    meminfo: dict[str, float] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            meminfo[key] = float(rest.split()[0]) / 1024
    except OSError:
        pass
    total = meminfo.get("MemTotal")
    available = meminfo.get("MemAvailable")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cpus = os.cpu_count()
    disk = shutil.disk_usage(path)
    return SystemResources(
        source="proc",
        cpu_percent=min(100.0, 100.0 * load / cpus) if load is not None and cpus else None,
        cpu_count=cpus,
        memory_total_mb=total,
        memory_used_percent=100.0 * (1 - available / total) if total and available is not None else None,
        disk_total_gb=disk.total / 2**30,
        disk_used_percent=100.0 * disk.used / disk.total if disk.total else None,
    )


def health(services: Services) -> Health:
    settings = services.settings
    queue_view = services.queue.view() if services.queue.available else None
    workers_alive = None if queue_view is None or queue_view.stats is None else queue_view.stats.workers_alive

    def workers_probe() -> None:
        if queue_view is None or queue_view.stats is None:
            raise ConnectionError("queue unreachable")

    queue = services.queue
    local_redis_down = queue.local_default and (queue_view is None or queue_view.stats is None)
    components = [
        _check("results", True, services.store.counts, ""),
        _check(
            "redis",
            queue.available and not local_redis_down,
            queue.ping,
            queue.not_running_reason if local_redis_down else "KUBETRADER_REDIS_URL is not set",
        ),
        _check("mlflow", services.mlflow.available, services.mlflow.ping, services.mlflow.missing_reason),
        _check("database", services.studies.available, services.studies.ping, services.studies.missing_reason),
        _check(
            "kubernetes", services.cluster.available, services.cluster.ping, services.cluster.reason or "not available"
        ),
        _check("workers", queue.available and not local_redis_down, workers_probe, "no work queue running"),
    ]
    if workers_alive is not None:
        components[-1].detail = f"{workers_alive} alive"
    down = any(c.status == "down" for c in components)
    return Health(
        status="degraded" if down else "ok",
        components=components,
        system=system_resources(settings.results_dir),
        results=services.store.counts(),
    )
