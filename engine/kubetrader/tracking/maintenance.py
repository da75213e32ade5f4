"""Running the tracking back end: schema migration, extra indexes, archiving old runs.

In the cluster, MLflow's tracking server runs on PostgreSQL with several replicas.
MLflow guards its own first-time schema creation with a file lock in /tmp, which
only serialises processes on one machine; two replicas on two nodes starting on an
empty database race. So the chart runs `kubetrader mlflow migrate` once, as a Job,
under a PostgreSQL advisory lock, before the servers start.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetrader.tracking import naming, settings

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

# Any constant works as long as every migrator uses the same one ("kubetrader" in ASCII).
MIGRATION_LOCK_KEY = 0x6B75_6265_7472_6164 & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True)
class MigrationOutcome:
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def migrate(backend_store_uri: str) -> MigrationOutcome:
    """Create or upgrade MLflow's schema (what `mlflow db upgrade` does), once, whoever runs it.

    On PostgreSQL the work runs under a session-level advisory lock, so concurrent
    migrators queue: the first does the work, the rest find the schema current and
    do nothing. Safe to run on every deploy.
    """
    import sqlalchemy
    from mlflow.store.db import utils as db_utils

    engine = sqlalchemy.create_engine(settings.database_uri(backend_store_uri), poolclass=sqlalchemy.pool.NullPool)
    postgres = engine.dialect.name == "postgresql"
    try:
        with engine.connect() as lock_connection:
            if postgres:
                lock_connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                lock_connection.commit()
            try:
                before = None if db_utils._is_empty_database(engine) else db_utils._get_schema_version(engine)
                if before is None:
                    db_utils._initialize_tables(engine)
                else:
                    db_utils._upgrade_db(engine)
                after = db_utils._get_schema_version(engine)
            finally:
                if postgres:
                    lock_connection.execute(
                        sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY}
                    )
                    lock_connection.commit()
    finally:
        engine.dispose()
    return MigrationOutcome(before, after)


# --- indexes -----------------------------------------------------------------------------------

# Tag keys the platform filters on. The indexes are partial (only these keys) because
# MLflow tag values can be 8000 characters, more than a PostgreSQL b-tree entry holds;
# ours are short.
_RUN_TAG_KEYS = (*naming.LEVEL_TAGS, naming.RESULT_ID, naming.STATUS, naming.KIND, naming.BEST_TRIAL)
_EXPERIMENT_TAG_KEYS = (*naming.LEVEL_TAGS, naming.MANAGED)


def _in_list(keys: tuple[str, ...]) -> str:
    """SQL literals for our own constant tag keys (no quotes in them to escape)."""
    return ", ".join(f"'{key}'" for key in keys)


def index_statements(dialect: str) -> dict[str, str]:
    """name -> CREATE INDEX IF NOT EXISTS statement, for the queries ProjectManager and the
    dashboard make: runs by tag, by time, by experiment and status; experiments by tag and name prefix."""
    pattern_ops = " varchar_pattern_ops" if dialect == "postgresql" else ""
    return {
        "kubetrader_tags_key_value": (
            "CREATE INDEX IF NOT EXISTS kubetrader_tags_key_value ON tags (key, value, run_uuid) "
            f"WHERE key IN ({_in_list(_RUN_TAG_KEYS)})"
        ),
        "kubetrader_experiment_tags_key_value": (
            "CREATE INDEX IF NOT EXISTS kubetrader_experiment_tags_key_value "
            f"ON experiment_tags (key, value, experiment_id) WHERE key IN ({_in_list(_EXPERIMENT_TAG_KEYS)})"
        ),
        "kubetrader_runs_start_time": "CREATE INDEX IF NOT EXISTS kubetrader_runs_start_time ON runs (start_time)",
        "kubetrader_runs_experiment_status": (
            "CREATE INDEX IF NOT EXISTS kubetrader_runs_experiment_status "
            "ON runs (experiment_id, status, lifecycle_stage)"
        ),
        "kubetrader_experiments_name": (
            f"CREATE INDEX IF NOT EXISTS kubetrader_experiments_name ON experiments (name{pattern_ops})"
        ),
        "kubetrader_experiments_creation_time": (
            "CREATE INDEX IF NOT EXISTS kubetrader_experiments_creation_time ON experiments (creation_time)"
        ),
    }


def create_indexes(backend_store_uri: str) -> dict[str, bool]:
    """Create the platform's extra indexes on MLflow's database; name -> created now (False: existed)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(settings.database_uri(backend_store_uri), poolclass=sqlalchemy.pool.NullPool)
    try:
        statements = index_statements(engine.dialect.name)
        existing = _index_names(engine)
        with engine.begin() as connection:
            for statement in statements.values():
                connection.execute(sqlalchemy.text(statement))
        return {name: name not in existing for name in statements}
    finally:
        engine.dispose()


def _index_names(engine: Any) -> set[str]:
    import sqlalchemy

    inspector = sqlalchemy.inspect(engine)
    names: set[str] = set()
    for table in ("tags", "experiment_tags", "runs", "experiments"):
        names.update(str(index["name"]) for index in inspector.get_indexes(table))
    return names


# --- archiving ---------------------------------------------------------------------------------

_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> dt.timedelta:
    """'90d' -> 90 days (units: s m h d w)."""
    match = _AGE.match(text)
    if not match:
        raise ValueError(f"age {text!r} is not a number and a unit (s, m, h, d, w), e.g. 90d")
    return dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def run_record(run: Run, experiment_name: str) -> dict[str, Any]:
    """Everything about a run except its artifacts, as one JSON-able dict (one archive line)."""
    info = run.info
    return {
        "run_id": info.run_id,
        "experiment_id": info.experiment_id,
        "experiment_name": experiment_name,
        "run_name": info.run_name,
        "status": info.status,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "artifact_uri": info.artifact_uri,
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "tags": dict(run.data.tags),
    }


def iter_runs(client: MlflowClient, experiment_ids: list[str], filter_string: str = "") -> Iterator[Run]:
    """Every active run matching the filter, page by page (the server does the filtering)."""
    for start in range(0, len(experiment_ids), 100):
        chunk = experiment_ids[start : start + 100]
        token: str | None = None
        while True:
            page = client.search_runs(chunk, filter_string=filter_string, max_results=1000, page_token=token)
            yield from page
            token = page.token
            if not token:
                break


def all_experiments(client: MlflowClient, filter_string: str | None = None) -> dict[str, str]:
    """id -> name of every active experiment matching the filter."""
    found: dict[str, str] = {}
    token: str | None = None
    while True:
        page = client.search_experiments(filter_string=filter_string, max_results=1000, page_token=token)
        found.update({str(e.experiment_id): str(e.name) for e in page})
        token = page.token
        if not token:
            return found


def archive_runs(
    older_than: dt.timedelta, output: Path, *, tracking_uri: str | None = None, now: dt.datetime | None = None
) -> int:
    """Append the metadata of runs started before now - older_than to `output` (JSONL), then delete them.

    The archive line is written and flushed to disk before its run is deleted, so an
    interrupted archive loses nothing (a run may be archived twice; never zero times).
    Deletion is MLflow's soft delete: `mlflow gc` purges deleted runs and their artifacts.
    """
    from mlflow import MlflowClient

    cutoff = int(((now or dt.datetime.now(dt.UTC)) - older_than).timestamp() * 1000)
    client = MlflowClient(tracking_uri=settings.tracking_uri(tracking_uri))
    experiments = all_experiments(client)
    runs = list(iter_runs(client, list(experiments), f"attributes.start_time < {cutoff}"))
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("a") as archive:
        for run in runs:
            archive.write(json.dumps(run_record(run, experiments[run.info.experiment_id]), sort_keys=True) + "\n")
        archive.flush()
        os.fsync(archive.fileno())
    for run in runs:
        client.delete_run(run.info.run_id)
    return len(runs)
