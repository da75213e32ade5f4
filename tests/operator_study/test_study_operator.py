"""The real operator (kopf, in-process) runs OptimizationStudies against the emulated Kubernetes API,
a real Redis and real `kubetrader worker` processes."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetrader.optimize.naming import trial_batch
from kubetrader.queue.local import local_workers
from kubetrader.queue.server import redis_client
from kubetrader.queue.stats import batch_stats
from kubetrader_operator.study.builders import study_key_of
from tests.helpers import EXAMPLES, assert_valid_children_owned_by, wait_until
from tests.kube.cluster import EmulatedCluster
from tests.kube.emulator import Obj
from tests.kube.kubelet import FakeKubelet

NS = "research"
NAME = "tiny"
JOB = "study-tiny"
EXAMPLE = yaml.safe_load((EXAMPLES / "e2e" / "study-small.yaml").read_text())

pytestmark = pytest.mark.slow


@pytest.fixture
def study_env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The operator's Redis is the test's (settings are read per call, so clear the cached ones)."""
    from kubetrader_operator.settings import get_settings
    from kubetrader_operator.study.settings import get_study_settings

    monkeypatch.setenv("KUBETRADER_OPERATOR_REDIS_URL", redis_url)
    monkeypatch.setenv("KUBETRADER_OPERATOR_STOP_WAIT_SECONDS", "20")
    get_settings.cache_clear()
    get_study_settings.cache_clear()
    yield redis_url
    get_settings.cache_clear()
    get_study_settings.cache_clear()


def _study(**spec_changes: Any) -> dict[str, Any]:
    """4 trials, 2 at a time, 2 years of ORCL; no MLflow (the study's own tests cover it)."""
    doc = copy.deepcopy(EXAMPLE)
    doc["metadata"] = {"name": NAME, "namespace": NS}
    doc["spec"]["backtest"]["data"].update(start="2012-01-01", end="2013-12-31")
    doc["spec"]["backtest"]["tracking"] = {"enabled": False}
    doc["spec"].update(trials=4, parallelism=2)
    doc["spec"].update(spec_changes)
    return doc


def _wait(condition: Callable[[], Obj | None], *, timeout: float, what: str) -> Obj:
    value = wait_until(condition, timeout=timeout, what=what)
    assert value is not None
    return value


def _status(cluster: EmulatedCluster) -> dict[str, Any]:
    return (cluster.get("OptimizationStudy", NS, NAME) or {}).get("status") or {}


def _phase_is(cluster: EmulatedCluster, phase: str) -> dict[str, Any] | None:
    status = _status(cluster)
    return status if status.get("phase") == phase else None


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def _events(cluster: EmulatedCluster, reason: str) -> list[Obj]:
    return [e for e in cluster.select("Event", NS) if e.get("reason") == reason]


def test_applied_study_gets_a_valid_config_map_and_driver_job_owned_by_it(
    kube_cluster: EmulatedCluster, operator_runner: Callable[[], Any], study_env: str
) -> None:
    with operator_runner():
        study = kube_cluster.create(_study())
        job = _wait(lambda: kube_cluster.get("Job", NS, JOB), timeout=60, what="the driver Job")
        config_map = kube_cluster.get("ConfigMap", NS, JOB)
        wait_until(lambda: _events(kube_cluster, "JobCreated"), timeout=10, what="a JobCreated event")
        status = _wait(lambda: _phase_is(kube_cluster, "Pending"), timeout=10, what="Pending")
    assert config_map is not None
    assert_valid_children_owned_by(study, job, config_map)
    document = yaml.safe_load(config_map["data"]["study.yaml"])
    assert (document["kind"], document["spec"]["trials"], document["spec"]["parallelism"]) == (
        "OptimizationStudy",
        4,
        2,
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/kubetrader/engine:test"
    assert [container["command"][0], *container["args"][:3]] == [
        "kubetrader",
        "run",
        "-f",
        "/etc/kubetrader/study.yaml",
    ]
    assert {"name": "KUBETRADER_REDIS_URL", "value": study_env} in container["env"]
    accepted = _condition(status, "Accepted")
    assert (accepted["status"], accepted["reason"], accepted["observedGeneration"]) == ("True", "JobCreated", 1)
    key = f"{NS}.{NAME}.{study['metadata']['uid'].replace('-', '')[:8]}"  # namespace and uid: no tenant shares it
    assert (status["job"]["name"], status["objective"], status["studyName"]) == (JOB, "sharpe_ratio", key)
    assert study["metadata"]["name"] == NAME


def test_study_runs_on_two_workers_with_progress_in_status_and_the_summarys_best_value(
    kube_cluster: EmulatedCluster,
    operator_runner: Callable[[], Any],
    fake_kubelet: FakeKubelet,
    study_env: str,
    tmp_path: Path,
) -> None:
    seen: list[tuple[str, int]] = []  # (phase, trialsDone) as a user polling status sees them
    worker_env = {"KUBETRADER_DATA_DIR": str(tmp_path / "worker-data")}
    with local_workers(study_env, 2, output_dir=tmp_path / "worker-results", env=worker_env), operator_runner():
        kube_cluster.create(_study())
        wait_until(lambda: kube_cluster.get("Job", NS, JOB), timeout=60, what="the driver Job")
        errors: list[BaseException] = []

        def kubelet() -> None:
            try:
                fake_kubelet.run_job(NS, JOB)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        thread = threading.Thread(target=kubelet, daemon=True)
        thread.start()

        def finished() -> dict[str, Any] | None:
            status = _status(kube_cluster)
            if status.get("phase"):
                seen.append((status["phase"], int(status.get("trialsDone") or 0)))
            return status if status.get("phase") in {"Succeeded", "Failed"} else None

        status = _wait(finished, timeout=90, what="the study to finish")
        thread.join(30)
        wait_until(lambda: _events(kube_cluster, "Succeeded"), timeout=10, what="a Succeeded event")
    assert not errors, errors
    assert status["phase"] == "Succeeded", status
    pod = kube_cluster.select("Pod", NS, labels=f"job-name={JOB}")[0]
    summary = json.loads(pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"])
    assert status["trialsDone"] == summary["trialsComplete"] == 4
    assert (status["trialsFailed"], status["trialsRunning"]) == (0, 0)
    assert status["bestValue"] == pytest.approx(summary["bestValue"])
    assert status["bestParams"] == summary["bestParams"]
    assert status["startTime"] and status["completionTime"]
    assert _condition(status, "Succeeded")["status"] == "True" and _condition(status, "Running")["status"] == "False"
    running = [done for phase, done in seen if phase == "Running"]
    assert running and max(running) >= 1, seen  # progress reached status before the driver exited
    assert running == sorted(running), seen  # and never went backwards
    assert "best sharpe_ratio" in _events(kube_cluster, "Succeeded")[0]["message"]


def test_study_whose_constraints_exclude_every_point_fails_with_the_reason_and_no_job(
    kube_cluster: EmulatedCluster, operator_runner: Callable[[], Any], study_env: str
) -> None:
    with operator_runner():
        kube_cluster.create(_study(constraints=["fast > slow"]))
        status = _wait(lambda: _phase_is(kube_cluster, "Failed"), timeout=20, what="Failed")
        events = wait_until(lambda: _events(kube_cluster, "Failed"), timeout=10, what="a Failed event")
    failed = _condition(status, "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert "constraints exclude every point" in failed["message"]
    assert _condition(status, "Accepted")["status"] == "False"
    assert "InvalidSpec" in events[0]["message"]
    assert kube_cluster.get("Job", NS, JOB) is None


def _running_pod(cluster: EmulatedCluster, job: Obj) -> None:
    """The Job's pod, Running: first thing, so the operator's start timeout (6 s in tests) holds under load."""
    ns = job["metadata"]["namespace"]
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": JOB, "uid": job["metadata"]["uid"], "controller": True}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{JOB}-0", "namespace": ns, "labels": {"job-name": JOB}, "ownerReferences": [owner]},
        "spec": job["spec"]["template"]["spec"],
    }
    cluster.create(pod)
    cluster.patch("Pod", ns, f"{JOB}-0", {"status": {"phase": "Running"}}, subresource="status")
    # and the Job's own status, as the Job controller writes it for a ready pod (the operator reads this)
    started = {"startTime": job["metadata"]["creationTimestamp"], "active": 1, "ready": 1}
    cluster.patch("Job", ns, JOB, {"status": started}, subresource="status")


def _start_driver(cluster: EmulatedCluster, job: Obj, root: Path) -> subprocess.Popen[bytes]:
    """Play kubelet for a pod that keeps running: a Running Pod, and the Job's container as a local process."""
    _running_pod(cluster, job)
    container = job["spec"]["template"]["spec"]["containers"][0]
    config_map = cluster.get("ConfigMap", job["metadata"]["namespace"], JOB)
    assert config_map is not None
    spec_dir, data_dir = root / "spec", root / "data"
    spec_dir.mkdir(parents=True)
    (spec_dir / "study.yaml").write_text(config_map["data"]["study.yaml"])
    mapped = {"/etc/kubetrader": str(spec_dir), "/data": str(data_dir), "/dev/termination-log": str(root / "log")}

    def local(text: str) -> str:
        return next((mapped[p] + text[len(p) :] for p in mapped if text == p or text.startswith(p + "/")), text)

    env = {**os.environ, **{e["name"]: local(e["value"]) for e in container["env"]}, "HOME": str(root)}
    env.update(TMPDIR=str(root), MPLCONFIGDIR=str(root / "mpl"))
    argv = [str(Path(sys.executable).parent / "kubetrader"), *(local(a) for a in container["args"])]
    return subprocess.Popen(argv, env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def test_deleting_a_study_stops_its_driver_and_cancels_its_queued_trials(
    kube_cluster: EmulatedCluster, operator_runner: Callable[[], Any], study_env: str, tmp_path: Path
) -> None:
    client = redis_client(study_env)
    with operator_runner():
        batch = trial_batch(study_key_of(kube_cluster.create(_study())))
        job = _wait(lambda: kube_cluster.get("Job", NS, JOB), timeout=60, what="the driver Job")
        driver = _start_driver(kube_cluster, job, tmp_path / "pod")
        try:  # no workers: the driver's first `parallelism` trials wait in the queue
            wait_until(lambda: batch_stats(client, batch).queued == 2, timeout=30, what="2 queued trials")
            kube_cluster.delete("OptimizationStudy", NS, NAME)
            wait_until(lambda: kube_cluster.get("Job", NS, JOB) is None, timeout=20, what="the Job deleted")
            wait_until(lambda: not kube_cluster.select("Pod", NS), timeout=20, what="the driver pod deleted")
        finally:
            driver.terminate()  # what the kubelet does to a deleted pod's container
            driver.wait(20)
        wait_until(lambda: kube_cluster.get("OptimizationStudy", NS, NAME) is None, timeout=20, what="the study gone")
        stopped = wait_until(lambda: _events(kube_cluster, "Stopped"), timeout=10, what="a Stopped event")
    stats = batch_stats(client, batch)
    assert (stats.queued, stats.running, stats.cancelled) == (0, 0, 2)
    assert batch in stopped[0]["message"]
    # the garbage collector deletes the study's ConfigMap after the study is gone, as on a cluster
    wait_until(lambda: kube_cluster.get("ConfigMap", NS, JOB) is None, timeout=10, what="the ConfigMap collected")
    client.close()


OTHER_TENANT = "default"  # the other namespace the chart's test values watch


def test_a_namesake_study_in_another_namespace_never_touches_the_first_ones_trials_or_best(
    kube_cluster: EmulatedCluster, operator_runner: Callable[[], Any], study_env: str, tmp_path: Path
) -> None:
    """Issue 21 finding 6: studyName keyed the batch, the progress and the Optuna study globally, so tenant
    B creating and deleting a study named like tenant A's cancelled A's queued trials and copied A's best
    into B's status. Now the key holds the namespace and the uid (kubetrader.optimize.naming)."""
    from kubetrader.optimize.progress import publish_progress
    from kubetrader.optimize.study import StudyProgress

    client = redis_client(study_env)
    with operator_runner():
        tenant_a = kube_cluster.create(_study())
        batch_a = trial_batch(study_key_of(tenant_a))
        job = _wait(lambda: kube_cluster.get("Job", NS, JOB), timeout=60, what="A's driver Job")
        driver = _start_driver(kube_cluster, job, tmp_path / "pod-a")
        try:  # no workers: A's first `parallelism` trials wait in the queue
            wait_until(lambda: batch_stats(client, batch_a).queued == 2, timeout=60, what="A's 2 queued trials")
            driver.kill()  # SIGKILL: A's trials stay queued, and its progress is ours to write
            driver.wait(20)
            best = StudyProgress(done=3, best_value=1.25, best_params={"fast": 7, "slow": 40})
            publish_progress(client, study_key_of(tenant_a), best)  # what A's driver publishes after a result
            wait_until(lambda: _status(kube_cluster).get("bestValue") == 1.25, timeout=60, what="A's best in status")

            doc_b = _study()
            doc_b["metadata"]["namespace"] = OTHER_TENANT
            kube_cluster.create(doc_b)
            job_b = _wait(lambda: kube_cluster.get("Job", OTHER_TENANT, JOB), timeout=60, what="B's driver Job")
            tenant_b = _wait(lambda: kube_cluster.get("OptimizationStudy", OTHER_TENANT, NAME), timeout=60, what="B")
            publish_progress(client, study_key_of(tenant_b), StudyProgress(done=1))  # B's own driver, no best yet

            def b_status_with_its_own_progress() -> dict[str, Any] | None:
                found = kube_cluster.get("OptimizationStudy", OTHER_TENANT, NAME) or {}
                status = found.get("status") or {}
                return status if status.get("trialsDone") == 1 else None

            status_b = _wait(b_status_with_its_own_progress, timeout=60, what="B's status from B's progress")
            kube_cluster.delete("OptimizationStudy", OTHER_TENANT, NAME)
            stopped = wait_until(  # B's delete handler ran: it cancelled B's trials
                lambda: [e for e in kube_cluster.select("Event", OTHER_TENANT) if e.get("reason") == "Stopped"],
                timeout=60,
                what="B stopped",
            )
            stats = batch_stats(client, batch_a)
            status_a = _status(kube_cluster)
        finally:
            driver.terminate()
            driver.wait(20)
    client.close()
    assert job_b["metadata"]["uid"] != job["metadata"]["uid"]
    assert trial_batch(study_key_of(tenant_b)) in stopped[0]["message"]
    assert (stats.queued, stats.cancelled) == (2, 0), stats  # B's delete cancelled none of A's trials
    assert "bestValue" not in status_b and "bestParams" not in status_b, status_b  # A's best never reached B
    assert status_b["studyName"] != status_a["studyName"]
    assert (status_a["bestValue"], status_a["bestParams"], status_a["trialsDone"]) == (1.25, {"fast": 7, "slow": 40}, 3)
