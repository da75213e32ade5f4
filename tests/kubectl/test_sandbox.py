"""`make sandbox` as a user runs it: start it, follow its `export KUBECONFIG=...`, use kubectl, Ctrl-C."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from tests.helpers import ROOT
from tests.kube.kubectl import Kubectl

pytestmark = pytest.mark.slow
START_TIMEOUT = 90.0


class Output:
    """The sandbox's stdout, read line by line on a thread (a pipe read must never block the test)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def until(self, prefix: str, timeout: float) -> str:
        """Lines up to the first starting with `prefix`; that line is returned."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"the sandbox printed no {prefix!r} within {timeout} s: {''.join(self.seen)!r}")


def test_sandbox_serves_the_readme_flow_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.kube.sandbox", "--workdir", str(tmp_path / "sandbox")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        output = Output(process)
        kubeconfig = Path(output.until("export KUBECONFIG=", START_TIMEOUT).strip().split("=", 1)[1])
        assert output.seen[0].startswith("emulated Kubernetes API on http://127.0.0.1:")
        output.until("  kubectl get backtests", 10)  # the commands to try follow
        kubectl = Kubectl(kubeconfig, tmp_path / "home")
        assert kubectl("apply", "-f", str(ROOT / "examples/backtest-sma.yaml")).strip() == (
            "backtest.kubetrader.io/sma-orcl created"
        )
        kubectl("wait", "--for=condition=Succeeded", "backtest/sma-orcl", "--timeout=240s", timeout=260)
        out = kubectl("get", "backtests")
        assert out.split()[:8] == ["NAME", "STRATEGY", "SYMBOLS", "PHASE", "SHARPE", "RETURN", "MAXDD", "AGE"]
        assert "Succeeded" in out
        assert "SMACrossover on ORCL" in kubectl("logs", "job/bt-sma-orcl")
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=60) == 0
        output.until("stopped in", 10)
        assert any("not a cluster" in line for line in output.seen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
