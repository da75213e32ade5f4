"""/mlflow: the MLflow tab's cards and experiment table, run lists and comparisons."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from kubetrader_dashboard.api.deps import ReadAccess, ServicesDep
from kubetrader_dashboard.api.problems import PROBLEM_RESPONSES, ProblemError
from kubetrader_dashboard.api.routers.backtests import Limit, Offset, Text
from kubetrader_dashboard.models.common import Page
from kubetrader_dashboard.models.mlflow import Comparison, MlflowOverview, RunRow
from kubetrader_dashboard.services.mlflow import MlflowUnavailableError

router = APIRouter(prefix="/mlflow", tags=["mlflow"], responses=PROBLEM_RESPONSES)


def _require(services: ServicesDep) -> None:
    if not services.mlflow.available:
        raise ProblemError(503, "Not available", "MLFLOW_TRACKING_URI is not set")


@router.get("/overview", response_model=MlflowOverview, dependencies=[ReadAccess])
def overview(
    services: ServicesDep,
    project: Text = None,
    asset_class: Text = None,
    strategy_family: Text = None,
    refresh: bool = False,
) -> MlflowOverview:
    return services.mlflow.overview(
        project=project, asset_class=asset_class, strategy_family=strategy_family, refresh=refresh
    )


@router.get("/runs", response_model=Page[RunRow], dependencies=[ReadAccess])
def runs(
    services: ServicesDep,
    limit: Limit = 50,
    offset: Offset = 0,
    run_status: Annotated[
        Literal["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"] | None, Query(alias="status")
    ] = None,
    experiment_id: Text = None,
    refresh: bool = False,
) -> Page[RunRow]:
    _require(services)
    try:
        return services.mlflow.runs(
            status=run_status, experiment_id=experiment_id, limit=limit, offset=offset, refresh=refresh
        )
    except MlflowUnavailableError as exc:
        raise ProblemError(503, "Not available", str(exc)) from None


@router.get("/compare", response_model=Comparison, dependencies=[ReadAccess])
def compare(
    services: ServicesDep,
    run_id: Annotated[list[Annotated[str, Query(max_length=64)]], Query(min_length=2, max_length=5)],
) -> Comparison:
    _require(services)
    if len(set(run_id)) != len(run_id):
        raise ProblemError(
            422, "Invalid request", "run_id: listed twice", errors=[{"field": "run_id", "message": "duplicate"}]
        )
    try:
        return services.mlflow.compare(run_id)
    except MlflowUnavailableError as exc:
        raise ProblemError(503, "Not available", str(exc)) from None
    except LookupError as exc:
        raise ProblemError(404, "Not found", f"no MLflow run {exc.args[0]!r}") from None
