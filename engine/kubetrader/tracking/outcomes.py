"""What a tracking attempt came to: shared by results and studies, and by `kubetrader mlflow sync`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# logged: in MLflow; pending: the store was unreachable, a marker waits for a sync; failed: the store
# refused (our credentials, or a bug): a retry would fail the same way.
TrackingState = Literal["logged", "pending", "failed"]


@dataclass(frozen=True)
class SyncOutcome:
    """One marker's sync: `name` is the result id or the study's name; `message` says why when not logged."""

    name: str
    state: TrackingState | Literal["busy"]
    run_id: str | None
    message: str = ""
