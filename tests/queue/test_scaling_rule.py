"""The scaler's pure rule: desired replicas, up at once, down after the cooldown, busy pods protected."""

from __future__ import annotations

import pytest

from kubetrader_operator.scaling.handlers import policy_from_annotations
from kubetrader_operator.scaling.keda import build_scaled_object
from kubetrader_operator.scaling.rule import ScalingPolicy, decide, deletion_costs, desired_replicas

POLICY = ScalingPolicy(tasks_per_worker=4, min_replicas=1, max_replicas=8, cooldown_seconds=60)


@pytest.mark.parametrize(
    ("pending", "expected"),
    [(0, 1), (1, 1), (4, 1), (5, 2), (16, 4), (17, 5), (40, 8), (1000, 8)],
)
def test_desired_replicas_is_ceil_of_pending_over_tasks_per_worker_clamped(pending: int, expected: int) -> None:
    assert desired_replicas(pending, POLICY) == expected


def test_a_backlog_scales_up_at_once_and_remembers_when_it_was_seen() -> None:
    decision = decide(pending=40, running=2, current=2, last_backlog_at=None, now=1000.0, policy=POLICY)
    assert (decision.replicas, decision.direction, decision.last_backlog_at) == (8, "up", 1000.0)


def test_no_scale_down_while_anything_is_pending() -> None:
    decision = decide(pending=3, running=0, current=8, last_backlog_at=0.0, now=10_000.0, policy=POLICY)
    assert (decision.replicas, decision.direction) == (8, "none")
    assert "pending" in decision.reason


def test_an_empty_queue_scales_down_only_after_the_cooldown() -> None:
    during = decide(pending=0, running=0, current=8, last_backlog_at=1000.0, now=1059.0, policy=POLICY)
    assert (during.replicas, during.direction) == (8, "none")
    assert "cooldown" in during.reason
    after = decide(pending=0, running=0, current=8, last_backlog_at=1000.0, now=1060.0, policy=POLICY)
    assert (after.replicas, after.direction) == (1, "down")
    assert after.last_backlog_at == 1000.0


def test_scale_down_never_goes_below_the_tasks_still_running() -> None:
    decision = decide(pending=0, running=3, current=8, last_backlog_at=0.0, now=10_000.0, policy=POLICY)
    assert (decision.replicas, decision.direction) == (3, "down")


def test_at_target_nothing_changes() -> None:
    decision = decide(pending=8, running=2, current=2, last_backlog_at=None, now=5.0, policy=POLICY)
    assert (decision.replicas, decision.direction) == (2, "none")


def test_a_queue_never_seen_busy_scales_down_to_min_without_waiting() -> None:
    decision = decide(pending=0, running=0, current=3, last_backlog_at=None, now=5.0, policy=POLICY)
    assert (decision.replicas, decision.direction) == (1, "down")


def test_min_replicas_above_max_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        ScalingPolicy(min_replicas=5, max_replicas=2)


def test_busy_pods_get_the_higher_deletion_cost() -> None:
    costs = deletion_costs(["w-a", "w-b", "w-c"], busy_pods={"w-b"})
    assert costs == {"w-a": "0", "w-b": "1000", "w-c": "0"}


def test_policy_comes_from_deployment_annotations_and_bad_values_are_named() -> None:
    policy = policy_from_annotations(
        {"kubetrader.io/tasks-per-worker": "2", "kubetrader.io/max-replicas": "6", "other": "x"}
    )
    assert (policy.tasks_per_worker, policy.max_replicas, policy.min_replicas) == (2, 6, 0)
    with pytest.raises(ValueError, match="scaling annotations"):
        policy_from_annotations({"kubetrader.io/tasks-per-worker": "zero"})


def test_keda_scaled_object_states_the_same_rule() -> None:
    obj = build_scaled_object(deployment="workers", namespace="research", policy=POLICY, prometheus_url="http://p:9090")
    spec = obj["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["cooldownPeriod"]) == (1, 8, 60)
    trigger = spec["triggers"][0]
    assert (trigger["type"], trigger["metricType"]) == ("prometheus", "AverageValue")
    assert trigger["metadata"]["threshold"] == "4"
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 60
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "workers"}
