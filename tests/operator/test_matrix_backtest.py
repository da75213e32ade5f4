"""A matrix Backtest in the cluster: its Job drives a campaign over the shared worker pool."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_until
from tests.kube.cluster import EmulatedCluster
from tests.kube.kubelet import FakeKubelet

NS = "research"

pytestmark = pytest.mark.slow

MATRIX_BACKTEST = {
    "apiVersion": "kubetrader.io/v1alpha1",
    "kind": "Backtest",
    "metadata": {"name": "campaign", "namespace": NS},
    "spec": {
        "strategy": {"path": "strategies.sma_crossover.SMACrossover", "params": {"fast": 10, "slow": 30}},
        "data": {"symbols": ["ORCL"], "start": "2011-01-01", "end": "2012-12-31"},
        "matrix": {"symbols": ["ORCL", "NVDA"], "params": {"fast": [5, 10]}},
    },
}


@pytest.fixture
def operator_with_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The operator's settings are read once per process: point them at this test's Redis, and forget them after."""
    from kubetrader_operator.settings import get_settings

    monkeypatch.setenv("KUBETRADER_OPERATOR_REDIS_URL", redis_url)
    get_settings.cache_clear()
    yield redis_url
    get_settings.cache_clear()


def test_matrix_backtest_fans_out_over_the_worker_pool_and_aggregates_cells_in_status(
    kube_cluster: EmulatedCluster,
    operator_runner: Callable[[], Any],
    fake_kubelet: FakeKubelet,
    operator_with_redis: str,
    tmp_path: Path,
) -> None:
    from kubetrader.queue.local import local_workers
    from kubetrader.queue.server import redis_client
    from kubetrader.queue.stats import queue_stats

    with operator_runner(), local_workers(operator_with_redis, 2, output_dir=tmp_path / "workers"):
        kube_cluster.create(MATRIX_BACKTEST)
        job = wait_until(lambda: kube_cluster.get("Job", NS, "bt-campaign"), timeout=20, what="the driver Job")
        env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["KUBETRADER_REDIS_URL"] == operator_with_redis
        fake_kubelet.run_job(NS, "bt-campaign")
        status = wait_until(
            lambda: (
                (kube_cluster.get("Backtest", NS, "campaign") or {}).get("status", {}).get("phase") == "Succeeded"
                and kube_cluster.get("Backtest", NS, "campaign")["status"]
            ),
            timeout=30,
            what="Succeeded",
        )
    assert status["cells"]["total"] == 4 and status["cells"]["failed"] == 0
    assert status["cells"]["best"] and status["cells"]["table"].endswith(".csv")
    assert status["metrics"]["sharpeRatio"] > 0  # the best cell's headline metrics
    stats = queue_stats(redis_client(operator_with_redis))
    assert stats.pending == 0
    # every cell ran on a worker, exactly once
    done = [b for b in stats.batches if b.id.startswith("campaign-")]
    assert len(done) == 1 and done[0].done == 4
