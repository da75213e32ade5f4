"""The three roles and the identity a request carries.

Roles are ordered: a researcher may do what a viewer may, a trader what a researcher may.
One order keeps every route's check a single comparison (`identity.may(Role.RESEARCHER)`),
and a platform this size has no user who may touch live trading but not read results.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel


class Role(StrEnum):
    VIEWER = "viewer"  # reads results, studies, MLflow, the queue, health and logs
    RESEARCHER = "researcher"  # ... and submits Backtests and OptimizationStudies
    TRADER = "trader"  # ... and sees live trading (the runner's positions, orders, PnL, journal)

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def includes(self, other: Role) -> bool:
        return self.rank >= other.rank


Method = Literal["session", "oidc", "token"]


class Identity(BaseModel):
    """Who made a request: a signed-in user (built-in login or OIDC) or the machine token."""

    name: str
    role: Role
    method: Method

    def may(self, role: Role) -> bool:
        return self.role.includes(role)

    @property
    def key(self) -> str:
        """What rate limits count by: one budget per person or machine, however they signed in."""
        return f"{self.method}:{self.name}"
