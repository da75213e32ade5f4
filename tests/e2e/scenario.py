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
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"
PHASES = ("backtest", "study", "live", "dashboard")


class ScenarioError(AssertionError):
    """A check of the scenario failed: the message says what was expected and what was seen."""


@dataclass
class Cluster:
    """How the scenario reaches the cluster: kubectl's config and the release's namespace."""

    kubeconfig: Path
    namespace: str
    context: str | None = None
    home: Path | None = None

    def kubectl(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        if self.home is not None:
            env["HOME"] = str(self.home)
        command = [str(KUBECTL) if KUBECTL.exists() else "kubectl"]
        if self.context:
            command += ["--context", self.context]
        command += list(args)
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise ScenarioError(f"kubectl {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))


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
    """Poll `check` until it returns something truthy; ScenarioError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise ScenarioError(f"timed out after {timeout:.0f} s waiting for {what} (last seen: {last!r})")


def local_metrics(spec: Path) -> dict[str, float | int]:
    """The headline metrics `kubetrader run -f` reports for the same spec on this machine."""
    from kubetrader_operator.backtest.status import headline_metrics

    with tempfile.TemporaryDirectory(prefix="e2e-local-") as tmp:
        summary = Path(tmp) / "summary.json"
        subprocess.run(
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
            check=True,
            cwd=ROOT,
            capture_output=True,
            timeout=600,
        )
        return headline_metrics(json.loads(summary.read_text()))


def run_backtest(cluster: Cluster) -> None:
    """`kubectl apply -f examples/backtest-sma.yaml` -> Succeeded, with the metrics of `kubetrader run -f`."""
    cluster.kubectl("apply", "-f", "examples/backtest-sma.yaml")
    cluster.kubectl("wait", "--for=condition=Succeeded", "backtest/sma-orcl", "--timeout=5m", timeout=330)
    table = cluster.kubectl("get", "backtests")
    print(table, end="", flush=True)
    backtest = cluster.json("get", "backtest", "sma-orcl")
    status = backtest.get("status") or {}
    if status.get("phase") != "Succeeded":
        raise ScenarioError(f"backtest sma-orcl: phase {status.get('phase')!r}, expected Succeeded: {status}")
    expected = local_metrics(ROOT / "examples" / "backtest-sma.yaml")
    got = status.get("metrics") or {}
    if got != expected:
        raise ScenarioError(f"backtest sma-orcl: cluster metrics {got} differ from kubetrader run -f's {expected}")
    row = next((line for line in table.splitlines() if line.startswith("sma-orcl ")), "")
    if "Succeeded" not in row or f"{expected['sharpeRatio']:.4g}"[:4] not in row:
        raise ScenarioError(f"kubectl get backtests does not show sma-orcl Succeeded with its Sharpe: {row!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tests.e2e.scenario", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--context")
    parser.add_argument("--namespace", default="kubetrader")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, of {', '.join(PHASES)}")
    args = parser.parse_args(argv)
    cluster = Cluster(args.kubeconfig, args.namespace, args.context)
    return run(cluster, args.phases.split(","))


def run(cluster: Cluster, phases: list[str], times: dict[str, float] | None = None) -> int:
    times = {} if times is None else times
    cluster.kubectl("config", "set-context", "--current", f"--namespace={cluster.namespace}")
    steps: dict[str, Callable[[Cluster], None]] = {"backtest": run_backtest}
    for name in phases:
        if name not in steps:
            raise ScenarioError(f"unknown phase {name!r}: the phases are {', '.join(steps)}")
        with phase(name, times):
            steps[name](cluster)
    return 0


if __name__ == "__main__":
    sys.exit(main())
