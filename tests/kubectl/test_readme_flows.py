"""The README's cluster commands, verbatim, with a real kubectl against the emulated API.

The real operator runs in-process (kopf) and the kubelet stand-in runs the Job's container
with the real engine, so every column, event and log line below is what the engine and the
operator produced, read back the way a user reads it.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, wait_until
from tests.kube.cluster import EmulatedCluster
from tests.kube.kubectl import Kubectl
from tests.kube.kubelet import FakeKubelet

pytestmark = pytest.mark.slow

NS = "default"  # the README's commands name no namespace
JOB = "bt-sma-orcl"


@pytest.fixture
def kubectl(kube_cluster: EmulatedCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Kubectl:
    monkeypatch.chdir(ROOT)  # the README's paths are relative to the repository
    return Kubectl(kube_cluster.kubeconfig, tmp_path / "home")


def table(text: str) -> list[dict[str, str]]:
    """kubectl's columns (split on runs of two or more spaces) as one dict per row."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = re.split(r"\s{2,}", lines[0].strip())
    return [dict(zip(header, re.split(r"\s{2,}", line.strip()), strict=True)) for line in lines[1:]]


def header(text: str) -> list[str]:
    return re.split(r"\s{2,}", text.splitlines()[0].strip())


def test_readme_backtest_flow_with_real_kubectl(
    kube_cluster: EmulatedCluster,
    operator_runner: Callable[[], Any],
    fake_kubelet: FakeKubelet,
    kubectl: Kubectl,
) -> None:
    """apply -> wait -> get / get bt / get kubetrader -> describe -> logs -> children -> delete, one engine run."""
    with operator_runner():
        applied = kubectl("apply", "-f", "examples/backtest-sma.yaml")
        assert applied.strip() == "backtest.kubetrader.io/sma-orcl created"
        wait_until(lambda: kube_cluster.get("Job", NS, JOB), timeout=20, what="the Job")
        runner = threading.Thread(target=fake_kubelet.run_job, args=(NS, JOB))
        runner.start()
        try:
            waited = kubectl("wait", "--for=condition=Succeeded", "backtest/sma-orcl", "--timeout=120s")
        finally:
            runner.join()
        assert waited.strip() == "backtest.kubetrader.io/sma-orcl condition met"
        (pod,) = kube_cluster.select("Pod", NS, labels=f"job-name={JOB}")
        # The engine's own summary: the termination message the kubelet recorded for its container.
        metrics = json.loads(pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"])["metrics"]

        out = kubectl("get", "backtests")
        assert header(out) == ["NAME", "STRATEGY", "SYMBOLS", "PHASE", "SHARPE", "RETURN", "MAXDD", "AGE"]
        (row,) = table(out)
        assert row["NAME"] == "sma-orcl"
        assert row["STRATEGY"] == "strategies.sma_crossover.SMACrossover"
        assert row["SYMBOLS"] == '["ORCL"]'
        assert row["PHASE"] == "Succeeded"
        assert float(row["SHARPE"]) == pytest.approx(metrics["sharpe_ratio"], rel=1e-9)
        assert float(row["RETURN"]) == pytest.approx(metrics["total_return"], rel=1e-9)
        assert float(row["MAXDD"]) == pytest.approx(metrics["max_drawdown"], rel=1e-9)
        assert re.fullmatch(r"\d+s|\d+m\d*s?", row["AGE"])
        without_age = [{k: v for k, v in r.items() if k != "AGE"} for r in table(out)]
        assert [{k: v for k, v in r.items() if k != "AGE"} for r in table(kubectl("get", "bt"))] == without_age
        by_category = kubectl("get", "kubetrader")  # the CRDs' category: all three kinds are listed
        assert "backtest.kubetrader.io/sma-orcl" in by_category

        described = kubectl("describe", "backtest", "sma-orcl")
        assert re.search(r"^Name:\s+sma-orcl$", described, re.MULTILINE)
        assert re.search(r"Phase:\s+Succeeded", described)
        events = described.split("Events:", 1)[1]  # found through involvedObject field selectors
        assert "JobCreated" in events and "Succeeded" in events

        logs = kubectl("logs", f"job/{JOB}")  # kubectl finds the Job's pod through its selector
        assert re.search(r"SMACrossover on ORCL  2005-01-\d\d \.\. 2014-12-31", logs)  # the engine's header line
        assert "risk events:" in logs

        pods = table(kubectl("get", "pods"))
        assert [(p["NAME"], p["READY"], p["STATUS"], p["RESTARTS"]) for p in pods] == [
            (pod["metadata"]["name"], "0/1", "Completed", "0")
        ]
        jobs = table(kubectl("get", "jobs"))
        assert [(j["NAME"], j["STATUS"], j["COMPLETIONS"]) for j in jobs] == [(JOB, "Complete", "1/1")]
        config_maps = table(kubectl("get", "configmaps"))
        assert [(c["NAME"], c["DATA"]) for c in config_maps] == [(JOB, "1")]
        events_out = kubectl("get", "events")
        assert header(events_out) == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        assert ("Succeeded", "backtest/sma-orcl") in {(e["REASON"], e["OBJECT"]) for e in table(events_out)}

        deleted = kubectl("delete", "-f", "examples/backtest-sma.yaml")
        assert deleted.strip() == 'backtest.kubetrader.io "sma-orcl" deleted from default namespace'
        gone = kubectl.run("get", "backtests")
        assert gone.returncode == 0 and gone.stdout == ""
        assert gone.stderr.strip() == "No resources found in default namespace."


def test_explain_reads_the_backtest_schema(kubectl: Kubectl) -> None:
    spec = kubectl("explain", "backtest.spec")
    assert "KIND:       Backtest" in spec and "VERSION:    v1alpha1" in spec
    assert re.search(r"strategy\s+<Object> -required-", spec)
    commission = kubectl("explain", "backtest.spec.broker.commission")
    assert "model" in commission and "perShare" in commission
    assert "restartPolicy" in kubectl("explain", "job.spec.template.spec")  # a built-in kind's own schema
