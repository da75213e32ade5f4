"""Names, labels and annotations the operator puts on children, in one place."""

from __future__ import annotations

import hashlib
from typing import Any

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "kubetrader-operator"
PART_OF = "app.kubernetes.io/part-of"
COMPONENT = "app.kubernetes.io/component"
BACKTEST_LABEL = "kubetrader.io/backtest"
SPEC_HASH_ANNOTATION = "kubetrader.io/spec-hash"
# kopf keeps its handler progress here (not in status: the status schema is ours alone).
KOPF_PREFIX = "kopf.kubetrader.io"
# A label value is at most 63 characters (apimachinery validation.IsValidLabelValue); a
# resource name may have 253 (a DNS subdomain), so a long name is shortened with a digest.
LABEL_VALUE_MAX = 63
# A Job's name becomes its pods' `job-name` label value with a 5-character suffix after it.
CHILD_NAME_MAX = 52


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def shortened(text: str, limit: int) -> str:
    """`text` if it fits in `limit` characters, else its head and a digest of all of it (still unique)."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 9].rstrip('-._')}-{_digest(text)}"


def label_value(name: str) -> str:
    """A resource's name as a label value: the name itself up to 63 characters, else shortened.

    Every label and every selector on a resource's name goes through this one function, so the
    children a selector finds are the ones the labels were put on. The name itself is read from
    the child's ownerReference (or the handler's own object), never back from the label.
    """
    return shortened(name, LABEL_VALUE_MAX)


def child_name(prefix: str, owner_name: str) -> str:
    """Deterministic name of an owner's Job and ConfigMap, so a restart finds, not duplicates, them."""
    return shortened(f"{prefix}-{owner_name}", CHILD_NAME_MAX)


def backtest_child_name(backtest_name: str) -> str:
    return child_name("bt", backtest_name)


def child_labels(component: str, backtest_name: str) -> dict[str, str]:
    return {
        MANAGED_BY: MANAGER,
        PART_OF: "kubetrader",
        COMPONENT: component,
        BACKTEST_LABEL: label_value(backtest_name),
    }


def owner_name(child: dict[str, Any], kind: str) -> str | None:
    """The name of the child's controlling owner of `kind` (from its ownerReferences)."""
    for ref in (child.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == kind and ref.get("controller"):
            return str(ref["name"])
    return None


def owner_uid(child: dict[str, Any]) -> str | None:
    """The uid of the child's controlling owner (the one `kopf.adopt` set)."""
    for ref in (child.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def stale_child(existing: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """Why an existing child under the wanted name is not this owner's to adopt (None: it is).

    A re-created resource finds the child of its deleted namesake until the garbage collector
    deletes it (after the owner's DELETE has returned): that child belongs to the old uid and ran
    the old spec, and must not be reported as this resource's run.
    """
    kind, name = existing.get("kind", "child"), existing["metadata"]["name"]
    theirs, ours = owner_uid(existing), owner_uid(wanted)
    if theirs != ours:
        return (
            f"{kind} {name} belongs to an earlier resource of this name (uid {theirs}); "
            "waiting for the garbage collector to delete it"
        )
    old_hash = ((existing["metadata"].get("annotations") or {}).get(SPEC_HASH_ANNOTATION)) or ""
    new_hash = ((wanted["metadata"].get("annotations") or {}).get(SPEC_HASH_ANNOTATION)) or ""
    if old_hash != new_hash:
        return f"{kind} {name} was made for another spec (spec-hash {old_hash or 'none'}, now {new_hash}): delete it"
    return None
