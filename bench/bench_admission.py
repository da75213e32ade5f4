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


WRITE_KINDS = ("create a Backtest", "create a Job", "patch a Backtest's status", "patch a Job's status")


def measure() -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(without admission, with admission): two emulators side by side, each write timed on one then
    the other, so a change in the machine's load falls on both series alike."""
    example = yaml.safe_load((ROOT / "examples/backtest-sma.yaml").read_text())
    template = job("run")
    http = urllib3.PoolManager()
    headers = {"Content-Type": "application/json"}
    results: tuple[dict[str, list[float]], dict[str, list[float]]] = ({}, {})
    crds = list(load_crds().values())
    with (
        tempfile.TemporaryDirectory() as tmp_off,
        tempfile.TemporaryDirectory() as tmp_on,
        EmulatedCluster(crds, workdir=Path(tmp_off), namespaces=[NS]) as off,
        EmulatedCluster(crds, workdir=Path(tmp_on), namespaces=[NS]) as on,
    ):
        assert off.emulator is not None and on.emulator is not None
        off.emulator.admission_enabled = False
        # the administrator's port: RBAC is not part of these numbers (bench_rbac.py times it)
        bases = (off.admin_url, on.admin_url)

        def create_backtest(base: str, i: int) -> float:
            doc = copy.deepcopy(example)
            doc["metadata"] = {"name": f"bt-{i + 1}", "namespace": NS}
            doc["spec"]["broker"]["cash"] = 100000 + i  # a new spec each time: CEL is not served from memory
            return timed(http, base + BACKTESTS + "?fieldValidation=Strict", "POST", doc, headers)

        def create_job(base: str, i: int) -> float:
            manifest = copy.deepcopy(template)
            manifest["metadata"]["name"] = f"run-{i + 1}"
            return timed(http, base + JOBS + "?fieldValidation=Strict", "POST", manifest, headers)

        def patch_backtest_status(base: str, i: int) -> float:
            status = {"status": {"phase": "Running", "message": f"step {i}"}}
            return timed(http, f"{base}{BACKTESTS}/bt-{(i % WRITES) + 1}/status", "PATCH", status, MERGE)

        def patch_job_status(base: str, i: int) -> float:
            status = {"status": {"active": 1, "ready": i % 2}}
            return timed(http, f"{base}{JOBS}/run-{(i % WRITES) + 1}/status", "PATCH", status, MERGE)

        writes: tuple[Callable[[str, int], float], ...] = (
            create_backtest,
            create_job,
            patch_backtest_status,
            patch_job_status,
        )
        for name, write in zip(WRITE_KINDS, writes, strict=True):
            for base in bases:
                write(base, -1)  # warm-up (schemas loaded, programs compiled)
            for series in results:
                series[name] = []
            for i in range(WRITES):
                for base, series in zip(bases, results, strict=True):
                    series[name].append(write(base, i))
    return results


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> None:
    off, on = measure()
    print(f"{WRITES} writes each over HTTP, with and without admission interleaved; milliseconds")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
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
