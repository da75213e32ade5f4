"""The leading run of a study's finished trials: what the TPE sampler and the study driver's progress
read once instead of on every ask or round."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def lead_holds(trials: Sequence[Any], count: int, last: Any) -> bool:
    """Whether `trials` still begins with the `count` finished trials read before, the last of them the
    object `last`. A study's trials are only appended and a finished trial never changes (Optuna refuses
    updates to it), so a list whose trial at `count - 1` is that very object holds them unchanged; any
    other list (another study, a storage that replaced its objects) is read from its start."""
    return count <= len(trials) and (count == 0 or trials[count - 1] is last)
