"""`helm test`: a tiny Backtest through the API, then MLflow and Redis must answer.

Runs in the dashboard image with the standard library and the `redis` package only. Every
check prints one line; the first failure exits 1 with what failed, which `helm test --logs`
shows.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

API = os.environ["KUBETRADER_API_URL"].rstrip("/")
TOKEN = os.environ["KUBETRADER_API_TOKEN"]
NAME = os.environ["KUBETRADER_TEST_BACKTEST"]
TIMEOUT = float(os.environ.get("KUBETRADER_TEST_TIMEOUT", "300"))


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


def backtest() -> None:
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
        phase = next((i.get("phase") for i in items if i.get("name") == NAME), None)
        if phase == "Succeeded":
            print(f"ok   Backtest {NAME} Succeeded", flush=True)
            return
        if phase == "Failed":
            fail(f"Backtest {NAME} Failed: kubectl describe backtest {NAME}")
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
    backtest()
    print("all checks passed", flush=True)
