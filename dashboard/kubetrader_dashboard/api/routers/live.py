"""/live and /cluster: the live runner's state and the custom resources in the cluster."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from kubetrader_dashboard.api.deps import ReadAccess, ServicesDep
from kubetrader_dashboard.api.problems import PROBLEM_RESPONSES
from kubetrader_dashboard.models.operations import ClusterResources, LiveState

router = APIRouter(tags=["live"], responses=PROBLEM_RESPONSES)

KINDS = {"backtests": "Backtest", "optimizationstudies": "OptimizationStudy", "livedeployments": "LiveDeployment"}


@router.get("/live", response_model=LiveState, dependencies=[ReadAccess])
def live_state(services: ServicesDep) -> LiveState:
    state = services.live.state()
    if services.cluster.available:
        state.deployments = services.cluster.list_resources("LiveDeployment").items
    return state


@router.get("/cluster/{plural}", response_model=ClusterResources, dependencies=[ReadAccess])
def cluster_resources(
    services: ServicesDep, plural: Literal["backtests", "optimizationstudies", "livedeployments"]
) -> ClusterResources:
    return services.cluster.list_resources(KINDS[plural])
