"""Signing in: the built-in login's request and answer, and who the API thinks the caller is."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kubetrader_dashboard.auth.roles import Identity


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class SessionToken(BaseModel):
    """A session of the built-in login: send `token` as `Authorization: Bearer <token>`."""

    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the session ends.")
    identity: Identity
