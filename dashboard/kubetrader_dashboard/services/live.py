"""The live runner's HTTP endpoint, as the dashboard reads it: `GET /status` and `GET /journal`.

Read-only from here: orders are the runner's business and pass its risk checks; the
dashboard never places one. Both reads carry `Authorization: Bearer <KUBETRADER_RUNNER_TOKEN>`
(the runner refuses them without it). Anything but a good answer is "not available"
with the reason (not configured, unauthorized, unreachable, a bad reply), never a
made-up portfolio, and no reason ever carries the token or the runner's URL.

The runner's snapshot (`kubetrader.live.session.Session._publish`) maps as follows:
`equity` -> account `net_liquidation`, `cash`, `pnl` -> `session_pnl`, `realized_pnl`,
`unrealized_pnl`; `position_details` -> positions (market value = size x last price);
`open_orders` as they are; `last_heartbeat` / `flat_confirmed_at` (epoch seconds) -> ISO
times, plus the heartbeat's age when the dashboard asked.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import httpx

from kubetrader_dashboard.models.operations import JournalEntry, LiveOrder, LivePosition, LiveState

STATUS_PATH = "/status"
JOURNAL_PATH = "/journal"
JOURNAL_LIMIT = 200
TIMEOUT_SECONDS = 3.0
ACCOUNT_KEYS = {
    "equity": "net_liquidation",
    "cash": "cash",
    "pnl": "session_pnl",
    "realized_pnl": "realized_pnl",
    "unrealized_pnl": "unrealized_pnl",
}
UNAUTHORIZED = (401, 403)


class RunnerRefusedError(Exception):
    """The runner answered, but not with what was asked (its reason is safe to show)."""


class LiveService:
    def __init__(self, runner_url: str | None, token: str | None = None) -> None:
        self.runner_url = runner_url.rstrip("/") if runner_url else None
        self._token = token or None

    @property
    def available(self) -> bool:
        return self.runner_url is not None

    def _get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        assert self.runner_url is not None
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        response = httpx.get(self.runner_url + path, params=params, headers=headers, timeout=TIMEOUT_SECONDS)
        if response.status_code in UNAUTHORIZED:
            hint = "the runner refused the token" if self._token else "KUBETRADER_RUNNER_TOKEN is not set"
            raise RunnerRefusedError(f"unauthorized: {hint}")
        if response.status_code != 200:
            raise RunnerRefusedError(f"live runner answered HTTP {response.status_code} on {path}")
        body = response.json()
        if not isinstance(body, dict):
            raise RunnerRefusedError(f"live runner sent no JSON object on {path}")
        return body

    def state(self) -> LiveState:
        if self.runner_url is None:
            return LiveState(available=False, reason="KUBETRADER_LIVE_RUNNER_URL is not set")
        try:
            status = self._get(STATUS_PATH)
        except RunnerRefusedError as exc:
            return LiveState(available=False, reason=str(exc))
        except (httpx.HTTPError, ValueError) as exc:
            return LiveState(available=False, reason=f"live runner unreachable: {type(exc).__name__}")
        try:
            state = state_from_status(status, now=time.time())
        except (TypeError, ValueError) as exc:
            return LiveState(available=False, reason=f"live runner sent a status the dashboard cannot read: {exc}")
        try:
            events = self._get(JOURNAL_PATH, {"limit": JOURNAL_LIMIT}).get("events") or []
            state.journal = [journal_entry(e) for e in events]
        except RunnerRefusedError as exc:
            state.journal_reason = str(exc)
        except (httpx.HTTPError, ValueError, TypeError, KeyError) as exc:
            state.journal_reason = f"journal unreadable: {type(exc).__name__}"
        return state


def _iso(epoch: Any) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(float(epoch), dt.UTC).isoformat()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def state_from_status(body: dict[str, Any], *, now: float) -> LiveState:
    """The runner's `/status` snapshot as the dashboard's LiveState (pure)."""
    positions = []
    for p in body.get("position_details") or []:
        size = float(p["size"])
        price = _number(p.get("market_price"))
        positions.append(
            LivePosition(
                symbol=str(p["symbol"]),
                size=size,
                avg_price=_number(p.get("avg_price")),
                market_price=price,
                market_value=size * price if price is not None else None,
                unrealized_pnl=_number(p.get("unrealized_pnl")),
            )
        )
    heartbeat = _number(body.get("last_heartbeat"))
    halted = body.get("halted")
    return LiveState(
        deployment=body.get("deployment"),
        mode=body.get("mode"),
        connected=bool(body["connected"]) if "connected" in body else None,
        halted=str(halted) if halted else None,
        stopping=bool(body["stopping"]) if "stopping" in body else None,
        last_heartbeat=_iso(heartbeat),
        heartbeat_age_seconds=round(max(0.0, now - heartbeat), 3) if heartbeat is not None else None,
        flat_confirmed_at=_iso(body.get("flat_confirmed_at")),
        account={name: _number(body.get(key)) for key, name in ACCOUNT_KEYS.items() if key in body},
        positions=positions,
        open_orders=[LiveOrder.model_validate(o) for o in body.get("open_orders") or []],
    )


def journal_entry(event: dict[str, Any]) -> JournalEntry:
    """One runner journal event (`{id, at, kind, order_ref, detail}`) as a row of the Live tab."""
    detail = event.get("detail") or {}
    message = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in detail.items()) if detail else ""
    return JournalEntry(
        time=str(event["at"]), event=str(event["kind"]), message=message, order_ref=event.get("order_ref")
    )
