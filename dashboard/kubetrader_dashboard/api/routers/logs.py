"""/logs and /events: the engine's output of each run, pod logs and Kubernetes Events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from kubetrader_dashboard.api.deps import ReadAccess, ServicesDep
from kubetrader_dashboard.api.problems import PROBLEM_RESPONSES, ProblemError
from kubetrader_dashboard.models.logs import Events, LogSources, LogText
from kubetrader_dashboard.services.logs import LogNotFoundError

router = APIRouter(tags=["logs"], responses=PROBLEM_RESPONSES)

Kind = Annotated[str | None, Query(max_length=64, description="Backtest, OptimizationStudy, worker, operator...")]
Name = Annotated[str | None, Query(max_length=253, description="Part of the resource's name.")]


@router.get("/logs", response_model=LogSources, dependencies=[ReadAccess])
def list_logs(services: ServicesDep, kind: Kind = None, name: Name = None) -> LogSources:
    return services.logs.sources(kind=kind, name=name)


@router.get("/logs/{key}", response_model=LogText, dependencies=[ReadAccess])
def get_log(services: ServicesDep, key: str, tail: Annotated[int, Query(ge=1, le=10_000)] = 500) -> LogText:
    try:
        return services.logs.text(key, tail=tail)
    except LogNotFoundError:
        raise ProblemError(404, "Not found", f"no log {key!r}") from None


@router.get("/events", response_model=Events, dependencies=[ReadAccess])
def list_events(services: ServicesDep, kind: Kind = None, name: Name = None) -> Events:
    return services.logs.events(kind=kind, name=name)
