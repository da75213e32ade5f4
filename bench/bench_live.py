"""Emergency-stop latency against the TWS peer: 10 open orders and 5 positions -> confirmed flat.

Cases, each with and without a 0.5 s position-report lag: the stop alone (connect +
cancel + flatten + confirm), the `kubetrader live emergency-stop` process, and the whole path
through the operator: `kubectl delete livedeployment` on the emulated API -> kopf delete
handler -> gateway (runner unreachable) -> confirmed flat -> finalizer gone.

Run: .venv/bin/python bench/bench_live.py [repeats]. Prints a table; goal < 5 s plus the settling window.
Columns "stop" and "rest": the stop's own time (its report's `seconds`: cancel, close,
settle) and the rest of the case's time (for the CLI: interpreter start-up, imports,
connect, exit), medians; the settling window is inside "stop".
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kubetrader.live.broker import OrderRequest
from kubetrader.live.ib_broker import IBBroker
from kubetrader.live.stop import StopSettings, emergency_stop
from kubetrader.live.testing.tws_peer import DEFAULT_DATA_DIR, TwsPeer

SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE"]
TOKEN_KEY = "KUBETRADER_OPERATOR_LIVE_RUNNER_TOKEN_KEY"


Run = tuple[
    float, bool, str, float | None
]  # seconds, confirmed flat (and at the peer), why not, the stop's own seconds


def one_run(data_dir: Path, lag: float = 0.0, cli: bool = False) -> Run:
    """The stop alone; `lag` s of position-report lag at the peer; `cli`: the real CLI process.
    A run that is not flat says why (the exit code and the report's message), so a "not flat"
    in the table can be told apart: a timeout under load, a block, or a false flat."""
    with TwsPeer(data_dir=data_dir) as peer:
        peer.faults.position_lag = lag
        for symbol in SYMBOLS:
            peer.seed_position(symbol, 100)
        trader = IBBroker("127.0.0.1", peer.port, 1)
        trader.connect()
        for i in range(10):
            trader.place_order(OrderRequest(f"rest-{i}", SYMBOLS[i % 5], "BUY", 10, "LMT", 0.01))
        while len(peer.open_orders()) < 10:
            trader.poll(0.01)
        trader.disconnect()
        if cli:
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "kubetrader.cli.main", "live", "emergency-stop", "--port", str(peer.port)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            elapsed = time.perf_counter() - started
            ok = done.returncode == 0 and not peer.open_orders() and not peer.positions()
            why = "" if ok else _why(done.returncode, done.stdout + done.stderr, peer)
            return elapsed, ok, why, _report_seconds(done.stdout)
        stopper = IBBroker("127.0.0.1", peer.port, 999)
        started = time.perf_counter()
        stopper.connect()
        report = emergency_stop(stopper, timeout=30)
        elapsed = time.perf_counter() - started
        stopper.disconnect()
        ok = report.flat and not peer.open_orders() and not peer.positions()
        return elapsed, ok, "" if ok else _why(0 if report.flat else 3, report.message, peer), report.seconds


def _report_seconds(stdout: str) -> float | None:
    """The stop's own seconds from the report the CLI prints as its first line (JSON)."""
    try:
        return float(json.loads(stdout.splitlines()[0])["seconds"])
    except (IndexError, ValueError, KeyError):
        return None


def _why(code: int, output: str, peer: TwsPeer) -> str:
    """Exit code, the report's message (the CLI prints it as JSON) and what the peer holds."""
    found = re.search(r'"message": "([^"]*)"', output)
    message = found.group(1) if found else output.strip().splitlines()[-1:] or ["no output"]
    return f"exit {code}: {message if isinstance(message, str) else message[0]}; peer holds {peer.positions()}"


def operator_run(data_dir: Path, lag: float = 0.0) -> Run:
    """Delete -> finalizer gone, timed, with the real operator against the emulated API."""
    import copy
    import os

    import kubernetes.config.kube_config
    import yaml
    from kopf.testing import KopfRunner

    root = str(Path(__file__).resolve().parents[1])
    if sys.path[0] != root:
        sys.path.insert(0, root)  # the repo's tests package, before any installed one named `tests`
    from tests.fixtures.kube import TEST_OPERATOR_ENV
    from tests.fixtures.live import paper_credentials_secret
    from tests.helpers import EXAMPLES, free_port
    from tests.kube.cluster import EmulatedCluster
    from tests.kube.crd_validation import load_crds

    with TwsPeer(data_dir=data_dir) as peer, tempfile.TemporaryDirectory() as work:
        peer.faults.position_lag = lag
        for symbol in SYMBOLS:
            peer.seed_position(symbol, 100)
        trader = IBBroker("127.0.0.1", peer.port, 1)
        trader.connect()
        for i in range(10):
            trader.place_order(OrderRequest(f"rest-{i}", SYMBOLS[i % 5], "BUY", 10, "LMT", 0.01))
        while len(peer.open_orders()) < 10:
            trader.poll(0.01)
        trader.disconnect()
        with EmulatedCluster(load_crds().values(), workdir=Path(work), namespaces=["bench"]) as cluster:
            assert cluster.emulator is not None
            cluster.emulator.register("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy")
            os.environ.update(
                {
                    "KUBECONFIG": str(cluster.kubeconfig),
                    "KUBETRADER_OPERATOR_METRICS_PORT": "0",
                    "KUBETRADER_OPERATOR_LIVE_GATEWAY_ADDRESS": f"127.0.0.1:{peer.port}",
                    "KUBETRADER_OPERATOR_LIVE_RUNNER_URL": f"http://127.0.0.1:{free_port()}",
                    "KUBETRADER_OPERATOR_LIVE_HTTP_TIMEOUT_SECONDS": "1",
                    # what the chart mounts from its generated runner-key Secret (the operator refuses without)
                    "KUBETRADER_OPERATOR_LIVE_RUNNER_TOKEN_KEY": TEST_OPERATOR_ENV[
                        "KUBETRADER_OPERATOR_LIVE_RUNNER_TOKEN_KEY"
                    ],
                }
            )
            kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(cluster.kubeconfig)
            from kubetrader_operator import kube
            from kubetrader_operator.live.settings import get_live_settings

            kube.reset_client()
            get_live_settings.cache_clear()
            doc = copy.deepcopy(yaml.safe_load((EXAMPLES / "live-paper.yaml").read_text()))
            doc["metadata"] = {"name": "bench", "namespace": "bench"}
            doc["spec"]["symbols"] = SYMBOLS
            doc["spec"]["stopPolicy"]["retrySeconds"] = 0.5
            args = ["run", "--all-namespaces", "--standalone", "-m", "kubetrader_operator.main"]
            with KopfRunner(args, timeout=60):
                cluster.create(paper_credentials_secret("bench", "bench"))  # the Secret opts in to it
                cluster.create(doc)
                deadline = time.monotonic() + 60
                while cluster.get("StatefulSet", "bench", "bench-gateway") is None:
                    if time.monotonic() > deadline:  # never wait forever on a deployment the operator refused
                        status = (cluster.get("LiveDeployment", "bench", "bench") or {}).get("status")
                        raise RuntimeError(f"no gateway StatefulSet after 60 s; status: {status}")
                    time.sleep(0.01)
                started = time.perf_counter()
                cluster.delete("LiveDeployment", "bench", "bench")
                while cluster.get("LiveDeployment", "bench", "bench") is not None:
                    time.sleep(0.005)
                elapsed = time.perf_counter() - started
            ok = not peer.open_orders() and not peer.positions()
            return elapsed, ok, "" if ok else f"finalizer gone but the peer holds {peer.positions()}", None


def main() -> None:
    args = sys.argv[1:] if __name__ == "__main__" else []
    repeats = int(args[0]) if args and args[0].isdigit() else 5  # `bench/run.py live` passes "live"
    with tempfile.TemporaryDirectory() as tmp:
        source = next(DEFAULT_DATA_DIR.glob("orcl-*.txt"))
        for symbol in SYMBOLS:
            shutil.copy(source, Path(tmp) / f"{symbol.lower()}-data.txt")
        data = Path(tmp)
        cases: dict[str, Callable[[], Run]] = {
            "emergency stop, 10 orders + 5 positions (connect+confirm)": lambda: one_run(data),
            "emergency stop, same book, 0.5 s position lag": lambda: one_run(data, 0.5),
            "CLI process: kubetrader live emergency-stop": lambda: one_run(data, cli=True),
            "CLI process, 0.5 s position lag": lambda: one_run(data, 0.5, cli=True),
            "operator: delete -> confirmed flat -> finalizer gone": lambda: operator_run(data),
            "operator: delete -> finalizer gone, 0.5 s position lag": lambda: operator_run(data, 0.5),
        }
        settle = StopSettings().settle_window
        print(f"goal: < 5 s plus the settling window ({settle:g} s) = {5 + settle:g} s")
        print(
            f"{'case':<58} {'runs':>4} {'median s':>9} {'max s':>7} {'stop':>5} {'rest':>5} {'all flat':>8}", flush=True
        )
        for case, run in cases.items():
            _print_case(case, [run() for _ in range(repeats)])


def _print_case(case: str, runs: list[Run]) -> None:
    """One row as soon as its runs are done (a long bench shows what it has)."""
    times = [t for t, _, _, _ in runs]
    stops = [s for _, _, _, s in runs if s is not None]
    stop, rest = (
        (f"{statistics.median(stops):.2f}", f"{statistics.median(t - s for t, _, _, s in runs if s is not None):.2f}")
        if stops
        else ("-", "-")
    )
    print(
        f"{case:<58} {len(runs):>4} {statistics.median(times):>9.3f} {max(times):>7.3f} {stop:>5} {rest:>5} "
        f"{all(ok for _, ok, _, _ in runs)!s:>8}",
        flush=True,
    )
    for _, _, why, _ in runs:
        if why:
            print(f"  not flat: {why}", flush=True)


if __name__ == "__main__":
    main()
