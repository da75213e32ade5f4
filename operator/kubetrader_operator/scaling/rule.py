"""The scaling rule, as pure functions: easy to test, and the same rule the KEDA object states.

desired = clamp(ceil(pending / tasksPerWorker), min, max)

Up at once: waiting work costs wall time, an idle pod only a little money.
Down only after `cooldown` seconds without any pending task, and never below the
number of tasks running (each worker runs one task, so removing a busy pod only
sends its task back to the queue). Which pods go is steered by
`controller.kubernetes.io/pod-deletion-cost`: busy pods are expensive to delete.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
BUSY_POD_COST = 1000
IDLE_POD_COST = 0


class ScalingPolicy(BaseModel):
    """How one worker Deployment scales (from its annotations; see `handlers.policy_from_annotations`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tasks_per_worker: int = Field(default=4, ge=1, description="Pending tasks one more worker is worth.")
    min_replicas: int = Field(default=0, ge=0)
    max_replicas: int = Field(default=10, ge=1)
    cooldown_seconds: float = Field(default=300.0, ge=0, description="Quiet time before scaling down.")

    @model_validator(mode="after")
    def _min_below_max(self) -> ScalingPolicy:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})")
        return self


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    replicas: int
    direction: Literal["up", "down", "none"]
    reason: str
    last_backlog_at: float | None = Field(description="When work was last seen pending (epoch s), carried forward.")


def desired_replicas(pending: int, policy: ScalingPolicy) -> int:
    """clamp(ceil(pending / tasksPerWorker), min, max)."""
    wanted = math.ceil(max(pending, 0) / policy.tasks_per_worker)
    return max(policy.min_replicas, min(policy.max_replicas, wanted))


def decide(
    *,
    pending: int,
    running: int,
    current: int,
    last_backlog_at: float | None,
    now: float,
    policy: ScalingPolicy,
) -> Decision:
    """What the replica count should be now, and why."""
    last_backlog = now if pending > 0 else last_backlog_at
    target = desired_replicas(pending, policy)
    if target > current:
        reason = f"{pending} pending, {running} running"
        return Decision(replicas=target, direction="up", reason=reason, last_backlog_at=last_backlog)
    # Down (or hold): never below the pods holding a task, never below min.
    floor = max(target, min(running, policy.max_replicas), policy.min_replicas)
    if floor >= current:
        return Decision(replicas=current, direction="none", reason="at target", last_backlog_at=last_backlog)
    if pending > 0:
        return Decision(
            replicas=current, direction="none", reason=f"{pending} still pending", last_backlog_at=last_backlog
        )
    if last_backlog is not None and now - last_backlog < policy.cooldown_seconds:
        left = policy.cooldown_seconds - (now - last_backlog)
        return Decision(
            replicas=current, direction="none", reason=f"cooldown, {left:.0f} s left", last_backlog_at=last_backlog
        )
    return Decision(
        replicas=floor,
        direction="down",
        reason=f"no backlog for {policy.cooldown_seconds:.0f} s, {running} running",
        last_backlog_at=last_backlog,
    )


def deletion_costs(pod_names: Iterable[str], busy_pods: set[str]) -> dict[str, str]:
    """Pod -> deletion-cost annotation value: busy pods last when the ReplicaSet scales down."""
    return {name: str(BUSY_POD_COST if name in busy_pods else IDLE_POD_COST) for name in pod_names}
