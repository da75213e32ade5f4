"""/live and /cluster: the live runner's state and the custom resources in the cluster.

The live runner's `/status` and `/journal` (positions, orders, PnL, the journal) are behind its own
token; re-served here they need the trader role, as do the LiveDeployments themselves, even when
other reads are public: they are the account's book, not research results.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from kubetrader_dashboard.api.deps import LiveAccess, OptionalIdentity, ReadAccess, ServicesDep, ensure
from kubetrader_dashboard.api.problems import PROBLEM_RESPONSES
from kubetrader_dashboard.auth.roles import Role
from kubetrader_dashboard.models.operations import ClusterResources, LiveState

router = APIRouter(tags=["live"], responses=PROBLEM_RESPONSES)

KINDS = {"backtests": "Backtest", "optimizationstudies": "OptimizationStudy", "livedeployments": "LiveDeployment"}


@router.get("/live", response_model=LiveState, dependencies=[LiveAccess])
def live_state(services: ServicesDep) -> LiveState:
    state = services.live.state()
    if services.cluster.available:
        state.deployments = services.cluster.list_resources("LiveDeployment").items
    return state


@router.get("/cluster/{plural}", response_model=ClusterResources, dependencies=[ReadAccess])
def cluster_resources(
    services: ServicesDep,
    identity: OptionalIdentity,
    plural: Literal["backtests", "optimizationstudies", "livedeployments"],
) -> ClusterResources:
    if plural == "livedeployments":
        ensure(identity, Role.TRADER)
    return services.cluster.list_resources(KINDS[plural])
