"""`FakeKubelet`: plays kubelet and the Job controller for one Job, with real processes.

It takes the Job's container (command, args, env), runs it as a local subprocess
with the Job's paths mapped to a temporary directory (the ConfigMap volume, the
data volume, the scratch dir and the termination-message file), and writes what
Kubernetes would: a Pod per attempt (Running, then `state.terminated` with exit
code and message, honouring `terminationMessagePolicy`), and the Job's status
(`startTime`, `active`, `ready`, `failed`, `succeeded`, `Complete`/`Failed`
conditions). The Job's `podFailurePolicy` (FailJob on exit codes) and
`backoffLimit` decide whether a failed attempt is retried.

Each container's stdout and stderr go, interleaved as a container runtime keeps them, to a log
file that the emulated API serves at `pods/<name>/log` (`kubectl logs`, `--follow` included).

`program` replaces the container's argv for an attempt (e.g. to simulate an
infrastructure failure); `executables` maps command names to local paths.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.kube.cluster import EmulatedCluster
from tests.kube.emulator import Obj
from tests.kube.node import podspec
from tests.kube.node.podspec import now as _now

RUN_TIMEOUT = 120.0


class FakeKubelet:
    def __init__(self, cluster: EmulatedCluster, workdir: Path, executables: dict[str, str]) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.executables = executables

    def run_job(self, namespace: str, name: str, *, program: Callable[[int], list[str] | None] | None = None) -> Obj:
        """Run the Job's attempts to the end; returns the final Job."""
        job = self.cluster.get("Job", namespace, name)
        if job is None:
            raise LookupError(f"no Job {namespace}/{name}")
        spec = job["spec"]
        backoff_limit = int(spec.get("backoffLimit", 6))
        failed = 0
        self.cluster.patch("Job", namespace, name, {"status": {"startTime": _now(), "active": 1}}, subresource="status")
        for attempt in range(backoff_limit + 1):
            exit_code, _ = self._attempt(job, attempt, program)
            if exit_code == 0:
                return self._finish(namespace, name, succeeded=True, reason="Completed", message="", failed=failed)
            failed += 1
            if self._fails_job(spec, exit_code):
                reason = "PodFailurePolicy"
                text = f"Container engine for pod {namespace}/{name}-{attempt} failed with exit code {exit_code}"
                return self._finish(namespace, name, succeeded=False, reason=reason, message=text, failed=failed)
            self.cluster.patch("Job", namespace, name, {"status": {"failed": failed}}, subresource="status")
        text = "Job has reached the specified backoff limit"
        reason = "BackoffLimitExceeded"
        return self._finish(namespace, name, succeeded=False, reason=reason, message=text, failed=failed)

    @staticmethod
    def _fails_job(spec: Obj, exit_code: int) -> bool:
        return podspec.fails_job(spec, exit_code)

    def _finish(self, namespace: str, name: str, *, succeeded: bool, reason: str, message: str, failed: int) -> Obj:
        status = podspec.job_finished_status(succeeded=succeeded, reason=reason, message=message, failed=failed)
        return self.cluster.patch("Job", namespace, name, {"status": status}, subresource="status")

    def _attempt(self, job: Obj, attempt: int, program: Callable[[int], list[str] | None] | None) -> tuple[int, str]:
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        pod_spec = job["spec"]["template"]["spec"]
        container = pod_spec["containers"][0]
        root = self.workdir / f"{name}-{attempt}"
        root.mkdir(parents=True, exist_ok=True)  # also for a container without volumes
        mounts = self._prepare_volumes(namespace, pod_spec, container, root)
        termination_path = container.get("terminationMessagePath", "/dev/termination-log")
        termination_file = root / "termination-log"
        termination_file.touch()
        mounts[termination_path] = str(termination_file)

        def local(text: str) -> str:
            # One substitution per value, longest mount first: local paths may themselves start with /tmp.
            for mount_path in sorted(mounts, key=len, reverse=True):
                if text == mount_path or text.startswith(mount_path + "/"):
                    return mounts[mount_path] + text[len(mount_path) :]
            return text

        pod_name = f"{name}-{attempt}"
        pod = self._create_pod(job, pod_name, attempt)
        container_env = podspec.container_env(container, pod, self.cluster.get)
        argv = [local(a) for a in podspec.argv(container, container_env, [], [])]
        argv[0] = self.executables.get(argv[0], argv[0])
        if program is not None:
            argv = program(attempt) or argv
        env = {**os.environ, **{k: local(v) for k, v in container_env.items()}}
        self.cluster.patch("Job", namespace, name, {"status": {"active": 1, "ready": 1}}, subresource="status")
        started = _now()
        self.cluster.patch(
            "Pod",
            namespace,
            pod_name,
            {
                "status": {
                    "phase": "Running",
                    "startTime": started,
                    "containerStatuses": [self._state(container, {"running": {"startedAt": started}})],
                }
            },
            subresource="status",
        )
        # The container's stdout and stderr, interleaved in one log as the runtime keeps it (pods/log).
        log_file = root / f"{container['name']}.log"
        with log_file.open("wb") as log:
            self.cluster.attach_log(namespace, pod_name, container["name"], log_file)
            process = subprocess.Popen(argv, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
            try:
                returncode = process.wait(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise
        message = podspec.termination_message(
            container, termination_file.read_text(), lambda: log_file.read_text(errors="replace"), returncode
        )
        terminated = podspec.terminated(returncode, message, started)["terminated"]
        self.cluster.patch(
            "Pod",
            namespace,
            pod["metadata"]["name"],
            {
                "status": {
                    "phase": "Succeeded" if returncode == 0 else "Failed",
                    "containerStatuses": [self._state(container, {"terminated": terminated})],
                }
            },
            subresource="status",
        )
        return returncode, message

    @staticmethod
    def _state(container: Obj, state: Obj) -> Obj:
        return podspec.container_status(container, state, ready="running" in state)

    def _create_pod(self, job: Obj, pod_name: str, attempt: int) -> Obj:
        meta = job["metadata"]
        labels = {
            **job["spec"]["template"]["metadata"].get("labels", {}),
            "job-name": meta["name"],
            "batch.kubernetes.io/job-name": meta["name"],
        }
        owner = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": meta["namespace"],
                "labels": labels,
                "ownerReferences": [owner],
            },
            "spec": job["spec"]["template"]["spec"],
        }
        return self.cluster.create(pod)

    def _prepare_volumes(self, namespace: str, pod_spec: Obj, container: Obj, root: Path) -> dict[str, str]:
        """Local directories for the container's volume mounts: mount path -> local path."""
        volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
        mounts: dict[str, str] = {}
        for mount in container.get("volumeMounts", []):
            local = root / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            volume = volumes[mount["name"]]
            if "configMap" in volume:
                config_map = self.cluster.get("ConfigMap", namespace, volume["configMap"]["name"])
                if config_map is None:
                    raise LookupError(f"ConfigMap {volume['configMap']['name']} is missing: the pod would not start")
                for key, value in (config_map.get("data") or {}).items():
                    (local / key).write_text(value)
            mounts[mount["mountPath"]] = str(local)
        return mounts
