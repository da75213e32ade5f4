"""`helm test`: a tiny Backtest through the API, then MLflow and Redis must answer.

Runs in the dashboard image with the standard library and the `redis` package only. Every
check prints one line; the first failure exits 1 with what failed, which `helm test --logs`
shows.

The Backtest it submits is deleted again, pass or fail (and a leftover of a killed run before
submitting), through the Kubernetes API with the pod's own ServiceAccount, whose Role allows
`get` and `delete` of that one Backtest name and nothing else (templates/tests/test-platform.yaml).
Its Job goes with it (the Backtest owns it).
"""

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

API = os.environ["KUBETRADER_API_URL"].rstrip("/")
TOKEN = os.environ["KUBETRADER_API_TOKEN"]
NAME = os.environ["KUBETRADER_TEST_BACKTEST"]
TIMEOUT = float(os.environ.get("KUBETRADER_TEST_TIMEOUT", "300"))
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
GROUP_VERSION = "kubetrader.io/v1alpha1"


@dataclass(frozen=True)
class Kube:
    """Where the Kubernetes API is and who this pod is there."""

    url: str
    token: str
    namespace: str
    ca_file: str | None = None


def in_cluster(directory: str = SERVICE_ACCOUNT_DIR) -> Kube:
    """The API server as every in-cluster client finds it: the kubelet's KUBERNETES_SERVICE_HOST/PORT,
    the mounted ServiceAccount token, namespace and CA (kubernetes.io/docs/tasks/run-application/
    access-api-from-pod/)."""
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
    host = f"[{host}]" if ":" in host else host
    with open(f"{directory}/token") as token, open(f"{directory}/namespace") as namespace:
        return Kube(f"https://{host}:{port}", token.read().strip(), namespace.read().strip(), f"{directory}/ca.crt")


def fail(message: str) -> None:
    print(f"FAIL {message}", flush=True)
    sys.exit(1)


def call(method: str, url: str, body: object = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {TOKEN}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        fail(f"{method} {url}: HTTP {exc.code} {exc.read()[:500]!r}")
    except OSError as exc:
        fail(f"{method} {url}: {exc}")
    try:
        return json.loads(raw) if raw.strip().startswith((b"{", b"[")) else raw.decode()
    except ValueError:
        return raw.decode(errors="replace")


def delete_backtest(kube: Kube, name: str) -> None:
    """Delete the Backtest `name` (absent already: nothing to do); its Job is collected with it."""
    url = f"{kube.url}/apis/{GROUP_VERSION}/namespaces/{kube.namespace}/backtests/{name}"
    request = urllib.request.Request(url, method="DELETE")
    request.add_header("Authorization", f"Bearer {kube.token}")
    context = ssl.create_default_context(cafile=kube.ca_file) if kube.url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=15, context=context):
            pass
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            fail(f"deleting Backtest {name}: HTTP {exc.code} {exc.read()[:300]!r}")
        return
    except OSError as exc:
        fail(f"deleting Backtest {name}: {exc}")
    print(f"ok   Backtest {name} deleted", flush=True)


def backtest(kube: Kube) -> None:
    """Submit, wait for Succeeded, and delete the Backtest whatever happened in between."""
    delete_backtest(kube, NAME)  # a leftover of a run that was killed before its clean-up
    try:
        submit_and_wait()
    finally:
        delete_backtest(kube, NAME)


def submit_and_wait() -> None:
    document = {
        "apiVersion": "kubetrader.io/v1alpha1",
        "kind": "Backtest",
        "metadata": {"name": NAME, "labels": {"kubetrader.io/helm-test": "true"}},
        "spec": {
            "strategy": {"path": "strategies.sma_crossover.SMACrossover", "params": {"fast": 5, "slow": 20}},
            "data": {"symbols": ["ORCL"], "start": "2014-01-01", "end": "2014-06-30", "timeframe": "1d"},
            "broker": {"cash": 100000},
            "tracking": {"enabled": False},
        },
    }
    call("POST", f"{API}/api/v1/backtests", document)
    print(f"ok   Backtest {NAME} submitted through the API", flush=True)
    deadline = time.monotonic() + TIMEOUT
    phase = None
    while time.monotonic() < deadline:
        listed = call("GET", f"{API}/api/v1/cluster/backtests")
        items = listed.get("items", []) if isinstance(listed, dict) else []
        item = next((i for i in items if isinstance(i, dict) and i.get("name") == NAME), {})
        phase = item.get("phase")
        if phase == "Succeeded":
            print(f"ok   Backtest {NAME} Succeeded", flush=True)
            return
        if phase == "Failed":  # said here: the clean-up deletes the Backtest and its status with it
            fail(f"Backtest {NAME} Failed: {json.dumps(item)[:1000]}")
        time.sleep(3)
    fail(f"Backtest {NAME} not Succeeded after {TIMEOUT:g} s (phase {phase})")


def mlflow() -> None:
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        print("skip MLflow: none configured", flush=True)
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=15) as response:
            body = response.read().decode(errors="replace").strip()
    except OSError as exc:
        fail(f"MLflow {uri}/health: {exc}")
    if body != "OK":
        fail(f"MLflow {uri}/health answered {body[:200]!r}")
    print(f"ok   MLflow {uri} answers", flush=True)


def redis_ping() -> None:
    import redis

    url = os.environ["KUBETRADER_REDIS_URL"]
    try:
        answer = redis.Redis.from_url(url, socket_timeout=10).ping()
    except redis.RedisError as exc:
        fail(f"Redis: {exc}")
    if answer is not True:
        fail(f"Redis PING answered {answer!r}")
    print("ok   Redis answers PING (with its password)", flush=True)


if __name__ == "__main__":
    mlflow()
    redis_ping()
    backtest(in_cluster())
    print("all checks passed", flush=True)
