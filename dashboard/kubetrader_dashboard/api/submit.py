"""Submitting a custom-resource document: shared by the Backtest and OptimizationStudy routes."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from kubetrader.errors import SpecError
from kubetrader_dashboard.api.problems import ProblemError, field_errors
from kubetrader_dashboard.auth.roles import Identity
from kubetrader_dashboard.models.operations import SubmissionState
from kubetrader_dashboard.services.container import Services
from kubetrader_dashboard.services.submissions import Kind


def submit(services: Services, document: dict[str, Any], kind: Kind, identity: Identity) -> SubmissionState:
    """Validate (422 naming the field) and hand over to the cluster, the queue or a local run."""
    try:
        return services.submissions.submit(document, kind, submitted_by=identity.name)
    except ValidationError as exc:
        # parse_resource validates the spec alone first, then the envelope (metadata).
        prefix = () if exc.title == "Resource" else ("spec",)
        errors = field_errors(exc.errors(), prefix=prefix)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise ProblemError(422, "Invalid resource", detail, errors=errors) from None
    except SpecError as exc:
        errors = [{"field": exc.field, "message": exc.problem}]
        raise ProblemError(422, "Invalid resource", str(exc), errors=errors) from None
    except ValueError as exc:
        field = str(exc).split(":", 1)[0] if ":" in str(exc) else "document"
        raise ProblemError(422, "Invalid resource", str(exc), errors=[{"field": field, "message": str(exc)}]) from None
