"""Operator benchmark against the emulated API: Backtest created -> Job exists (p50/p95), and RSS.

The operator runs as a real `kopf run` subprocess (so its RSS is its own); the
emulator runs in this process. Latency: one Backtest at a time, created -> its Job
exists (BENCH_LATENCY_OBJECTS, 50). Memory: Backtests up to BENCH_MEMORY_OBJECTS
(500) in batches, the operator's RSS sampled after every BENCH_SAMPLE_EVERY (100),
to show whether it stays flat; then every Backtest is deleted (and waited for: the operator's
finalizer, if any, is gone), the emulator's garbage collector run, and the RSS sampled again once it
has settled (the operator still works through the deletions' watch events), to show whether the
operator lets go of what it held per object (goal: flat after the deletes, <= 10 MB per 1,000 live
objects). Prints tables; never asserts on time.
"""

from __future__ import annotations

import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kube.cluster import EmulatedCluster  # noqa: E402 - after the path set-up
from tests.kube.crd_validation import load_crds  # noqa: E402

LATENCY_OBJECTS = int(os.environ.get("BENCH_LATENCY_OBJECTS", "50"))
MEMORY_OBJECTS = int(os.environ.get("BENCH_MEMORY_OBJECTS", "500"))
SAMPLE_EVERY = int(os.environ.get("BENCH_SAMPLE_EVERY", "100"))  # RSS after every this many Backtests


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def settled_rss_mb(pid: int, *, steady_seconds: float = 5.0, timeout: float = 120.0) -> float:
    """The process's RSS once it has stayed within 0.5 MB for `steady_seconds` (or at `timeout`)."""
    deadline = time.monotonic() + timeout
    last, since = rss_mb(pid), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < steady_seconds:
        time.sleep(0.5)
        now = rss_mb(pid)
        if abs(now - last) > 0.5:
            last, since = now, time.monotonic()
    return rss_mb(pid)


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError("timed out waiting for the operator")
        time.sleep(0.01)
    return time.monotonic()


def backtest(example: dict[str, Any], name: str) -> dict[str, Any]:
    doc = copy.deepcopy(example)
    doc["metadata"] = {"name": name, "namespace": "bench"}
    return doc


def main() -> None:
    example = yaml.safe_load((ROOT / "examples/backtest-sma.yaml").read_text())
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmulatedCluster(load_crds().values(), workdir=Path(tmp), namespaces=["bench"]) as cluster,
    ):
        env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "KUBETRADER_OPERATOR_METRICS_PORT": "0",
            "KUBETRADER_OPERATOR_RESYNC_INTERVAL_SECONDS": "30",
        }
        log = (Path(tmp) / "operator.log").open("w")
        operator = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "-A", "--standalone", "-q", "-m", "kubetrader_operator.main"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )

        def job_exists(name: str) -> Callable[[], bool]:
            return lambda: cluster.get("Job", "bench", f"bt-{name}") is not None

        rss: list[tuple[int, float, float]] = []  # (Backtests so far, operator RSS, emulator-side RSS)
        try:
            # Start-up is not measured: the first Backtest waits until the operator watches.
            cluster.create(backtest(example, "warm-up"))
            wait_for(job_exists("warm-up"), timeout=120)
            rss.append((0, rss_mb(operator.pid), rss_mb(os.getpid())))
            latencies = []
            for i in range(LATENCY_OBJECTS):
                created = time.monotonic()
                cluster.create(backtest(example, f"lat-{i}"))
                done = wait_for(job_exists(f"lat-{i}"))
                latencies.append(done - created)
            made = LATENCY_OBJECTS
            started = time.monotonic()
            while made < MEMORY_OBJECTS:
                batch = [
                    f"mem-{i}" for i in range(made, min(MEMORY_OBJECTS, (made // SAMPLE_EVERY + 1) * SAMPLE_EVERY))
                ]
                for name in batch:
                    cluster.create(backtest(example, name))
                for name in batch:
                    wait_for(job_exists(name), timeout=120)
                made += len(batch)
                rss.append((made, rss_mb(operator.pid), rss_mb(os.getpid())))
            throughput_seconds = time.monotonic() - started
            jobs = cluster.count("Job", "bench")
            names = ["warm-up", *(f"lat-{i}" for i in range(LATENCY_OBJECTS))]
            names += [f"mem-{i}" for i in range(LATENCY_OBJECTS, MEMORY_OBJECTS)]
            for name in names:
                cluster.delete("Backtest", "bench", name, policy="Background")
            wait_for(lambda: cluster.count("Backtest", "bench") == 0, timeout=600)
            cluster.collect_garbage()
            # The operator works through the deletions' watch events (Backtests and their Jobs) after
            # the API has removed the objects: sample until its RSS has settled (a memory sample, not a test).
            rss.append((-len(names), settled_rss_mb(operator.pid), rss_mb(os.getpid())))
        except TimeoutError:
            print((Path(tmp) / "operator.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            operator.terminate()
            operator.wait(30)
            log.close()
    latencies.sort()
    p95 = latencies[round(0.95 * (len(latencies) - 1))]
    print(f"{'measure':<48} {'value':>10}")
    print(f"{f'create -> Job exists, p50 over {LATENCY_OBJECTS} (s)':<48} {statistics.median(latencies):>10.3f}")
    print(f"{f'create -> Job exists, p95 over {LATENCY_OBJECTS} (s)':<48} {p95:>10.3f}")
    print(f"{f'{MEMORY_OBJECTS - LATENCY_OBJECTS} more Backtests -> their Jobs (s)':<48} {throughput_seconds:>10.1f}")
    print(f"{'Jobs in the namespace at the end':<48} {jobs:>10d}")
    print()
    print(f"{'Backtests':>10} {'operator RSS (MB)':>18} {'emulator+bench RSS (MB)':>24}")
    for count, operator_rss, own_rss in rss:
        label = f"{count:>10d}" if count >= 0 else f"{'0 (' + str(-count) + ' deleted)':>10}"
        print(f"{label} {operator_rss:>18.1f} {own_rss:>24.1f}")
    start, (live, at_most), after_delete = rss[0][1], (rss[-2][0], rss[-2][1]), rss[-1][1]
    print()
    print(f"{'operator RSS':<40} {'value':>10} {'goal':>10}")
    print(f"{'growth per 1,000 live Backtests (MB)':<40} {(at_most - start) * 1000 / live:>10.1f} {'<= 10':>10}")
    print(f"{'after the deletes vs at 0 (MB)':<40} {after_delete - start:>+10.1f} {'about 0':>10}")


if __name__ == "__main__":
    main()
