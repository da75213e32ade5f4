"""The per-resource override annotations, parsed and held to the operator's maximums.

Why clamp: whoever may create a Backtest or a study sets these annotations, and without a
ceiling one resource asked for `backoff-limit: 1000000` or `memory: 512Gi` and the operator
put it into a Job as given. The cluster's quotas are the last line; the operator's own
maximums (settings, the chart's `operator.overrideLimits`) are the first. A value above its
maximum is clamped to it and said so (the handlers post a warning Event with each note); a
value that is not a number or quantity at all is refused, naming the annotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from kubernetes.utils.quantity import parse_quantity

from kubetrader_operator.settings import ANNOTATION_PREFIX, OperatorSettings


@dataclass(frozen=True)
class Overrides:
    """The Job's knobs after the annotations: the values to use and what was clamped."""

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    backoff_limit: int
    active_deadline_seconds: int
    notes: tuple[str, ...] = ()


def _integer(annotations: dict[str, str], key: str, default: int, low: int, high: int, notes: list[str]) -> int:
    name = ANNOTATION_PREFIX + key
    raw = annotations.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"annotation {name}: {raw!r} is not an integer") from None
    if value < low:
        raise ValueError(f"annotation {name}: must be at least {low}, got {value}")
    if value > high:
        notes.append(f"annotation {name}: {value} is above the operator's maximum {high}; clamped to {high}")
        return high
    return value


def _quantity(annotations: dict[str, str], key: str, maximum: str, notes: list[str]) -> str | None:
    """A Kubernetes quantity (`500m`, `2`, `4Gi`), above zero, at most `maximum`."""
    name = ANNOTATION_PREFIX + key
    raw = annotations.get(name)
    if raw is None:
        return None
    try:
        value = parse_quantity(raw.strip())
    except (ValueError, InvalidOperation, TypeError):
        raise ValueError(f"annotation {name}: {raw!r} is not a Kubernetes quantity (e.g. 500m, 2, 4Gi)") from None
    if value <= Decimal(0):
        raise ValueError(f"annotation {name}: must be above zero, got {raw!r}")
    if value > parse_quantity(maximum):
        notes.append(f"annotation {name}: {raw} is above the operator's maximum {maximum}; clamped to {maximum}")
        return maximum
    return raw.strip()


def parse_overrides(settings: OperatorSettings, annotations: dict[str, str]) -> Overrides:
    """The settings with the annotations applied; ValueError naming a malformed annotation."""
    notes: list[str] = []
    cpu = _quantity(annotations, "cpu", settings.max_cpu, notes)
    memory = _quantity(annotations, "memory", settings.max_memory, notes)
    backoff = _integer(annotations, "backoff-limit", settings.backoff_limit, 0, settings.max_backoff_limit, notes)
    deadline = _integer(
        annotations,
        "active-deadline-seconds",
        settings.active_deadline_seconds,
        1,
        settings.max_active_deadline_seconds,
        notes,
    )
    return Overrides(
        cpu_request=cpu or settings.cpu_request,
        cpu_limit=cpu or settings.cpu_limit,
        memory_request=memory or settings.memory_request,
        memory_limit=memory or settings.memory_limit,
        backoff_limit=backoff,
        active_deadline_seconds=deadline,
        notes=tuple(notes),
    )
