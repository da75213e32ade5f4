"""Operator benchmark against the emulated API: Backtest created -> Job exists (p50/p95), and RSS.

The operator runs as a real `kopf run` subprocess (so its RSS is its own); the
emulator runs in this process. Prints a table; never asserts on time.
"""

from __future__ import annotations

import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kube.cluster import EmulatedCluster  # noqa: E402 - after the path set-up
from tests.kube.crd_validation import load_crds  # noqa: E402

LATENCY_OBJECTS = int(os.environ.get("BENCH_LATENCY_OBJECTS", "50"))
MEMORY_OBJECTS = int(os.environ.get("BENCH_MEMORY_OBJECTS", "500"))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_for(check, timeout: float = 20.0) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError("timed out waiting for the operator")
        time.sleep(0.02)
    return time.monotonic()


def main() -> None:
    example = yaml.safe_load((ROOT / "examples/backtest-sma.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp, EmulatedCluster(load_crds().values(), workdir=Path(tmp)) as cluster:
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
        try:
            time.sleep(3)  # operator start-up, not part of what is measured
            rss_start = rss_mb(operator.pid)
            latencies = []
            for i in range(LATENCY_OBJECTS):
                doc = copy.deepcopy(example)
                doc["metadata"] = {"name": f"lat-{i}", "namespace": "bench"}
                created = time.monotonic()
                cluster.create(doc)
                done = wait_for(lambda i=i: cluster.get("Job", "bench", f"bt-lat-{i}") is not None)
                latencies.append(done - created)
            for i in range(MEMORY_OBJECTS - LATENCY_OBJECTS):
                doc = copy.deepcopy(example)
                doc["metadata"] = {"name": f"mem-{i}", "namespace": "bench"}
                cluster.create(doc)
            wait_for(lambda: len(cluster.select("Job", "bench")) >= MEMORY_OBJECTS, timeout=600)
            rss_end = rss_mb(operator.pid)
        except TimeoutError:
            print((Path(tmp) / "operator.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            operator.terminate()
            operator.wait(30)
            log.close()
    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(f"{'measure':<40} {'value':>10}")
    print(f"{'create -> Job exists, p50 (s)':<40} {statistics.median(latencies):>10.3f}")
    print(f"{'create -> Job exists, p95 (s)':<40} {p95:>10.3f}")
    print(f"{'operator RSS after start (MB)':<40} {rss_start:>10.1f}")
    print(f"{f'operator RSS after {MEMORY_OBJECTS} Backtests (MB)':<40} {rss_end:>10.1f}")


if __name__ == "__main__":
    main()
