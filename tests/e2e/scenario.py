"""The end-to-end scenario: the README's cluster section, run against any cluster.

`make e2e` (kind, with Docker) and `make e2e-sandbox` (the emulated API and the node agent) both
run this file, so the two cannot drift:

    python -m tests.e2e.scenario --kubeconfig PATH [--context NAME] [--namespace kubetrader]

The commands are the README's, verbatim, with the cluster's kubeconfig and the release's
namespace as kubectl's defaults (`KUBECONFIG`, and the context's namespace set with
`kubectl config set-context --current --namespace`, as a user of that section would). Each
phase prints how long it took; the first failing check stops the run with what it saw.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubetrader"
RELEASE = "kubetrader"
INSTALL_TIMEOUT = 600.0
# A container restarted this often while the release comes up is a failed install, not a slow one.
CRASH_LOOP_RESTARTS = 3
KUBECTL = Path(sys.executable).parent / "kubectl"
PHASES = ("backtest", "study", "live", "dashboard", "upgrade", "uninstall")


class ScenarioError(AssertionError):
    """A check of the scenario failed: the message says what was expected and what was seen."""


@dataclass
class Cluster:
    """How the scenario reaches the cluster: kubectl's config and the release's namespace."""

    kubeconfig: Path
    namespace: str
    context: str | None = None
    home: Path | None = None
    # How this machine reaches a Service: "nodeport" (kind maps NodePorts to localhost) or "pod"
    # (the sandbox: the address of a Ready pod the Service selects, as cluster DNS would give).
    access: str = "nodeport"
    # The chart's values for `helm upgrade` (charts/kubetrader/ci/NAME-values.yaml) and where Helm
    # keeps releases ("secret", Helm's default; the sandbox: "memory").
    values_file: Path = CHART / "ci" / "default-values.yaml"
    helm_storage: str = "secret"

    def values(self) -> dict[str, Any]:
        return dict(yaml.safe_load(self.values_file.read_text()) or {})

    def kubectl(self, *args: str, timeout: float = 600, check: bool = True, stdin: str | None = None) -> str:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        if self.home is not None:
            env["HOME"] = str(self.home)
        command = [str(KUBECTL) if KUBECTL.exists() else "kubectl"]
        if self.context:
            command += ["--context", self.context]
        command += list(args)
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout, check=False, input=stdin
        )
        if check and done.returncode != 0:
            raise ScenarioError(f"kubectl {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def service_url(self, name: str) -> tuple[str, str]:
        """(base URL, Host header) of a Service's first port, reached from this machine."""
        svc = self.json("get", "service", name)
        port = svc["spec"]["ports"][0]
        host = f"{name}.{self.namespace}.svc:{port['port']}"
        if self.access == "nodeport":
            return f"http://localhost:{port['nodePort']}", f"localhost:{port['nodePort']}"
        selector = ",".join(f"{k}={v}" for k, v in svc["spec"]["selector"].items())
        pods = self.json("get", "pods", "-l", selector)["items"]
        ready = [
            p
            for p in pods
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))
        ]
        if not ready:
            raise ScenarioError(f"service {name}: no ready endpoint among {[p['metadata']['name'] for p in pods]}")
        return f"http://{ready[0]['status']['podIP']}:{port['port']}", host

    def http(
        self, service: str, path: str, *, token: str | None = None, basic: str | None = None, body: Any = None
    ) -> Any:
        """GET (or POST `body`) a Service's path; the parsed JSON, or the text. `basic`: `user:password`."""
        base, host = self.service_url(service)
        headers = {"Host": host, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if basic:
            headers["Authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(base + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            raise ScenarioError(f"{service}{path}: HTTP {exc.code}: {exc.read().decode()[:500]}") from None
        try:
            return json.loads(text)
        except ValueError:
            return text

    def mlflow_credentials(self) -> str:
        """`user:password` of MLflow's basic-auth (the chart's auth.mlflow: user `kubetrader`, generated password)."""
        data = self.json("get", "secret", "kubetrader-mlflow-auth")["data"]["password"]
        return "kubetrader:" + base64.b64decode(data).decode()

    def api_token(self) -> str:
        """The dashboard API's token, as the README reads it from the chart's Secret."""
        data = self.json("get", "secret", "kubetrader-api-token")["data"]["token"]
        return base64.b64decode(data).decode()

    def set_replicas(self, deployment: str, replicas: int) -> None:
        """What `kubectl scale` does, as a patch of spec.replicas (the stand-in serves no /scale
        subresource)."""
        self.kubectl(
            "patch", f"deployment/{deployment}", "--type=merge", "-p", json.dumps({"spec": {"replicas": replicas}})
        )

    def worker_replicas(self) -> int:
        return int(self.json("get", "deployment", "kubetrader-worker")["spec"].get("replicas", 1))


@contextlib.contextmanager
def phase(name: str, times: dict[str, float]) -> Iterator[None]:
    print(f"== {name}", flush=True)
    started = time.monotonic()
    try:
        yield
    finally:
        times[name] = time.monotonic() - started
        print(f"== {name}: {times[name]:.1f} s", flush=True)


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 2.0) -> Any:
    """Poll `check` until it returns something truthy (tests.helpers.wait_until); on the deadline a
    ScenarioError naming `what`, the timeout and the last value seen. A ScenarioError raised by
    `check` (a crash-looping pod, a failing kubectl) stops the wait at once."""
    seen: list[Any] = [None]

    def probe() -> Any:
        seen[0] = check()
        return seen[0]

    try:
        return wait_until(probe, timeout=timeout, interval=interval, what=what)
    except TimeoutError:
        raise ScenarioError(f"timed out after {timeout:.0f} s waiting for {what} (last seen: {seen[0]!r})") from None


def local_metrics(spec: Path) -> dict[str, float | int]:
    """The headline metrics `kubetrader run -f` reports for the same spec on this machine."""
    from kubetrader_operator.backtest.status import headline_metrics

    with tempfile.TemporaryDirectory(prefix="e2e-local-") as tmp:
        summary = Path(tmp) / "summary.json"
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "kubetrader"),
                "run",
                "-f",
                str(spec),
                "--output",
                tmp,
                "--summary-file",
                str(summary),
            ],
            check=False,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise ScenarioError(f"kubetrader run -f {spec.name} exited {done.returncode}: {done.stderr[-2000:]}")
        return headline_metrics(json.loads(summary.read_text()))


def run_backtest(cluster: Cluster) -> None:
    """`kubectl apply -f examples/backtest-sma.yaml` -> Succeeded, with the metrics of `kubetrader run -f`."""
    # The local run meanwhile, on its own thread: the two take about as long.
    pool = ThreadPoolExecutor(1, thread_name_prefix="local-run")
    local = pool.submit(local_metrics, ROOT / "examples" / "backtest-sma.yaml")
    pool.shutdown(wait=False)
    cluster.kubectl("apply", "-f", "examples/backtest-sma.yaml")

    def finished() -> str | None:
        no_crash_loops(cluster)
        phase = (cluster.json("get", "backtest", "sma-orcl").get("status") or {}).get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    # Polled first, so a Failed Backtest stops the run at once (`kubectl wait` would sit out its timeout).
    try:
        ended = wait_for("backtest sma-orcl Succeeded or Failed", finished, 300, 2)
    except ScenarioError as exc:
        raise ScenarioError(f"{exc}\n{describe_pending(cluster)}") from None
    if ended == "Failed":
        seen = cluster.kubectl("get", "backtest/sma-orcl", "-o", "jsonpath={.status}", check=False)
        raise ScenarioError(f"backtest sma-orcl Failed: {seen}\n{describe_pending(cluster)}")
    try:
        cluster.kubectl("wait", "--for=condition=Succeeded", "backtest/sma-orcl", "--timeout=5m", timeout=330)
    except ScenarioError as exc:
        seen = cluster.kubectl("get", "backtest/sma-orcl", "-o", "jsonpath={.status}", check=False)
        raise ScenarioError(f"{exc}\nbacktest sma-orcl status: {seen}\n{describe_pending(cluster)}") from None
    table = cluster.kubectl("get", "backtests")
    print(table, end="", flush=True)
    backtest = cluster.json("get", "backtest", "sma-orcl")
    status = backtest.get("status") or {}
    if status.get("phase") != "Succeeded":
        raise ScenarioError(f"backtest sma-orcl: phase {status.get('phase')!r}, expected Succeeded: {status}")
    expected = local.result(timeout=600)
    got = status.get("metrics") or {}
    if got != expected:
        raise ScenarioError(f"backtest sma-orcl: cluster metrics {got} differ from kubetrader run -f's {expected}")
    row = next((line for line in table.splitlines() if line.startswith("sma-orcl ")), "")
    if "Succeeded" not in row or f"{expected['sharpeRatio']:.4g}"[:4] not in row:
        raise ScenarioError(f"kubectl get backtests does not show sma-orcl Succeeded with its Sharpe: {row!r}")


def run_study(cluster: Cluster) -> None:
    """A matrix Backtest and a small study over the worker Deployment, which the operator scales
    up from its minimum on queue depth and back down after the cooldown."""
    deployment = cluster.json("get", "deployment", "kubetrader-worker")
    minimum = int(deployment["metadata"]["annotations"]["kubetrader.io/min-replicas"])
    cluster.kubectl("apply", "-f", "examples/e2e/backtest-matrix.yaml")
    cluster.kubectl("apply", "-f", "examples/e2e/study-small.yaml")
    peak = wait_for(
        "the operator to scale the workers up",
        lambda: cluster.worker_replicas() > minimum and cluster.worker_replicas(),
        180,
        1,
    )
    print(f"workers scaled {minimum} -> {peak}", flush=True)
    for resource in ("backtest/e2e-matrix", "optimizationstudy/e2e-sma-small"):
        # Polled rather than `kubectl wait`: a worker crash-looping meanwhile fails the run at once.
        def succeeded(name: str = resource) -> bool:
            return no_crash_loops(cluster) and cluster.json("get", name).get("status", {}).get("phase") == "Succeeded"

        wait_for(f"{resource} Succeeded", succeeded, 900, 3)
    print(cluster.kubectl("get", "backtests,optimizationstudies"), end="", flush=True)
    cells = (cluster.json("get", "backtest", "e2e-matrix").get("status") or {}).get("cells") or {}
    if cells.get("total") != 4 or cells.get("failed"):
        raise ScenarioError(f"backtest e2e-matrix: expected 4 cells, none failed: {cells}")
    cooldown = int(deployment["metadata"]["annotations"]["kubetrader.io/cooldown-seconds"])
    wait_for(
        f"the workers back at {minimum} after the {cooldown} s cooldown",
        lambda: cluster.worker_replicas() == minimum,
        cooldown + 180,
        2,
    )
    print(f"workers back to {minimum}", flush=True)


def run_dashboard(cluster: Cluster) -> None:
    """The dashboard API (through its Service, with the chart's token) lists the Backtest and the
    study; the UI answers; MLflow has the runs."""
    token = cluster.api_token()
    for plural, names in (("backtests", {"sma-orcl", "e2e-matrix"}), ("optimizationstudies", {"e2e-sma-small"})):
        listed = cluster.http("kubetrader-api", f"/api/v1/cluster/{plural}", token=token)
        seen = {item.get("name") for item in listed.get("items", [])}
        if not names <= seen:
            raise ScenarioError(f"API /api/v1/cluster/{plural} lists {sorted(seen)}, expected {sorted(names)}")
    health = cluster.http("kubetrader-dashboard", "/_stcore/health")
    if str(health).strip() != "ok":
        raise ScenarioError(f"dashboard /_stcore/health answered {health!r}")
    mlflow_user = cluster.mlflow_credentials()
    experiments = cluster.http(
        "kubetrader-mlflow", "/api/2.0/mlflow/experiments/search", basic=mlflow_user, body={"max_results": 100}
    )
    ids = [e["experiment_id"] for e in experiments.get("experiments", [])]
    runs = cluster.http(
        "kubetrader-mlflow",
        "/api/2.0/mlflow/runs/search",
        basic=mlflow_user,
        body={"experiment_ids": ids, "max_results": 200},
    )
    count = len(runs.get("runs", []))
    if count < 4:
        raise ScenarioError(
            f"MLflow has {count} runs in {len(ids)} experiments, expected the matrix's 4 cells at least"
        )
    print(f"API lists the Backtests and the study; dashboard ok; MLflow has {count} runs", flush=True)


LIVE = "sma-paper"  # examples/live-paper.yaml
# Holds the gateway StatefulSet (and so its pod: the GC deletes dependents only once the owner is
# gone) after the operator's stop deleted it, so the book is read at the broker itself.
INSPECT_FINALIZER = "e2e.kubetrader.io/inspect"
# A client id of the scenario's own at the gateway (the runner's is the spec's, the operator's 0-99).
SCENARIO_CLIENT_ID = 917


def _condition(obj: Any, kind: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True" for c in (obj.get("status") or {}).get("conditions", [])
    )


def _gateway_book(host: str, port: int, *, buy: int = 0) -> tuple[list[Any], list[Any]]:
    """(non-zero positions, open orders) at the gateway, read with the real ib_insync client
    under the scenario's own client id; with `buy`, a market order for that many ORCL first
    (filled before the book is read)."""
    from ib_insync import IB, MarketOrder, Stock

    ib = IB()
    ib.connect(host, port, clientId=SCENARIO_CLIENT_ID, timeout=30, readonly=not buy)
    try:
        if buy:
            trade = ib.placeOrder(Stock("ORCL", "SMART", "USD"), MarketOrder("BUY", buy))
            deadline = time.monotonic() + 60
            while not trade.isDone() and time.monotonic() < deadline:
                ib.sleep(0.2)
            if trade.orderStatus.status != "Filled":
                raise ScenarioError(
                    f"the scenario's BUY {buy} ORCL at the gateway: {trade.orderStatus.status}: {trade.log}"
                )
        positions = [p for p in ib.reqPositions() if p.position]
        orders = list(ib.reqAllOpenOrders())
        return positions, orders
    finally:
        ib.disconnect()


def run_live(cluster: Cluster) -> None:
    """`kubectl apply -f examples/live-paper.yaml` brings up the gateway and the runner; with a
    position open at the broker, `kubectl delete livedeployment` ends confirmed flat there: no
    position, no open order, asked at the gateway itself."""
    # The README's `kubectl create secret generic`, made client-side and applied: kubectl sends
    # `create` of a built-in kind as protobuf, which the stand-in does not decode (415).
    secret = cluster.kubectl(
        "create", "secret", "generic", "ib-paper-credentials", "--dry-run=client", "-o", "yaml",
        "--from-literal=username=e2e-paper", "--from-literal=password=e2e-paper",
    )  # fmt: skip
    cluster.kubectl("apply", "-f", "-", stdin=secret)
    cluster.kubectl("annotate", "secret", "ib-paper-credentials", f"kubetrader.io/live-deployments={LIVE}")
    cluster.kubectl("apply", "-f", "examples/live-paper.yaml")

    def connected() -> bool:
        no_crash_loops(cluster)
        live = cluster.json("get", "livedeployment", LIVE)
        if _condition(live, "Failed"):
            raise ScenarioError(f"livedeployment {LIVE} failed: {(live.get('status') or {}).get('message')}")
        return _condition(live, "GatewayReady") and _condition(live, "Connected")

    wait_for(f"livedeployment {LIVE}: gateway ready and the runner connected to it", connected, 300, 2)
    print(
        cluster.kubectl(
            "get", "livedeployments,statefulsets,deployments", "-l", f"kubetrader.io/livedeployment={LIVE}"
        ),
        end="",
        flush=True,
    )
    gateway = f"{LIVE}-gateway"
    print("NetworkPolicies against the running pods (who may open a connection to whom):", flush=True)
    check_reachability(cluster)
    # The gateway pod's own address and port (the sandbox reaches pods; kind would need a port-forward).
    host_ip = cluster.service_url(gateway)[0].removeprefix("http://").rsplit(":", 1)[0]
    positions, _ = _gateway_book(host_ip, _pod_port(cluster, gateway), buy=10)
    if not positions:
        raise ScenarioError("no position at the gateway after the scenario's fill: the flat check would prove nothing")
    print(f"at the gateway before the stop: {[(p.contract.symbol, p.position) for p in positions]}", flush=True)
    cluster.kubectl(
        "patch", f"statefulset/{gateway}", "--type=json",
        "-p", json.dumps([{"op": "add", "path": "/metadata/finalizers/-", "value": INSPECT_FINALIZER}]),
    )  # fmt: skip
    cluster.kubectl("delete", "livedeployment", LIVE, "--timeout=300s", timeout=330)
    events = cluster.kubectl("get", "events", "--field-selector", f"involvedObject.name={LIVE}")
    if "EmergencyStopConfirmed" not in events:
        raise ScenarioError(f"no EmergencyStopConfirmed event for {LIVE}:\n{events}")
    positions, orders = _gateway_book(host_ip, _pod_port(cluster, gateway))
    if positions or orders:
        raise ScenarioError(
            f"kubectl delete livedeployment ended NOT flat at the gateway: {positions}, open orders {orders}"
        )
    print("flat at the gateway after kubectl delete livedeployment: no position, no open order", flush=True)
    held = cluster.json("get", "statefulset", gateway)
    finalizers = list(held["metadata"].get("finalizers") or [])
    index = finalizers.index(INSPECT_FINALIZER)
    cluster.kubectl(
        "patch", f"statefulset/{gateway}", "--type=json", "-p",
        json.dumps([{"op": "test", "path": f"/metadata/finalizers/{index}", "value": INSPECT_FINALIZER},
                    {"op": "remove", "path": f"/metadata/finalizers/{index}"}]),
    )  # fmt: skip
    wait_for(
        f"the pods of {LIVE} gone",
        lambda: not cluster.json("get", "pods", "-l", f"kubetrader.io/livedeployment={LIVE}")["items"],
        120,
    )


# Who reaches the data stores, MLflow, the gateway, the runner and the API (port -> allowed
# sources): the table tests/operator_live/test_network_reachability.py holds for the rendered
# chart and the operator's builders, here asked of the objects the sandbox really runs.
REACHED = ("redis:6379", "postgresql:5432", "mlflow:5000", "gateway:4004", "runner:8080", "api:8000")
IMPOSTOR_NAMESPACE = "e2e-impostor"


def _component(pod: Any) -> str:
    component = pod["metadata"].get("labels", {}).get("app.kubernetes.io/component", pod["metadata"]["name"])
    return {"backtest": "backtest-job", "study-driver": "study-job"}.get(component, component)


def check_reachability(cluster: Cluster) -> dict[str, set[str]]:
    """The stored NetworkPolicies evaluated (tests/kube/network_policy.py: Kubernetes' semantics)
    against the pods that run, with their real labels (set by the controllers, the operator and
    the Job controller), plus an impostor wearing the operator's labels in another namespace.
    ScenarioError when a destination admits other sources than the expected table says for the
    pods present. NetworkPolicies are evaluated, not enforced, in the sandbox's namespaces."""
    from tests.kube import network_policy as np
    from tests.operator_live.test_network_reachability import EXPECTED

    policies = cluster.json("get", "networkpolicies", "-A")["items"]
    pods = []
    names: dict[str, str] = {}
    for item in cluster.json("get", "pods")["items"]:
        ports = tuple(
            np.ContainerPort(int(p["containerPort"]), p.get("protocol") or "TCP", p.get("name"))
            for c in item["spec"]["containers"]
            for p in c.get("ports") or []
        )
        pod = np.Pod(item["metadata"]["name"], cluster.namespace, item["metadata"].get("labels") or {}, ports)
        pods.append(pod)
        names[pod.key] = _component(item)
    operator = next(p for p in pods if names[p.key] == "operator")
    impostor = np.Pod("impostor", IMPOSTOR_NAMESPACE, operator.labels)
    names[impostor.key] = "impostor-elsewhere"
    namespaces = np.namespace_labels(
        {i["metadata"]["name"]: i["metadata"].get("labels") or {} for i in cluster.json("get", "namespaces")["items"]}
        | {IMPOSTOR_NAMESPACE: {}}
    )
    flows = np.allowed_connections(policies, namespaces, [*pods, impostor], pods)
    table: dict[str, set[str]] = {}
    for source, destination, port in flows:
        table.setdefault(f"{names[destination]}:{port}", set()).add(names[source])
    present = set(names.values())
    wrong = {}
    for row in REACHED:
        if row.split(":")[0] not in present:
            raise ScenarioError(f"reachability: no {row.split(':')[0]} pod to check ({sorted(present)})")
        expected = EXPECTED[row] & present
        if table.get(row, set()) != expected:
            wrong[row] = (sorted(table.get(row, set())), sorted(expected))
    for row in REACHED:
        print(f"  {row:<18} <- {', '.join(sorted(table.get(row, set()))) or '(nobody)'}", flush=True)
    if wrong:
        raise ScenarioError(
            "NetworkPolicies against the running pods, destination: (allowed, expected):\n"
            + "\n".join(f"{row}: {a} != {e}" for row, (a, e) in wrong.items())
        )
    return table


def _pod_port(cluster: Cluster, statefulset: str) -> int:
    """The gateway container's API port (the Service's targetPort `api`)."""
    template = cluster.json("get", "statefulset", statefulset)["spec"]["template"]["spec"]["containers"][0]
    return int(next(p["containerPort"] for p in template["ports"] if p["name"] == "api"))


_CONFIGS: dict[Path, Any] = {}


def helm_config(cluster: Cluster) -> Any:
    """One Helm configuration per cluster, kept for the run (its release storage: the cluster's
    `helm_storage`; the sandbox uses Helm's `memory` driver, because Helm's Secret driver writes
    protobuf, which the stand-in does not decode: it answers 415, and client-go does not fall back)."""
    import helm_python

    if cluster.kubeconfig not in _CONFIGS:
        helm_python.disable_logging()
        _CONFIGS[cluster.kubeconfig] = helm_python.Config(
            kubeconfig_path=cluster.kubeconfig,
            kube_context=cluster.context,
            namespace=cluster.namespace,
            storage_driver=cluster.helm_storage,
        )
    return _CONFIGS[cluster.kubeconfig]


def no_crash_loops(cluster: Cluster) -> bool:
    """True, or ScenarioError naming a container of the release that keeps restarting (with its log)."""
    for pod in cluster.json("get", "pods", "-n", cluster.namespace)["items"]:
        status = pod.get("status") or {}
        for container in [*status.get("initContainerStatuses", []), *status.get("containerStatuses", [])]:
            if container.get("restartCount", 0) >= CRASH_LOOP_RESTARTS:
                name = pod["metadata"]["name"]
                logs = cluster.kubectl("logs", name, "-c", container["name"], "--tail=20", check=False)
                last = container.get("lastState", {}).get("terminated", {})
                raise ScenarioError(
                    f"pod {name} container {container['name']} is crash-looping "
                    f"({container['restartCount']} restarts, last exit {last.get('exitCode')} "
                    f"{last.get('reason', '')}: {last.get('message', '')!r}):\n{logs}"
                )
    return True


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
    no_crash_loops(cluster)
    return not pending and bool(cluster.json("get", "deployments", "-n", cluster.namespace)["items"])


def describe_pending(cluster: Cluster) -> str:
    return cluster.kubectl("get", "pods", "-n", cluster.namespace, "-o", "wide", check=False)


def helm(cluster: Cluster, action: str, chart_values: dict[str, Any] | None = None) -> Any:
    """`helm install|upgrade RELEASE charts/kubetrader -n kubetrader` with the real Helm (4, Go SDK).

    As `--disable-openapi-validation`: Helm's client-side check reads `/openapi/v2` as protobuf,
    which the stand-in does not serve (JSON only); the objects are still validated, by the
    server, as every write is (Helm 4 applies server-side with fieldValidation Strict)."""
    import helm_python
    from helm_python import _native
    from helm_python.config import _loads_obj, _opts

    config = helm_config(cluster)
    chart = helm_python.Chart.load(CHART)
    options = _opts(
        namespace=cluster.namespace,
        timeout_seconds=300,
        create_namespace=True if action == "install" else None,
        disable_openapi_validation=True,
        # `--force-conflicts`: the upgrade takes back fields another manager changed since (the
        # scenario stopped the operator with a patch of its replicas, which the chart sets).
        force_conflicts=True if action == "upgrade" else None,
    )
    payload = _native.call_string(
        f"helm_{action}",
        config._raw(),
        config._context_arg(None),
        chart._raw(),
        None,
        RELEASE,
        json.dumps(chart_values or cluster.values()),
        options,
    )
    return _loads_obj(payload)


def run_upgrade(cluster: Cluster) -> None:
    """`helm upgrade` with a changed value keeps the API token Secret and the worker replica count."""
    token = cluster.api_token()
    password = cluster.json("get", "secret", "kubetrader-postgresql")["data"]["password"]
    # The scaler would move the count meanwhile: the operator is stopped first (the upgrade
    # brings it back: the chart sets its replicas), so the count seen after is Helm's doing.
    cluster.set_replicas("kubetrader-operator", 0)
    wait_for(
        "the operator stopped",
        lambda: not cluster.json("get", "pods", "-l", "app.kubernetes.io/component=operator")["items"],
        120,
    )
    cluster.set_replicas("kubetrader-worker", 2)
    wait_for(
        "2 worker pods ready",
        lambda: (cluster.json("get", "deployment", "kubetrader-worker").get("status") or {}).get("readyReplicas") == 2,
        180,
    )
    values = cluster.values()
    changed = {**values, "operator": {**values.get("operator", {}), "postingLevel": "WARNING"}}
    helm(cluster, "upgrade", changed)
    operator = cluster.json("get", "deployment", "kubetrader-operator")
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    if env.get("KUBETRADER_OPERATOR_POSTING_LEVEL") != "WARNING":
        raise ScenarioError(
            f"helm upgrade did not apply the changed value: {env.get('KUBETRADER_OPERATOR_POSTING_LEVEL')}"
        )
    if cluster.api_token() != token:
        raise ScenarioError("helm upgrade replaced the API token Secret's value")
    if cluster.json("get", "secret", "kubetrader-postgresql")["data"]["password"] != password:
        raise ScenarioError("helm upgrade replaced the PostgreSQL password")
    if cluster.worker_replicas() != 2:
        raise ScenarioError(f"helm upgrade reset the worker replicas to {cluster.worker_replicas()}")
    wait_for("every workload ready after the upgrade", lambda: workloads_ready(cluster), INSTALL_TIMEOUT)


# What a release of the chart creates, asked of the cluster after `helm uninstall`.
RELEASE_KINDS = (
    "deployments", "statefulsets", "jobs", "services", "configmaps", "secrets", "serviceaccounts",
    "roles", "rolebindings", "networkpolicies", "poddisruptionbudgets", "persistentvolumeclaims",
)  # fmt: skip
KEPT_SECRETS = {"kubetrader-api-token", "kubetrader-postgresql"}
KEPT_CLAIMS = {"kubetrader-data", "kubetrader-mlflow-artifacts"}


def run_uninstall(cluster: Cluster) -> None:
    """`helm uninstall` keeps the CRDs, the PVCs and the generated Secrets (`helm.sh/resource-policy:
    keep`), and removes everything else of the release, its pods included."""
    generated = KEPT_SECRETS | {
        item["metadata"]["name"]
        for item in cluster.json("get", "secrets")["items"]
        if (item["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") == "keep"
    }
    helm_config(cluster).uninstall(RELEASE, timeout=300)

    def release_objects() -> dict[str, list[str]]:
        left: dict[str, list[str]] = {}
        for kind in RELEASE_KINDS:
            for item in cluster.json("get", kind)["items"]:
                meta = item["metadata"]
                if (meta.get("annotations") or {}).get("meta.helm.sh/release-name") != RELEASE:
                    continue
                if (meta.get("annotations") or {}).get("helm.sh/resource-policy") == "keep":
                    continue
                state = " (Terminating: finalizers " + ",".join(meta.get("finalizers") or []) + ")"
                left.setdefault(kind, []).append(meta["name"] + (state if meta.get("deletionTimestamp") else ""))
        return left

    left: dict[str, list[str]] = {}

    def removed() -> bool:
        left.clear()
        left.update(release_objects())
        pods = cluster.json("get", "pods", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
        if pods:
            left["pods"] = [p["metadata"]["name"] for p in pods]
        return not left

    try:
        wait_for("the release's objects and pods gone after helm uninstall", removed, 120, 2)
    except ScenarioError:
        raise ScenarioError(f"helm uninstall left objects of the release behind: {left}") from None
    crds = {i["metadata"]["name"] for i in cluster.json("get", "crds")["items"]}
    for crd in ("backtests.kubetrader.io", "optimizationstudies.kubetrader.io", "livedeployments.kubetrader.io"):
        if crd not in crds:
            raise ScenarioError(f"helm uninstall removed the CRD {crd}")
    secrets = {i["metadata"]["name"] for i in cluster.json("get", "secrets")["items"]}
    if not secrets >= generated:
        raise ScenarioError(f"helm uninstall removed generated Secrets: {sorted(generated - secrets)}")
    claims = {i["metadata"]["name"] for i in cluster.json("get", "pvc")["items"]}
    if not claims >= KEPT_CLAIMS:
        raise ScenarioError(f"helm uninstall removed kept PVCs: {sorted(KEPT_CLAIMS - claims)}")
    print(f"kept: CRDs, Secrets {sorted(generated)}, PVCs {sorted(KEPT_CLAIMS)}; the rest is gone", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tests.e2e.scenario", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--context")
    parser.add_argument("--namespace", default="kubetrader")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, of {', '.join(PHASES)}")
    parser.add_argument("--access", choices=("nodeport", "pod"), default="nodeport", help="how Services are reached")
    parser.add_argument(
        "--values", type=Path, default=CHART / "ci" / "default-values.yaml", help="the release's values"
    )
    args = parser.parse_args(argv)
    cluster = Cluster(args.kubeconfig, args.namespace, args.context, access=args.access, values_file=args.values)
    return run(cluster, args.phases.split(","))


def run(cluster: Cluster, phases: list[str], times: dict[str, float] | None = None) -> int:
    times = {} if times is None else times
    # As a user of the README's section would: the release's namespace as kubectl's default.
    cluster.kubectl("config", "set-context", cluster.context or "--current", f"--namespace={cluster.namespace}")
    steps: dict[str, Callable[[Cluster], None]] = {
        "backtest": run_backtest,
        "study": run_study,
        "live": run_live,
        "dashboard": run_dashboard,
        "upgrade": run_upgrade,
        "uninstall": run_uninstall,
    }
    for name in phases:
        if name not in steps:
            raise ScenarioError(f"unknown phase {name!r}: the phases are {', '.join(steps)}")
        with phase(name, times):
            steps[name](cluster)
    return 0


if __name__ == "__main__":
    sys.exit(main())
