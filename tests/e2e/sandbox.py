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
from typing import Any

import yaml

from tests.e2e import scenario
from tests.e2e.scenario import Cluster, ScenarioError, phase, wait_for

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubetrader"
VALUES = CHART / "ci" / "sandbox-values.yaml"
RELEASE = "kubetrader"
NAMESPACE = "kubetrader"
INSTALL_TIMEOUT = 600.0


def values() -> dict[str, Any]:
    return dict(yaml.safe_load(VALUES.read_text()) or {})


_CONFIGS: dict[Path, Any] = {}


def helm_config(kubeconfig: Path) -> Any:
    """One Helm configuration per cluster, kept for the run: its release storage is Helm's
    `memory` driver, because Helm's Secret driver writes protobuf, which the stand-in does not
    decode (it answers 415, as a server without that serializer; client-go does not fall back)."""
    import helm_python

    if kubeconfig not in _CONFIGS:
        helm_python.disable_logging()
        _CONFIGS[kubeconfig] = helm_python.Config(
            kubeconfig_path=kubeconfig, namespace=NAMESPACE, storage_driver="memory"
        )
    return _CONFIGS[kubeconfig]


def workloads_ready(cluster: Cluster) -> bool | str:
    """Every Deployment and StatefulSet of the release has all its replicas ready (a Deployment
    with `replicas: 0` counts as ready)."""
    pending = []
    for kind in ("deployments", "statefulsets"):
        for item in cluster.json("get", kind, "-n", cluster.namespace)["items"]:
            want = item["spec"].get("replicas", 1)
            have = (item.get("status") or {}).get("readyReplicas", 0)
            if have < want:
                pending.append(f"{kind}/{item['metadata']['name']} {have}/{want}")
    return not pending and bool(cluster.json("get", "deployments", "-n", cluster.namespace)["items"])


def describe_pending(cluster: Cluster) -> str:
    return cluster.kubectl("get", "pods", "-n", cluster.namespace, "-o", "wide", check=False)


def helm(action: str, kubeconfig: Path, chart_values: dict[str, Any] | None = None) -> Any:
    """`helm install|upgrade RELEASE charts/kubetrader -n kubetrader` with the real Helm (4, Go SDK).

    As `--disable-openapi-validation`: Helm's client-side check reads `/openapi/v2` as protobuf,
    which the stand-in does not serve (JSON only); the objects are still validated, by the
    server, as every write is (Helm 4 applies server-side with fieldValidation Strict)."""
    import helm_python
    from helm_python import _native
    from helm_python.config import _loads_obj, _opts

    config = helm_config(kubeconfig)
    chart = helm_python.Chart.load(CHART)
    options = _opts(
        namespace=NAMESPACE,
        timeout_seconds=300,
        create_namespace=True if action == "install" else None,
        disable_openapi_validation=True,
    )
    payload = _native.call_string(
        f"helm_{action}",
        config._raw(),
        config._context_arg(None),
        chart._raw(),
        None,
        RELEASE,
        json.dumps(chart_values or values()),
        options,
    )
    return _loads_obj(payload)


def install(cluster: Cluster, kubeconfig: Path) -> None:
    helm("install", kubeconfig)
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
            cluster = Cluster(kubeconfig, NAMESPACE, home=workdir / "home")
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
    except ScenarioError as exc:
        print(f"e2e-sandbox FAILED: {exc}", file=sys.stderr, flush=True)
        _print_times(times, started)
        return 1
    finally:
        network.close()
    _print_times(times, started)
    print("e2e-sandbox passed", flush=True)
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
