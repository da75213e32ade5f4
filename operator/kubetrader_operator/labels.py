"""Names, labels and annotations the operator puts on children, in one place."""

from __future__ import annotations

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "kubetrader-operator"
PART_OF = "app.kubernetes.io/part-of"
COMPONENT = "app.kubernetes.io/component"
BACKTEST_LABEL = "kubetrader.io/backtest"
SPEC_HASH_ANNOTATION = "kubetrader.io/spec-hash"
# kopf keeps its handler progress here (not in status: the status schema is ours alone).
KOPF_PREFIX = "kopf.kubetrader.io"


def backtest_child_name(backtest_name: str) -> str:
    """Deterministic name of a Backtest's Job and ConfigMap, so a restart finds, not duplicates, them.

    Job names become a pod label value (63 chars) with a 5-char pod suffix appended.
    """
    name = f"bt-{backtest_name}"
    if len(name) > 52:
        import hashlib

        digest = hashlib.sha256(backtest_name.encode()).hexdigest()[:8]
        name = f"{name[:43].rstrip('-.')}-{digest}"
    return name


def child_labels(component: str, backtest_name: str) -> dict[str, str]:
    return {
        MANAGED_BY: MANAGER,
        PART_OF: "kubetrader",
        COMPONENT: component,
        BACKTEST_LABEL: backtest_name,
    }
