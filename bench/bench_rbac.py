"""Authentication + RBAC cost per request in the emulated API (tests/kube/access.py).

The emulator holds the RBAC the chart renders with live trading on (plus the cluster's default
policy, and BENCH_RBAC_NAMESPACES extra namespaces each with a Role and RoleBinding for other
users, so a request's namespace is one among many). Timed: `AccessControl.check` for requests
of the operator's ServiceAccount, as the emulator runs it before every handler: a write (create
a Job), a status patch, a watch, a named Secret read, and a refused request (403 body built).
(End-to-end HTTP timings are left out: on a shared machine their noise is larger than the
check itself.) Prints a table; never asserts on time. Goal (issue 13): admission and RBAC together < 2 ms p50 per write.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kube import chart_rbac  # noqa: E402 - after the path set-up
from tests.kube.cluster import EmulatedCluster  # noqa: E402
from tests.kube.emulator import KubeEmulator  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_RBAC_ROUNDS", "2000"))
NAMESPACES = int(os.environ.get("BENCH_RBAC_NAMESPACES", "200"))
VALUES = {"live": {"enabled": True}, "operator": {"watchNamespaces": ["trading"]}}

# (label, method, path, query)
REQUESTS = [
    ("create a Job", "POST", "/apis/batch/v1/namespaces/trading/jobs", {}),
    ("patch a status", "PATCH", "/apis/kubetrader.io/v1alpha1/namespaces/trading/backtests/bt/status", {}),
    ("watch Jobs", "GET", "/apis/batch/v1/namespaces/trading/jobs", {"watch": "true"}),
    ("get a Secret", "GET", "/api/v1/namespaces/trading/secrets/x-runner-token", {}),
    ("refused (403)", "DELETE", "/apis/batch/v1/namespaces/trading/jobs", {}),
]


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples), samples[int(len(samples) * 0.95)]


def other_tenants() -> list[dict[str, object]]:
    docs: list[dict[str, object]] = []
    for i in range(NAMESPACES):
        ns = f"team-{i}"
        rules = [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list"]}]
        meta = {"name": "r", "namespace": ns}
        docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": rules})
        docs.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "b", "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
                "subjects": [{"kind": "User", "name": f"user-{i}"}],
            }
        )
    return docs


def time_checks(cluster: EmulatedCluster, token: str) -> list[tuple[str, float, float]]:
    headers = {"Authorization": f"Bearer {token}"}

    def batch(method: str, path: str, query: dict[str, str], rounds: int) -> list[float]:
        async def run(emulator: KubeEmulator) -> list[float]:
            samples = []
            for _ in range(rounds):
                started = time.perf_counter()
                emulator.access.check(emulator, method, path, query, headers)
                samples.append((time.perf_counter() - started) * 1e6)
            emulator.access.log.clear()
            return samples

        return cluster.call(run)

    rows = []
    for label, method, path, query in REQUESTS:
        samples: list[float] = []
        while len(samples) < ROUNDS:  # in batches: each call on the emulator's loop has a time limit
            samples += batch(method, path, query, min(200, ROUNDS - len(samples)))
        rows.append((label, *percentiles(samples)))
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, EmulatedCluster(workdir=Path(tmp)) as cluster:
        cluster.apply(chart_rbac.rbac_manifests(VALUES), chart_rbac.NAMESPACE)
        cluster.apply(other_tenants(), "default")
        cluster.ensure_namespace("trading")
        token = cluster.token_for(chart_rbac.OPERATOR)
        print(f"authentication + RBAC check per request, {ROUNDS} rounds, {NAMESPACES} other namespaces' bindings")
        print(f"{'request':<18} {'p50 µs':>8} {'p95 µs':>8}")
        for label, p50, p95 in time_checks(cluster, token):
            print(f"{label:<18} {p50:8.1f} {p95:8.1f}")


if __name__ == "__main__":
    main()
