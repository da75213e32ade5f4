"""MLflow: experiment counts, recent and failed runs, the experiment table, comparisons.

The overview is one snapshot of per-experiment figures (runs, failed, recent, newest, best
run), reused for `cache_seconds`; filters cut it by experiment. How it is taken depends on
the store. A database store (SQLite, PostgreSQL) answers with SQL over MLflow's own tables
(`services.mlflow_sql`): a GROUP BY, tens of milliseconds at 10,000 runs where reading every
run took seconds, and run lists are pages of a query. Any other store (a tracking server, a
file store) has no count query: a search returns whole runs, so the client path reads light
rows of every run with `MlflowClient` and counts in Python; its run lists are cut from that
snapshot. Both paths give the same answers
(tests/dashboard/test_mlflow_sql.py).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetrader import defaults
from kubetrader.redaction import redact_uri
from kubetrader_dashboard.models.common import Page
from kubetrader_dashboard.models.mlflow import Comparison, ExperimentRow, MlflowOverview, RunComparison, RunRow
from kubetrader_dashboard.services.mlflow_records import ExperimentStats, RunRecord

if TYPE_CHECKING:
    import sqlalchemy
    from mlflow import MlflowClient


# The tag keys kubetrader.tracking writes on experiments and runs (kubetrader.tracking.naming).
LEVELS = ("project", "asset_class", "strategy_family", "strategy")
MANAGED_TAG = "kubetrader.managed"
SHOWN_METRICS = ("sharpe_ratio", "total_return", "max_drawdown", "annual_volatility")
SCORE = "sharpe_ratio"  # an experiment's best run has the highest
PAGE_SIZE = 50_000  # mlflow's SEARCH_MAX_RESULTS_THRESHOLD
WEEK_MS = 7 * 24 * 3600 * 1000


class MlflowUnavailableError(RuntimeError):
    """The tracking store did not answer."""


@dataclass(frozen=True)
class _Experiment:
    experiment_id: str
    name: str
    levels: dict[str, str | None]


@dataclass(frozen=True)
class _Snapshot:
    taken: float
    experiments: dict[str, _Experiment]  # the platform's
    stats: dict[str, ExperimentStats]  # of those with active runs; recent: started in the week before it was taken
    runs: list[RunRecord] | None  # newest first (the client path; a database store pages its runs in SQL)


def _newest_first(run: RunRecord) -> tuple[int, str]:
    return -(run.start_time or 0), run.run_id


def _stats(runs: Iterable[RunRecord], *, since_ms: int) -> dict[str, ExperimentStats]:
    """experiment id -> the overview's figures of its runs (`runs` newest first): what
    `mlflow_sql.experiment_stats` computes in SQL, for stores without SQL."""

    grouped: dict[str, list[RunRecord]] = {}
    for run in runs:
        grouped.setdefault(run.experiment_id, []).append(run)
    out = {}
    for eid, exp_runs in grouped.items():
        scored = [r for r in exp_runs if SCORE in r.metrics]
        best = max(scored, key=lambda r: r.metrics[SCORE]) if scored else None  # ties: the first, the newest
        out[eid] = ExperimentStats(
            runs=len(exp_runs),
            failed=sum(r.status == "FAILED" for r in exp_runs),
            runs_since=sum((r.start_time or 0) >= since_ms for r in exp_runs),
            last_run_time=max((r.start_time for r in exp_runs if r.start_time is not None), default=None),
            best_run_id=best.run_id if best else None,
            best_metrics=dict(best.metrics) if best else {},
        )
    return out


def _is_platform_experiment(name: str, tags: dict[str, str]) -> bool:
    """Experiments kubetrader created (tagged managed, or named with the four levels); MLflow's
    `Default` and foreign experiments would only dilute the counts."""
    return tags.get(MANAGED_TAG) == "true" or len(name.split(".")) == 4


def _levels(name: str, tags: dict[str, str]) -> dict[str, str | None]:
    parts = name.split(".")
    parsed = parts if len(parts) == 4 else [None] * 4
    return {level: tags.get(level) or parsed[i] for i, level in enumerate(LEVELS)}


class MlflowService:
    def __init__(
        self,
        tracking_uri: str | None,
        *,
        ui_url: str | None,
        cache_seconds: float,
        local_db: Path | None = None,
        sql_fast_path: bool = True,
    ) -> None:
        self.explicit_uri = tracking_uri
        self.local_db = local_db  # the CLI's data/mlflow.db, read once it exists (reading never creates it)
        self.ui_url = ui_url
        self.cache_seconds = cache_seconds
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()
        self._client: MlflowClient | None = None
        self.sql_fast_path = sql_fast_path  # off: every store through MlflowClient (the parity test compares)
        self._sql: tuple[str, sqlalchemy.Engine] | None = None
        self._sql_lock = threading.Lock()

    @property
    def tracking_uri(self) -> str | None:
        if self.explicit_uri:
            return self.explicit_uri
        if self.local_db is not None and self.local_db.is_file():
            return defaults.local_tracking_uri(self.local_db.parent)
        return None

    @property
    def available(self) -> bool:
        return bool(self.tracking_uri)

    @property
    def missing_reason(self) -> str:
        if self.local_db is not None:
            return (
                f"no MLflow store yet at {self.local_db.name} in the data directory (a run with tracking on "
                "creates it), and MLFLOW_TRACKING_URI is not set"
            )
        return "MLFLOW_TRACKING_URI is not set"

    def client(self) -> MlflowClient:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def ping(self) -> None:
        self.client().search_experiments(max_results=1)

    def _engine(self) -> sqlalchemy.Engine | None:
        """A read-only engine on a database store (None: use the client); made once per URI."""
        from kubetrader_dashboard.services import mlflow_sql

        uri = self.tracking_uri
        if not self.sql_fast_path or uri is None or not mlflow_sql.supports(uri):
            return None
        with self._sql_lock:
            if self._sql is None or self._sql[0] != uri:
                self._sql = (uri, mlflow_sql.read_only_engine(uri))
            return self._sql[1]

    def _take_snapshot(self) -> _Snapshot:
        engine = self._engine()
        since_ms = int(time.time() * 1000) - WEEK_MS
        if engine is not None:
            from kubetrader_dashboard.services import mlflow_sql

            with engine.connect() as conn:
                found = mlflow_sql.active_experiments(conn, (*LEVELS, MANAGED_TAG))
                stats = mlflow_sql.experiment_stats(conn, since_ms=since_ms, score=SCORE, shown=SHOWN_METRICS)
            experiments = {
                e.experiment_id: _Experiment(e.experiment_id, e.name, _levels(e.name, e.tags))
                for e in found
                if _is_platform_experiment(e.name, e.tags)
            }
            stats = {eid: value for eid, value in stats.items() if eid in experiments}
            return _Snapshot(time.monotonic(), experiments, stats, None)
        experiments, runs = self._client_runs()
        return _Snapshot(time.monotonic(), experiments, _stats(runs, since_ms=since_ms), runs)

    def _client_runs(self) -> tuple[dict[str, _Experiment], list[RunRecord]]:
        """The platform's experiments and light rows of all their active runs, newest first."""
        from mlflow.entities import ViewType

        client = self.client()
        experiments: dict[str, _Experiment] = {}
        token: str | None = None
        while True:
            page = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
            for exp in page:
                if not _is_platform_experiment(exp.name, exp.tags):
                    continue
                experiments[exp.experiment_id] = _Experiment(exp.experiment_id, exp.name, _levels(exp.name, exp.tags))
            token = page.token
            if not token:
                break
        runs: list[RunRecord] = []
        ids = list(experiments)
        # search_runs takes at most 100 experiment ids per call
        for chunk_start in range(0, len(ids), 100):
            chunk = ids[chunk_start : chunk_start + 100]
            token = None
            while True:
                found = client.search_runs(
                    chunk, run_view_type=ViewType.ACTIVE_ONLY, max_results=PAGE_SIZE, page_token=token
                )
                for run in found:
                    info, data = run.info, run.data
                    runs.append(
                        RunRecord(
                            run_id=info.run_id,
                            experiment_id=info.experiment_id,
                            run_name=info.run_name,
                            status=info.status,
                            start_time=info.start_time,
                            end_time=info.end_time,
                            metrics={  # NaN: no value (a database store's path skips them too)
                                k: v for k, v in data.metrics.items() if k in SHOWN_METRICS and not math.isnan(v)
                            },
                        )
                    )
                token = found.token
                if not token:
                    break
        runs.sort(key=_newest_first)
        return experiments, runs

    def snapshot(self, *, refresh: bool = False) -> _Snapshot:
        with self._lock:
            current = self._snapshot
            if refresh or current is None or time.monotonic() - current.taken > self.cache_seconds:
                try:
                    current = self._snapshot = self._take_snapshot()
                except Exception as exc:  # the store's own errors vary (HTTP, SQLAlchemy, MlflowException)
                    # The type only: messages of database drivers can carry the connection string.
                    raise MlflowUnavailableError(f"MLflow store unreachable ({type(exc).__name__})") from exc
            return current

    def overview(
        self,
        *,
        project: str | None = None,
        asset_class: str | None = None,
        strategy_family: str | None = None,
        refresh: bool = False,
    ) -> MlflowOverview:
        if not self.available:
            return MlflowOverview(available=False, reason=self.missing_reason)
        try:
            snap = self.snapshot(refresh=refresh)
        except MlflowUnavailableError as exc:
            return MlflowOverview(available=False, reason=str(exc), tracking_uri=redact_uri(self.tracking_uri))
        wanted = {"project": project, "asset_class": asset_class, "strategy_family": strategy_family}
        chosen = {
            eid: exp
            for eid, exp in snap.experiments.items()
            if all(not value or exp.levels.get(level) == value for level, value in wanted.items())
        }
        rows = []
        for eid, exp in chosen.items():
            stats = snap.stats.get(eid)
            best = stats.best_metrics if stats else {}
            rows.append(
                ExperimentRow(
                    experiment_id=eid,
                    name=exp.name,
                    **{level: exp.levels.get(level) for level in LEVELS},
                    runs=stats.runs if stats else 0,
                    failed_runs=stats.failed if stats else 0,
                    last_run_time=stats.last_run_time if stats else None,
                    best_run_id=stats.best_run_id if stats else None,
                    best_sharpe=best.get("sharpe_ratio"),
                    best_total_return=best.get("total_return"),
                    best_max_drawdown=best.get("max_drawdown"),
                    best_annual_volatility=best.get("annual_volatility"),
                )
            )
        rows.sort(key=lambda row: (row.best_sharpe is None, -(row.best_sharpe or 0.0), row.name))
        chosen_stats = [snap.stats[eid] for eid in chosen if eid in snap.stats]

        def options(level: str) -> list[str]:
            return sorted({value for exp in snap.experiments.values() if (value := exp.levels.get(level))})

        return MlflowOverview(
            tracking_uri=redact_uri(self.tracking_uri),
            ui_url=self.ui_url,
            experiments=len(chosen),
            runs=sum(s.runs for s in chosen_stats),
            runs_last_7_days=sum(s.runs_since for s in chosen_stats),
            failed_runs=sum(s.failed for s in chosen_stats),
            projects=options("project"),
            asset_classes=options("asset_class"),
            strategy_families=options("strategy_family"),
            rows=rows,
            snapshot_age_seconds=time.monotonic() - snap.taken,
        )

    def runs(
        self, *, status: str | None, experiment_id: str | None, limit: int, offset: int, refresh: bool = False
    ) -> Page[RunRow]:
        snap = self.snapshot(refresh=refresh)
        if snap.runs is None:  # a database store: the page is a query (fresh; the experiments from the snapshot)
            from kubetrader_dashboard.services import mlflow_sql

            ids = [eid for eid in snap.experiments if not experiment_id or eid == experiment_id]
            engine = self._engine()
            try:
                if engine is None:
                    raise RuntimeError("the tracking URI changed since the snapshot")
                with engine.connect() as conn:
                    records, total = mlflow_sql.run_page(
                        conn, ids, status=status, limit=limit, offset=offset, shown=SHOWN_METRICS
                    )
            except Exception as exc:  # as in snapshot(): the type only
                raise MlflowUnavailableError(f"MLflow store unreachable ({type(exc).__name__})") from exc
            page: list[Any] = records
        else:
            chosen = [
                r
                for r in snap.runs
                if (not status or r.status == status) and (not experiment_id or r.experiment_id == experiment_id)
            ]
            page, total = chosen[offset : offset + limit], len(chosen)
        items = [
            RunRow(
                run_id=r.run_id,
                experiment_id=r.experiment_id,
                experiment_name=snap.experiments[r.experiment_id].name if r.experiment_id in snap.experiments else None,
                run_name=r.run_name,
                status=r.status,
                start_time=r.start_time,
                end_time=r.end_time,
                sharpe_ratio=r.metrics.get("sharpe_ratio"),
                total_return=r.metrics.get("total_return"),
                max_drawdown=r.metrics.get("max_drawdown"),
            )
            for r in page
        ]
        return Page[RunRow](items=items, total=total, limit=limit, offset=offset)

    def compare(self, run_ids: list[str]) -> Comparison:
        """Metrics and parameters of 2 to 5 runs, side by side (fetched fresh, not from the snapshot)."""
        from mlflow.exceptions import MlflowException

        out = []
        names: dict[str, str] = {}
        for run_id in run_ids:
            try:
                client = self.client()
                run = client.get_run(run_id)
                eid = run.info.experiment_id
                if eid not in names:
                    names[eid] = client.get_experiment(eid).name
            except MlflowException as exc:
                if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise MlflowUnavailableError(f"MLflow store error ({exc.error_code})") from exc
                raise LookupError(run_id) from exc
            except Exception as exc:  # drivers' own errors; the type only (messages hold URLs)
                raise MlflowUnavailableError(f"MLflow store unreachable ({type(exc).__name__})") from exc
            out.append(
                RunComparison(
                    run_id=run_id,
                    experiment_name=names[eid],
                    run_name=run.info.run_name,
                    status=run.info.status,
                    metrics=dict(run.data.metrics),
                    params=_safe_params(run.data.params),
                )
            )
        return Comparison(runs=out)


def _safe_params(params: dict[str, Any]) -> dict[str, str]:
    """Strategy parameters and the data/broker/risk settings; nothing that looks like a credential."""
    return {
        key: str(value)
        for key, value in params.items()
        if not any(word in key.lower() for word in ("password", "secret", "token", "credential", "key"))
    }
