"""/queue, /health, /healthz and /settings: how the platform is doing and how it is configured.

`/healthz` is the one route open to anyone whatever the settings: it says only that the process
answers, for the chart's probes and `make dashboard`; `/health` (the components, their latency and
the machine's resources) is a read like the others."""

from __future__ import annotations

from fastapi import APIRouter

from kubetrader_dashboard.api.deps import ReadAccess, ServicesDep
from kubetrader_dashboard.api.problems import PROBLEM_RESPONSES
from kubetrader_dashboard.models.operations import Alive, Health, QueueView, SettingsView
from kubetrader_dashboard.services.health import health
from kubetrader_dashboard.services.settings_view import settings_view

router = APIRouter(tags=["operations"], responses=PROBLEM_RESPONSES)


@router.get("/queue", response_model=QueueView, dependencies=[ReadAccess])
def queue(services: ServicesDep) -> QueueView:
    return services.queue.view()


@router.get("/health", response_model=Health, dependencies=[ReadAccess])
def get_health(services: ServicesDep) -> Health:
    return health(services)


@router.get("/healthz", response_model=Alive)
def alive() -> Alive:
    return Alive()


@router.get("/settings", response_model=SettingsView, dependencies=[ReadAccess])
def get_settings_view(services: ServicesDep) -> SettingsView:
    return settings_view(services.settings)
