"""/studies: optimization studies from the Optuna storage, and submitting an OptimizationStudy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, status

from kubetrader.optimize.robustness import Robustness
from kubetrader_dashboard.api.deps import ReadAccess, ServicesDep, Submitter
from kubetrader_dashboard.api.problems import PROBLEM_RESPONSES, ProblemError
from kubetrader_dashboard.api.submit import submit
from kubetrader_dashboard.models.operations import StudyDetail, StudyList, SubmissionState
from kubetrader_dashboard.services.studies import StudyNotFoundError, StudyStorageUnavailableError

T = TypeVar("T")

router = APIRouter(prefix="/studies", tags=["studies"], responses=PROBLEM_RESPONSES)


@router.get("", response_model=StudyList, dependencies=[ReadAccess])
def list_studies(services: ServicesDep) -> StudyList:
    return services.studies.list_studies()


@router.post("", response_model=SubmissionState, status_code=status.HTTP_202_ACCEPTED)
def submit_study(
    services: ServicesDep, document: Annotated[dict[str, Any], Body()], identity: Submitter
) -> SubmissionState:
    return submit(services, document, "OptimizationStudy", identity)


def _answer(services: Any, name: str, read: Callable[[str], T]) -> T:
    """One study read, with the storage's two failures turned into the API's problems."""
    if not services.studies.available:
        raise ProblemError(503, "Not available", services.studies.missing_reason)
    try:
        return read(name)
    except StudyStorageUnavailableError as exc:
        raise ProblemError(503, "Not available", str(exc)) from None
    except StudyNotFoundError:
        raise ProblemError(404, "Not found", f"no study {name!r}") from None


@router.get("/{name}", response_model=StudyDetail, dependencies=[ReadAccess])
def get_study(services: ServicesDep, name: str) -> StudyDetail:
    return _answer(services, name, services.studies.detail)


@router.get("/{name}/robustness", response_model=Robustness, dependencies=[ReadAccess])
def get_study_robustness(services: ServicesDep, name: str) -> Robustness:
    """The best point's neighbourhood, the plateau score, a 2-D heatmap and the top trials."""
    return _answer(services, name, services.studies.robustness)
