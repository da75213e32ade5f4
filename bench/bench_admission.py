"""Admission benchmark: what the emulated API's admission chain adds to a write (p50/p95 over HTTP).

The same writes against two emulators, one with admission (tests.kube.admission: field
validation, pruning, defaulting, schema, CEL, metadata, built-in schemas) and one without:
creating a Backtest (CRD schema + CEL), creating a Job (Kubernetes' own schema), patching a
Backtest's status and a Job's status (what the operator and the kubelet send most). Each write
is a real HTTP request from the kubernetes client's transport (urllib3). The goal: admission
adds under 2 ms p50 to a write. Prints a table; never asserts on time.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import urllib3
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kube.cluster import EmulatedCluster  # noqa: E402 - after the path set-up
from tests.kube.crd_validation import load_crds  # noqa: E402

WRITES = int(os.environ.get("BENCH_ADMISSION_WRITES", "200"))
NS = "bench"
BACKTESTS = f"/apis/kubetrader.io/v1alpha1/namespaces/{NS}/backtests"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
MERGE = {"Content-Type": "application/merge-patch+json"}


def job(name: str) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "operator"))
    from kubetrader.specs import BacktestSpec
    from kubetrader_operator.backtest.builders import build_job, job_options
    from kubetrader_operator.settings import get_settings

    example = yaml.safe_load((ROOT / "examples/backtest-sma.yaml").read_text())
    spec = BacktestSpec.model_validate(example["spec"])
    manifest = build_job(name, NS, spec, job_options(get_settings(), {}))
    manifest["metadata"]["name"] = name
    return manifest


def timed(http: urllib3.PoolManager, url: str, method: str, body: Any, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    response = http.request(method, url, body=json.dumps(body).encode(), headers=headers)
    elapsed = time.perf_counter() - started
    if response.status >= 300:
        raise RuntimeError(f"{method} {url}: {response.status} {response.data[:300]!r}")
    return elapsed * 1000


def measure(admission: bool) -> dict[str, list[float]]:
    example = yaml.safe_load((ROOT / "examples/backtest-sma.yaml").read_text())
    template = job("run")
    http = urllib3.PoolManager()
    headers = {"Content-Type": "application/json"}
    results: dict[str, list[float]] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmulatedCluster(load_crds().values(), workdir=Path(tmp), namespaces=[NS]) as cluster,
    ):
        assert cluster.emulator is not None
        cluster.emulator.admission_enabled = admission
        base = cluster.admin_url  # the administrator's port: RBAC is not part of these numbers

        def series(name: str, write: Callable[[int], float]) -> None:
            write(-1)  # warm-up (schemas loaded, programs compiled)
            results[name] = [write(i) for i in range(WRITES)]

        def create_backtest(i: int) -> float:
            doc = copy.deepcopy(example)
            doc["metadata"] = {"name": f"bt-{i + 1}", "namespace": NS}
            doc["spec"]["broker"]["cash"] = 100000 + i  # a new spec each time: CEL is not served from memory
            return timed(http, base + BACKTESTS + "?fieldValidation=Strict", "POST", doc, headers)

        def create_job(i: int) -> float:
            manifest = copy.deepcopy(template)
            manifest["metadata"]["name"] = f"run-{i + 1}"
            return timed(http, base + JOBS + "?fieldValidation=Strict", "POST", manifest, headers)

        def patch_backtest_status(i: int) -> float:
            status = {"status": {"phase": "Running", "message": f"step {i}"}}
            return timed(http, f"{base}{BACKTESTS}/bt-{(i % WRITES) + 1}/status", "PATCH", status, MERGE)

        def patch_job_status(i: int) -> float:
            status = {"status": {"active": 1, "ready": i % 2}}
            return timed(http, f"{base}{JOBS}/run-{(i % WRITES) + 1}/status", "PATCH", status, MERGE)

        series("create a Backtest", create_backtest)
        series("create a Job", create_job)
        series("patch a Backtest's status", patch_backtest_status)
        series("patch a Job's status", patch_job_status)
    return results


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> None:
    off, on = measure(False), measure(True)
    print(f"{WRITES} writes each over HTTP; milliseconds")
    print(f"{'write':<28}{'p50 off':>9}{'p50 on':>9}{'added p50':>11}{'p95 on':>9}")
    for name in on:
        added = statistics.median(on[name]) - statistics.median(off[name])
        print(
            f"{name:<28}{statistics.median(off[name]):>9.2f}{statistics.median(on[name]):>9.2f}"
            f"{added:>11.2f}{pct(on[name], 95):>9.2f}"
        )
    print("goal: admission adds < 2 ms p50 to a write")


if __name__ == "__main__":
    main()
