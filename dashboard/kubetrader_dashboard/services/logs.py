"""Where the Logs tab's text comes from.

Locally: the engine's log file of each run beside its result (`backtests/{id}.log`,
`studies/{name}.log`; kubetrader.results.runlog). In a cluster: the container log of each
of our pods (Jobs of Backtests and study drivers, workers, the operator) through the
API server's `pods/log` subresource, and the Events of our resources and their children.
Keys name a source without a path, so a request can only read what the listing offers.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import deque
from pathlib import Path
from typing import Any

from kubetrader_dashboard.models.logs import EventRow, Events, LogSource, LogSources, LogText
from kubetrader_dashboard.services.cluster import ClusterService
from kubetrader_dashboard.services.results import ResultStore

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
# The operator's labels (kubetrader_operator.labels): the dashboard does not import the operator.
PART_OF = "app.kubernetes.io/part-of=kubetrader"
COMPONENT = "app.kubernetes.io/component"
BACKTEST_LABEL = "kubetrader.io/backtest"
OUR_KINDS = frozenset({"Backtest", "OptimizationStudy", "LiveDeployment"})


class LogNotFoundError(LookupError):
    pass


def _mtime(path: Path) -> str:
    return dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.UTC).isoformat(timespec="seconds")


def _tail(lines: Any, tail: int) -> tuple[list[str], bool]:
    kept: deque[str] = deque(maxlen=tail)
    total = 0
    for line in lines:
        kept.append(line.rstrip("\n"))
        total += 1
    return list(kept), total > tail


class LogService:
    def __init__(self, results_dir: Path, store: ResultStore, cluster: ClusterService) -> None:
        self.results_dir = results_dir
        self.store = store
        self.cluster = cluster

    # -- local files ----------------------------------------------------------------------
    def _local(self, kind: str | None, name: str | None) -> list[LogSource]:
        out: list[LogSource] = []
        names = self.store.names()
        for path in sorted((self.results_dir / "backtests").glob("*.log")):
            result_name = names.get(path.stem, path.stem)
            out.append(LogSource(key=f"backtest.{path.stem}", kind="Backtest", name=result_name, origin="local",
                                 updated=_mtime(path)))  # fmt: skip
        for path in sorted((self.results_dir / "studies").glob("*.log")):
            out.append(LogSource(key=f"study.{path.stem}", kind="OptimizationStudy", name=path.stem, origin="local",
                                 updated=_mtime(path)))  # fmt: skip
        return out

    def _local_path(self, key: str) -> Path | None:
        prefix, _, stem = key.partition(".")
        folder = {"backtest": "backtests", "study": "studies"}.get(prefix)
        if folder is None:
            return None
        if not _SAFE.match(stem):
            raise LogNotFoundError(key)
        path = self.results_dir / folder / f"{stem}.log"
        if not path.is_file():
            raise LogNotFoundError(key)
        return path

    # -- the cluster -----------------------------------------------------------------------
    def _pods(self) -> list[Any]:
        core = self.cluster.core()
        return list(core.list_namespaced_pod(self.cluster.namespace, label_selector=PART_OF, _request_timeout=5).items)

    @staticmethod
    def _pod_source(pod: Any) -> LogSource:
        labels = pod.metadata.labels or {}
        if BACKTEST_LABEL in labels:
            kind, name = "Backtest", labels[BACKTEST_LABEL]
        else:
            kind, name = labels.get(COMPONENT, "pod"), pod.metadata.name
        started = pod.status.start_time.isoformat() if pod.status and pod.status.start_time else None
        return LogSource(key=f"pod.{pod.metadata.name}", kind=kind, name=name, origin="cluster", updated=started)

    def sources(self, *, kind: str | None = None, name: str | None = None) -> LogSources:
        items = self._local(kind, name)
        reason: str | None = None
        if self.cluster.available:
            try:
                items += [self._pod_source(pod) for pod in self._pods()]
            except Exception as exc:  # the API server's errors vary; the type only (messages hold URLs)
                reason = f"pod logs unreachable ({type(exc).__name__})"
        else:
            reason = self.cluster.reason
        if kind:
            items = [s for s in items if s.kind == kind]
        if name:
            items = [s for s in items if name in s.name]
        items.sort(key=lambda s: s.updated or "", reverse=True)
        return LogSources(items=items, cluster_reason=reason)

    def text(self, key: str, *, tail: int) -> LogText:
        path = self._local_path(key)
        if path is not None:
            with path.open(encoding="utf-8", errors="replace") as handle:
                lines, truncated = _tail(handle, tail)
            return LogText(key=key, lines=lines, truncated=truncated)
        prefix, _, pod = key.partition(".")
        if prefix != "pod" or not _SAFE.match(pod) or not self.cluster.available:
            raise LogNotFoundError(key)
        from kubernetes.client.exceptions import ApiException

        try:
            # GET /api/v1/namespaces/{ns}/pods/{name}/log?tailLines=N (the pods/log subresource)
            body = self.cluster.core().read_namespaced_pod_log(
                pod, self.cluster.namespace, tail_lines=tail + 1, _request_timeout=10
            )
        except ApiException as exc:
            if exc.status == 404:
                raise LogNotFoundError(key) from None
            raise
        lines, truncated = _tail(str(body).splitlines(), tail)
        return LogText(key=key, lines=lines, truncated=truncated)

    def events(self, *, kind: str | None = None, name: str | None = None) -> Events:
        """Events of our custom resources and of the Jobs and pods they own (Kubernetes Events API, core/v1)."""
        if not self.cluster.available:
            return Events(available=False, reason=self.cluster.reason)
        try:
            ours = {s.name for s in self.sources().items if s.origin == "cluster"}
            listed = self.cluster.core().list_namespaced_event(self.cluster.namespace, _request_timeout=5).items
        except Exception as exc:  # the API server's errors vary; the type only
            return Events(available=False, reason=f"events unreachable ({type(exc).__name__})")
        rows = []
        for event in listed:
            obj = event.involved_object
            if obj.kind not in OUR_KINDS and obj.name not in ours and not str(obj.name or "").startswith("bt-"):
                continue
            if kind and obj.kind != kind:
                continue
            if name and name not in str(obj.name):
                continue
            when = event.last_timestamp or event.event_time or event.first_timestamp
            rows.append(
                EventRow(
                    time=when.isoformat() if when else None,
                    type=event.type,
                    reason=event.reason,
                    kind=obj.kind,
                    name=obj.name,
                    message=event.message,
                    count=event.count,
                )
            )
        rows.sort(key=lambda r: r.time or "", reverse=True)
        return Events(items=rows)
