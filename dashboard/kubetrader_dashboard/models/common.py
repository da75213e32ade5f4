"""Shapes every resource uses: a page of items and the "not available" marker."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list: `total` counts every match, so a client can page without guessing."""

    items: list[T]
    total: int = Field(ge=0)
    limit: int = Field(ge=0)
    offset: int = Field(ge=0)


class Availability(BaseModel):
    """Optional sources (Redis, Optuna, Kubernetes, live runner) say plainly when they are not there.

    A dashboard that invents numbers for a missing store is worse than one that says
    "not available": it is read by people deciding about money.
    """

    available: bool = True
    reason: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of the API is returned."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, object]] | None = None
