"""The same rule as a KEDA ScaledObject, for clusters that run KEDA instead of the operator's timer.

KEDA's `redis` scaler reads a LIST length and `redis-streams` a stream's pending
entries; our queue is a sorted set, so neither applies. The operator exports the
queue depth as `kubetrader_queue_pending`, and a `prometheus` trigger with
`metricType: AverageValue` and `threshold = tasksPerWorker` makes the HPA compute
ceil(pending / tasksPerWorker) clamped to min/max: the same rule. The scale-down
stabilization window is the cooldown.
"""

from __future__ import annotations

from typing import Any

from kubetrader_operator.scaling.rule import ScalingPolicy


def build_scaled_object(
    *,
    deployment: str,
    namespace: str,
    policy: ScalingPolicy,
    prometheus_url: str,
    prefix: str = "kubetrader",
    polling_seconds: int = 15,
) -> dict[str, Any]:
    cooldown = int(policy.cooldown_seconds)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {
            "name": f"{deployment}-queue",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "kubetrader"},
        },
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            "minReplicaCount": policy.min_replicas,
            "maxReplicaCount": policy.max_replicas,
            "pollingInterval": polling_seconds,
            "cooldownPeriod": cooldown,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleUp": {"stabilizationWindowSeconds": 0},
                        "scaleDown": {"stabilizationWindowSeconds": cooldown},
                    }
                }
            },
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": prometheus_url,
                        "query": f'sum(kubetrader_queue_pending{{prefix="{prefix}"}})',
                        "threshold": str(policy.tasks_per_worker),
                        "activationThreshold": "0",
                    },
                }
            ],
        },
    }
