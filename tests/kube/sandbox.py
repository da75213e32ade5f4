"""`make sandbox`: the emulated Kubernetes API, the real operator and the kubelet stand-in, in one process.

For trying the README's kubectl commands without Docker or a cluster. It is an emulator for
trying and testing, not a cluster: there are no nodes, no container images, no network between
pods, and the only workloads it runs are Jobs, whose container command runs as a local process
with the real engine (Deployments and StatefulSets - the worker pool, live trading - are created
but never started).

    python -m tests.kube.sandbox [--workdir DIR]

writes `DIR/kubeconfig`, prints the `export KUBECONFIG=...` line and a few commands to try, and
runs until Ctrl-C (or SIGTERM), then stops the kubelet loop, the operator and the API, in that
order.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType

from tests.kube.cluster import EmulatedCluster
from tests.kube.crd_validation import load_crds
from tests.kube.kubelet import FakeKubelet

# The operator's settings here (the chart sets the same variables): quick to react, generous to start.
OPERATOR_ENV = {
    "KUBETRADER_OPERATOR_METRICS_PORT": "0",
    "KUBETRADER_OPERATOR_RESYNC_INTERVAL_SECONDS": "2",
    "KUBETRADER_OPERATOR_START_TIMEOUT_SECONDS": "120",
    "KUBETRADER_OPERATOR_BACKOFF_SECONDS": "1",
    "KUBETRADER_OPERATOR_WATCH_TIMEOUT_SECONDS": "60",
    "KUBETRADER_OPERATOR_IMAGE": "ghcr.io/kubetrader/engine:sandbox",
}
KUBELET_POLL_SECONDS = 0.5
KUBELET_SLOTS = 2  # Jobs run side by side, as on two small nodes
TRY = """\
Try (from the repository root):
  kubectl apply -f examples/backtest-sma.yaml
  kubectl get backtests
  kubectl wait --for=condition=Succeeded backtest/sma-orcl --timeout=5m
  kubectl describe backtest sma-orcl
  kubectl logs job/bt-sma-orcl
  kubectl get kubetrader
  kubectl explain backtest.spec
  kubectl delete -f examples/backtest-sma.yaml
This is an emulator for trying and testing, not a cluster. Ctrl-C stops it."""


class KubeletLoop:
    """Runs every Job that appears (once), on a small pool, with the real engine."""

    def __init__(self, cluster: EmulatedCluster, workdir: Path) -> None:
        bin_dir = Path(sys.executable).parent
        self.kubelet = FakeKubelet(cluster, workdir, {"kubetrader": str(bin_dir / "kubetrader")})
        self.cluster = cluster
        self.stop = threading.Event()
        self._started: set[str] = set()  # Job uids
        self._pool = ThreadPoolExecutor(KUBELET_SLOTS, thread_name_prefix="kubelet")
        self._thread = threading.Thread(target=self._run, name="kubelet-loop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self.stop.wait(KUBELET_POLL_SECONDS):
            for job in self.cluster.select("Job"):
                uid = job["metadata"]["uid"]
                if uid in self._started or (job.get("status") or {}).get("startTime"):
                    continue
                self._started.add(uid)
                self._pool.submit(self._run_job, job["metadata"]["namespace"], job["metadata"]["name"])

    def _run_job(self, namespace: str, name: str) -> None:
        try:
            self.kubelet.run_job(namespace, name)
        except Exception as exc:  # one Job's failure (e.g. deleted while it ran) must not stop the loop
            print(f"kubelet: Job {namespace}/{name}: {exc!r}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.stop.set()
        self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)


class OperatorThread:
    """The real kopf operator (`kubetrader_operator.main`), all namespaces, standalone, in a thread."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="operator", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            import kopf

            import kubetrader_operator.main  # noqa: F401 (registers the handlers)

            asyncio.run(kopf.operator(clusterwide=True, standalone=True, stop_flag=self.stop, ready_flag=self.ready))
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            self.ready.set()

    def close(self) -> None:
        self.stop.set()
        self._thread.join(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make sandbox", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workdir", type=Path, help="where the kubeconfig and the pods' files go (default: new temp dir)"
    )
    args = parser.parse_args(argv)
    workdir: Path = args.workdir or Path(tempfile.mkdtemp(prefix="kubetrader-sandbox-"))
    workdir.mkdir(parents=True, exist_ok=True)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    with EmulatedCluster(load_crds().values(), workdir=workdir) as cluster:
        cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
        # kopf and the operator's client read KUBECONFIG when they first load it.
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
        for key, value in OPERATOR_ENV.items():
            os.environ.setdefault(key, value)
        operator = OperatorThread()
        operator.start()
        operator.ready.wait(60)
        if operator.error is not None:
            print(f"the operator did not start: {operator.error!r}", file=sys.stderr, flush=True)
            return 1
        kubelet_dir = workdir / "kubelet"
        kubelet_dir.mkdir(exist_ok=True)
        kubelet = KubeletLoop(cluster, kubelet_dir)
        kubelet.start()
        print(f"emulated Kubernetes API on {cluster.url} (operator and kubelet stand-in running)")
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        print(TRY, flush=True)
        try:
            while not stopping.wait(0.5):
                if operator.error is not None:
                    print(f"the operator stopped: {operator.error!r}", file=sys.stderr, flush=True)
                    return 1
        finally:
            print("stopping: kubelet, operator, API", flush=True)
            started = time.monotonic()
            kubelet.close()
            operator.close()
    print(f"stopped in {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
