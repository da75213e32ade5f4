"""Conditions are the one truth of a resource's status; the phase is derived from them.

Pure functions over plain dicts (as stored in `status.conditions`), so the
handlers, the API and the dashboard agree on what a status means.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kubetrader.specs.status import ConditionType, Phase

Condition = dict[str, Any]


def now_iso() -> str:
    """RFC 3339 in UTC with a Z and whole seconds, as the API server writes times."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: list[Condition], type_: str) -> bool:
    condition = get_condition(conditions, type_)
    return condition is not None and condition.get("status") == "True"


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: str,
) -> list[Condition]:
    """A new list with one condition set; `lastTransitionTime` only moves when the status flips."""
    value = "True" if status else "False"
    old = get_condition(conditions, type_)
    transition = old["lastTransitionTime"] if old is not None and old.get("status") == value else now
    new: Condition = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": transition,
    }
    if generation is not None:
        new["observedGeneration"] = generation
    others = [c for c in conditions if c.get("type") != type_]
    return sorted([*others, new], key=lambda c: _ORDER.get(c["type"], len(_ORDER)))


_ORDER = {t: i for i, t in enumerate(ConditionType)}


def derive_phase(conditions: list[Condition]) -> Phase:
    """Failed beats Succeeded beats Running; nothing decided yet is Pending."""
    if is_true(conditions, ConditionType.FAILED):
        return Phase.FAILED
    if is_true(conditions, ConditionType.SUCCEEDED):
        return Phase.SUCCEEDED
    if is_true(conditions, ConditionType.RUNNING):
        return Phase.RUNNING
    return Phase.PENDING


def is_terminal(conditions: list[Condition]) -> bool:
    return derive_phase(conditions) in {Phase.SUCCEEDED, Phase.FAILED}
