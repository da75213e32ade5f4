"""The research lab's view of MLflow: experiments by project, asset class, strategy family and
strategy, runs by status and age, and strategies ranked by a metric.

Every query is an MLflow search filter (tags and attributes), so it runs in the
tracking server's database, not by downloading runs and filtering here. The CLI
(`kubetrader experiments`) and the dashboard call these same methods.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kubetrader.specs.metrics import MINIMIZED_METRICS
from kubetrader.tracking import naming, settings
from kubetrader.tracking.client import ensure_experiment, get_client
from kubetrader.tracking.maintenance import iter_runs

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities import Run

ExportFormat = Literal["csv", "json", "html"]
RUN_COLUMNS = (
    "run_id",
    "experiment_id",
    "experiment",
    *naming.LEVEL_TAGS,
    "run_name",
    "status",
    "backtest_status",
    "kind",
    "symbols",
    "result_id",
    "start_time",
    "end_time",
)


def _millis(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def _since(days: float) -> int:
    return _millis(dt.datetime.now(dt.UTC) - dt.timedelta(days=days))


def tag_filter(prefix: str, levels: dict[str, str | None]) -> list[str]:
    """`tags.project = 'X'` clauses for the levels that are set (pure; used for runs and experiments)."""
    return [f"{prefix}.{key} = {naming.quote(value)}" for key, value in levels.items() if value]


class ProjectManager:
    """Experiments organised as Project.AssetClass.StrategyFamily.Strategy."""

    def __init__(self, tracking_uri: str | None = None) -> None:
        self.tracking_uri = settings.tracking_uri(tracking_uri)
        self._client = get_client(self.tracking_uri)

    # --- experiments ---------------------------------------------------------------------------

    def create_experiment(self, project: str, asset_class: str, strategy_family: str, strategy: str) -> str:
        """The experiment's id (created with its level tags if absent)."""
        path = naming.ExperimentPath(project, asset_class, strategy_family, strategy)
        with settings.short_http_timeouts():
            return ensure_experiment(self._client, path)

    def experiments(
        self,
        *,
        project: str | None = None,
        asset_class: str | None = None,
        strategy_family: str | None = None,
        strategy: str | None = None,
        created_since_days: float | None = None,
    ) -> pd.DataFrame:
        """The platform's experiments at the given levels, one row each."""
        import pandas as pd

        found = self._experiment_entities(project, asset_class, strategy_family, strategy, created_since_days)
        rows = [
            {
                "experiment_id": str(e.experiment_id),
                "name": e.name,
                **{key: e.tags.get(key) for key in naming.LEVEL_TAGS},
                "created": pd.to_datetime(e.creation_time, unit="ms", utc=True),
                "updated": pd.to_datetime(e.last_update_time, unit="ms", utc=True),
            }
            for e in found
        ]
        columns = ["experiment_id", "name", *naming.LEVEL_TAGS, "created", "updated"]
        return pd.DataFrame(rows, columns=columns).sort_values("name", ignore_index=True)

    def _experiment_entities(
        self,
        project: str | None,
        asset_class: str | None,
        strategy_family: str | None,
        strategy: str | None,
        created_since_days: float | None = None,
    ) -> list[Any]:
        clauses = [f"tags.`{naming.MANAGED}` = 'true'"]
        clauses += tag_filter(
            "tags",
            {
                naming.PROJECT: project,
                naming.ASSET_CLASS: asset_class,
                naming.STRATEGY_FAMILY: strategy_family,
                naming.STRATEGY: strategy,
            },
        )
        if created_since_days is not None:
            clauses.append(f"attribute.creation_time > {_since(created_since_days)}")
        found: list[Any] = []
        token: str | None = None
        while True:
            page = self._client.search_experiments(
                filter_string=" AND ".join(clauses), max_results=1000, page_token=token
            )
            found.extend(page)
            token = page.token
            if not token:
                return found

    def query_recent_experiments(self, days: float) -> pd.DataFrame:
        """Experiments created, or with a run started, in the last `days` days."""
        import pandas as pd

        every = self.experiments()
        created = set(self.experiments(created_since_days=days)["experiment_id"])
        active = self.runs(since_days=days)
        last_run = active.groupby("experiment_id")["start_time"].max() if not active.empty else pd.Series()
        recent = every[every["experiment_id"].isin(created | set(last_run.index))].copy()
        recent["last_run"] = recent["experiment_id"].map(last_run)
        recent["runs"] = recent["experiment_id"].map(active["experiment_id"].value_counts()).fillna(0).astype(int)
        return recent.reset_index(drop=True)

    # --- runs ----------------------------------------------------------------------------------

    def runs(
        self,
        *,
        project: str | None = None,
        asset_class: str | None = None,
        strategy_family: str | None = None,
        strategy: str | None = None,
        status: str | None = None,
        since_days: float | None = None,
        filter_string: str = "",
    ) -> pd.DataFrame:
        """Runs at the given levels; `status` is MLflow's (FINISHED, FAILED, KILLED, RUNNING)."""
        levels = {
            naming.PROJECT: project,
            naming.ASSET_CLASS: asset_class,
            naming.STRATEGY_FAMILY: strategy_family,
            naming.STRATEGY: strategy,
        }
        experiments = {
            str(e.experiment_id): str(e.name)
            for e in self._experiment_entities(project, asset_class, strategy_family, strategy)
        }
        clauses = tag_filter("tags", levels)
        if status:
            wanted = status.upper()
            if wanted not in naming.RUN_STATUSES:
                raise ValueError(f"status {status!r} is not one of {', '.join(naming.RUN_STATUSES)}")
            clauses.append(f"attributes.status = {naming.quote(wanted)}")
        if since_days is not None:
            clauses.append(f"attributes.start_time > {_since(since_days)}")
        if filter_string:
            clauses.append(filter_string)
        runs = list(iter_runs(self._client, list(experiments), " AND ".join(clauses))) if experiments else []
        return runs_frame(runs, experiments)

    def query_by_project(self, project: str) -> pd.DataFrame:
        return self.runs(project=project)

    def query_by_asset_class(self, asset_class: str, *, project: str | None = None) -> pd.DataFrame:
        return self.runs(project=project, asset_class=asset_class)

    def query_by_strategy_family(self, strategy_family: str, *, project: str | None = None) -> pd.DataFrame:
        return self.runs(project=project, strategy_family=strategy_family)

    def query_by_status(self, status: str, *, project: str | None = None) -> pd.DataFrame:
        return self.runs(project=project, status=status)

    def compare_strategies(self, project: str, metric: str, *, asset_class: str | None = None) -> pd.DataFrame:
        """Strategies of a project ranked by their best finished run on `metric` (rank 1 is best).

        "Best" follows the metric's direction: smaller is better for the metrics in
        MINIMIZED_METRICS, larger for the rest.
        """
        runs = self.runs(project=project, asset_class=asset_class, status="FINISHED")
        return rank_strategies(runs, metric)

    # --- export --------------------------------------------------------------------------------

    def export(self, path: Path, *, format: ExportFormat = "csv", **filters: Any) -> Path:  # noqa: A002
        """Write the runs matching `filters` (as for `runs`) to a CSV, JSON or HTML file."""
        frame = self.runs(**filters)
        write_frame(frame, path, format)
        return path


def runs_frame(runs: Iterable[Run], experiment_names: dict[str, str]) -> pd.DataFrame:
    """Runs as a table: fixed columns first, then `metrics.*` and `params.*` (as mlflow.search_runs)."""
    import pandas as pd

    rows = []
    for run in runs:
        info, tags = run.info, run.data.tags
        row: dict[str, Any] = {
            "run_id": info.run_id,
            "experiment_id": info.experiment_id,
            "experiment": experiment_names.get(info.experiment_id, ""),
            **{key: tags.get(key) for key in naming.LEVEL_TAGS},
            "run_name": info.run_name,
            "status": info.status,
            "backtest_status": tags.get(naming.STATUS),
            "kind": tags.get(naming.KIND),
            "symbols": tags.get(naming.SYMBOLS),
            "result_id": tags.get(naming.RESULT_ID),
            "start_time": pd.to_datetime(info.start_time, unit="ms", utc=True),
            "end_time": pd.to_datetime(info.end_time, unit="ms", utc=True) if info.end_time else pd.NaT,
        }
        row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
        row.update({f"params.{k}": v for k, v in run.data.params.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(RUN_COLUMNS))
    extra = sorted(c for c in frame.columns if c not in RUN_COLUMNS)
    return frame[[*RUN_COLUMNS, *extra]].sort_values("start_time", ascending=False, ignore_index=True)


def rank_strategies(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per experiment (strategy): runs, best and mean of `metric`, the best run; ranked."""
    import pandas as pd

    column = f"metrics.{metric}"
    columns = ["rank", "experiment", *naming.LEVEL_TAGS, "runs", "best", "mean", "best_run_id"]
    if column not in runs.columns:
        return pd.DataFrame(columns=columns)
    scored = runs.dropna(subset=[column])
    ascending = metric in MINIMIZED_METRICS
    rows = []
    for experiment, group in scored.groupby("experiment"):
        ordered = group.sort_values(column, ascending=ascending, kind="stable")
        best = ordered.iloc[0]
        rows.append(
            {
                "experiment": experiment,
                **{key: best[key] for key in naming.LEVEL_TAGS},
                "runs": len(group),
                "best": float(best[column]),
                "mean": float(group[column].mean()),
                "best_run_id": best["run_id"],
            }
        )
    table = pd.DataFrame(rows, columns=columns[1:])
    if table.empty:
        return pd.DataFrame(columns=columns)
    table = table.sort_values(["best", "experiment"], ascending=[ascending, True], ignore_index=True)
    table.insert(0, "rank", table["best"].rank(method="min", ascending=ascending).astype(int))
    return table


def write_frame(frame: pd.DataFrame, path: Path, format: ExportFormat) -> None:  # noqa: A002
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "csv":
        frame.to_csv(path, index=False)
    elif format == "json":
        frame.to_json(path, orient="records", date_format="iso", indent=1)
    elif format == "html":
        path.write_text(frame.to_html(index=False, na_rep=""))
    else:
        raise ValueError(f"format {format!r} is not csv, json or html")
