"""The MLflow tab's aggregates in SQL, for tracking stores that are a database (SQLite, PostgreSQL).

Through `MlflowClient` an overview reads every run whole (params, tags, metrics) to count
them: seconds at 10,000 runs. On a database store the same numbers are a GROUP BY over
MLflow's own tables, read-only. The columns read here (runs, experiments, experiment_tags,
latest_metrics) are MLflow's stable schema (mlflow/store/tracking/dbmodels/models.py), the one
`kubetrader.tracking.maintenance.create_indexes` already indexes; `latest_metrics` holds what
`Run.data.metrics` returns (the value at the highest step, then timestamp). Orders and ties are
the client path's (`services.mlflow`): runs newest first, then by run id; the best run of an
experiment the highest sharpe_ratio, ties to the first in that order; NaN values count as absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from kubetrader.tracking.settings import database_uri
from kubetrader_dashboard.services.mlflow_records import ExperimentStats, RunRecord

# Dialects of `MlflowClient`'s database stores whose fast path is tested (a real SQLite store;
# PostgreSQL through the same portable SQLAlchemy Core). Others (mysql, mssql) keep the client path.
DIALECTS = ("sqlite", "postgresql")
ACTIVE = "active"

_meta = sa.MetaData()
runs = sa.Table(
    "runs",
    _meta,
    sa.Column("run_uuid", sa.String),
    sa.Column("name", sa.String),
    sa.Column("experiment_id", sa.Integer),
    sa.Column("status", sa.String),
    sa.Column("start_time", sa.BigInteger),
    sa.Column("end_time", sa.BigInteger),
    sa.Column("lifecycle_stage", sa.String),
)
experiments = sa.Table(
    "experiments",
    _meta,
    sa.Column("experiment_id", sa.Integer),
    sa.Column("name", sa.String),
    sa.Column("lifecycle_stage", sa.String),
)
experiment_tags = sa.Table(
    "experiment_tags", _meta, sa.Column("key", sa.String), sa.Column("value", sa.String), sa.Column("experiment_id")
)
latest_metrics = sa.Table(
    "latest_metrics",
    _meta,
    sa.Column("key", sa.String),
    sa.Column("value", sa.Float),
    sa.Column("is_nan", sa.Boolean),
    sa.Column("run_uuid", sa.String),
)


def supports(tracking_uri: str | None) -> bool:
    """True for a tracking URI this module can read (a SQLite or PostgreSQL store)."""
    if not tracking_uri:
        return False
    return tracking_uri.split(":", 1)[0].split("+", 1)[0] in (*DIALECTS, "postgres")


def read_only_engine(tracking_uri: str) -> sa.Engine:
    """An engine on the store whose every connection refuses writes (SQLite `query_only`, PostgreSQL
    read-only transactions): the dashboard reads MLflow's tables and must never change them."""
    engine = sa.create_engine(database_uri(tracking_uri), pool_pre_ping=True)
    statement = (
        "PRAGMA query_only = ON"
        if engine.dialect.name == "sqlite"
        else "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"
    )

    @sa.event.listens_for(engine, "connect")
    def _read_only(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(statement)
        finally:
            cursor.close()
        if engine.dialect.name == "postgresql":
            dbapi_connection.commit()

    return engine


@dataclass(frozen=True)
class ExperimentRecord:
    experiment_id: str
    name: str
    tags: dict[str, str]


def active_experiments(conn: sa.Connection, tag_keys: Sequence[str]) -> list[ExperimentRecord]:
    """Every active experiment, with its tags among `tag_keys`."""
    rows = conn.execute(
        sa.select(experiments.c.experiment_id, experiments.c.name).where(experiments.c.lifecycle_stage == ACTIVE)
    ).all()
    tags: dict[str, dict[str, str]] = {}
    tag_rows = conn.execute(
        sa.select(experiment_tags.c.experiment_id, experiment_tags.c.key, experiment_tags.c.value).where(
            experiment_tags.c.key.in_(list(tag_keys))
        )
    )
    for eid, key, value in tag_rows:
        tags.setdefault(str(eid), {})[key] = value
    return [ExperimentRecord(str(eid), name, tags.get(str(eid), {})) for eid, name in rows]


def _newest_first(table: Any) -> list[Any]:
    return [sa.func.coalesce(table.c.start_time, 0).desc(), table.c.run_uuid]


def experiment_stats(
    conn: sa.Connection, *, since_ms: int, score: str, shown: Sequence[str]
) -> dict[str, ExperimentStats]:
    """experiment id -> its active runs' counts, newest start and best run by `score` (highest), for
    every active experiment with runs; one grouped query, then the best runs' `shown` metrics."""
    scored = latest_metrics.alias("scored")
    ranked = (
        sa.select(
            runs.c.experiment_id,
            runs.c.run_uuid,
            runs.c.status,
            runs.c.start_time,
            scored.c.value.label("score"),
            sa.func.row_number()
            .over(
                partition_by=runs.c.experiment_id,
                order_by=[scored.c.value.is_(None), scored.c.value.desc(), *_newest_first(runs)],
            )
            .label("place"),
        )
        .select_from(
            runs.join(experiments, experiments.c.experiment_id == runs.c.experiment_id).outerjoin(
                scored,
                sa.and_(scored.c.run_uuid == runs.c.run_uuid, scored.c.key == score, sa.not_(scored.c.is_nan)),
            )
        )
        .where(runs.c.lifecycle_stage == ACTIVE, experiments.c.lifecycle_stage == ACTIVE)
        .subquery()
    )

    def count_of(condition: Any) -> Any:
        return sa.func.sum(sa.case((condition, 1), else_=0))

    best_id = sa.func.max(sa.case((sa.and_(ranked.c.place == 1, ranked.c.score.is_not(None)), ranked.c.run_uuid)))
    query = sa.select(
        ranked.c.experiment_id,
        sa.func.count(),
        count_of(ranked.c.status == "FAILED"),
        count_of(sa.func.coalesce(ranked.c.start_time, 0) >= since_ms),
        sa.func.max(ranked.c.start_time),
        best_id,
    ).group_by(ranked.c.experiment_id)
    rows = conn.execute(query).all()
    best = _metrics(conn, [row[5] for row in rows if row[5] is not None], shown)
    return {
        str(eid): ExperimentStats(
            runs=int(n),
            failed=int(failed or 0),
            runs_since=int(recent or 0),
            last_run_time=None if last is None else int(last),
            best_run_id=best_run,
            best_metrics=best.get(best_run, {}) if best_run else {},
        )
        for eid, n, failed, recent, last, best_run in rows
    }


def _metrics(conn: sa.Connection, run_ids: Sequence[str], keys: Sequence[str]) -> dict[str, dict[str, float]]:
    """run id -> its latest values of `keys` (NaN left out), in chunks of bound ids."""
    out: dict[str, dict[str, float]] = {}
    for start in range(0, len(run_ids), 500):
        chunk = list(run_ids[start : start + 500])
        rows = conn.execute(
            sa.select(latest_metrics.c.run_uuid, latest_metrics.c.key, latest_metrics.c.value).where(
                latest_metrics.c.run_uuid.in_(chunk),
                latest_metrics.c.key.in_(list(keys)),
                sa.not_(latest_metrics.c.is_nan),
            )
        )
        for run_id, key, value in rows:
            out.setdefault(run_id, {})[key] = float(value)
    return out


def run_page(
    conn: sa.Connection,
    experiment_ids: Iterable[str],
    *,
    status: str | None,
    limit: int,
    offset: int,
    shown: Sequence[str],
) -> tuple[list[RunRecord], int]:
    """The active runs of `experiment_ids` (with `status`), newest first: one page and the total."""
    ids = [int(eid) for eid in experiment_ids]
    where = [runs.c.lifecycle_stage == ACTIVE, runs.c.experiment_id.in_(ids)]
    if status:
        where.append(runs.c.status == status)
    total = conn.execute(sa.select(sa.func.count()).select_from(runs).where(*where)).scalar_one()
    rows = conn.execute(
        sa.select(runs.c.run_uuid, runs.c.experiment_id, runs.c.name, runs.c.status, runs.c.start_time, runs.c.end_time)
        .where(*where)
        .order_by(*_newest_first(runs))
        .limit(limit)
        .offset(offset)
    ).all()
    metrics = _metrics(conn, [row[0] for row in rows], shown)
    page = [
        RunRecord(run_id, str(eid), name, status_, start, end, metrics.get(run_id, {}))
        for run_id, eid, name, status_, start, end in rows
    ]
    return page, int(total)
