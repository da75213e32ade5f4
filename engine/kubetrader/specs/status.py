"""Status vocabulary shared by the operator, the API and the dashboard.

One list of conditions is the truth; `phase` is derived from it (two status
fields that can disagree will).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    # LiveDeployment only
    TRADING = "Trading"
    HALTED = "Halted"
    STOPPING = "Stopping"


class ConditionType(StrEnum):
    ACCEPTED = "Accepted"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    GATEWAY_READY = "GatewayReady"
    CONNECTED = "Connected"
    TRADING = "Trading"
    HALTED = "Halted"
    STOPPING = "Stopping"


class Condition(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    type: str
    status: str = Field(pattern="^(True|False|Unknown)$")
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None
