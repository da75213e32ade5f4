"""/submissions: what was submitted through this API and where it stands."""

from __future__ import annotations

from fastapi import APIRouter

from kubetrader_dashboard.api.deps import ReadAccess, ServicesDep
from kubetrader_dashboard.api.problems import PROBLEM_RESPONSES, ProblemError
from kubetrader_dashboard.models.operations import SubmissionState
from kubetrader_dashboard.services.submissions import SubmissionNotFoundError

router = APIRouter(prefix="/submissions", tags=["submissions"], responses=PROBLEM_RESPONSES)


@router.get("", response_model=list[SubmissionState], dependencies=[ReadAccess])
def list_submissions(services: ServicesDep) -> list[SubmissionState]:
    return services.submissions.list_submissions()


@router.get("/{submission_id}", response_model=SubmissionState, dependencies=[ReadAccess])
def get_submission(services: ServicesDep, submission_id: str) -> SubmissionState:
    try:
        return services.submissions.get(submission_id)
    except SubmissionNotFoundError:
        raise ProblemError(404, "Not found", f"no submission {submission_id!r}") from None
