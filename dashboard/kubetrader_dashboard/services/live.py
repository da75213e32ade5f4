"""The live runner's HTTP status endpoint: account, positions, open orders, journal.

Read-only from here: orders are the runner's business and pass its risk checks;
the dashboard never places one. Not configured means "not available", never a
made-up portfolio.
"""

from __future__ import annotations

from typing import Any

import httpx

from kubetrader_dashboard.models.operations import JournalEntry, LiveOrder, LivePosition, LiveState

STATE_PATH = "/state"


class LiveService:
    def __init__(self, runner_url: str | None) -> None:
        self.runner_url = runner_url.rstrip("/") if runner_url else None

    @property
    def available(self) -> bool:
        return self.runner_url is not None

    def fetch(self) -> dict[str, Any]:
        assert self.runner_url is not None
        response = httpx.get(self.runner_url + STATE_PATH, timeout=3.0)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def state(self) -> LiveState:
        if self.runner_url is None:
            return LiveState(available=False, reason="KUBETRADER_LIVE_RUNNER_URL is not set")
        try:
            body = self.fetch()
        except (httpx.HTTPError, ValueError) as exc:
            return LiveState(available=False, reason=f"live runner unreachable: {type(exc).__name__}")
        return LiveState(
            deployment=body.get("deployment"),
            mode=body.get("mode"),
            account={k: v for k, v in (body.get("account") or {}).items() if isinstance(v, int | float) or v is None},
            positions=[LivePosition.model_validate(p) for p in body.get("positions") or []],
            open_orders=[LiveOrder.model_validate(o) for o in body.get("open_orders") or []],
            journal=[JournalEntry.model_validate(j) for j in body.get("journal") or []],
        )
