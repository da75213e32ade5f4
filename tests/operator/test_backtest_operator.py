"""The real operator (kopf, in-process) against the emulated Kubernetes API, scenario by scenario."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from tests.helpers import EXAMPLES, assert_valid_children_owned_by, free_port, wait_until
from tests.kube.cluster import EmulatedCluster
from tests.kube.kubelet import FakeKubelet

NS = "research"
JOB = "bt-sma-orcl"
EXAMPLE = yaml.safe_load((EXAMPLES / "backtest-sma.yaml").read_text())

pytestmark = pytest.mark.slow


def _backtest(name: str = "sma-orcl", **spec_changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(EXAMPLE)
    doc["metadata"] = {"name": name, "namespace": NS}
    for path, value in spec_changes.items():
        node = doc["spec"]
        *parents, leaf = path.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return doc


def _status(cluster: EmulatedCluster, name: str = "sma-orcl") -> dict[str, Any]:
    obj = cluster.get("Backtest", NS, name)
    return (obj or {}).get("status") or {}


def _phase_is(cluster: EmulatedCluster, phase: str, name: str = "sma-orcl") -> dict[str, Any] | None:
    status = _status(cluster, name)
    return status if status.get("phase") == phase else None


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def _events(cluster: EmulatedCluster, reason: str) -> list[dict[str, Any]]:
    return [e for e in cluster.select("Event", NS) if e.get("reason") == reason]


def test_applied_backtest_gets_a_valid_config_map_and_job_owned_by_it(
    kube_cluster: EmulatedCluster, operator_runner: Callable[[], Any]
) -> None:
    with operator_runner():
        backtest = kube_cluster.create(_backtest())
        job = wait_until(lambda: kube_cluster.get("Job", NS, JOB), timeout=20, what="the Job")
        config_map = kube_cluster.get("ConfigMap", NS, JOB)
        wait_until(lambda: _events(kube_cluster, "JobCreated"), timeout=10, what="a JobCreated event")
        status = wait_until(lambda: _phase_is(kube_cluster, "Pending"), timeout=10, what="Pending")
    assert config_map is not None
    assert_valid_children_owned_by(backtest, job, config_map)
    document = yaml.safe_load(config_map["data"]["backtest.yaml"])
    assert document["spec"]["strategy"] == EXAMPLE["spec"]["strategy"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/kubetrader/engine:test"
    assert container["args"][:3] == ["run", "-f", "/etc/kubetrader/backtest.yaml"]
    accepted = _condition(status, "Accepted")
    assert (accepted["status"], accepted["reason"], accepted["observedGeneration"]) == ("True", "JobCreated", 1)
    assert status["job"]["name"] == JOB


def test_backtest_runs_end_to_end_with_the_same_metrics_as_a_local_run(
    kube_cluster: EmulatedCluster, operator_runner: Callable[[], Any], fake_kubelet: FakeKubelet, tmp_path: Path
) -> None:
    summary_file = tmp_path / "local-summary.json"
    local = subprocess.run(
        [
            str(Path(sys.executable).parent / "kubetrader"),
            "run",
            "-f",
            str(EXAMPLES / "backtest-sma.yaml"),
            "--output",
            str(tmp_path / "local"),
            "--summary-file",
            str(summary_file),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert local.returncode == 0, local.stderr
    expected = json.loads(summary_file.read_text())["metrics"]
    with operator_runner():
        kube_cluster.create(_backtest())
        wait_until(lambda: kube_cluster.get("Job", NS, JOB), timeout=20, what="the Job")
        fake_kubelet.run_job(NS, JOB)
        status = wait_until(lambda: _phase_is(kube_cluster, "Succeeded"), timeout=20, what="Succeeded")
        wait_until(lambda: _events(kube_cluster, "Succeeded"), timeout=10, what="a Succeeded event")
    metrics = status["metrics"]
    assert metrics["sharpeRatio"] == pytest.approx(expected["sharpe_ratio"])
    assert metrics["totalReturn"] == pytest.approx(expected["total_return"])
    assert metrics["maxDrawdown"] == pytest.approx(expected["max_drawdown"])
    assert metrics["numTrades"] == int(expected["num_trades"])
    assert _condition(status, "Succeeded")["status"] == "True"
    assert _condition(status, "Running")["status"] == "False"
    assert status["startTime"] and status["completionTime"] and status["resultPath"]
    assert "Sharpe 0." in _events(kube_cluster, "Succeeded")[0]["message"]


def test_failing_strategy_ends_failed_with_the_engines_message_and_no_retry(
    kube_cluster: EmulatedCluster, operator_runner: Callable[[], Any], fake_kubelet: FakeKubelet
) -> None:
    with operator_runner():
        kube_cluster.create(_backtest(strategy__path="strategies.no_such_module.Nothing"))
        wait_until(lambda: kube_cluster.get("Job", NS, JOB), timeout=20, what="the Job")
        job = fake_kubelet.run_job(NS, JOB)
        status = wait_until(lambda: _phase_is(kube_cluster, "Failed"), timeout=20, what="Failed")
    assert job["status"]["failed"] == 1  # FailJob on exit code 2: one attempt only
    failed = _condition(status, "Failed")
    assert failed["reason"] == "EngineFailed"
    assert "no module named 'strategies.no_such_module'" in failed["message"]
    assert len(kube_cluster.select("Pod", NS, labels=f"job-name={JOB}")) == 1


def test_infrastructure_failure_is_retried_until_it_succeeds(
    kube_cluster: EmulatedCluster, operator_runner: Callable[[], Any], fake_kubelet: FakeKubelet
) -> None:
    def flaky(attempt: int) -> list[str] | None:
        exit_3 = [sys.executable, "-c", "import sys; print('redis unreachable'); sys.exit(3)"]
        return exit_3 if attempt == 0 else None  # then the real engine

    with operator_runner():
        kube_cluster.create(_backtest())
        wait_until(lambda: kube_cluster.get("Job", NS, JOB), timeout=20, what="the Job")
        job = fake_kubelet.run_job(NS, JOB, program=flaky)
        status = wait_until(lambda: _phase_is(kube_cluster, "Succeeded"), timeout=20, what="Succeeded")
    assert job["status"]["failed"] == 1 and job["status"]["succeeded"] == 1
    assert len(kube_cluster.select("Pod", NS, labels=f"job-name={JOB}")) == 2
    assert status["metrics"]["numTrades"] > 0


def test_infrastructure_failures_beyond_the_backoff_limit_end_failed(
    kube_cluster: EmulatedCluster, operator_runner: Callable[[], Any], fake_kubelet: FakeKubelet
) -> None:
    always_3 = [sys.executable, "-c", "import sys; print('disk full'); sys.exit(3)"]
    with operator_runner():
        doc = _backtest()
        doc["metadata"]["annotations"] = {"kubetrader.io/backoff-limit": "1"}
        kube_cluster.create(doc)
        wait_until(lambda: kube_cluster.get("Job", NS, JOB), timeout=20, what="the Job")
        job = fake_kubelet.run_job(NS, JOB, program=lambda attempt: always_3)
        status = wait_until(lambda: _phase_is(kube_cluster, "Failed"), timeout=20, what="Failed")
    assert job["status"]["failed"] == 2
    failed = _condition(status, "Failed")
    assert failed["reason"] == "RetriesExhausted"
    assert "disk full" in failed["message"]  # FallbackToLogsOnError


def test_spec_that_slips_past_the_schema_fails_clearly_and_others_still_run(
    kube_cluster: EmulatedCluster, operator_runner: Callable[[], Any], fake_kubelet: FakeKubelet
) -> None:
    with operator_runner():
        # The CRD schema cannot know a commission preset needs no numbers; the models do.
        kube_cluster.create(_backtest("bad-commission", broker__commission={"model": "ib-pro", "perShare": 0.01}))
        kube_cluster.create(_backtest("no-data", data__symbols=["NODATA"]))
        kube_cluster.create(_backtest("good"))
        invalid = wait_until(lambda: _phase_is(kube_cluster, "Failed", "bad-commission"), timeout=20, what="invalid")
        wait_until(lambda: kube_cluster.get("Job", NS, "bt-no-data"), timeout=20, what="no-data Job")
        wait_until(lambda: kube_cluster.get("Job", NS, "bt-good"), timeout=20, what="good Job")
        with ThreadPoolExecutor(2) as pool:  # two nodes run the two pods side by side
            list(pool.map(lambda job: fake_kubelet.run_job(NS, job), ["bt-no-data", "bt-good"]))
        no_data = wait_until(lambda: _phase_is(kube_cluster, "Failed", "no-data"), timeout=20, what="no-data Failed")
        wait_until(lambda: _phase_is(kube_cluster, "Succeeded", "good"), timeout=20, what="good Succeeded")
    assert _condition(invalid, "Failed")["reason"] == "InvalidSpec"
    assert "only apply to model 'custom'" in _condition(invalid, "Failed")["message"]
    assert kube_cluster.get("Job", NS, "bt-bad-commission") is None
    assert _condition(no_data, "Failed")["reason"] == "EngineFailed"
    assert "NODATA" in _condition(no_data, "Failed")["message"]


def test_restarted_operator_adopts_the_existing_job_and_completes(
    kube_cluster: EmulatedCluster, operator_runner: Callable[[], Any], fake_kubelet: FakeKubelet
) -> None:
    with operator_runner():
        kube_cluster.create(_backtest())
        job = wait_until(lambda: kube_cluster.get("Job", NS, JOB), timeout=20, what="the Job")
    # As if the operator died right after creating the Job: no record that it handled the Backtest.
    backtest = kube_cluster.get("Backtest", NS, "sma-orcl")
    assert backtest is not None
    forget = {k: None for k in backtest["metadata"].get("annotations", {}) if k.startswith("kopf.")}
    kube_cluster.patch("Backtest", NS, "sma-orcl", {"metadata": {"annotations": forget}})
    kube_cluster.patch("Backtest", NS, "sma-orcl", {"status": None}, subresource="status")
    with operator_runner():
        wait_until(lambda: _phase_is(kube_cluster, "Pending"), timeout=20, what="accepted again")
        fake_kubelet.run_job(NS, JOB)
        wait_until(lambda: _phase_is(kube_cluster, "Succeeded"), timeout=20, what="Succeeded")
    jobs = kube_cluster.select("Job", NS)
    assert [j["metadata"]["uid"] for j in jobs] == [job["metadata"]["uid"]]


def test_job_that_never_starts_fails_after_the_start_timeout(
    kube_cluster: EmulatedCluster, operator_runner: Callable[[], Any]
) -> None:
    with operator_runner():
        kube_cluster.create(_backtest())
        status = wait_until(lambda: _phase_is(kube_cluster, "Failed"), timeout=20, what="Failed")
    assert _condition(status, "Failed")["reason"] == "JobNotStarted"


def test_job_that_vanishes_fails_the_backtest(
    kube_cluster: EmulatedCluster, operator_runner: Callable[[], Any]
) -> None:
    with operator_runner():
        kube_cluster.create(_backtest())
        wait_until(lambda: kube_cluster.get("Job", NS, JOB), timeout=20, what="the Job")
        kube_cluster.delete("Job", NS, JOB)
        status = wait_until(lambda: _phase_is(kube_cluster, "Failed"), timeout=20, what="Failed")
    assert _condition(status, "Failed")["reason"] == "JobVanished"


def test_deleting_the_backtest_leaves_no_orphans(
    kube_cluster: EmulatedCluster, operator_runner: Callable[[], Any], fake_kubelet: FakeKubelet
) -> None:
    with operator_runner():
        kube_cluster.create(_backtest())
        wait_until(lambda: kube_cluster.get("Job", NS, JOB), timeout=20, what="the Job")
        fake_kubelet.run_job(NS, JOB)
        wait_until(lambda: _phase_is(kube_cluster, "Succeeded"), timeout=20, what="Succeeded")
        kube_cluster.delete("Backtest", NS, "sma-orcl")
        wait_until(lambda: kube_cluster.get("Backtest", NS, "sma-orcl") is None, timeout=20, what="deleted")
    kube_cluster.collect_garbage()
    assert kube_cluster.select("Job", NS) == []
    assert kube_cluster.select("ConfigMap", NS) == []
    assert kube_cluster.select("Pod", NS) == []


def test_a_recreated_backtest_waits_for_the_deleted_ones_job_and_never_reports_its_run(
    kube_cluster: EmulatedCluster, operator_runner: Callable[[], Any], fake_kubelet: FakeKubelet
) -> None:
    """Issue 13: the 409 path adopted the old Job and the new Backtest showed the old Sharpe."""
    assert kube_cluster.emulator is not None
    with operator_runner():
        old = kube_cluster.create(_backtest())
        wait_until(lambda: kube_cluster.get("Job", NS, JOB), timeout=20, what="the Job")
        fake_kubelet.run_job(NS, JOB)
        first = wait_until(lambda: _phase_is(kube_cluster, "Succeeded"), timeout=20, what="Succeeded")
        # The collector runs after the owner's DELETE has returned: hold it back, as a busy one would.
        kube_cluster.emulator.gc.enabled = False
        kube_cluster.delete("Backtest", NS, "sma-orcl")
        wait_until(lambda: kube_cluster.get("Backtest", NS, "sma-orcl") is None, timeout=20, what="deleted")
        new = kube_cluster.create(_backtest(strategy__params={"fast": 20, "slow": 100}))

        def waiting() -> dict[str, Any] | None:
            status = _status(kube_cluster)
            conditions = {c["type"]: c for c in status.get("conditions") or []}
            accepted = conditions.get("Accepted") or {}
            return status if accepted.get("reason") == "WaitingForOldJob" else None

        status = wait_until(waiting, timeout=20, what="WaitingForOldJob")
        assert status["phase"] == "Pending" and "metrics" not in status
        assert old["metadata"]["uid"] in _condition(status, "Accepted")["message"]
        stale = kube_cluster.get("Job", NS, JOB)
        assert stale is not None and stale["metadata"]["ownerReferences"][0]["uid"] == old["metadata"]["uid"]

        kube_cluster.emulator.gc.enabled = True
        kube_cluster.collect_garbage()

        def new_job() -> dict[str, Any] | None:
            job = kube_cluster.get("Job", NS, JOB)
            owned = job is not None and job["metadata"]["ownerReferences"][0]["uid"] == new["metadata"]["uid"]
            return job if owned else None

        wait_until(new_job, timeout=20, what="the new Backtest's own Job")
        fake_kubelet.run_job(NS, JOB)
        done = wait_until(lambda: _phase_is(kube_cluster, "Succeeded"), timeout=20, what="Succeeded again")
    assert done["metrics"]["sharpeRatio"] != pytest.approx(first["metrics"]["sharpeRatio"])
    config_map = kube_cluster.get("ConfigMap", NS, JOB)
    assert config_map is not None and "fast: 20" in config_map["data"]["backtest.yaml"]


LONGEST_NAME = "sma-orcl-" + "x" * 54  # 63 characters: the longest name a label value can hold


def test_a_backtest_with_the_longest_allowed_name_runs_end_to_end_and_a_longer_one_is_refused(
    kube_cluster: EmulatedCluster, operator_runner: Callable[[], Any], fake_kubelet: FakeKubelet
) -> None:
    """Issue 13: a 64+ character name went into label values, which the API server refuses (422),
    after the Backtest was created; the CRD now refuses such a name at apply time."""
    from kubetrader_operator.crdgen.crds import name_message
    from kubetrader_operator.labels import BACKTEST_LABEL, backtest_child_name

    with pytest.raises(Exception, match="is invalid") as refused:
        kube_cluster.create(_backtest(LONGEST_NAME + "x"))
    assert str(refused.value) == (
        f'Backtest.kubetrader.io "{LONGEST_NAME}x" is invalid: <nil>: Invalid value: {name_message("Backtest")}'
    )

    job_name = backtest_child_name(LONGEST_NAME)
    with operator_runner():
        kube_cluster.create(_backtest(LONGEST_NAME))
        job = wait_until(lambda: kube_cluster.get("Job", NS, job_name), timeout=20, what="the Job")
        fake_kubelet.run_job(NS, job_name)
        status = wait_until(lambda: _phase_is(kube_cluster, "Succeeded", LONGEST_NAME), timeout=20, what="Succeeded")
    assert status["metrics"]["sharpeRatio"] and len(job_name) <= 52
    assert job["metadata"]["labels"][BACKTEST_LABEL] == LONGEST_NAME
    selected = f"{BACKTEST_LABEL}={LONGEST_NAME}"
    assert [j["metadata"]["name"] for j in kube_cluster.select("Job", NS, labels=selected)] == [job_name]
    assert [c["metadata"]["name"] for c in kube_cluster.select("ConfigMap", NS, labels=selected)] == [job_name]


def test_deleting_the_backtest_with_orphan_propagation_keeps_its_job_and_config_map(
    kube_cluster: EmulatedCluster, operator_runner: Callable[[], Any]
) -> None:
    """`kubectl delete --cascade=orphan`: the children stay, without the owner's reference."""
    with operator_runner():
        kube_cluster.create(_backtest())
        wait_until(lambda: kube_cluster.get("Job", NS, JOB), timeout=20, what="the Job")
        wait_until(lambda: kube_cluster.get("ConfigMap", NS, JOB), timeout=20, what="the ConfigMap")
        kube_cluster.delete("Backtest", NS, "sma-orcl", policy="Orphan")
        wait_until(lambda: kube_cluster.get("Backtest", NS, "sma-orcl") is None, timeout=20, what="deleted")
    kube_cluster.collect_garbage()
    for kind in ("Job", "ConfigMap"):
        child = kube_cluster.get(kind, NS, JOB)
        assert child is not None, kind
        assert "ownerReferences" not in child["metadata"], child["metadata"]


def _health(url: str) -> dict[str, Any]:
    """The operator's probes, as kopf serves them at its liveness endpoint (cached by kopf for 10 s)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return cast(dict[str, Any], json.loads(response.read()))


def _start_job(cluster: EmulatedCluster, name: str) -> None:
    """What the Job controller writes once the Job's pod is scheduled: the Backtest runs (and stays unfinished)."""
    started = {"startTime": "2026-01-02T03:04:05Z", "active": 1, "ready": 1}
    cluster.patch("Job", NS, f"bt-{name}", {"status": started}, subresource="status")


def test_unfinished_backtests_cost_the_operator_no_asyncio_task_each(
    kube_cluster: EmulatedCluster, operator_runner: Callable[..., Any]
) -> None:
    """Issue 20: a kopf timer per unfinished Backtest ran an asyncio task each (kopf docs/timers.rst,
    "System resources"); about 50 MB of operator RSS per 1,000 live Backtests. One loop serves them all."""
    count = 20
    url = f"http://127.0.0.1:{free_port()}/healthz"

    def reading_after(moment: float) -> dict[str, Any]:
        """A reading of the probes taken after `moment` (kopf refreshes them at most every 10 s)."""
        return wait_until(
            lambda: (health := _health(url))["asyncio_tasks"]["at"] > moment and health,
            timeout=30,
            what="a fresh reading of the probes",
            retry_on=(OSError,),  # the endpoint is not up yet
        )

    with operator_runner(f"--liveness={url}"):
        names = ["sma-orcl", *(f"live-{i}" for i in range(count))]
        for batch in (names[:1], names[1:]):  # the first one: every watch is up when `before` is read
            for name in batch:
                kube_cluster.create(_backtest(name))
            for name in batch:
                wait_until(lambda: kube_cluster.get("Job", NS, f"bt-{name}"), timeout=20, what=f"the Job of {name}")  # noqa: B023
                _start_job(kube_cluster, name)
            for name in batch:
                wait_until(lambda: _phase_is(kube_cluster, "Running", name), timeout=20, what=f"{name} Running")  # noqa: B023
            if batch == names[:1]:
                before = reading_after(time.time())
        after = reading_after(time.time())
    tasks = after["asyncio_tasks"]["count"] - before["asyncio_tasks"]["count"]
    assert tasks < count // 2, (before["asyncio_tasks"], after["asyncio_tasks"])
    assert after["resyncing"] == {"unfinished_backtests": count + 1, "unfinished_studies": 0}
    assert all(not (kube_cluster.get("Backtest", NS, n) or {})["metadata"].get("finalizers") for n in names)


def test_a_job_change_the_operator_never_saw_is_caught_by_the_resync_loop(
    kube_cluster: EmulatedCluster, operator_runner: Callable[..., Any], fake_kubelet: FakeKubelet
) -> None:
    """A missed watch event (simulated: the Job no longer carries the label the Job watch selects on)
    must not leave the Backtest Pending forever: the resync loop reads the Job by name."""
    from kubetrader_operator.labels import BACKTEST_LABEL

    with operator_runner():
        kube_cluster.create(_backtest())
        wait_until(lambda: _phase_is(kube_cluster, "Pending"), timeout=20, what="Pending")
        kube_cluster.patch("Job", NS, JOB, {"metadata": {"labels": {BACKTEST_LABEL: None}}})
        fake_kubelet.run_job(NS, JOB)
        status = wait_until(lambda: _phase_is(kube_cluster, "Succeeded"), timeout=20, what="Succeeded")
        wait_until(lambda: _events(kube_cluster, "Succeeded"), timeout=10, what="a Succeeded event")  # kopf posts it
    assert status["metrics"]["sharpeRatio"]
