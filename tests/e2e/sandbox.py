"""`make e2e-sandbox`: `helm install` of the chart on the emulated API, run by the node agent,
then the README's cluster section (tests/e2e/scenario.py), `helm upgrade` and `helm uninstall`.

    python -m tests.e2e.sandbox [--workdir DIR] [--phases backtest,...] [--keep]

1. the pod network (a bridge, one network namespace per pod: tests/kube/node/network.py; root);
2. the emulated API (tests/kube) with admission and RBAC, serving TLS on the bridge's address
   with a new CA; the administrator's kubeconfig (kubernetes-admin, a bearer token over TLS);
3. the node agent (tests/kube/node): controllers, kubelet, DNS names;
4. `helm install` with the real Helm (helm-python-sdk: Helm 4's Go SDK) of charts/kubetrader with
   ci/sandbox-values.yaml, CRDs from the chart's crds/; every workload ready;
5. the scenario's phases, through the real kubectl;
6. `helm upgrade` with a changed value: the API token Secret and the worker replica count stay;
   `helm uninstall`: CRDs, PVCs and the generated Secrets stay.

Prints the time of each phase. Exit 0 when every check passed, 1 with the failed check.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.e2e import scenario
from tests.e2e.scenario import (
    INSTALL_TIMEOUT,
    Cluster,
    ScenarioError,
    describe_pending,
    helm,
    phase,
    wait_for,
    workloads_ready,
)

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "kubetrader"
VALUES = ROOT / "charts" / "kubetrader" / "ci" / "sandbox-values.yaml"


def install(cluster: Cluster, kubeconfig: Path) -> None:
    helm(cluster, "install")
    try:
        wait_for("every workload of the release ready", lambda: workloads_ready(cluster), INSTALL_TIMEOUT)
    except ScenarioError as exc:
        raise ScenarioError(f"{exc}\n{describe_pending(cluster)}") from None
    print(cluster.kubectl("get", "pods", "-n", cluster.namespace, "-o", "wide"), end="", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make e2e-sandbox", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--phases", default=",".join(scenario.PHASES))
    parser.add_argument("--hold", action="store_true", help="after the install, wait for Ctrl-C (to try kubectl)")
    args = parser.parse_args(argv)
    workdir: Path = args.workdir or Path(tempfile.mkdtemp(prefix="kubetrader-e2e-"))
    workdir.mkdir(parents=True, exist_ok=True)

    from tests.kube import authn
    from tests.kube.cluster import EmulatedCluster
    from tests.kube.node.agent import NodeAgent
    from tests.kube.node.network import PodNetwork

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through the finally blocks: pods stopped, network removed

    signal.signal(signal.SIGTERM, on_signal)
    times: dict[str, float] = {}
    started = time.monotonic()
    network = PodNetwork()
    try:
        with EmulatedCluster((), workdir=workdir, tls_host=network.node_ip) as api:
            assert api.tls is not None
            kubeconfig = api.kubeconfig_for(authn.ADMIN, workdir / "admin.kubeconfig", tls=True)
            port = int(api.tls_url.rsplit(":", 1)[1])
            cluster = Cluster(
                kubeconfig, NAMESPACE, home=workdir / "home", access="pod", helm_storage="memory", values_file=VALUES
            )
            with NodeAgent(
                api, workdir / "node", api_port=port, ca_cert=api.tls.ca_cert.read_bytes(), network=network
            ) as agent:
                print(f"API {api.tls_url} (CA {api.tls.ca_cert}); export KUBECONFIG={kubeconfig}", flush=True)
                with phase("install (helm install to every pod ready)", times):
                    install(cluster, kubeconfig)
                if args.hold:
                    print("holding: Ctrl-C stops", flush=True)
                    with contextlib.suppress(KeyboardInterrupt):
                        threading.Event().wait()
                scenario.run(cluster, [p for p in args.phases.split(",") if p], times)
                if agent.error is not None:
                    raise ScenarioError(f"the node agent failed: {agent.error!r}")
    except (ScenarioError, KeyboardInterrupt) as exc:
        # SIGTERM (make's `timeout`) or Ctrl-C unwinds here too: the times so far are printed.
        what = str(exc) if isinstance(exc, ScenarioError) else "interrupted (the time limit, or Ctrl-C)"
        print(f"e2e-sandbox FAILED: {what}", file=sys.stderr, flush=True)
        _print_times(times, started)
        print(f"{len(times) - 1} passed, 1 failed", flush=True)
        return 1
    finally:
        network.close()
    _print_times(times, started)
    print("e2e-sandbox passed", flush=True)
    print(f"{len(times)} passed, 0 failed", flush=True)  # one per phase, for CI's reader
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _print_times(times: dict[str, float], started: float) -> None:
    print(
        "phase times:",
        json.dumps({k: round(v, 1) for k, v in times.items()}),
        f"total {time.monotonic() - started:.1f} s",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
